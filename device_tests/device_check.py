"""The device verdict: every mask at fp32/fp16/int8 on the target's TensorRT engines, timed and
compared with ONNX Runtime on the CPU, plus the device facts and the device tests' outcome, in
one Markdown and one JSON report. Run by ``scripts/device_check.sh``; runs anywhere TensorRT
runs (and on the test suite's fake TensorRT, which is how it is tested without a GPU).

    python device_tests/device_check.py --bundle B --target T --out DIR [--junit X] [--facts F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edgemoe.core.bundle import read_model_manifest  # noqa: E402
from edgemoe.core.mask import all_masks, mask_names  # noqa: E402
from edgemoe.engines.build import build_engines  # noqa: E402
from edgemoe.engines.target import TargetProfile, load_target  # noqa: E402
from edgemoe.runtime.runtime import Runtime  # noqa: E402

# Largest |Δprob| against ONNX Runtime fp32 on the CPU, and the share of argmax agreements required
# (the same bounds as device_tests/test_tensorrt_engines.py).
TOLERANCE = {"fp32": (5e-3, 0.99), "fp16": (2e-2, 0.98), "int8": (8e-2, 0.90)}
PRECISIONS = ("fp32", "fp16", "int8")


def precisions_in(bundle: Path) -> list[str]:
    """The precisions every stage of the bundle has a variant for."""
    stages = read_model_manifest(bundle).stages.values()
    return [p for p in PRECISIONS if all(p in entry.variants for entry in stages)]


def frames_for(runtime: Runtime, samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal((samples, *s.shape)).astype(np.float32) for s in runtime.config.sensors}


def measure(runtime: Runtime, reference: Runtime, precision: str, samples: int, repeats: int) -> list[dict[str, Any]]:
    """Per mask: parity over ``samples`` frames (batched), and single-frame latency p50/p99."""
    atol, agree = TOLERANCE[precision]
    frames = frames_for(runtime, samples)
    rows = []
    for mask in all_masks(len(runtime.sensor_names)):
        names = mask_names(mask, runtime.sensor_names)
        part = {n: frames[n] for n in names}
        got, want = runtime.infer_batch(part, mask), reference.infer_batch(part, mask)
        worst = float(np.abs(got - want).max())
        agreement = float((got.argmax(1) == want.argmax(1)).mean())
        one = {n: frames[n][0] for n in names}
        engines = runtime.infer(one).engines
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            runtime.infer({n: frames[n][i % samples] for n in names})
            times.append(time.perf_counter() - started)
        ms = np.array(times) * 1e3
        rows.append({"mask": mask, "sensors": "+".join(names), "engines": list(engines),
                     "max_abs_dprob": worst, "argmax_agreement": agreement,
                     "parity_ok": worst <= atol and agreement >= agree,
                     "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))})
    return rows


def engine_facts(runtime: Runtime, manifest: dict[str, Any]) -> dict[str, Any]:
    """What each engine reported after warm-up (CUDA graph or why not, zero copy) and its DLA placement."""
    facts = {}
    for stage, engine in {**runtime.bundle.engines, **{f"fused[{m}]": e for m, e in runtime.bundle.fused.items()}}.items():
        about = engine.describe() if hasattr(engine, "describe") else {}
        entry = manifest["engines"].get(stage, {})
        facts[stage] = {"precision": entry.get("precision"), **about, "dla": entry.get("dla"),
                        "device_memory_size": entry.get("device_memory_size")}
    return facts


def device_test_outcome(junit: Path | None) -> dict[str, Any]:
    if junit is None or not junit.is_file():
        return {"ran": False}
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = []
    for case in suite.iter("testcase") if suite is not None else []:
        outcome = next(((child.tag, child.get("message", "")) for child in case
                        if child.tag in ("failure", "error", "skipped")), ("passed", ""))
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome[0],
                      "message": outcome[1][:300]})
    return {"ran": True, "cases": cases,
            "failed": sum(c["outcome"] in ("failure", "error") for c in cases),
            "passed": sum(c["outcome"] == "passed" for c in cases),
            "skipped": sum(c["outcome"] == "skipped" for c in cases)}


def check(bundle: Path, target: TargetProfile, out: Path, samples: int = 64, repeats: int = 200) -> dict[str, Any]:
    """Build, load and measure every precision the bundle has; the ONNX Runtime CPU reference is fp32."""
    reference_dir = out / "engines-onnxruntime-fp32"
    build_engines(bundle, load_target("cpu"), reference_dir, force=True)
    reference = Runtime.load(reference_dir)
    results: dict[str, Any] = {}
    try:
        for precision in precisions_in(bundle):
            engines = out / f"engines-{target.name}-{precision}"
            manifest = build_engines(bundle, target.model_copy(update={"precision": precision}), engines,
                                     force=True).model_dump(mode="json")
            runtime = Runtime.load(engines)
            try:
                results[precision] = {"environment": manifest["environment"],
                                      "masks": measure(runtime, reference, precision, samples, repeats),
                                      "engines": engine_facts(runtime, manifest)}
            finally:
                runtime.close()
    finally:
        reference.close()
    return results


def verdict_of(precisions: dict[str, Any], tests: dict[str, Any]) -> str:
    """FAIL: a parity bound or a device test failed. INCOMPLETE: the device tests did not run (or
    all skipped: no GPU or no TensorRT here), so the hardware claims stay unchecked. Else PASS."""
    parity = bool(precisions) and all(r["parity_ok"] for p in precisions.values() for r in p["masks"])
    if not parity or tests.get("failed", 0):
        return "FAIL"
    return "PASS" if tests.get("passed", 0) else "INCOMPLETE"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Device check: {report['verdict']}", "",
             f"Target profile `{report['target']}`; {report['created']}.", ""]
    if report.get("facts"):
        lines += ["```", report["facts"].strip(), "```", ""]
    tests = report["device_tests"]
    if tests["ran"]:
        lines += [f"device_tests: {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped", ""]
        lines += [f"- {c['outcome']}: `{c['test']}` {c['message']}" for c in tests["cases"] if c["outcome"] != "passed"]
        lines.append("")
    for precision, result in report["precisions"].items():
        env = result["environment"]
        lines += [f"## {precision} on {env.get('gpu')} (TensorRT {env.get('tensorrt')}, SM count {env.get('sm_count')}, "
                  f"module {env.get('module') or '-'})", "",
                  "| mask | sensors | engines | max abs dprob | argmax agree | parity | p50 ms | p99 ms |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['mask']} | {r['sensors']} | {len(r['engines'])} | {r['max_abs_dprob']:.2e} | "
                  f"{r['argmax_agreement']:.3f} | {'ok' if r['parity_ok'] else 'FAIL'} | {r['p50_ms']:.3f} | "
                  f"{r['p99_ms']:.3f} |" for r in result["masks"]]
        lines += ["", "| engine | precision | CUDA graph | zero copy | DLA |", "|---|---|---|---|---|"]
        for stage, about in result["engines"].items():
            graph = "yes" if about.get("cuda_graph") else f"no ({about.get('cuda_graph_skipped')})"
            lines.append(f"| {stage} | {about.get('precision')} | {graph} | {about.get('zero_copy')} | "
                         f"{json.dumps(about.get('dla')) if about.get('dla') else '-'} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--junit", type=Path, default=None, help="device_tests' --junitxml result")
    parser.add_argument("--facts", type=Path, default=None, help="text file of versions/power mode to include")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    target = load_target(args.target)
    precisions = check(args.bundle, target, args.out, args.samples, args.repeats)
    tests = device_test_outcome(args.junit)
    verdict = verdict_of(precisions, tests)
    report = {"verdict": verdict, "target": target.name,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "facts": args.facts.read_text() if args.facts and args.facts.is_file() else "",
              "device_tests": tests, "precisions": precisions}
    (args.out / "device-check.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "device-check.md").write_text(markdown(report))
    print(f"device check: {verdict} -> {args.out / 'device-check.md'}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
