# Helpers the bench scripts source: release build, loopback ports, starting and reaping servers, RSS and key counts, RESULTS.md sections.
# Everything binds 127.0.0.1; every process started here is killed on exit.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# MERIDIAN_BIN=/path/to/meridian measures that binary instead of building this tree
# (MERIDIAN_BIN_COMMIT=sha says what it was built from).
PREBUILT="${MERIDIAN_BIN:+yes}"
MERIDIAN_BIN="${MERIDIAN_BIN:-$TARGET_DIR/release/meridian}"
RESULTS="${RESULTS:-$BENCH_DIR/RESULTS.md}"

WORK="$(mktemp -d)"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in redis-server redis-cli redis-benchmark python3 curl cargo; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

build_release() {
    [ -n "$PREBUILT" ] || (cd "$ROOT" && cargo build --release --quiet -p meridian)
}

now() { date +%s.%N; }

elapsed_since() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Forgets a pid once it has been reaped.
forget() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}

kill9() {
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

# start_meridian DATA_DIR RESP_PORT HTTP_PORT [flags...]: sets MERIDIAN_PID; does not wait. Logs (JSON) go to $WORK/meridian.err.
start_meridian() {
    local dir="$1" resp="$2" http="$3"
    shift 3
    MERIDIAN_LOG=info "$MERIDIAN_BIN" serve --data-dir "$dir" --log-format json \
        --listen "127.0.0.1:$resp" --http "127.0.0.1:$http" --repl "127.0.0.1:$(free_port)" "$@" \
        >>"$WORK/meridian.out" 2>>"$WORK/meridian.err" &
    MERIDIAN_PID=$!
    PIDS+=("$MERIDIAN_PID")
}

# wait_ready HTTP_PORT PID: until /health/ready answers 200 (120 s at most).
wait_ready() {
    local deadline=$((SECONDS + 120))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health/ready")" = 200 ]; do
        kill -0 "$2" 2>/dev/null || { echo "meridian exited; see its log:" >&2; tail -5 "$WORK/meridian.err" >&2; exit 1; }
        [ "$SECONDS" -lt "$deadline" ] || { echo "meridian not ready after 120 s" >&2; exit 1; }
        sleep 0.01
    done
}

# start_redis PORT DIR [flags...]: sets REDIS_PID and waits for PING.
start_redis() {
    local port="$1" dir="$2"
    shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize no "$@" \
        >>"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    local deadline=$((SECONDS + 120))
    until [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ]; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "redis-server not up after 120 s" >&2; exit 1; }
        sleep 0.01
    done
}

# key_count RESP_PORT HTTP_PORT: DBSIZE, or the meridian_keys gauge where DBSIZE is not available.
key_count() {
    local n
    n="$(redis-cli -p "$1" DBSIZE 2>/dev/null || true)"
    if [[ "$n" =~ ^[0-9]+$ ]]; then
        echo "$n"
    else
        curl -s "http://127.0.0.1:$2/metrics" | awk '$1 == "meridian_keys" { printf "%d\n", $2 }'
    fi
}

metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { printf "%d\n", $2 }'; }

machine_info() {
    local cpu mem commit dirty=""
    cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    mem="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    commit="$(git -C "$ROOT" rev-parse --short HEAD)"
    git -C "$ROOT" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || dirty=" + uncommitted changes in crates/"
    echo "- Date: $(date -u)"
    echo "- Machine: $(nproc) CPUs ($cpu), $mem RAM, $(uname -sr); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ -n "$PREBUILT" ]; then
        echo "- Meridian: prebuilt \`$MERIDIAN_BIN\` ($("$MERIDIAN_BIN" --version)), built from commit ${MERIDIAN_BIN_COMMIT:-unknown (set MERIDIAN_BIN_COMMIT)}; bench scripts from $commit"
    else
        echo "- Meridian: release build of $commit$dirty"
    fi
    echo "- $(redis-server --version | cut -d' ' -f1-3), $(redis-benchmark --version)"
}

# write_section NAME FILE: puts FILE between the NAME markers of RESULTS.md, replacing what was there.
write_section() {
    python3 - "$RESULTS" "$1" "$2" <<'PY'
import os, sys
path, name, body_file = sys.argv[1:4]
begin, end = "<!-- BEGIN %s -->" % name, "<!-- END %s -->" % name
body = open(body_file).read().rstrip("\n")
text = open(path).read() if os.path.exists(path) else "# Meridian benchmark results\n"
block = "%s\n%s\n%s" % (begin, body, end)
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
}

# log_field NAME: the last value of a numeric field in Meridian's JSON log, or "?".
log_field() { grep -o "\"$1\":[0-9]*" "$WORK/meridian.err" | tail -1 | cut -d: -f2 || echo "?"; }
