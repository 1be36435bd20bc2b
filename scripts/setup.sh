#!/usr/bin/env bash
# Create .venv and install swiniqa (editable, with test extras) unless already done for this pyproject.
# Sourced by demo.sh and test.sh; safe to run by hand. Needs python3 >= 3.10 and a package registry.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SWINIQA_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.swiniqa-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing swiniqa and its dependencies into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # torch 2.14.1 + torchvision 0.29.1 work together with timm; pinning them avoids the CPU 2.13 wheel
  # whose torchvision fails to import. Users with other CUDA needs can preinstall torch themselves.
  if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" >&2
  fi
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" >&2
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
