"""``edgemoe build BUNDLE --target PROFILE --out ENGINES`` (run on the target device)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemoe.core.manifest import PRECISIONS
from edgemoe.recipes.conventions import StageTimer, emit_json, refuse_overwrite, require_directory_path

if TYPE_CHECKING:
    from edgemoe.core.manifest import EngineManifest


class ListTargets(argparse.Action):
    """``--list-targets``: print the known target profiles and exit, like ``--version``."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from edgemoe.engines.target import known_targets, load_target

        for name in known_targets():
            target = load_target(name)
            print(f"{name:<22} {target.backend:<12} {target.precision:<5} max batch {target.max_batch}")
        parser.exit()


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="model bundle directory from 'edgemoe export' or 'edgemoe calibrate'")
    parser.add_argument("--target", default="cpu",
                        help="target profile name (see --list-targets) or a YAML path (default: cpu)")
    parser.add_argument("--list-targets", action=ListTargets, help="print the known target profiles and exit")
    parser.add_argument("--out", type=Path, required=True, help="engine bundle directory to create")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing engine bundle (a symlink is repointed at the new build atomically)")
    parser.add_argument("--trust", type=Path, default=None, metavar="PUBKEY",
                        help="refuse a model bundle not signed by this Ed25519 public key ('edgemoe sign')")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--precision", choices=("auto", *PRECISIONS), default=None,
                           help="precision of every stage, overriding the profile (auto: each stage's choice "
                                "from 'edgemoe calibrate'; int8-dynamic: int8 weights of the large matrix "
                                "products, the fast one on CPUs, ONNX Runtime only)")
    for name in PRECISIONS:
        precision.add_argument(f"--{name}", dest="precision", action="store_const", const=name,
                               help=f"same as --precision {name}")
    parser.add_argument("--workspace", type=int, default=None, metavar="MIB",
                        help="TensorRT builder workspace in MiB, overriding the profile")
    parser.add_argument("--dla-core", type=int, default=None, metavar="N",
                        help="TensorRT: put static stages on this DLA core, overriding the profile")
    parser.add_argument("--fuse", action="append", default=None, metavar="MASK",
                        help="build only these masks' fused engines (default: the target profile's 'fuse', else "
                             "every fused graph in the bundle; 'none' for none): 'camera+imu', '5', or the "
                             "fused_choice.json 'edgemoe profile' writes (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    parser.set_defaults(func=run, interrupted="the engine bundle directory was not written (left as it was)")


def run(args: argparse.Namespace) -> int:
    from edgemoe.core.bundle import read_model_manifest
    from edgemoe.core.mask import parse_mask_selection
    from edgemoe.core.signing import TrustedKey
    from edgemoe.engines.build import build_engines
    from edgemoe.engines.target import load_target, with_build_overrides

    require_directory_path(args.out)
    refuse_overwrite(args.out, args.force)
    target = with_build_overrides(load_target(args.target), args.precision, args.workspace, args.dla_core)
    trust = TrustedKey.load(args.trust) if args.trust else None
    fuse = None
    selection = args.fuse if args.fuse is not None else target.fuse  # the command line wins
    if selection is not None:
        names = read_model_manifest(args.bundle, trust).config.sensor_names
        fuse = parse_mask_selection([v for v in selection if v != "none"], names)
    timer = StageTimer("build")
    manifest = build_engines(args.bundle, target, args.out, args.force,
                             on_stage=lambda stage, precision: timer.start(stage, f"{precision}, {target.backend}"),
                             fuse=fuse, trust=trust)
    total = timer.finish()
    warnings = stage_warnings(manifest)
    summary = {"engines": str(args.out), "target": target.name, "backend": target.backend,
               "stages": len(manifest.engines), "fused": len(manifest.fused), "warnings": warnings,
               "seconds": round(total, 3), "timing": timer.rows}
    if args.json:
        emit_json(summary)
        return 0
    print(timer.table(total))
    for line in warnings:  # part of the result: what the engines run on is not what was asked
        print(f"warning: {line}")
    print(f"wrote {args.out}: {summary['stages']} engines and {summary['fused']} fused "
          f"hot-mask engines for target '{target.name}'")
    return 0


def stage_warnings(manifest: EngineManifest) -> list[str]:
    """What the build could not give as asked: missing providers, layers that left the DLA, int8
    kernels that saturate on this CPU."""
    from edgemoe.engines.tensorrt.report import dla_summary

    lines = []
    for stage, entry in manifest.engines.items():
        if entry.fact("providers_missing"):
            lines.append(f"{stage} runs on {entry.fact('providers')}: onnxruntime lacks "
                         f"{entry.fact('providers_missing')} (install onnxruntime-gpu, or set "
                         "'require_providers: true' to refuse)")
        if entry.fact("dla"):  # a stage the profile sends to the DLA: where it really landed, or why not
            lines.append(f"{stage}: DLA placement: {dla_summary({'dla': entry.fact('dla')})}")
    built = [*manifest.engines.items(), *((entry.stage, entry) for entry in manifest.fused.values())]
    saturating = [stage for stage, entry in built if entry.fact("int8_products_saturate")]
    if saturating:
        lines.append(f"{len(saturating)} int8 engine(s) ({', '.join(saturating)}) run ONNX Runtime's fused integer "
                     "kernels, whose products saturate on this CPU (AVX2 without VNNI): their answers drift "
                     "further from fp32 than calibration measured. Build fp32 or int8-dynamic here, or set "
                     "'onnxruntime.graph_optimization: basic' in the target to run the Q/DQ arithmetic as "
                     "stated (docs/calibration.md)")
    return lines
