#!/usr/bin/env bash
# The test suite from nothing: environment, models, lint, tests (real models on real photos).
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
"$VENV/bin/ruff" check "$ROOT"
"$VENV/bin/python" -m pytest "$@"
