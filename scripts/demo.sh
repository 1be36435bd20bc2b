#!/usr/bin/env bash
# The main job on the embedded demo data: one SMART-IQA training run through Ray Train on this CPU.
# Extra arguments go to `swiniqa train` (e.g. --num-workers 2, --epochs 3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec swiniqa train --preset demo --output "${SWINIQA_OUTPUT:-$ROOT/runs}" "$@"
