#!/usr/bin/env bash
# Re-run every recorded benchmark and rewrite benchmarks/results/, so the numbers in the repository
# are never older than the code they describe. Every Markdown and JSON result it writes is stamped
# with the commit, the machine and its load (benchmarks/stamp.py).
#
#   benchmarks/run_all.sh                 the full set (hours on a 2-core machine: run it on a quiet one)
#   benchmarks/run_all.sh --short         every benchmark in its short mode, on a small model, into
#                                         runs/bench_all_short/results (proves the set runs; no numbers)
#   benchmarks/run_all.sh --list          the benchmarks: name, command, short-mode flags (tab-separated)
#   benchmarks/run_all.sh --only NAME     one benchmark (and what it needs), e.g. --only daemon_flood
#
# Models, bundles and engines are made under runs/bench_all (git-ignored) from the same commands the
# results describe; set PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

# name | command | short-mode flags. Every recorded result under benchmarks/results/ comes from one
# row; tests/test_run_all.py checks each command exists and takes its short-mode flags.
BENCHMARKS="\
accuracy|edgemoe bench accuracy|--quick
accuracy_suite|edgemoe bench accuracy|--quick
runtime_vs_baselines|benchmarks/bench_runtime.py|--quick
scale_8x16|benchmarks/bench_scale.py|--quick
daemon_flood|benchmarks/daemon_flood.py|--short
calibration_accuracy|benchmarks/calibration_accuracy.py|--split val
profile_cpu|scripts/profile_latency.py|--frames 4 --rounds 1 --switch-frames 8
profile_fused|edgemoe profile|--frames 4 --rounds 1 --switch-frames 8
profile_precision|edgemoe profile|--frames 4 --rounds 1 --switch-frames 8
profile_int8_dynamic|edgemoe profile|--frames 4 --rounds 1 --switch-frames 8
budget_race|benchmarks/bench_budget.py|--frames 4 --rounds 1 --warmup 1
budget_race_int8_dynamic|benchmarks/bench_budget.py|--frames 4 --rounds 1 --warmup 1
paced_vs_tight|benchmarks/bench_paced.py|--frames 5 --rounds 1
expert_bank|benchmarks/bench_expert_bank.py|--draws 2 --frames 20 --rounds 1
training_at_scale|benchmarks/bench_training_scale.py|--sizes-gib 0.05 --npz-sizes-gib 0.02 --max-seconds 5
daemon_soak|scripts/soak_daemon.py|--minutes 2"
# Not re-run: hot_path_before_after.md and hot_path_robot4.md compare the runtime before and after
# one change (a checkout of the earlier commit against its successor); they record that change,
# not the current code. ci_under_load.md is not a benchmark but a check of the test suite (fresh-clone
# CI runs under load, over an hour): scripts/ci_under_load.sh re-records it.
SUITE_METHODS="smoe,confsmoe,mars,smoe+probes,smoe+solo,smoe+fusion+uniform,smoe+fusion+uniform+nomessages,smoe+fusion+uniform+probes,smoe+fusion+uniform+solo,confsmoe+fusion+uniform,mars+fusion,permask"
METHODS="confsmoe:softmax dense:softmax flexmoe:softmax mars:softmax smoe:gaussian mars:laplace"

SHORT=0 ONLY="" WORK=runs/bench_all RESULTS=benchmarks/results
while [[ $# -gt 0 ]]; do
  case "$1" in
    --list) echo "$BENCHMARKS" | tr '|' '\t'; exit 0 ;;
    --short) SHORT=1; WORK=runs/bench_all_short; RESULTS=runs/bench_all_short/results ;;
    --only) ONLY="$2"; shift ;;
    *) echo "usage: $0 [--short] [--list] [--only NAME]" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
edgemoe() { "$PY" -m edgemoe.cli "$@"; }
short_flags() { echo "$BENCHMARKS" | awk -F'|' -v n="$1" '$1 == n { print $3 }'; }
flags() { if [[ $SHORT == 1 ]]; then short_flags "$1"; fi; }
wanted() { [[ -z $ONLY || $ONLY == "$1" ]]; }
stamp() { "$PY" benchmarks/stamp.py "$@"; }
mkdir -p "$WORK" "$RESULTS"

calibrated_copy() {  # BUNDLE DATA OUT: OUT = BUNDLE calibrated on DATA, made once (never half-made)
  [[ -d $3 ]] && return
  rm -rf "$3.tmp"; cp -r "$1" "$3.tmp"; edgemoe calibrate "$3.tmp" --data "$2"; mv "$3.tmp" "$3"
}

# -- the models every result describes ------------------------------------------------------------
DATA=$WORK/data CKPT=$WORK/model.safetensors BUNDLE=$WORK/bundle ENGINES=$WORK/engines
SCALE=0.4 EPOCHS=4
if [[ $SHORT == 1 ]]; then SCALE=0.05 EPOCHS=1; fi
prepare_default() {
  [[ -d $DATA ]] || edgemoe data synth --scale "$SCALE" --out "$DATA"
  [[ -f $CKPT ]] || edgemoe train --data "$DATA" --epochs "$EPOCHS" --out "$CKPT" --no-progress
  [[ -d $BUNDLE ]] || edgemoe export "$CKPT" --fuse all --out "$BUNDLE"
  [[ -d $ENGINES ]] || edgemoe build "$BUNDLE" --target cpu --fuse none --out "$ENGINES"
}
calibrated() {  # BUNDLE: true when it is a valid model bundle that holds calibration sets
  "$PY" -c "import sys; from pathlib import Path; from edgemoe.core.bundle import read_model_manifest
sys.exit(read_model_manifest(Path(sys.argv[1])).calibration is None)" "$1" 2>/dev/null; }
method_bundle() {  # METHOD GATE -> a calibrated bundle of that method under $WORK/methods
  local name="$1-$2" dir=$WORK/methods
  mkdir -p "$dir"
  # stdout is the bundle's path (callers capture it): what the commands print goes to stderr
  if ! calibrated "$dir/$name.bundle"; then
    "$PY" -c "import sys, yaml; from edgemoe.core.schema import load_config
c = load_config(None).model_dump(mode='json'); c['model'].update(method=sys.argv[1], gate=sys.argv[2])
yaml.safe_dump(c, open(sys.argv[3], 'w'))" "$1" "$2" "$dir/$name.yaml"
    edgemoe train --config "$dir/$name.yaml" --data "$DATA" --epochs "$EPOCHS" --out "$dir/$name.safetensors" --no-progress --force >&2
    edgemoe export "$dir/$name.safetensors" --out "$dir/$name.bundle" --force >&2
    edgemoe calibrate "$dir/$name.bundle" --data "$DATA" >&2
  fi
  echo "$dir/$name.bundle"
}
prepare_default

# -- the benchmarks ------------------------------------------------------------------------------
if wanted accuracy; then
  edgemoe bench accuracy --data "$DATA" --out "$RESULTS" --name accuracy --force $(flags accuracy)
  edgemoe bench accuracy --data "$DATA" --out "$RESULTS" --name accuracy_20ep --epochs 20 --force $(flags accuracy)
  stamp "$RESULTS"/accuracy.md "$RESULTS"/accuracy.json "$RESULTS"/accuracy_20ep.md "$RESULTS"/accuracy_20ep.json
fi
if wanted accuracy_suite; then
  if [[ $SHORT == 1 ]]; then
    edgemoe bench accuracy --suite nuisance --out "$RESULTS" --name accuracy_suite --force $(flags accuracy_suite)
  else
    edgemoe bench accuracy --suite failures --seeds 3 --methods "$SUITE_METHODS" --out "$RESULTS" \
      --name accuracy_suite --force
  fi
  stamp "$RESULTS"/accuracy_suite.md "$RESULTS"/accuracy_suite.json
fi
if wanted runtime_vs_baselines; then
  "$PY" benchmarks/bench_runtime.py --checkpoint "$CKPT" --engines "$ENGINES" \
    --out "$RESULTS"/runtime_vs_baselines.md $(flags runtime_vs_baselines)
  stamp "$RESULTS"/runtime_vs_baselines.md
fi
if wanted scale_8x16; then
  "$PY" benchmarks/bench_scale.py --out "$RESULTS"/scale_8x16.md $(flags scale_8x16)
  stamp "$RESULTS"/scale_8x16.md
fi
if wanted daemon_flood; then
  "$PY" benchmarks/daemon_flood.py "$ENGINES" --gap-rate-hz 1000 --prewarm-ms 2 --md "$RESULTS"/daemon_flood.md $(flags daemon_flood)
  stamp "$RESULTS"/daemon_flood.md
fi
if wanted calibration_accuracy; then
  calibrated=$WORK/bundle.calibrated
  calibrated_copy "$BUNDLE" "$DATA" "$calibrated"
  "$PY" benchmarks/calibration_accuracy.py --bundle "$calibrated" --data "$DATA" --work "$WORK/calibration" \
    --out "$RESULTS"/calibration_accuracy.md $(flags calibration_accuracy)
  stamp "$RESULTS"/calibration_accuracy.md
  for pair in $METHODS; do
    method=${pair%%:*} gate=${pair##*:}
    name=$([[ $gate == softmax ]] && echo "$method" || echo "$gate")
    "$PY" benchmarks/calibration_accuracy.py --bundle "$(method_bundle "$method" "$gate")" --data "$DATA" \
      --name "$name" --work "$WORK/calibration" --out "$RESULTS/calibration_accuracy_$name.md" $(flags calibration_accuracy)
    stamp "$RESULTS/calibration_accuracy_$name.md"
  done
fi
if wanted profile_cpu; then
  "$PY" scripts/profile_latency.py "$ENGINES" --data "$DATA" --no-progress --out "$RESULTS"/profile_cpu $(flags profile_cpu)
  stamp "$RESULTS"/profile_cpu/profile.md
fi
compare() {  # A B OUT [DATA]: B/A ratio tables of two engine bundles, each profiled on its own
  local a=$WORK/profiles/$(basename "$1") b=$WORK/profiles/$(basename "$2")
  for engines in "$1" "$2"; do
    edgemoe profile "$engines" --data "${4:-$DATA}" --no-progress --force --out "$WORK/profiles/$(basename "$engines")" \
      $(flags profile_fused) > /dev/null
  done
  edgemoe profile compare "$a" "$b" --compare-out "$3" > /dev/null
}
if wanted profile_fused; then
  fused=$WORK/engines_fused
  [[ -d $fused ]] || edgemoe build "$BUNDLE" --target cpu --out "$fused"
  edgemoe profile "$ENGINES" "$fused" --data "$DATA" --no-progress --force --fused-budget-mib 2 \
    --out "$RESULTS"/profile_fused $(flags profile_fused)
  compare "$ENGINES" "$fused" "$RESULTS"/profile_fused/compare_staged_vs_fused.md
  stamp "$RESULTS"/profile_fused/profile.md "$RESULTS"/profile_fused/compare_staged_vs_fused.md
fi
if wanted profile_precision; then
  mars=$(method_bundle mars softmax)
  for p in fp32 fp16 int8; do
    [[ -d $WORK/mars-$p ]] || "$PY" -c "import sys; from pathlib import Path
from edgemoe.engines.build import build_engines; from edgemoe.engines.target import load_target
build_engines(Path(sys.argv[1]), load_target('cpu').model_copy(update={'precision': sys.argv[2]}), Path(sys.argv[3]))
" "$mars" "$p" "$WORK/mars-$p"
  done
  edgemoe profile "$WORK/mars-fp32" "$WORK/mars-fp16" "$WORK/mars-int8" --data "$DATA" --no-progress --force \
    --out "$RESULTS"/profile_precision $(flags profile_precision)
  compare "$WORK/mars-fp32" "$WORK/mars-fp16" "$WORK/compare_fp16.md"
  compare "$WORK/mars-fp32" "$WORK/mars-int8" "$WORK/compare_int8.md"
  { echo "# fp32 vs fp16 vs int8 engines of the calibrated MARS model, \`edgemoe profile compare\`"; echo
    echo "## fp16 / fp32"; echo; cat "$WORK/compare_fp16.md"; echo
    echo "## int8 / fp32"; echo; cat "$WORK/compare_int8.md"; } > "$RESULTS"/profile_precision/compare.md
  stamp "$RESULTS"/profile_precision/profile.md "$RESULTS"/profile_precision/compare.md
fi
LARGE=$WORK/large
prepare_large() {  # the realistic-size model, briefly trained (latency does not depend on accuracy)
  local config=edgemoe/configs/robot4_large.yaml
  [[ -d $LARGE/data ]] || edgemoe data synth --config "$config" --scale 0.05 --out "$LARGE/data"
  [[ -f $LARGE/model.safetensors ]] || edgemoe train --config "$config" --data "$LARGE/data" --epochs 1 \
    --out "$LARGE/model.safetensors" --no-progress
  [[ -d $LARGE/bundle ]] || edgemoe export "$LARGE/model.safetensors" --fuse all --out "$LARGE/bundle"
}
budget_engines() {  # BUNDLE OUT_PREFIX [BUDGET-2 TARGET [PRECISION]]: engines at thread budgets 1 and 2,
  # staged only (OUT_PREFIX_t1, _t2) and with every fused engine (_t1_fused, _t2_fused); budget 2 is
  # two lanes unless a target is given; the profile's precision (fp32) unless one is given
  local precision=()
  if [[ -n ${4:-} ]]; then precision=(--precision "$4"); fi
  for t in 1 2; do
    local target=$WORK/cpu_t$t.yaml
    sed "s/^  threads: 1/  threads: $t/" engines/cpu.yaml > "$target"
    if [[ $t == 2 && -n ${3:-} ]]; then target=$3; fi
    [[ -d $2_t$t ]] || edgemoe build "$1" --target "$target" --fuse none "${precision[@]}" --out "$2_t$t"
    [[ -d $2_t${t}_fused ]] || edgemoe build "$1" --target "$target" "${precision[@]}" --out "$2_t${t}_fused"
  done
}
# The realistic model spends most of a frame in its camera encoder, whose convolutions and projection
# run ~1.8x faster on two intra-op threads: at budget 2 it runs one lane with that stage, and each
# fused engine (the whole forward of its mask), at 2 threads (two lanes of single-thread sessions
# leave the camera on one core; docs/profiling.md).
camera_two_threads() {
  cp engines/cpu.yaml "$WORK/cpu_camera2.yaml"
  printf '  stage_intra_op_threads:\n    "encoder[[]camera]": 2\n    "fused*": 2\n' >> "$WORK/cpu_camera2.yaml"
  echo "$WORK/cpu_camera2.yaml"
}
if wanted budget_race || wanted paced_vs_tight || wanted expert_bank; then
  prepare_large
  budget_engines "$BUNDLE" "$WORK/eng_robot4"
  budget_engines "$LARGE/bundle" "$LARGE/eng" "$(camera_two_threads)"
fi
large_int8_dynamic() {  # the realistic model calibrated and built at int8-dynamic ($LARGE/eng_dyn_*)
  prepare_large
  calibrated_copy "$LARGE/bundle" "$LARGE/data" "$LARGE/bundle.calibrated"
  budget_engines "$LARGE/bundle.calibrated" "$LARGE/eng_dyn" "$(camera_two_threads)" int8-dynamic
}
if wanted budget_race_int8_dynamic; then  # the same race at the CPU's int8 precision, on calibrated bundles
  large_int8_dynamic
  calibrated_copy "$BUNDLE" "$DATA" "$WORK/bundle.calibrated"
  budget_engines "$WORK/bundle.calibrated" "$WORK/eng_robot4_dyn" "$WORK/cpu_t2.yaml" int8-dynamic
  "$PY" benchmarks/bench_budget.py --threads 1 2 --precision int8-dynamic \
    --case robot4 "$CKPT" "$WORK/eng_robot4_dyn_t{threads}_fused" \
    --case robot4_large "$LARGE/model.safetensors" "$LARGE/eng_dyn_t{threads}_fused" \
    --out "$RESULTS"/budget_race_int8_dynamic.md $(flags budget_race_int8_dynamic)
  stamp "$RESULTS"/budget_race_int8_dynamic.md
fi
if wanted profile_int8_dynamic; then  # the realistic config's deployed runtime at fp32 and at int8-dynamic
  large_int8_dynamic
  budget_engines "$LARGE/bundle" "$LARGE/eng" "$(camera_two_threads)"
  edgemoe profile "$LARGE/eng_t1_fused" "$LARGE/eng_dyn_t1_fused" --data "$LARGE/data" --no-progress --force \
    --out "$RESULTS"/profile_int8_dynamic $(flags profile_int8_dynamic)
  compare "$LARGE/eng_t1_fused" "$LARGE/eng_dyn_t1_fused" "$RESULTS"/profile_int8_dynamic/compare.md "$LARGE/data"
  stamp "$RESULTS"/profile_int8_dynamic/profile.md "$RESULTS"/profile_int8_dynamic/compare.md
fi
if wanted budget_race; then
  "$PY" benchmarks/bench_budget.py --threads 1 2 --case robot4 "$CKPT" "$WORK/eng_robot4_t{threads}_fused" \
    --case robot4_large "$LARGE/model.safetensors" "$LARGE/eng_t{threads}_fused" --out "$RESULTS"/budget_race.md \
    $(flags budget_race)
  stamp "$RESULTS"/budget_race.md
fi
if wanted paced_vs_tight; then
  "$PY" benchmarks/bench_paced.py --engines "$WORK/eng_robot4_t1" --out "$RESULTS"/paced_vs_tight_robot4.md \
    $(flags paced_vs_tight)
  "$PY" benchmarks/bench_paced.py --engines "$LARGE/eng_t1" --out "$RESULTS"/paced_vs_tight_robot4_large.md \
    $(flags paced_vs_tight)
  stamp "$RESULTS"/paced_vs_tight_robot4.md "$RESULTS"/paced_vs_tight_robot4_large.md
fi
if wanted expert_bank; then
  "$PY" benchmarks/bench_expert_bank.py "$WORK/eng_robot4_t1" "$LARGE/eng_t1" --out "$RESULTS"/expert_bank.md \
    $(flags expert_bank)
  stamp "$RESULTS"/expert_bank.md
fi
if wanted training_at_scale; then
  "$PY" benchmarks/bench_training_scale.py --out "$RESULTS"/training_at_scale.md --work "$WORK/scale" \
    $(flags training_at_scale)
  stamp "$RESULTS"/training_at_scale.md
fi
if wanted daemon_soak; then
  "$PY" scripts/soak_daemon.py "$ENGINES" --minutes 60 --md "$RESULTS"/daemon_soak.md $(flags daemon_soak)
  stamp "$RESULTS"/daemon_soak.md
fi
echo "done: results in $RESULTS (work files in $WORK)"
