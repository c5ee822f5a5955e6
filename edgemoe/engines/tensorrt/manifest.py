"""Engine-bundle facts for TensorRT: what is recorded at build, what must match at load.

An engine runs only on the TensorRT build and GPU (compute capability) that produced it, so the
manifest records both and loading refuses a mismatch with a message naming both sides and the fix.
Everything here is plain data in, plain data out, so it is tested without a GPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgemoe.core.errors import BundleError

REBUILD = "engines are not portable: rebuild on this device with 'edgemoe build BUNDLE --target PROFILE --out ENGINES'"
# Facts that must be identical between the device that built the engines and the one loading them.
# Every Jetson Orin module reports the GPU "Orin" at SM 8.7; the SM count and the module's name
# (/proc/device-tree/model, None off Jetson) tell an AGX Orin's engines from an Orin Nano's.
MUST_MATCH = ("tensorrt", "compute_capability", "gpu", "sm_count", "module")
L4T_RELEASE = Path("/etc/nv_tegra_release")


# TensorRT DataType member names -> numpy dtype names (the manifest's spelling).
TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
              "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


def numpy_dtype_name(trt_dtype_name: str) -> str:
    return TRT_DTYPES.get(trt_dtype_name, trt_dtype_name.lower())


def parse_l4t_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.0, GCID: ...`` -> ``"36.4.0"`` (Jetson Linux release)."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


# L4T major.minor -> JetPack, for the releases in DEPLOYMENT.md (dpkg's nvidia-jetpack wins when present).
_JETPACK = {"36.3": "6.0", "36.4": "6.1/6.2", "38.2": "7.0", "38.4": "7.1"}


def jetpack_for(l4t: str | None) -> str | None:
    if not l4t:
        return None
    return _JETPACK.get(".".join(l4t.split(".")[:2]))


def cuda_version_string(encoded: int) -> str:
    """CUDA encodes versions as ``1000 * major + 10 * minor`` (12060 -> ``"12.6"``)."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"


def environment_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One line per fact that differs, ``key: built with X, this device has Y``."""
    lines = []
    for key in MUST_MATCH:
        built, here = recorded.get(key), current.get(key)
        if key not in recorded:
            lines.append(f"{key}: not recorded in the manifest (built by an older edgemoe?), this device has {here}")
        elif str(built) != str(here):
            lines.append(f"{key}: built with {built}, this device has {here}")
    return lines


def check_environment(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    problems = environment_mismatches(recorded, current)
    if problems:
        raise BundleError("TensorRT engines do not match this device (" + "; ".join(problems) + f"): {REBUILD}")


def check_io(stage: str, engine_io: Mapping[str, tuple[str, str]], manifest_io: Mapping[str, tuple[str, str]]) -> None:
    """``name -> (mode, dtype)`` of the deserialised engine against the manifest's tensors."""
    if dict(engine_io) != dict(manifest_io):
        raise BundleError(f"engine '{stage}': its tensors {dict(sorted(engine_io.items()))} do not match the "
                          f"manifest's {dict(sorted(manifest_io.items()))}; the engine file belongs to another "
                          f"build: {REBUILD}")


def dla_placement(engine_information: str, log_lines: Iterable[str]) -> dict[str, Any]:
    """Which layers landed on the DLA, from the engine inspector's JSON and the build log.

    TensorRT names every fused subgraph ``{ForeignNode[first...last]}``: the layer groups it hands
    a DLA, and just as well the Myelin subgraphs it compiles for the GPU (attention, LayerNorm,
    GELU). The name alone therefore says nothing about the device; the layer's ``LayerType`` does
    (``DLA`` vs ``Myelin``). A foreign node whose type names neither is listed as ``unplaced``
    rather than guessed. Layers TensorRT could not place on the DLA are announced in the log as
    falling back; fallback is otherwise silent, so this report is how a user learns the DLA ran
    less than expected.
    """
    try:
        info = json.loads(engine_information) if engine_information else {}
    except json.JSONDecodeError:
        info = {}
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    on_dla, unplaced, gpu = [], [], 0
    for layer in layers:
        name = str(layer.get("Name", "")) if isinstance(layer, dict) else str(layer)
        kind = str(layer.get("LayerType", "")) if isinstance(layer, dict) else ""
        if "dla" in kind.lower():
            on_dla.append(name)
        elif name.startswith("{ForeignNode[") and kind.lower() != "myelin":
            unplaced.append(name)
        else:
            gpu += 1
    fallback = []
    for line in log_lines:
        match = (re.search(r"layer (.+?) is not (?:running|supported) on DLA, falling back to GPU", line)
                 or re.search(r"Layer '(.+?)' \(\w+\): Unsupported on DLA", line))
        if match and match.group(1) not in fallback:
            fallback.append(match.group(1))
    return {"dla_layers": on_dla, "gpu_layers": gpu, "fell_back_to_gpu": fallback,
            **({"unplaced": unplaced} if unplaced else {})}


def parser_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """One readable line per ONNX parser error, naming the node (and its operator) where known."""
    lines = []
    for err in errors:
        where = f"node '{err['node_name']}'" if err.get("node_name") else f"node #{err.get('node', '?')}"
        op = f" ({err['operator']})" if err.get("operator") else ""
        lines.append(f"{where}{op}: {err.get('desc', '')}".strip())
    return "; ".join(lines) or "no error detail from the parser"


def build_failure_hint(log_tail: Iterable[str]) -> str:
    """A failed build (``build_serialized_network`` -> None) usually has one of a few causes."""
    text = "\n".join(log_tail).lower()
    if "out of memory" in text or "workspace" in text or "insufficient" in text:
        return "raise 'tensorrt.workspace_mb' in the target profile, or close other GPU programs"
    if "unsupported" in text or "no implementation" in text or "could not find any implementation" in text:
        return ("an operator or type has no TensorRT implementation here: check the stage's ONNX variant "
                "(int8 Q/DQ needs float biases; try 'precision: fp16') or update TensorRT")
    if "dla" in text:
        return "the stage does not fit the DLA: set 'tensorrt.gpu_fallback: true' or drop it from 'dla_stages'"
    return "re-run with EDGEMOE_TRT_VERBOSE=1 for TensorRT's full log"
