#!/usr/bin/env bash
# Run CI (.ci/run) from fresh clones of HEAD several times in a row while other work keeps every
# core busy, and record each run's result and wall time: the check that the suite fails only when
# something is wrong, not when the machine is slow.
#
#   scripts/ci_under_load.sh [--runs N] [--out FILE.md] [-- LOAD COMMAND...]
#
# Without a load command, one busy-looping Python process per core is the load. With one (e.g.
# 'bash benchmarks/run_all.sh --only accuracy'), it runs first; when it ends before the CI runs do,
# the busy loops take over, so the cores stay loaded until the last run ends.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3 OUT=runs/ci_under_load.md
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--runs N] [--out FILE.md] [-- LOAD COMMAND...]" >&2; exit 2 ;;
  esac
done
WORK=$(mktemp -d /tmp/ci_under_load.XXXXXX)
# the load runs in its own session, so that one signal to its process group ends all of it
setsid bash -c '[[ $# -gt 0 ]] && "$@" > "$0/load.log" 2>&1
  for _ in $(seq "$(nproc)"); do python3 -c "while True: pass" & done; wait' "$WORK" "$@" &
LOAD=$!
trap 'kill -- -$LOAD 2>/dev/null || true' EXIT

commit=$(git rev-parse --short=12 HEAD)
{
  echo "# CI from fresh clones under background load"
  echo
  echo "Command: \`scripts/ci_under_load.sh --runs $RUNS${*:+ -- $*}\` at commit \`$commit\` on $(nproc) cores."
  echo
  echo "| run | started (UTC) | result | wall s | 1-min load at start | last line of pytest |"
  echo "|---:|---|---|---:|---:|---|"
} > "$WORK/report.md"
failed=0
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/clone"
  git clone -q . "$WORK/clone" && git -C "$WORK/clone" checkout -q "$commit"  # every run tests one commit
  load=$(cut -d' ' -f1 /proc/loadavg) started=$(date -u +%H:%M:%S) t0=$(date +%s)
  if (cd "$WORK/clone" && bash .ci/run > "$WORK/ci_$i.log" 2>&1); then result=green; else result=red; failed=1; fi
  wall=$(( $(date +%s) - t0 ))
  summary=$(grep -E "passed|failed|error" "$WORK/ci_$i.log" | tail -1 | tr -d '|=')
  echo "| $i | $started | $result | $wall | $load | $summary |" >> "$WORK/report.md"
  echo "run $i: $result in ${wall}s ($summary); log $WORK/ci_$i.log" >&2
done
mkdir -p "$(dirname "$OUT")"
cp "$WORK/report.md" "$OUT"
echo "wrote $OUT (logs under $WORK)" >&2
exit $failed
