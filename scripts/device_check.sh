#!/usr/bin/env bash
# One command on a device gives the whole verdict of the TensorRT backend there:
#   1. the device: module (/proc/device-tree/model), L4T/JetPack, TensorRT and CUDA versions,
#      power mode (nvpmodel) and clocks, or nvidia-smi off Jetson; the target profile it implies;
#   2. the bundle: BUNDLE if given, else a demo bundle made here ('edgemoe demo', exported with
#      fused hot-mask graphs and calibrated to int8/fp16; needs PyTorch on this machine);
#   3. the engines for the detected profile, with the build report (scripts/build_engines_on_device.sh);
#   4. device_tests (pytest) on that profile and bundle;
#   5. every mask at fp32/fp16/int8: parity with ONNX Runtime on the CPU and latency p50/p99,
#      each engine's CUDA graph / zero copy / DLA placement (device_tests/device_check.py);
#   6. one report: OUT/device-check.md and OUT/device-check.json, verdict PASS (exit 0), FAIL, or
#      INCOMPLETE when the device tests did not run (no GPU or no TensorRT found: exit 1).
#
#   scripts/device_check.sh [BUNDLE] [OUT]        (OUT defaults to runs/device-check)
#   TARGET=jetson-agx-orin-dla scripts/device_check.sh BUNDLE   # another profile than the detected one
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUNDLE=${1:-}
OUT=${2:-runs/device-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
FACTS="$OUT/device-facts.txt"

section() { printf '\n== %s\n' "$1"; }

section "device"
bash scripts/device_facts.sh | tee "$FACTS"

if [ -z "${TARGET:-}" ]; then
  TARGET=$("$PY" -c 'import sys; from edgemoe.engines.tensorrt.detect import print_profile; sys.exit(print_profile())') \
    || { echo "$0: set TARGET=<profile> (engines/*.yaml) for this device" >&2; exit 2; }
fi
echo "target profile: $TARGET" | tee -a "$FACTS"

if [ -z "$BUNDLE" ]; then
  section "demo bundle (train, export with fused graphs, calibrate)"
  DEMO="$OUT/demo"
  "$PY" -m edgemoe.cli demo --out "$DEMO" --frames 100 --show 0
  "$PY" -m edgemoe.cli export "$DEMO/model.safetensors" --out "$DEMO/bundle-fused" --fuse all --fused-experts dense --force
  "$PY" -m edgemoe.cli calibrate "$DEMO/bundle-fused" --data "$DEMO/data"
  BUNDLE="$DEMO/bundle-fused"
fi

section "build $BUNDLE for $TARGET"
PYTHON="$PY" bash scripts/build_engines_on_device.sh "$BUNDLE" "$TARGET" "$OUT/engines"

section "device_tests"
set +e
EDGEMOE_DEVICE_TARGET="$TARGET" EDGEMOE_DEVICE_BUNDLE="$BUNDLE" EDGEMOE_DEVICE_REPORT="$OUT/device_tests" \
  "$PY" -m pytest -q device_tests --junitxml="$OUT/device_tests.xml" -p no:cacheprovider
set -e

section "every mask at fp32/fp16/int8: parity and latency"
cat "$OUT/engines.build-report.md" >> "$FACTS"
"$PY" device_tests/device_check.py --bundle "$BUNDLE" --target "$TARGET" --out "$OUT" \
  --junit "$OUT/device_tests.xml" --facts "$FACTS"
