#!/usr/bin/env bash
# The first check on a GPU machine, in one command: offline, at most ten minutes on one GPU.
#
#     SAMREPRO_DATA_DIR=/path/to/data bash benchmarks/gpu_check.sh OUTDIR
#     SAMREPRO_DATA_DIR=/path/to/data bash benchmarks/gpu_check.sh --dry-run OUTDIR   # on a CPU
#
# Needs this repository and the offline corpora (SAMREPRO_DATA_DIR); nothing from a hub.
# Writes OUTDIR/gpu_check.json (each step's status, seconds and figures, rewritten after every
# step) and OUTDIR/STEP.log; prints one line per step. The steps are described in
# benchmarks/gpu_check.py. Exit status 0 when no step failed (a skipped step says why).
# The Python: $PYTHON, else the repository's .venv, else python3, else python.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${PYTHON:-}" ]; then
  py=$PYTHON
elif [ -x "$repo/.venv/bin/python" ]; then
  py=$repo/.venv/bin/python
elif command -v python3 > /dev/null; then
  py=python3
elif command -v python > /dev/null; then
  py=python
else
  echo "gpu_check: no Python found: set PYTHON to the interpreter that has torch installed" >&2
  exit 2
fi
if ! "$py" -c "import torch, transformers" 2> /dev/null; then
  echo "gpu_check: $py cannot import torch and transformers: set PYTHON to the interpreter" \
       "of the environment you installed samrepro into (docs/install.md)" >&2
  exit 2
fi
exec "$py" "$repo/benchmarks/gpu_check.py" "$@"
