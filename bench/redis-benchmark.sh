#!/usr/bin/env bash
# Compares Meridian (--fsync everysec) with redis-server (AOF everysec, and no persistence) on redis-benchmark SET/GET throughput and p99 and on memory per key for 1,000,000 small string keys; writes the "redis-benchmark" section of bench/RESULTS.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-200000}"
CLIENTS=50
MEM_KEYS="${MEM_KEYS:-1000000}"

build_release
out="$WORK/redis-benchmark.md"
{
    echo "## redis-benchmark and memory per key"
    echo
    machine_info
} >"$out"

# The three servers under test, idle while another one is measured.
declare -A PORT PID
PORT[redis-aof]="$(free_port)"
start_redis "${PORT[redis-aof]}" "$WORK/redis-aof" --save '' --appendonly yes --appendfsync everysec
PID[redis-aof]="$REDIS_PID"
PORT[redis-nopersist]="$(free_port)"
start_redis "${PORT[redis-nopersist]}" "$WORK/redis-nopersist" --save '' --appendonly no
PID[redis-nopersist]="$REDIS_PID"
PORT[meridian]="$(free_port)"
mhttp="$(free_port)"
start_meridian "$WORK/meridian-bench" "${PORT[meridian]}" "$mhttp" --fsync everysec
wait_ready "$mhttp" "$MERIDIAN_PID"
PID[meridian]="$MERIDIAN_PID"

# One row per test: server,pipeline,round,test,rps,avg,min,p50,p95,p99,max
csv="$WORK/results.csv"
: >"$csv"
run_bench() {
    local server="$1" pipeline="$2" round="$3"
    redis-benchmark -h 127.0.0.1 -p "${PORT[$server]}" -t set,get -n "$REQUESTS" -c "$CLIENTS" \
        -P "$pipeline" -q --csv 2>"$WORK/bench.err" | tr -d '"' | grep -E '^(SET|GET),' |
        sed "s/^/$server,$pipeline,$round,/" >>"$csv"
}
for round in $(seq 1 "$ROUNDS"); do
    # Alternate the order so that neither server always runs right after the other.
    if ((round % 2)); then order=(meridian redis-aof redis-nopersist); else order=(redis-aof meridian redis-nopersist); fi
    for server in "${order[@]}"; do
        for pipeline in 1 16; do
            run_bench "$server" "$pipeline" "$round"
            echo "round $round $server -P $pipeline: $(grep -c "^$server,$pipeline,$round," "$csv") tests"
        done
    done
done
for server in "${!PID[@]}"; do kill9 "${PID[$server]}"; done

# Memory per key: fresh servers, RSS before and after loading the keys.
mem_rows="$WORK/mem-rows"
: >"$mem_rows"
measure_mem() {
    local label="$1" pid="$2" port="$3"
    local before after used_before="" used_after=""
    sleep 0.5
    before="$(rss_kb "$pid")"
    if [ "$label" = "${label#meridian}" ]; then used_before="$(redis-cli -p "$port" INFO memory | awk -F: '/^used_memory:/ { print $2+0 }')"; fi
    python3 "$BENCH_DIR/load_keys.py" "$port" "$MEM_KEYS" >/dev/null
    sleep 2
    after="$(rss_kb "$pid")"
    if [ -n "$used_before" ]; then used_after="$(redis-cli -p "$port" INFO memory | awk -F: '/^used_memory:/ { print $2+0 }')"; fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$before" "$after" "$used_before" "$used_after" >>"$mem_rows"
    echo "memory $label: RSS $before kB -> $after kB"
}
mport="$(free_port)"
start_redis "$mport" "$WORK/redis-mem" --save '' --appendonly no
measure_mem "redis-server (no persistence)" "$REDIS_PID" "$mport"
kill9 "$REDIS_PID"
start_redis "$mport" "$WORK/redis-mem-aof" --save '' --appendonly yes --appendfsync everysec
measure_mem "redis-server (appendonly yes, everysec)" "$REDIS_PID" "$mport"
kill9 "$REDIS_PID"
mresp="$(free_port)"
start_meridian "$WORK/meridian-mem" "$mresp" "$mhttp" --fsync everysec --snapshot-after-ops 1000000000000
wait_ready "$mhttp" "$MERIDIAN_PID"
measure_mem "meridian (no snapshot during the load)" "$MERIDIAN_PID" "$mresp"
kill9 "$MERIDIAN_PID"
start_meridian "$WORK/meridian-mem2" "$mresp" "$mhttp" --fsync everysec
wait_ready "$mhttp" "$MERIDIAN_PID"
measure_mem "meridian (defaults: snapshot after 1000000 ops)" "$MERIDIAN_PID" "$mresp"
kill9 "$MERIDIAN_PID"

python3 - "$csv" "$mem_rows" "$MEM_KEYS" "$ROUNDS" "$REQUESTS" "$CLIENTS" >>"$out" <<'PY'
import csv, statistics, sys
path, mem_path, keys, rounds, requests, clients = sys.argv[1:7]
keys = int(keys)
runs = {}
for row in csv.reader(open(path)):
    server, pipeline, _round, test = row[:4]
    rps, p99 = float(row[4]), float(row[9])
    runs.setdefault((server, pipeline, test), []).append((rps, p99))
def med(server, pipeline, test, i):
    vals = [r[i] for r in runs.get((server, pipeline, test), [])]
    return statistics.median(vals) if vals else float("nan")
print()
print("### Throughput and p99 latency")
print()
print("`redis-benchmark -t set,get -n %s -c %s -q --csv [-P 16]`, %s rounds, servers interleaved; "
      "median of the rounds. Meridian runs `--fsync everysec`; \"redis AOF\" is `--save '' --appendonly yes "
      "--appendfsync everysec`, \"redis no persistence\" is `--save '' --appendonly no`. "
      "Ratios compare Meridian with redis AOF (targets: throughput ≥ 0.8×, p99 ≤ 2×)." % (requests, clients, rounds))
print()
print("| Test | Pipeline | Meridian rps | redis AOF rps | redis no persistence rps | Meridian / redis AOF rps | Meridian p99 ms | redis AOF p99 ms | redis no persistence p99 ms | Meridian / redis AOF p99 |")
print("|---|---|---|---|---|---|---|---|---|---|")
missed = []
for pipeline in ("1", "16"):
    for test in ("SET", "GET"):
        m, a, n = (med(s, pipeline, test, 0) for s in ("meridian", "redis-aof", "redis-nopersist"))
        mp, ap, np_ = (med(s, pipeline, test, 1) for s in ("meridian", "redis-aof", "redis-nopersist"))
        tr, lr = m / a, mp / ap
        if tr < 0.8:
            missed.append("%s -P %s throughput %.2f×" % (test, pipeline, tr))
        if lr > 2:
            missed.append("%s -P %s p99 %.2f×" % (test, pipeline, lr))
        print("| %s | %s | %.0f | %.0f | %.0f | **%.2f×** | %.3f | %.3f | %.3f | **%.2f×** |"
              % (test, pipeline, m, a, n, tr, mp, ap, np_, lr))
print()
print("Best round of each (highest rps, lowest p99, taken separately): the figure least disturbed by other jobs on the shared CPUs.")
print()
print("| Test | Pipeline | Meridian rps | redis AOF rps | Meridian / redis AOF rps | Meridian p99 ms | redis AOF p99 ms | Meridian / redis AOF p99 |")
print("|---|---|---|---|---|---|---|---|")
for pipeline in ("1", "16"):
    for test in ("SET", "GET"):
        m = max(r[0] for r in runs[("meridian", pipeline, test)])
        a = max(r[0] for r in runs[("redis-aof", pipeline, test)])
        mp = min(r[1] for r in runs[("meridian", pipeline, test)])
        ap = min(r[1] for r in runs[("redis-aof", pipeline, test)])
        print("| %s | %s | %.0f | %.0f | **%.2f×** | %.3f | %.3f | **%.2f×** |" % (test, pipeline, m, a, m / a, mp, ap, mp / ap))
print()
print("Every round (rps / p99 ms):")
print()
for (server, pipeline, test), vals in sorted(runs.items()):
    print("- %s -P %s %s: %s" % (server, pipeline, test, ", ".join("%.0f / %.3f" % v for v in vals)))
print()
print("### Memory per key (%d keys `key:NNNNNNNNN`, 3-byte values)" % keys)
print()
print("RSS from /proc/PID/status two seconds after the load, minus RSS before it, divided by the keys. "
      "Redis's `used_memory` (its allocator's count, no fragmentation) is shown for reference.")
print()
print("| Server | RSS before (MiB) | RSS after (MiB) | RSS bytes/key | used_memory bytes/key |")
print("|---|---|---|---|---|")
mem = {}
for row in csv.reader(open(mem_path), delimiter="\t"):
    label, before, after, ub, ua = row
    per = (int(after) - int(before)) * 1024 / keys
    mem[label] = per
    used = "%.1f" % ((int(ua) - int(ub)) / keys) if ub else "—"
    print("| %s | %.1f | %.1f | %.1f | %s |" % (label, int(before) / 1024, int(after) / 1024, per, used))
redis = mem.get("redis-server (no persistence)")
print()
for label, per in mem.items():
    if label.startswith("meridian") and redis:
        ratio = per / redis
        print("- %s / redis-server RSS per key: **%.2f×** (target ≤ 2×)" % (label, ratio))
        if ratio > 2:
            missed.append("memory per key %.2f× (%s)" % (ratio, label))
print()
print("Targets missed by the medians of this run: %s." % ("; ".join(missed) if missed else "none"))
PY
{ echo; echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the 2 CPUs are shared with other jobs; see every round's figures for the spread)"; } >>"$out"
write_section redis-benchmark "$out"
cat "$out"
