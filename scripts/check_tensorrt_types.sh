#!/usr/bin/env bash
# Static check of the TensorRT backend against TensorRT 10's API (no GPU, no TensorRT needed).
#
# Installs the published type stubs WITHOUT their dependencies (they would pull TensorRT itself),
# repairs their syntax errors and adds the PEP 561 marker (scripts/patch_tensorrt_stubs.py), then
# runs mypy --strict over edgemoe/engines/tensorrt. A removed or misspelt call (execute_async_v2,
# get_binding_*, build_engine, max_workspace_size, a wrong BuilderFlag) fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
STUBS_VERSION=10.13.0.35.1

if "$PY" -c 'import sys, tensorrt; sys.exit(0 if hasattr(tensorrt, "Builder") else 1)' 2>/dev/null; then
  echo "check_tensorrt_types: a real TensorRT is installed here; run this check in an environment without it" >&2
  exit 0
fi
if ! "$PY" -m pip show -q tensorrt-stubs >/dev/null 2>&1 \
   || [ "$("$PY" -m pip show tensorrt-stubs | sed -n 's/^Version: //p')" != "$STUBS_VERSION" ]; then
  "$PY" -m pip install -q --no-deps "tensorrt-stubs==$STUBS_VERSION"
fi
"$PY" scripts/patch_tensorrt_stubs.py >/dev/null
"$PY" -m mypy "${@:-edgemoe/engines/tensorrt}"
