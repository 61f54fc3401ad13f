#!/usr/bin/env bash
# Client tracking side by side with redis-server: `meridian bench clients` (50 connections, 90% GET / 10% SET of random
# keys) with tracking off (RESP2, RESP3) and on (RESP3 + CLIENT TRACKING ON), without and with pipelining of 16, on
# Meridian --fsync everysec and redis AOF everysec, rounds interleaved; writes the "tracking" section of bench/RESULTS.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-200000}"
CLIENTS=50
KEYS="${KEYS:-10000}"
RATIO_GET=0.9

build_release
out="$WORK/tracking.md"
{
    echo "## Client tracking: GET/SET with tracking on and off"
    echo
    machine_info
} >"$out"

declare -A PORT PID
PORT[redis]="$(free_port)"
start_redis "${PORT[redis]}" "$WORK/redis-aof" --save '' --appendonly yes --appendfsync everysec
PID[redis]="$REDIS_PID"
PORT[meridian]="$(free_port)"
mhttp="$(free_port)"
start_meridian "$WORK/meridian-bench" "${PORT[meridian]}" "$mhttp" --fsync everysec
wait_ready "$mhttp" "$MERIDIAN_PID"
PID[meridian]="$MERIDIAN_PID"

# Test name -> flags of `meridian bench clients`.
TESTS=("RESP2" "RESP3" "RESP3 tracking" "RESP2 -P 16" "RESP3 -P 16" "RESP3 tracking -P 16")
declare -A FLAGS=(
    ["RESP2"]="--pipeline 1"
    ["RESP3"]="--resp3 --pipeline 1"
    ["RESP3 tracking"]="--resp3 --tracking --pipeline 1"
    ["RESP2 -P 16"]="--pipeline 16"
    ["RESP3 -P 16"]="--resp3 --pipeline 16"
    ["RESP3 tracking -P 16"]="--resp3 --tracking --pipeline 16"
)

# One row per run: server,round,test, then the columns of `meridian bench clients`.
csv="$WORK/tracking.csv"
: >"$csv"
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then order=(meridian redis); else order=(redis meridian); fi
    for server in "${order[@]}"; do
        for test in "${TESTS[@]}"; do
            # shellcheck disable=SC2086 # FLAGS holds several words on purpose
            row="$("$MERIDIAN_BIN" bench clients --target "127.0.0.1:${PORT[$server]}" --clients "$CLIENTS" \
                --requests "$REQUESTS" --keys "$KEYS" --ratio-get "$RATIO_GET" --seed "$round" ${FLAGS[$test]})"
            echo "$server,$round,$test,$row" >>"$csv"
            echo "round $round $server $test: $row"
        done
    done
done
for server in "${!PID[@]}"; do kill9 "${PID[$server]}"; done

python3 - "$csv" "$ROUNDS" "$REQUESTS" "$CLIENTS" "$KEYS" "$RATIO_GET" "${TESTS[@]}" >>"$out" <<'PY'
import csv, statistics, sys
path, rounds, requests, clients, keys, ratio = sys.argv[1:7]
tests = sys.argv[7:]
# server,round,test,clients,pipeline,resp,tracking,ratio_get,keys,requests,errors,seconds,rps,p50_ms,p99_ms,pushes,keys
runs = {}
errors = 0
for row in csv.reader(open(path)):
    server, _round, test = row[:3]
    errors += int(row[10])
    runs.setdefault((server, test), []).append(
        {"rps": float(row[12]), "p50": float(row[13]), "p99": float(row[14]), "inv": int(row[16])})
def med(rs, f):
    return statistics.median(r[f] for r in rs)
print()
print("### Throughput, latency and invalidations")
print()
print("`meridian bench clients --clients %s --requests %s --keys %s --ratio-get %s [--resp3] [--tracking] "
      "[--pipeline 16]`: each client its own connection (`HELLO 3` with `--resp3`, then `CLIENT TRACKING ON` "
      "with `--tracking`), GETs and SETs (3-byte values) of random keys out of %s written beforehand, every "
      "client on one thread as in redis-benchmark; latency from the write of a batch to each reply. %s rounds, "
      "servers interleaved; median of the rounds. Meridian runs `--fsync everysec`, redis-server "
      "`--appendonly yes --appendfsync everysec` (target: throughput ≥ 0.8×). Invalidated keys are those "
      "named by the `invalidate` pushes all clients received during the run."
      % (clients, requests, keys, ratio, keys, rounds))
print()
print("| Test | Meridian rps | redis rps | Meridian / redis rps | Meridian p50 / p99 ms | redis p50 / p99 ms | Meridian / redis invalidated keys | Meridian rps, every round | redis rps, every round |")
print("|---|---|---|---|---|---|---|---|---|")
missed = []
for test in tests:
    m, r = runs.get(("meridian", test), []), runs.get(("redis", test), [])
    if not m or not r:
        continue
    mr, rr = med(m, "rps"), med(r, "rps")
    if mr / rr < 0.8:
        missed.append("%s %.2f×" % (test, mr / rr))
    inv = "%.0f / %.0f" % (med(m, "inv"), med(r, "inv")) if "tracking" in test else "–"
    print("| %s | %.0f | %.0f | **%.2f×** | %.3f / %.3f | %.3f / %.3f | %s | %s | %s |" % (
        test, mr, rr, mr / rr, med(m, "p50"), med(m, "p99"), med(r, "p50"), med(r, "p99"), inv,
        ", ".join("%.0f" % x["rps"] for x in m), ", ".join("%.0f" % x["rps"] for x in r)))
print()
print("Error replies over all runs: %d." % errors)
print()
print("Targets missed by this run: %s." % ("; ".join(missed) if missed else "none"))
PY
{ echo; echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the 2 CPUs are shared with other jobs)"; } >>"$out"
write_section tracking "$out"
cat "$out"
