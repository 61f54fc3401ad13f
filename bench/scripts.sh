#!/usr/bin/env bash
# Scripting side by side with redis-server: redis-benchmark of EVALSHA and EVAL of a one-INCR script, without and with
# -P 16 (Meridian --fsync everysec against redis AOF everysec, rounds interleaved), checking after every run that the
# counter equals the number of calls; writes the "scripts" section of bench/RESULTS.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
# A multiple of 16, so -P 16 sends exactly REQUESTS calls.
REQUESTS="${REQUESTS:-100000}"
CLIENTS=50
SCRIPT="return redis.call('incr', KEYS[1])"
((REQUESTS % 16 == 0)) || { echo "REQUESTS must be a multiple of 16" >&2; exit 1; }

build_release
out="$WORK/scripts.md"
{
    echo "## Scripting: EVALSHA and EVAL of a one-INCR script"
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

sha=""
for server in meridian redis; do
    s="$(redis-cli -p "${PORT[$server]}" SCRIPT LOAD "$SCRIPT")"
    [[ "$s" =~ ^[0-9a-f]{40}$ ]] || { echo "$server: SCRIPT LOAD answered $s" >&2; exit 1; }
    [ -z "$sha" ] || [ "$s" = "$sha" ] || { echo "$server: SHA $s, the other server said $sha" >&2; exit 1; }
    sha="$s"
done
echo "script sha $sha"

# run_test SERVER ROUND TEST PIPELINE COMMAND...: one redis-benchmark run, its CSV row appended to $csv as
# server,round,test,rps,avg,min,p50,p95,p99,max; then the counter must equal REQUESTS.
run_test() {
    local server="$1" round="$2" test="$3" pipeline="$4" port="${PORT[$1]}" row count
    shift 4
    redis-cli -p "$port" DEL counter >/dev/null
    row="$(redis-benchmark -h 127.0.0.1 -p "$port" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" -q --csv "$@" 2>/dev/null |
        python3 -c 'import csv, sys; rows = [r for r in csv.reader(sys.stdin) if len(r) == 8 and r[0] != "test"]; print(",".join(rows[-1][1:]) if rows else "")')"
    [ -n "$row" ] || { echo "$server $test: no result from redis-benchmark" >&2; exit 1; }
    count="$(redis-cli -p "$port" GET counter)"
    if [ "$count" != "$REQUESTS" ]; then
        echo "$server $test round $round: counter $count after $REQUESTS calls" >&2
        echo "$server,$test,$round,$count" >>"$WORK/mismatch"
    fi
    echo "$server,$round,$test,$row" >>"$csv"
    echo "round $round $server $test: $row (counter $count)"
}

csv="$WORK/scripts.csv"
: >"$csv"
: >"$WORK/mismatch"
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then order=(meridian redis); else order=(redis meridian); fi
    for server in "${order[@]}"; do
        run_test "$server" "$round" EVALSHA 1 evalsha "$sha" 1 counter
        run_test "$server" "$round" EVAL 1 eval "$SCRIPT" 1 counter
        run_test "$server" "$round" "EVALSHA -P 16" 16 evalsha "$sha" 1 counter
        run_test "$server" "$round" "EVAL -P 16" 16 eval "$SCRIPT" 1 counter
    done
done
for server in "${!PID[@]}"; do kill9 "${PID[$server]}"; done

python3 - "$csv" "$WORK/mismatch" "$ROUNDS" "$REQUESTS" "$CLIENTS" "$sha" >>"$out" <<'PY'
import csv, statistics, sys
path, mismatch_path, rounds, requests, clients, sha = sys.argv[1:7]
runs = {}
for row in csv.reader(open(path)):
    server, _round, test = row[:3]
    runs.setdefault((server, test), []).append((float(row[3]), float(row[8])))
print()
print("### Throughput and p99 latency")
print()
print("`SCRIPT LOAD \"return redis.call('incr', KEYS[1])\"` on both servers (SHA `%s`), then "
      "`redis-benchmark -n %s -c %s [-P 16] -q --csv evalsha %s 1 counter` and the same with "
      "`eval \"return redis.call('incr', KEYS[1])\" 1 counter`; `counter` is deleted before each run and "
      "must equal %s after it. %s rounds, servers interleaved; median of the rounds. Meridian runs "
      "`--fsync everysec`, redis-server `--appendonly yes --appendfsync everysec` (target: throughput ≥ 0.8×)."
      % (sha, requests, clients, sha[:8] + "…", requests, rounds))
print()
print("| Test | Meridian rps | redis rps | Meridian / redis rps | Meridian p99 ms | redis p99 ms | Meridian rps, every round | redis rps, every round |")
print("|---|---|---|---|---|---|---|---|")
missed = []
for test in ("EVALSHA", "EVAL", "EVALSHA -P 16", "EVAL -P 16"):
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
bad = [l.strip() for l in open(mismatch_path) if l.strip()]
if bad:
    print("Counter checks failed (server,test,round,counter): %s." % "; ".join(bad))
else:
    print("Counter checks: `GET counter` equalled %s after every run on both servers." % requests)
print()
print("Targets missed by this run: %s." % ("; ".join(missed) if missed else "none"))
PY
{ echo; echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the 2 CPUs are shared with other jobs)"; } >>"$out"
write_section scripts "$out"
cat "$out"
[ ! -s "$WORK/mismatch" ] || { echo "counter checks failed" >&2; exit 1; }
