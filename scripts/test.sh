#!/usr/bin/env bash
# The test command of the README: the CPU test suite and the static TensorRT API checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=python bash scripts/check_tensorrt_types.sh
python -m pytest -q tests "$@"
