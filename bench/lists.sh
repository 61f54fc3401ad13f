#!/usr/bin/env bash
# Lists side by side with redis-server: redis-benchmark LPUSH/RPUSH/LPOP/RPOP/LRANGE_100 throughput and p99 (Meridian --fsync everysec against redis AOF everysec, rounds interleaved), and the RSS of one list of 1,000,000 short elements; writes the "lists" section of bench/RESULTS.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-200000}"
CLIENTS=50
ELEMENTS="${ELEMENTS:-1000000}"
TESTS="lpush,rpush,lpop,rpop,lrange_100"

build_release
out="$WORK/lists.md"
{
    echo "## Lists: redis-benchmark and memory"
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

# One row per test: server,round,test,rps,avg,min,p50,p95,p99,max
csv="$WORK/lists.csv"
: >"$csv"
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then order=(meridian redis); else order=(redis meridian); fi
    for server in "${order[@]}"; do
        redis-cli -p "${PORT[$server]}" DEL mylist >/dev/null
        redis-benchmark -h 127.0.0.1 -p "${PORT[$server]}" -t "$TESTS" -n "$REQUESTS" -c "$CLIENTS" \
            -q --csv 2>/dev/null | tr -d '"' | grep -E '^(LPUSH|RPUSH|LPOP|RPOP|LRANGE_100)' | grep -v needed |
            sed "s/^/$server,$round,/" >>"$csv"
        echo "round $round $server: $(grep -c "^$server,$round," "$csv") tests"
    done
done
for server in "${!PID[@]}"; do kill9 "${PID[$server]}"; done

# One list of ELEMENTS short values ("v0".."v999"), pushed 100 per RPUSH
# (pipelined) or one per RPUSH (pipelined): fresh servers, RSS after.
python3 - "$ELEMENTS" 100 >"$WORK/rpush-100.resp" <<'PY'
import sys
n, per = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout
for i in range(0, n, per):
    args = ["RPUSH", "biglist"] + ["v%d" % (j % 1000) for j in range(i, min(n, i + per))]
    out.write("*%d\r\n%s" % (len(args), "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)))
PY
python3 - "$ELEMENTS" 1 >"$WORK/rpush-1.resp" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
for j in range(n):
    v = "v%d" % (j % 1000)
    out.write("*3\r\n$5\r\nRPUSH\r\n$7\r\nbiglist\r\n$%d\r\n%s\r\n" % (len(v), v))
PY
mem_rows="$WORK/mem-rows"
: >"$mem_rows"
measure_list() {
    local label="$1" pid="$2" port="$3" load="$4" before after len
    sleep 0.5
    before="$(rss_kb "$pid")"
    redis-cli -p "$port" --pipe <"$WORK/$load" >/dev/null
    len="$(redis-cli -p "$port" LLEN biglist)"
    [ "$len" = "$ELEMENTS" ] || { echo "$label: LLEN $len, expected $ELEMENTS" >&2; exit 1; }
    sleep 2
    after="$(rss_kb "$pid")"
    printf '%s\t%s\t%s\t%s\n' "$label" "$load" "$before" "$after" >>"$mem_rows"
    echo "memory $label $load: RSS $before kB -> $after kB"
}
for load in rpush-100.resp rpush-1.resp; do
    rport="$(free_port)"
    start_redis "$rport" "$WORK/redis-mem-$load" --save '' --appendonly no
    measure_list redis "$REDIS_PID" "$rport" "$load"
    kill9 "$REDIS_PID"
    mresp="$(free_port)"
    mhttp2="$(free_port)"
    start_meridian "$WORK/meridian-mem-$load" "$mresp" "$mhttp2" --fsync everysec
    wait_ready "$mhttp2" "$MERIDIAN_PID"
    measure_list meridian "$MERIDIAN_PID" "$mresp" "$load"
    kill9 "$MERIDIAN_PID"
done

python3 - "$csv" "$mem_rows" "$ROUNDS" "$REQUESTS" "$CLIENTS" "$ELEMENTS" >>"$out" <<'PY'
import csv, statistics, sys
path, mem_path, rounds, requests, clients, elements = sys.argv[1:7]
runs = {}
for row in csv.reader(open(path)):
    server, _round, test = row[:3]
    test = test.split(" ")[0]
    runs.setdefault((server, test), []).append((float(row[3]), float(row[8])))
print()
print("### Throughput and p99 latency")
print()
print("`redis-benchmark -t lpush,rpush,lpop,rpop,lrange_100 -n %s -c %s -q --csv`, %s rounds, servers "
      "interleaved; median of the rounds. Meridian runs `--fsync everysec`, redis-server "
      "`--appendonly yes --appendfsync everysec` (target: throughput ≥ 0.8×)." % (requests, clients, rounds))
print()
print("| Test | Meridian rps | redis rps | Meridian / redis rps | Meridian p99 ms | redis p99 ms | Meridian rps, every round | redis rps, every round |")
print("|---|---|---|---|---|---|---|---|")
missed = []
for test in ("LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE_100"):
    m, r = runs.get(("meridian", test), []), runs.get(("redis", test), [])
    if not m or not r:
        continue
    mr, rr = statistics.median(x for x, _ in m), statistics.median(x for x, _ in r)
    mp, rp = statistics.median(p for _, p in m), statistics.median(p for _, p in r)
    if mr / rr < 0.8:
        missed.append("%s %.2f×" % (test, mr / rr))
    print("| %s | %.0f | %.0f | **%.2f×** | %.3f | %.3f | %s | %s |" % (
        test, mr, rr, mr / rr, mp, rp, ", ".join("%.0f" % x for x, _ in m), ", ".join("%.0f" % x for x, _ in r)))
print()
print("### One list of %s short elements" % elements)
print()
print("RSS (/proc/PID/status) of a fresh server before and two seconds after `redis-cli --pipe` pushed "
      "the list; values `v0`..`v999`. redis-server without persistence.")
print()
print("| Load | Server | RSS before (MiB) | RSS after (MiB) | Meridian / redis RSS after |")
print("|---|---|---|---|---|")
rows = list(csv.reader(open(mem_path), delimiter="\t"))
after = {(r[0], r[1]): int(r[3]) for r in rows}
for label, load, before, aft in rows:
    ratio = ""
    if label == "meridian":
        x = int(aft) / after[("redis", load)]
        ratio = "**%.2f×**" % x
        if x > 2:
            missed.append("memory %.2f× (%s)" % (x, load))
    desc = "100 values per RPUSH" if load == "rpush-100.resp" else "one value per RPUSH"
    print("| %s | %s | %.1f | %.1f | %s |" % (desc, label, int(before) / 1024, int(aft) / 1024, ratio))
print()
print("Targets missed by this run: %s." % ("; ".join(missed) if missed else "none"))
PY
{ echo; echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the 2 CPUs are shared with other jobs)"; } >>"$out"
write_section lists "$out"
cat "$out"
