#!/usr/bin/env bash
# The test suite from nothing: environment, models, lint, tests (real models on real photos).
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIE3D_SETUP_TESTS=1 source "$ROOT/scripts/setup.sh"
# The browser tests drive Debian's chromium (playwright's own browser download is not used). Installed here when
# missing and this user may (root, apt-get); otherwise those tests say how to install it and skip.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "[test] installing chromium (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cd "$ROOT"
"$VENV/bin/ruff" check "$ROOT"
"$VENV/bin/python" -m pytest "$@"
