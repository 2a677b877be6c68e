#!/usr/bin/env bash
# Create the virtual environment, install sie3d and fetch every model asset. Idempotent: a second run
# only re-checks the model files (a few seconds). Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SIE3D_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Reinstall only when the package definition or this script changed.
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.sie3d-install-stamp"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if ! "$PY" -c "import torch" 2>/dev/null; then
    # A pinned CPU wheel first: an unpinned torch would pull a multi-GB CUDA build. GPU users can
    # install their own torch (>=2.2) into the venv before running this script.
    echo "[setup] installing torch ${SIE3D_TORCH_VERSION:-2.13.0} (CPU)"
    "$PY" -m pip install --quiet "torch==${SIE3D_TORCH_VERSION:-2.13.0}"
  fi
  echo "[setup] installing sie3d and its dependencies"
  "$PY" -m pip install --quiet -e "$ROOT[test,web]"
  echo "$want" > "$stamp"
fi

echo "[setup] fetching and verifying model assets (cache: ${SIE3D_CACHE:-~/.cache/sie3d})"
"$VENV/bin/sie3d" --quiet assets fetch all

# npm packages, pinned by their package-lock.json, into node_modules folders git ignores: the web page's
# libraries (web/: three, @mediapipe/tasks-vision) and the Node-side test tools (tests/js/: the glTF validator,
# three, playwright-core). Reinstalled only when a lock file changed.
npm_ci() {
  local dir="$1" want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$dir/node_modules/.sie3d-stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] npm ci in ${dir#"$ROOT"/}"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    echo "$want" > "$dir/node_modules/.sie3d-stamp"
  fi
}
if command -v npm >/dev/null; then
  npm_ci "$ROOT/web"
  if [ -n "${SIE3D_SETUP_TESTS:-}" ]; then npm_ci "$ROOT/tests/js"; fi
else
  echo "[setup] npm not found: \`sie3d web\` needs node + npm (apt-get install nodejs npm) for its page's libraries"
fi
