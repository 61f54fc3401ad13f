#!/usr/bin/env bash
# Measures how long Meridian takes to recover 1,000,000 string keys after kill -9 (log replay only, and snapshot + log replay), with redis-server's AOF/RDB load for context; writes the "recovery" section of bench/RESULTS.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEYS="${KEYS:-1000000}"
TAIL_OPS=$((KEYS / 10))

build_release
out="$WORK/recovery.md"
rows="$WORK/recovery-rows"
: >"$rows"
{
    echo "## Recovery of $KEYS keys after kill -9"
    echo
    machine_info
} >"$out"

resp="$(free_port)"
http="$(free_port)"
data="$WORK/meridian-data"
# No automatic snapshot unless a step asks for one.
no_snapshot=(--fsync everysec --snapshot-after-ops 1000000000000)

# recover LABEL DIR KEYS FLAGS...: restarts Meridian on DIR and times it until it holds KEYS keys.
recover() {
    local label="$1" dir="$2" keys="$3" started times ready_s keys_s rss
    shift 3
    : >"$WORK/meridian.err"
    started="$(now)"
    start_meridian "$dir" "$resp" "$http" "$@"
    times="$(python3 "$BENCH_DIR/wait_recovered.py" "$started" "$MERIDIAN_PID" "$resp" "$http" "$keys")"
    read -r ready_s keys_s <<<"$times"
    rss="$(rss_kb "$MERIDIAN_PID")"
    echo "| $label | $ready_s | $keys_s | $(log_field elapsed_ms) | $(log_field replayed_ops) | $((rss / 1024)) |" >>"$rows"
    echo "$label: ready after ${ready_s}s, $keys keys after ${keys_s}s; $(log_field replayed_ops) ops replayed; RSS $((rss / 1024)) MiB"
}

# What the measurement itself costs (process and poller start): an empty data directory.
recover "empty data directory (measurement floor)" "$WORK/empty" 0 "${no_snapshot[@]}"
kill9 "$MERIDIAN_PID"

start_meridian "$data" "$resp" "$http" "${no_snapshot[@]}"
wait_ready "$http" "$MERIDIAN_PID"
rss_empty="$(rss_kb "$MERIDIAN_PID")"
load_line="$(python3 "$BENCH_DIR/load_keys.py" "$resp" "$KEYS")"
echo "$load_line"
sleep 1
rss_loaded="$(rss_kb "$MERIDIAN_PID")"
[ "$(key_count "$resp" "$http")" = "$KEYS" ] || { echo "the load did not produce $KEYS keys" >&2; exit 1; }
log_mib="$(du -cm "$data"/seg-*.log | tail -1 | cut -f1)"
kill9 "$MERIDIAN_PID"

recover "log replay only ($KEYS ops)" "$data" "$KEYS" "${no_snapshot[@]}"
kill9 "$MERIDIAN_PID"
recover "log replay only, again" "$data" "$KEYS" "${no_snapshot[@]}"

# A snapshot: SAVE where the server has it, otherwise the automatic one, due
# at once because replayed ops count towards --snapshot-after-ops.
if [ "$(redis-cli -p "$resp" SAVE 2>/dev/null)" = OK ]; then
    how="SAVE"
    kill9 "$MERIDIAN_PID"
else
    how="automatic snapshot with --snapshot-after-ops $KEYS, as this build has no SAVE"
    kill9 "$MERIDIAN_PID"
    start_meridian "$data" "$resp" "$http" --fsync everysec --snapshot-after-ops "$KEYS"
    wait_ready "$http" "$MERIDIAN_PID"
    deadline=$((SECONDS + 300))
    until [ "$(metric "$http" meridian_snapshots_total)" -ge 1 ]; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "no snapshot after 300 s" >&2; exit 1; }
        sleep 0.1
    done
    kill9 "$MERIDIAN_PID"
fi
snapshot_mib="$(du -cm "$data"/snap-*.snap | tail -1 | cut -f1)"
log_after_snapshot_mib="$(du -cm "$data"/seg-*.log | tail -1 | cut -f1)"
recover "snapshot, no log tail" "$data" "$KEYS" "${no_snapshot[@]}"
# Overwrite $TAIL_OPS keys after the snapshot so that recovery replays a log tail.
python3 "$BENCH_DIR/load_keys.py" "$resp" "$TAIL_OPS" xyz >/dev/null
kill9 "$MERIDIAN_PID"
recover "snapshot + replay of $TAIL_OPS ops" "$data" "$KEYS" "${no_snapshot[@]}"
kill9 "$MERIDIAN_PID"

# redis-server for context, same keys: AOF (appendonly yes, everysec) and RDB.
rport="$(free_port)"
rdir="$WORK/redis-data"
start_redis "$rport" "$rdir" --save '' --appendonly yes --appendfsync everysec
python3 "$BENCH_DIR/load_keys.py" "$rport" "$KEYS" >/dev/null
redis_rss="$(rss_kb "$REDIS_PID")"
redis-cli -p "$rport" SAVE >/dev/null
kill9 "$REDIS_PID"
time_redis() {
    local label="$1" started times ready_s keys_s
    shift
    started="$(now)"
    redis-server --port "$rport" --bind 127.0.0.1 --dir "$rdir" "$@" >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    times="$(python3 "$BENCH_DIR/wait_recovered.py" "$started" "$REDIS_PID" "$rport" - "$KEYS")"
    read -r ready_s keys_s <<<"$times"
    echo "| $label | $ready_s | $keys_s | | | $(($(rss_kb "$REDIS_PID") / 1024)) |" >>"$rows"
    echo "$label: ready after ${ready_s}s"
    kill9 "$REDIS_PID"
}
time_redis "redis-server: AOF load (appendonly yes)" --save '' --appendonly yes --appendfsync everysec
time_redis "redis-server: RDB load (dump.rdb)" --save '' --appendonly no

{
    echo
    echo "Keys loaded with \`bench/load_keys.py\` (pipelined \`SET key:NNNNNNNNN abc\`): $load_line."
    echo "Meridian RSS $((rss_empty / 1024)) MiB empty, $((rss_loaded / 1024)) MiB after the load; op log $log_mib MiB."
    echo "Snapshot ($how): $snapshot_mib MiB, op log left after it $log_after_snapshot_mib MiB."
    echo "redis-server RSS with the same keys: $((redis_rss / 1024)) MiB."
    echo
    echo "Seconds from process start until \`/health/ready\` answers 200 (Meridian; redis-server: PING answers PONG, i.e. loading finished) and until the key count is $KEYS, polled every 5 ms by \`bench/wait_recovered.py\`. \"store open\" is Meridian's own figure from its \`recovered\` log line (snapshot load + log scan + replay)."
    echo
    echo "| Run | ready (s) | $KEYS keys (s) | store open (ms) | ops replayed | RSS after (MiB) |"
    echo "|---|---|---|---|---|---|"
    cat "$rows"
} >>"$out"
{ echo; echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the 2 CPUs are shared with other jobs)"; } >>"$out"
write_section recovery "$out"
cat "$out"
