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
  if [ -f /etc/nv_tegra_release ]; then
    echo "module: $(tr -d '\0' < /proc/device-tree/model 2>/dev/null || echo 'unknown')"
    echo "L4T: $(head -n1 /etc/nv_tegra_release)"
    echo "JetPack: $(dpkg-query -W -f='${Version}' nvidia-jetpack 2>/dev/null || echo 'nvidia-jetpack package not found')"
    echo "power mode: $(nvpmodel -q 2>/dev/null | tr '\n' ' ' || echo 'nvpmodel unavailable')"
    if command -v jetson_clocks >/dev/null 2>&1; then
      echo "jetson_clocks: $(sudo -n jetson_clocks --show 2>/dev/null | grep -m1 -i 'cpu\|gpu' || echo 'needs sudo to query')"
    fi
  else
    nvidia-smi --query-gpu=name,driver_version,compute_cap,power.limit,clocks.max.sm --format=csv 2>/dev/null \
      || echo "nvidia-smi unavailable"
  fi
  "$PY" - <<'PYEOF'
from edgemoe.engines.tensorrt.detect import probe_device
probe = probe_device()
print("probe:", probe.facts or probe.reason)
try:
    import tensorrt
    print("TensorRT:", getattr(tensorrt, "__version__", "not TensorRT (no __version__)"))
except ImportError as exc:
    print("TensorRT: not installed", exc)
try:
    from cuda.bindings import runtime as rt
    print("CUDA runtime:", rt.cudaRuntimeGetVersion()[1], "driver:", rt.cudaDriverGetVersion()[1])
except ImportError as exc:
    print("cuda-python: not installed", exc)
PYEOF
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
