#!/usr/bin/env bash
# Print the facts every timing and build on this device is read against: the Jetson module, L4T and
# JetPack releases, power mode (nvpmodel) and clocks, or nvidia-smi off Jetson; what the device probe
# found; the TensorRT and CUDA versions. Used by build_engines_on_device.sh and device_check.sh.
set -uo pipefail
PY=${PYTHON:-python3}
if [ -f /etc/nv_tegra_release ]; then
  echo "module: $(tr -d '\0' < /proc/device-tree/model 2>/dev/null || echo 'unknown')"
  echo "L4T: $(head -n1 /etc/nv_tegra_release)"
  echo "JetPack: $(dpkg-query -W -f='${Version}' nvidia-jetpack 2>/dev/null || echo 'nvidia-jetpack package not found')"
  echo "power mode: $(nvpmodel -q 2>/dev/null | tr '\n' ' ' || echo 'nvpmodel unavailable')"
  if command -v jetson_clocks >/dev/null 2>&1; then
    echo "jetson_clocks: $(sudo -n jetson_clocks --show 2>/dev/null | grep -m1 -i 'cpu\|gpu' || echo 'needs sudo to query')"
  fi
else
  echo "module: not a Jetson"
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
