#!/usr/bin/env bash
# Create (or reuse) the project virtualenv and install everything openseed needs, offline-friendly and idempotent.
# Usage: scripts/setup.sh            (venv at $OPENSEED_VENV, default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${OPENSEED_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
STAMP="$VENV/.openseed-setup-stamp"

die() { echo "setup: error: $*" >&2; exit 1; }

command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null \
  || die "Python 3.11 is required (found: $("$PY" --version 2>&1)). Install Python 3.11 or set PYTHON=/path/to/python3.11."

# The stamp records the hash of everything that decides the install: a second run with nothing changed is instant.
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c 'import openseed, detectron2' 2>/dev/null; then
  echo "setup: $VENV is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  parent="$(dirname "$(realpath -m "$VENV")")"
  mkdir -p "$parent"
  free_kb="$(df -Pk "$parent" | awk 'NR==2 {print $4}')"
  [ "${free_kb:-0}" -gt 8000000 ] || die "less than 8 GB free under $parent (${free_kb} kB): the virtualenv needs about 7 GB. Free disk space or set OPENSEED_VENV to a folder on a larger disk."
  "$PY" -m venv "$VENV" || die "could not create the virtualenv at $VENV (is the python3.11-venv package installed?)"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" "numpy<2"

if ! "$VPY" -c 'import detectron2.modeling' 2>/dev/null; then
  purelib="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$VPY" -m pip install -q --no-deps --only-binary=:all: --python-version 3.10 --target "$purelib" sal-detectron2==0.7.2 \
    || die "could not install Detectron2 (sal-detectron2==0.7.2). On a GPU machine you may build upstream Detectron2 from source into $VENV instead."
fi
"$VPY" -m pip install -q -e ".[dev,wandb,web,onnx]" "torch==2.14.1" "torchvision==0.29.1" "numpy<2"
"$VPY" -c 'import detectron2.modeling' 2>/dev/null \
  || die "Detectron2 is installed but fails to import: $("$VPY" -c 'import detectron2.modeling' 2>&1 | tail -n 1). Reinstall it (rm -rf $VENV and rerun make setup) or build it from source."
echo "$want" > "$STAMP"
echo "setup: ready ($VENV)"
