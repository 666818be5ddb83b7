#!/usr/bin/env bash
# One device call (about 8 minutes on an H100/H200): issue 5's GPU figures. Prepare first, here:
# benchmarks/gpu_prepare.sh; then run this there with carry [".whl", ".bench_assets"].
#   1. profile_step.py: per-step host time, kernels, GPU busy time and host syncs of distiltune's
#      distil and fine-tune steps and of the bare student loop (tells host-bound from device-bound);
#   2. run.py: the benchmark's GPU job (random-weight BERT-base teacher, 6x768 student, 8,192 rows x 3
#      epochs, batch 32) for distiltune, the plain loop and the bare student loop. TextBrewer and
#      torchdistill ran at the plain loop's speed on the H100 (0.92x and 0.96x of it); add them with
#      CONTENDERS="... textbrewer torchdistill" when the call has time.
# Everything lands in $OUT (the device tool's folder) or ./gpu-out.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
tok=.bench_assets/tokenizer
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers, datasets; print(torch.__version__, transformers.__version__, datasets.__version__)" | tee -a "$out/gpu.txt"
timeout "${PROFILE_S:-150}" python3 benchmarks/profile_step.py --device cuda --tokenizer "$tok" ${PROFILE_ARGS:-} 2>&1 | tee "$out/profile.txt"
# shellcheck disable=SC2086
timeout "${BENCH_S:-330}" python3 benchmarks/run.py --device cuda --python python3 --tokenizer "$tok" \
  --contenders ${CONTENDERS:-finetune distill plain plain_student} --markdown "$out/gpu.md" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.txt"
