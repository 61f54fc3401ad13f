#!/usr/bin/env bash
# A/B of two meridian binaries on redis-benchmark SET/GET with and without -P 16, rounds interleaved (A B A B ...), so a change can be shown to cost no throughput or latency beyond noise.
# Usage: BASE_BIN=/path/to/old/meridian [NEW_BIN=/path/to/new/meridian] bench/ab.sh  (NEW_BIN defaults to this tree's release build)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-5}"
REQUESTS="${REQUESTS:-200000}"
CLIENTS=50
FSYNC="${FSYNC:-everysec}"
: "${BASE_BIN:?set BASE_BIN to the meridian binary to compare against}"
build_release
NEW_BIN="${NEW_BIN:-$MERIDIAN_BIN}"

declare -A PORT
start_one() {
    local name="$1" bin="$2" resp http
    resp="$(free_port)"
    http="$(free_port)"
    MERIDIAN_BIN="$bin" start_meridian "$WORK/$name" "$resp" "$http" --fsync "$FSYNC"
    wait_ready "$http" "$MERIDIAN_PID"
    PORT[$name]="$resp"
}
start_one base "$BASE_BIN"
start_one new "$NEW_BIN"

# One row per run: server,pipeline,round,test,rps,avg,min,p50,p95,p99,max
csv="$WORK/ab.csv"
: >"$csv"
for round in $(seq 1 "$ROUNDS"); do
    for pipeline in 1 16; do
        for server in base new; do
            redis-benchmark -h 127.0.0.1 -p "${PORT[$server]}" -t set,get -n "$REQUESTS" -c "$CLIENTS" \
                -P "$pipeline" -q --csv 2>/dev/null | tr -d '"' | grep -E '^(SET|GET),' |
                sed "s/^/$server,$pipeline,$round,/" >>"$csv"
        done
    done
done

echo "- Date: $(date -u); $(nproc) CPUs; load average at start of report: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- base: \`$BASE_BIN\` ($("$BASE_BIN" --version)); new: \`$NEW_BIN\` ($("$NEW_BIN" --version)); \`--fsync $FSYNC\`"
echo "- \`redis-benchmark -t set,get -n $REQUESTS -c $CLIENTS [-P 16]\`, $ROUNDS rounds interleaved; median of the rounds"
echo
python3 - "$csv" <<'PY'
import csv, statistics, sys
runs = {}
for server, pipeline, _round, test, rps, _avg, _min, _p50, _p95, p99, _max in csv.reader(open(sys.argv[1])):
    runs.setdefault((test, int(pipeline), server), []).append((float(rps), float(p99)))
print("| Test | Pipeline | base rps | new rps | new / base rps | base p99 ms | new p99 ms | new / base p99 | new rps, every round |")
print("|---|---|---|---|---|---|---|---|---|")
for test in ("SET", "GET"):
    for pipeline in (1, 16):
        base, new = runs[(test, pipeline, "base")], runs[(test, pipeline, "new")]
        b_rps, n_rps = statistics.median(r for r, _ in base), statistics.median(r for r, _ in new)
        b_p99, n_p99 = statistics.median(p for _, p in base), statistics.median(p for _, p in new)
        every = ", ".join(f"{r:.0f}" for r, _ in new)
        print(f"| {test} | {pipeline} | {b_rps:.0f} | {n_rps:.0f} | {n_rps / b_rps:.2f}× | {b_p99:.3f} | {n_p99:.3f} | {n_p99 / b_p99:.2f}× | {every} |")
PY
