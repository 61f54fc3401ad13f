#!/usr/bin/env bash
# REST data API vs RESP on one region: GET and SET of random keys at 50 keep-alive clients (wrk for HTTP, redis-benchmark for RESP), requests/s and p99; target REST ≥ 0.3× RESP.
# Usage: bench/data-api.sh  (MERIDIAN_BIN=/path/to/meridian measures that binary instead of a release build; NOTE=text adds a line to the results)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v wrk >/dev/null || { echo "missing wrk (apt-get install wrk)" >&2; exit 1; }

CLIENTS=50
KEYS="${KEYS:-10000}"
DURATION_S="${DURATION_S:-10}"
REQUESTS="${REQUESTS:-200000}"
ROUNDS="${ROUNDS:-3}"
TOKEN="bench-data-api-token-0123456789"
build_release

resp="$(free_port)"
http="$(free_port)"
start_meridian "$WORK/meridian" "$resp" "$http" --fsync everysec --data-api-token "$TOKEN"
wait_ready "$http" "$MERIDIAN_PID"
redis-benchmark -p "$resp" -t set -n "$KEYS" -r "$KEYS" -c "$CLIENTS" -q >/dev/null 2>&1

# The machine as it was before the runs (load average included).
machine="$WORK/machine.md"
machine_info >"$machine"

# One row per run: round,api,op,rps,p99_ms
csv="$WORK/data-api.csv"
: >"$csv"
for round in $(seq 1 "$ROUNDS"); do
    for op in GET SET; do
        line="$(WRK_OP="$op" WRK_KEYS="$KEYS" WRK_TOKEN="$TOKEN" wrk -t 2 -c "$CLIENTS" -d "${DURATION_S}s" \
            -s "$BENCH_DIR/data_api.lua" "http://127.0.0.1:$http/" | grep '^RESULT')"
        non200="$(sed 's/.*non200=\([0-9]*\).*/\1/' <<<"$line")"
        [ "$non200" = 0 ] || { echo "REST $op: $non200 answers other than 200" >&2; exit 1; }
        awk -v r="$round" -v op="$op" '{ split($2, a, "="); split($4, b, "="); printf "%s,rest,%s,%s,%.3f\n", r, op, a[2], b[2] / 1000 }' <<<"$line" >>"$csv"
        lower="$(tr 'A-Z' 'a-z' <<<"$op")"
        redis-benchmark -p "$resp" -t "$lower" -n "$REQUESTS" -r "$KEYS" -c "$CLIENTS" --csv 2>/dev/null | tr -d '"' |
            awk -F, -v r="$round" -v op="$op" '$1 == op { printf "%s,resp,%s,%.0f,%.3f\n", r, op, $2, $7 }' >>"$csv"
    done
done

out="$WORK/section.md"
{
    echo "## REST data API vs RESP: GET and SET (\`bench/data-api.sh\`)"
    echo
    cat "$machine"
    echo "- $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo
    echo "One region, \`--fsync everysec\`, $KEYS keys written first. REST: wrk, $CLIENTS keep-alive connections on 2 threads for ${DURATION_S} s, each request \`POST /\` with \`[\"GET\",key]\` or \`[\"SET\",key,\"xxx\"]\` of a random key and a bearer token. RESP: redis-benchmark, $CLIENTS clients, $REQUESTS requests, no pipelining, random keys. $ROUNDS rounds, REST and RESP interleaved; median of the rounds. Target: REST ≥ 0.3× RESP."
    echo
    echo "| Command | REST rps | RESP rps | REST / RESP | REST p99 ms | RESP p99 ms | REST rps, every round | RESP rps, every round |"
    echo "|---|---|---|---|---|---|---|---|"
    python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
for op in ("GET", "SET"):
    def pick(api):
        runs = [(float(r[3]), float(r[4])) for r in rows if r[1] == api and r[2] == op]
        rps = statistics.median(x for x, _ in runs)
        p99 = statistics.median(y for _, y in runs)
        return rps, p99, ", ".join("%.0f" % x for x, _ in runs)
    rest, resp = pick("rest"), pick("resp")
    print("| %s | %.0f | %.0f | **%.2f×** | %.3f | %.3f | %s | %s |" % (
        op, rest[0], resp[0], rest[0] / resp[0], rest[1], resp[1], rest[2], resp[2]))
PY
    echo
    echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    [ -z "${NOTE:-}" ] || echo "- Note: $NOTE"
} >"$out"
cat "$out"
write_section data-api "$out"
