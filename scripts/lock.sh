#!/usr/bin/env bash
# Regenerate requirements.lock: the exact versions scripts/setup.sh installs (demo, tests and CI use them).
# Resolves pyproject.toml's floors in a fresh throw-away venv (torch/torchvision pinned as setup.sh pins
# them), then writes `pip freeze` with a header naming the Python and platform the lock is for.
# Usage: scripts/lock.sh            (about 3 minutes here; needs a package registry)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install -q --upgrade pip >&2
"$TMP/venv/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" >&2
"$TMP/venv/bin/python" -m pip install -q "$ROOT[dev]" >&2
{
  echo "# swiniqa lock: exact versions installed by scripts/setup.sh; regenerate with scripts/lock.sh"
  echo "# for: $("$TMP/venv/bin/python" "$ROOT/scripts/lock_target.py")"
  "$TMP/venv/bin/python" -m pip freeze --exclude-editable | grep -v -i "^swiniqa[= @]"
} > "$ROOT/requirements.lock.new"
mv "$ROOT/requirements.lock.new" "$ROOT/requirements.lock"
echo "wrote $ROOT/requirements.lock ($(grep -vc '^#' "$ROOT/requirements.lock") packages)" >&2
