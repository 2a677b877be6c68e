#!/usr/bin/env bash
# The main job from nothing: environment, models, and an example photo wearing an expression described in words.
#   bash scripts/demo.sh [PHOTO] [OUTPUT_DIR] [TEXT]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
# Default photo: Grace Hopper (US Navy, public domain), shipped inside matplotlib's sample data.
PHOTO="${1:-$("$PY" -c 'import matplotlib.cbook as c; print(c.get_sample_data("grace_hopper.jpg", asfileobj=False))')}"
OUT="${2:-$ROOT/demo-output}"
TEXT="${3:-a gleeful grin with raised eyebrows}"
"$VENV/bin/sie3d" generate "$PHOTO" --text "$TEXT" -o "$OUT"
