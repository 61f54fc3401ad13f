#!/usr/bin/env bash
# Streams, bitmaps, HyperLogLog and geo side by side with redis-server: redis-benchmark of XADD, SETBIT, BITCOUNT, PFADD
# and GEOADD without and with -P 16 (Meridian --fsync everysec against redis AOF everysec, rounds interleaved), and the
# RSS of one stream of 1,000,000 entries; writes the "types" section of bench/RESULTS.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
# A multiple of 16, so -P 16 sends exactly REQUESTS commands.
REQUESTS="${REQUESTS:-100000}"
CLIENTS=50
ENTRIES="${ENTRIES:-1000000}"
# The range of __rand_int__ (redis-benchmark -r).
RANDOM_RANGE=1000000
# `b`, which BITCOUNT counts: BITMAP_BITS random bits, written whole by one SET.
BITMAP_BITS=1000000
# SETBITs of random offsets below BITMAP_BITS into one key, `sb`, whose BITCOUNT must then be the distinct offsets.
BITMAP_SETS=20000
((REQUESTS % 16 == 0)) || { echo "REQUESTS must be a multiple of 16" >&2; exit 1; }

build_release
out="$WORK/types.md"
{
    echo "## Streams, bitmaps, HyperLogLog and geo: redis-benchmark and stream memory"
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

# The bitmap BITCOUNT counts, and the SETBITs of one key checked once per server: the same on both servers.
python3 - "$BITMAP_BITS" >"$WORK/bitmap.resp" <<'PY'
import random, sys
rng = random.Random(7)
data = bytes(rng.randrange(256) for _ in range(int(sys.argv[1]) // 8))
sys.stdout.buffer.write(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$%d\r\n%s\r\n" % (len(data), data))
PY
python3 - "$BITMAP_SETS" "$BITMAP_BITS" "$WORK/setbits.want" >"$WORK/setbits.resp" <<'PY'
import random, sys
n, bits, want = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(7)
offsets = [rng.randrange(bits) for _ in range(n)]
for off in offsets:
    off = str(off)
    sys.stdout.write("*4\r\n$6\r\nSETBIT\r\n$2\r\nsb\r\n$%d\r\n%s\r\n$1\r\n1\r\n" % (len(off), off))
open(want, "w").write("%d\n" % len(set(offsets)))
PY

# check SERVER ROUND TEST: what each test must leave behind, else a line in $WORK/mismatch.
check() {
    local server="$1" round="$2" test="$3" port="${PORT[$1]}" got want
    case "$test" in
    XADD*) got="$(redis-cli -p "$port" XLEN s)" want="$REQUESTS" ;;
    SETBIT*) got="$(redis-cli -p "$port" DBSIZE)" want="> 0" ;;
    BITCOUNT*) got="$(redis-cli -p "$port" BITCOUNT b)" want="$BITCOUNT_WANT" ;;
    PFADD*) got="$(redis-cli -p "$port" PFCOUNT h)" want="> 0" ;;
    GEOADD*) got="$(redis-cli -p "$port" ZCARD g)" want="> 0" ;;
    esac
    if [[ "$want" == "> 0" && "$got" =~ ^[0-9]+$ && "$got" -gt 0 ]] || [ "$got" = "$want" ]; then
        return
    fi
    echo "$server $test round $round: $got, expected $want" >&2
    echo "$server,$test,$round,$got" >>"$WORK/mismatch"
}

# load_bitmap SERVER: `b` as $WORK/bitmap.resp sets it; BITCOUNT_WANT is the first server's count.
load_bitmap() {
    local port="${PORT[$1]}" n
    redis-cli -p "$port" DEL b >/dev/null
    redis-cli -p "$port" --pipe <"$WORK/bitmap.resp" >/dev/null
    n="$(redis-cli -p "$port" BITCOUNT b)"
    [ -z "$BITCOUNT_WANT" ] || [ "$n" = "$BITCOUNT_WANT" ] || { echo "$1: BITCOUNT b $n, the other server said $BITCOUNT_WANT" >&2; exit 1; }
    BITCOUNT_WANT="$n"
}

# run_test SERVER ROUND TEST PIPELINE COMMAND...: one redis-benchmark run, its CSV row appended to $csv as
# server,round,test,rps,avg,min,p50,p95,p99,max; what the test writes is deleted first (all keys before SETBIT, whose
# keys are many), BITCOUNT's bitmap loaded afresh.
run_test() {
    local server="$1" round="$2" test="$3" pipeline="$4" port="${PORT[$1]}" row
    shift 4
    case "$test" in
    XADD*) redis-cli -p "$port" DEL s >/dev/null ;;
    SETBIT*) redis-cli -p "$port" FLUSHALL >/dev/null ;;
    BITCOUNT*) load_bitmap "$server" ;;
    PFADD*) redis-cli -p "$port" DEL h >/dev/null ;;
    GEOADD*) redis-cli -p "$port" DEL g >/dev/null ;;
    esac
    row="$(redis-benchmark -h 127.0.0.1 -p "$port" -n "$REQUESTS" -c "$CLIENTS" -P "$pipeline" -r "$RANDOM_RANGE" -q --csv "$@" 2>/dev/null |
        python3 -c 'import csv, sys; rows = [r for r in csv.reader(sys.stdin) if len(r) == 8 and r[0] != "test"]; print(",".join(rows[-1][1:]) if rows else "")')"
    [ -n "$row" ] || { echo "$server $test: no result from redis-benchmark" >&2; exit 1; }
    check "$server" "$round" "$test"
    echo "$server,$round,$test,$row" >>"$csv"
    echo "round $round $server $test: $row"
}

BITCOUNT_WANT=""
: >"$WORK/mismatch"
: >"$WORK/setbits.got"
for server in meridian redis; do
    load_bitmap "$server"
    port="${PORT[$server]}"
    redis-cli -p "$port" DEL sb >/dev/null
    redis-cli -p "$port" --pipe <"$WORK/setbits.resp" >/dev/null
    got="$(redis-cli -p "$port" BITCOUNT sb)"
    echo "$server: BITCOUNT sb $got after $BITMAP_SETS SETBITs of $(cat "$WORK/setbits.want") distinct offsets"
    [ "$got" = "$(cat "$WORK/setbits.want")" ] || echo "$server,SETBIT one key,0,$got" >>"$WORK/mismatch"
    printf '%s\t%s\n' "$server" "$got" >>"$WORK/setbits.got"
done

csv="$WORK/types.csv"
: >"$csv"
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then order=(meridian redis); else order=(redis meridian); fi
    for server in "${order[@]}"; do
        for p in 1 16; do
            suffix=""
            [ "$p" = 1 ] || suffix=" -P 16"
            run_test "$server" "$round" "XADD$suffix" "$p" xadd s '*' f v
            # redis-benchmark writes __rand_int__ as 12 zero-padded digits, which no server takes as a bit offset
            # (both answer "bit offset is not an integer"), so the random part is the key's: one bit set in each of up
            # to RANDOM_RANGE bitmaps, nearly every call a write (all keys are flushed first).
            run_test "$server" "$round" "SETBIT$suffix" "$p" setbit "r:__rand_int__" 7 1
            run_test "$server" "$round" "BITCOUNT$suffix" "$p" bitcount b
            run_test "$server" "$round" "PFADD$suffix" "$p" pfadd h "e:__rand_int__"
            run_test "$server" "$round" "GEOADD$suffix" "$p" geoadd g "13.__rand_int__" "52.__rand_int__" "m:__rand_int__"
        done
    done
done
for server in "${!PID[@]}"; do kill9 "${PID[$server]}"; done

# One stream of ENTRIES entries `item N value abcdefgh`, one XADD each (pipelined): fresh servers, RSS after.
python3 - "$ENTRIES" >"$WORK/xadd.resp" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    v = str(i)
    out.write("*7\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$4\r\nitem\r\n$%d\r\n%s\r\n$5\r\nvalue\r\n$8\r\nabcdefgh\r\n" % (len(v), v))
PY
mem_rows="$WORK/mem-rows"
: >"$mem_rows"
measure_stream() {
    local label="$1" pid="$2" port="$3" before after len
    sleep 0.5
    before="$(rss_kb "$pid")"
    redis-cli -p "$port" --pipe <"$WORK/xadd.resp" >/dev/null
    len="$(redis-cli -p "$port" XLEN s)"
    [ "$len" = "$ENTRIES" ] || { echo "$label: XLEN $len, expected $ENTRIES" >&2; exit 1; }
    sleep 2
    after="$(rss_kb "$pid")"
    printf '%s\t%s\t%s\n' "$label" "$before" "$after" >>"$mem_rows"
    echo "memory $label: RSS $before kB -> $after kB"
}
rport="$(free_port)"
start_redis "$rport" "$WORK/redis-mem" --save '' --appendonly no
measure_stream redis "$REDIS_PID" "$rport"
kill9 "$REDIS_PID"
mresp="$(free_port)"
mhttp2="$(free_port)"
start_meridian "$WORK/meridian-mem" "$mresp" "$mhttp2" --fsync everysec
wait_ready "$mhttp2" "$MERIDIAN_PID"
measure_stream meridian "$MERIDIAN_PID" "$mresp"
kill9 "$MERIDIAN_PID"

python3 - "$csv" "$mem_rows" "$WORK/mismatch" "$ROUNDS" "$REQUESTS" "$CLIENTS" "$ENTRIES" "$RANDOM_RANGE" \
    "$BITMAP_SETS" "$BITMAP_BITS" "$BITCOUNT_WANT" "$(cat "$WORK/setbits.want")" "$WORK/setbits.got" >>"$out" <<'PY'
import csv, statistics, sys
path, mem_path, mismatch_path, rounds, requests, clients, entries, rand, sets, bits, count, distinct, got_path = sys.argv[1:14]
runs = {}
for row in csv.reader(open(path)):
    server, _round, test = row[:3]
    runs.setdefault((server, test), []).append((float(row[3]), float(row[8])))
print()
print("### Throughput and p99 latency")
print()
print("`redis-benchmark -n %s -c %s -r %s [-P 16] -q --csv` of each command below, %s rounds, servers "
      "interleaved; median of the rounds. Meridian runs `--fsync everysec`, redis-server "
      "`--appendonly yes --appendfsync everysec` (target: throughput ≥ 0.8×)." % (requests, clients, rand, rounds))
print()
print("- XADD: `xadd s * f v`; `s` is deleted before each run and `XLEN s` must be %s after it." % requests)
print("- SETBIT: `setbit r:__rand_int__ 7 1`, one bit in each of up to %s keys, all keys flushed before each run (`DBSIZE` must be above 0 after it). redis-benchmark writes "
      "`__rand_int__` as 12 zero-padded digits, which neither server accepts as a bit offset, so the random "
      "part is the key." % rand)
print("- BITCOUNT: `bitcount b` of a %s-bit bitmap of random bytes (%s bits set), written whole by one SET "
      "before every run and checked after it." % (bits, count))
print("- PFADD: `pfadd h e:__rand_int__`; GEOADD: `geoadd g 13.__rand_int__ 52.__rand_int__ m:__rand_int__`; "
      "their keys are deleted before each run.")
print()
print("| Test | Meridian rps | redis rps | Meridian / redis rps | Meridian p99 ms | redis p99 ms | Meridian rps, every round | redis rps, every round |")
print("|---|---|---|---|---|---|---|---|")
missed = []
for test in ("XADD", "SETBIT", "BITCOUNT", "PFADD", "GEOADD",
             "XADD -P 16", "SETBIT -P 16", "BITCOUNT -P 16", "PFADD -P 16", "GEOADD -P 16"):
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
    print("Checks failed (server,test,round,value): %s." % "; ".join(bad))
else:
    print("Checks: after every run `XLEN s` equalled %s, `BITCOUNT b` %s, and the SETBIT, PFADD and GEOADD "
          "keys held what was written, on both servers." % (requests, count))
print()
got = dict(l.rstrip("\n").split("\t") for l in open(got_path) if l.strip())
print("SETBIT into one key, once per server before the runs: %s `setbit sb <offset> 1` of random offsets below %s "
      "(%s distinct) through `redis-cli --pipe`, then `BITCOUNT sb`: %s." % (
          sets, bits, distinct, ", ".join("%s %s" % (s, got[s]) for s in sorted(got))))
print()
print("### One stream of %s entries" % entries)
print()
print("RSS (/proc/PID/status) of a fresh server before and two seconds after `redis-cli --pipe` sent "
      "`XADD s * item N value abcdefgh` for N = 0..%d. redis-server without persistence, Meridian "
      "`--fsync everysec`." % (int(entries) - 1))
print()
print("| Server | RSS before (MiB) | RSS after (MiB) | Bytes per entry (after − before) | Meridian / redis RSS after |")
print("|---|---|---|---|---|")
rows = list(csv.reader(open(mem_path), delimiter="\t"))
after = {r[0]: int(r[2]) for r in rows}
for label, before, aft in rows:
    ratio = ""
    if label == "meridian":
        x = int(aft) / after["redis"]
        ratio = "**%.2f×**" % x
        if x > 2:
            missed.append("memory %.2f×" % x)
    per = (int(aft) - int(before)) * 1024 / int(entries)
    print("| %s | %.1f | %.1f | %.0f | %s |" % (label, int(before) / 1024, int(aft) / 1024, per, ratio))
print()
print("Targets missed by this run: %s." % ("; ".join(missed) if missed else "none"))
PY
{ echo; echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the 2 CPUs are shared with other jobs)"; } >>"$out"
write_section types "$out"
cat "$out"
[ ! -s "$WORK/mismatch" ] || { echo "checks failed" >&2; exit 1; }
