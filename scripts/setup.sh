#!/usr/bin/env bash
# Create .venv and install swiniqa (editable) with the exact versions of requirements.lock (test extras
# included) unless already done for this pyproject + lock; without a lock for this Python/platform, the
# version floors of pyproject.toml.
# Sourced by demo.sh and test.sh; safe to run by hand. Needs python3 >= 3.10 and a package registry.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SWINIQA_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.swiniqa-installed"
LOCK="$ROOT/requirements.lock"
want="$({ cat "$ROOT/pyproject.toml"; cat "$LOCK" 2>/dev/null || true; } | sha256sum | cut -c1-16)"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing swiniqa and its dependencies into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  target="$("$VENV/bin/python" "$ROOT/scripts/lock_target.py")"
  if [[ -f "$LOCK" && "$(sed -n 2p "$LOCK")" == "# for: $target" && -z "${SWINIQA_NO_LOCK:-}" ]]; then
    # The exact versions the README's figures were measured with (regenerate: scripts/lock.sh).
    "$VENV/bin/python" -m pip install -q -r "$LOCK" >&2
    "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
  else
    if [[ -f "$LOCK" ]]; then why="requirements.lock is for $(sed -n 2p "$LOCK" | cut -c8-), not $target"; else why="no requirements.lock"; fi
    echo "setup: $why: installing from pyproject.toml's version floors (numbers may differ from the README's)" >&2
    # torch 2.14.1 + torchvision 0.29.1 work together with timm; pinning them avoids the CPU 2.13 wheel
    # whose torchvision fails to import. Users with other CUDA needs can preinstall torch themselves.
    if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
      "$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" >&2
    fi
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" >&2
  fi
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
