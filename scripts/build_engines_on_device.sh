#!/usr/bin/env bash
# Build a model bundle into TensorRT engines ON the device that will run them, and write a build
# report (per stage: precision, build time, engine size, scratch memory, DLA placement) headed by
# the JetPack/TensorRT/CUDA versions and the power mode the build (and any later timing) ran under.
#
#   scripts/build_engines_on_device.sh BUNDLE [TARGET] [ENGINES]
#   e.g. scripts/build_engines_on_device.sh runs/bundle jetson-orin-nano runs/engines/orin-nano
#
# TARGET defaults to the profile of this machine's module, read from /proc/device-tree/model
# (AGX Orin, Orin Nano, Thor; x86-gpu off Jetson); a module without a profile (Orin NX) is refused
# rather than guessed: name TARGET. ENGINES defaults to engines/built/<TARGET>. An existing ENGINES directory is replaced. The timing cache is kept beside
# it (engines/built/timing.cache), so a second build takes a fraction of the first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUNDLE=${1:?usage: $0 BUNDLE [TARGET] [ENGINES]}
if [ -n "${2:-}" ]; then
  TARGET=$2
else
  TARGET=$("$PY" -c 'import sys; from edgemoe.engines.tensorrt.detect import print_profile; sys.exit(print_profile())') \
    || { echo "$0: name the TARGET profile (engines/*.yaml) for this device" >&2; exit 2; }
fi
OUT=${3:-engines/built/$TARGET}
REPORT="$OUT.build-report.md"
mkdir -p "$(dirname "$OUT")"

section() { printf '\n== %s\n' "$1"; }
{
  section "device"
  bash scripts/device_facts.sh
} | tee "$REPORT.versions"

section "build $BUNDLE -> $OUT (target $TARGET)"
"$PY" -m edgemoe.cli build "$BUNDLE" --target "$TARGET" --out "$OUT" --force

section "report"
{
  "$PY" -m edgemoe.engines.tensorrt.report "$OUT"
  echo
  echo '```'
  cat "$REPORT.versions"
  echo '```'
} > "$REPORT"
rm -f "$REPORT.versions"
cat "$REPORT"
echo "wrote $REPORT"
