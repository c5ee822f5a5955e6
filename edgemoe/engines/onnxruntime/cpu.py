"""What the host CPU's instruction set means for ONNX Runtime's int8 engines.

With graph optimisations at ``extended`` or above, ONNX Runtime's CPU provider fuses a Q/DQ
graph's quantize/dequantize pairs into integer kernels that multiply u8 activations by s8
weights. On x86 without VNNI those kernels add pairs of products in 16 bits (AVX2's
``vpmaddubsw``), which saturates: the engine answers further from fp32 than its Q/DQ graph states
and calibration measured (docs/calibration.md: 0.089 against 0.010 at the 99th percentile on one
model). VNNI accumulates in 32 bits. Knowing this at build time lets ``edgemoe build`` say so,
instead of the user finding it in accuracy.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
FUSING_LEVELS = ("extended", "all")  # graph optimisation levels that fuse Q/DQ into integer kernels


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The feature flags of the first x86 CPU listed, or None where none can be read (not Linux,
    or a CPU whose ``/proc/cpuinfo`` has no ``flags`` line, such as Arm)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def int8_products_saturate(flags: frozenset[str] | None) -> bool | None:
    """True for an x86 CPU with AVX2 but no VNNI, False with VNNI, None when not known."""
    if flags is None or "avx2" not in flags:
        return None
    return not flags & VNNI_FLAGS
