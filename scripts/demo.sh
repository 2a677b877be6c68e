#!/usr/bin/env bash
# The main job from nothing: environment, models, and a result for an example photo.
#   bash scripts/demo.sh [PHOTO] [OUTPUT_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
# Default photo: Grace Hopper (US Navy, public domain), shipped inside matplotlib's sample data.
PHOTO="${1:-$("$PY" -c 'import matplotlib.cbook as c; print(c.get_sample_data("grace_hopper.jpg", asfileobj=False))')}"
OUT="${2:-$ROOT/demo-output}"
"$VENV/bin/sie3d" reconstruct "$PHOTO" -o "$OUT"
