#!/usr/bin/env bash
# One device call (about 9 minutes on an H100/H200): issue 5's GPU figures. Prepare first, here:
# benchmarks/gpu_prepare.sh; then run this there with carry [".whl", ".bench_assets"].
# Stages, most wanted first, each under its own time limit, so a short call still brings back the first:
#   1. run.py: the benchmark's GPU job (random-weight BERT-base teacher, 6x768 student, 8,192 rows x 3
#      epochs, batch 32) for distiltune, the plain loop and the bare student loop. TextBrewer and
#      torchdistill ran at the plain loop's speed on the H100 (0.92x and 0.96x of it); add them with
#      CONTENDERS="... textbrewer torchdistill" when the call has time.          (BENCH_S, default 300 s)
#   2. profile_step.py: per-step host time, kernels, GPU busy time and host syncs of distiltune's
#      distil and fine-tune steps and of the bare student loop (tells host-bound from device-bound).
#                                                                                (PROFILE_S, default 110 s)
#   3. profile_step.py again, distiltune's distil step with the student under torch.compile and CUDA
#      graphs (torch_compile_mode reduce-overhead): the step time that fewer launches buy, after the
#      compile (which a 25-second job cannot repay; the step time says what a longer one gets).
#                                                                                (COMPILE_S, default 150 s; 0 skips)
# Everything lands in $OUT (the device tool's folder) or ./gpu-out. DEVICE=cpu with
# BENCH_ARGS/PROFILE_ARGS="--models tiny-bert ..." dry-runs the plumbing on a machine without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
dev=${DEVICE:-cuda}
mkdir -p "$out"
if [ "$dev" = cuda ]; then  # the device image lacks datasets and the peers
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}
tok=.bench_assets/tokenizer
if [ "$dev" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
fi
"$py" -c "import torch, transformers, datasets; print(torch.__version__, transformers.__version__, datasets.__version__)" | tee -a "$out/gpu.txt"
# shellcheck disable=SC2086
timeout "${BENCH_S:-300}" "$py" benchmarks/run.py --device "$dev" --python "$py" --tokenizer "$tok" \
  --contenders ${CONTENDERS:-finetune distill plain plain_student} --markdown "$out/gpu.md" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.txt"
# shellcheck disable=SC2086
timeout "${PROFILE_S:-110}" "$py" benchmarks/profile_step.py --device "$dev" --tokenizer "$tok" ${PROFILE_ARGS:-} 2>&1 | tee "$out/profile.txt"
if [ "${COMPILE_S:-150}" != 0 ]; then
  # shellcheck disable=SC2086
  timeout "${COMPILE_S:-150}" "$py" benchmarks/profile_step.py --device "$dev" --tokenizer "$tok" --ways distill \
    --warmup 30 --distiltune-args '{"torch_compile": true, "torch_compile_mode": "reduce-overhead"}' \
    ${PROFILE_ARGS:-} 2>&1 | tee "$out/profile_compiled.txt"
fi
