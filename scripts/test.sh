#!/usr/bin/env bash
# The test command of the README: the CPU test suite (and the static TensorRT API checks).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q tests "$@"
