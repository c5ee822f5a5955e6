#!/usr/bin/env python3
"""Expert bank: the chosen experts of a frame as one ONNX Runtime call instead of one call each.

The staged plan runs every expert that received tokens as its own engine call. A bank is one
graph over all experts: ``Split`` the routed rows (grouped by expert, as the executor already
groups them) by the per-expert counts, each expert's layers on its part (an expert with no rows
runs on an empty tensor and reads no weights), ``Concat`` the outputs back in the same order. Its
input shapes are fixed per mask (``T·k`` rows), so it would be bound once per mask at load.

This measures whether that pays, before it is built into the stage table: for the token count T
of each number of present sensors (tokens per sensor times 1..M), each of ``--draws`` random
top-k routings (every token picks k distinct experts uniformly) is run both ways, interleaved,
io-binding, one intra-op thread, outputs checked equal first. These are bare engine calls: the
executor's Python per expert call (one ``take`` into the input, launch, wait, one slice copy,
about 3 µs) comes on top of the separate calls and is what a bank would save besides.

    python benchmarks/bench_expert_bank.py runs/bench_all/eng_robot4_t1 runs/bench_all/large/eng_t1 \\
        --out benchmarks/results/expert_bank.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgemoe.profile.environment import cpu_model  # noqa: E402

def expert_files(engines: Path) -> list[Path]:
    """The fp32 expert graphs of an ONNX Runtime engine directory, in expert order."""
    manifest = json.loads((engines / "manifest.json").read_text())
    files = sorted(engines.glob("expert_*.fp32.onnx"), key=lambda p: int(p.name.split("_")[1].split(".")[0]))
    if not files:
        raise SystemExit(f"{engines}: no expert_*.fp32.onnx (an fp32 onnxruntime build is needed)")
    if len(files) != manifest["layout"]["num_experts"]:
        raise SystemExit(f"{engines}: {len(files)} expert graphs for {manifest['layout']['num_experts']} experts")
    return files


def compose_bank(files: list[Path]) -> onnx.ModelProto:
    """One graph: ``tokens [n, D]`` and ``counts [E]`` in, ``delta [n, D]`` out, rows kept in order."""
    parts = [f"rows_{e}" for e in range(len(files))]
    nodes = [helper.make_node("Split", ["tokens", "counts"], parts, axis=0)]
    initializers, outputs, dim, opsets = [], [], 0, set()
    for e, path in enumerate(files):
        expert = onnx.load(path)
        graph = expert.graph
        opsets |= {o.version for o in expert.opset_import if o.domain in ("", "ai.onnx")}
        (source,), (result,) = [i.name for i in graph.input], [o.name for o in graph.output]
        dim = graph.input[0].type.tensor_type.shape.dim[1].dim_value

        def rename(name: str, e: int = e, source: str = source) -> str:
            return parts[e] if name == source else f"expert_{e}/{name}" if name else name

        for init in graph.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename(init.name)
            initializers.append(copy)
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[:] = [rename(i) for i in node.input]
            copy.output[:] = [rename(o) for o in node.output]
            copy.name = rename(node.name)
            nodes.append(copy)
        outputs.append(rename(result))
    nodes.append(helper.make_node("Concat", outputs, ["delta"], axis=0))
    graph = helper.make_graph(
        nodes, "expert_bank",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["rows", dim]),
         helper.make_tensor_value_info("counts", TensorProto.INT64, [len(files)])],
        [helper.make_tensor_value_info("delta", TensorProto.FLOAT, ["rows", dim])], initializer=initializers)
    if len(opsets) != 1 or min(opsets) < 13:  # Split takes its sizes as an input from opset 13
        raise SystemExit(f"expert graphs have opsets {sorted(opsets)}: need one, 13 or later")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opsets.pop())])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def session(model: Path | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model) if isinstance(model, Path) else model, options,
                                providers=["CPUExecutionProvider"])


def bind(sess: ort.InferenceSession, inputs: dict[str, np.ndarray], output: np.ndarray) -> ort.IOBinding:
    binding = sess.io_binding()
    for name, array in inputs.items():
        binding.bind_input(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
    binding.bind_output("delta", "cpu", 0, output.dtype, output.shape, output.ctypes.data)
    return binding


def routing_counts(rng: np.random.Generator, tokens: int, experts: int, k: int) -> np.ndarray:
    """Rows per expert when each token picks ``k`` distinct experts uniformly."""
    picks = np.argsort(rng.random((tokens, experts)), axis=1)[:, :k]
    return np.bincount(picks.reshape(-1), minlength=experts).astype(np.int64)


def race(bank: ort.InferenceSession, experts: list[ort.InferenceSession], counts: np.ndarray, dim: int,
         rng: np.random.Generator, frames: int, rounds: int) -> tuple[float, float, int]:
    """p50 µs of (separate calls, bank call) over interleaved rounds, outputs checked equal first."""
    rows = rng.normal(size=(int(counts.sum()), dim)).astype(np.float32)
    banked = np.zeros_like(rows)
    bank_binding = bind(bank, {"tokens": rows, "counts": counts}, banked)
    separate, parts, lo = [], [], 0
    for sess, count in zip(experts, counts.tolist()):
        if count:
            part_in, part_out = np.ascontiguousarray(rows[lo : lo + count]), np.zeros((count, dim), np.float32)
            separate.append((sess, bind(sess, {"tokens": part_in}, part_out)))
            parts.append(part_out)
            lo += count
    bank.run_with_iobinding(bank_binding)
    for sess, binding in separate:
        sess.run_with_iobinding(binding)
    np.testing.assert_allclose(banked, np.concatenate(parts), rtol=1e-5, atol=1e-5)
    times: dict[str, list[float]] = {"separate": [], "bank": []}
    for _ in range(rounds):
        for name, samples in times.items():
            for _ in range(frames):
                start = time.perf_counter_ns()
                if name == "bank":
                    bank.run_with_iobinding(bank_binding)
                else:
                    for sess, binding in separate:
                        sess.run_with_iobinding(binding)
                samples.append((time.perf_counter_ns() - start) / 1e3)
    return float(np.median(times["separate"])), float(np.median(times["bank"])), len(separate)


def measure(engines: Path, top_k: int | None, draws: int, frames: int, rounds: int) -> list[str]:
    """One engine directory's section: the race per token count."""
    files = expert_files(engines)
    layout = json.loads((engines / "manifest.json").read_text())["layout"]
    k = top_k or layout["top_k"]
    bank, experts = session(compose_bank(files).SerializeToString()), [session(f) for f in files]
    rng = np.random.default_rng(0)
    lines = [f"## `{engines}`: {len(files)} experts of width {layout['dim']}, top-{k}", "",
             "| tokens T | experts called (mean) | separate calls p50 µs | bank p50 µs | bank / separate |",
             "|---:|---:|---:|---:|---:|"]
    per_sensor = layout["tokens_per_sensor"]
    for tokens in range(per_sensor, per_sensor * len(layout["sensors"]) + 1, per_sensor):
        results = [race(bank, experts, routing_counts(rng, tokens, len(files), k), layout["dim"], rng, frames, rounds)
                   for _ in range(draws)]
        separate, banked, called = (float(np.mean(col)) for col in zip(*results))
        lines.append(f"| {tokens} | {called:.1f} | {separate:.0f} | {banked:.0f} | {banked / separate:.2f} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engines", type=Path, nargs="+",
                        help="fp32 onnxruntime engine directories (edgemoe build --target cpu)")
    parser.add_argument("--top-k", type=int, default=None, help="default: the manifest's")
    parser.add_argument("--draws", type=int, default=8, help="random routings per token count")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    sections = [line for engines in args.engines
                for line in measure(engines, args.top_k, args.draws, args.frames, args.rounds)]
    command = "python benchmarks/bench_expert_bank.py " + " ".join(sys.argv[1:])
    text = "\n".join([
        "# Expert bank: the chosen experts as one call vs one call each (batch 1, fp32, 1 thread)", "",
        f"Command: `{command}`", "",
        (f"Machine: {cpu_model()}, {os.cpu_count()} cores (1-min load {load:.1f} at start, "
         f"{os.getloadavg()[0]:.1f} at the end). {args.draws} random routings per token count, {args.rounds} "
         f"interleaved rounds × {args.frames} frames each way; the bank's output was checked equal (1e-5) to "
         "the separate calls' on every routing. Bare engine calls (io-binding): the executor's Python per "
         "expert call comes on top of the separate calls."), "",
        *sections])
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
