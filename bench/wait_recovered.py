#!/usr/bin/env python3
"""Times a restarting server: seconds from START until it is ready and until it holds KEYS keys.

Usage: wait_recovered.py START_EPOCH PID RESP_PORT HTTP_PORT|- KEYS
Ready means GET /health/ready answers 200 (Meridian) or, with HTTP_PORT "-",
PING answers PONG (redis-server answers -LOADING until its data is loaded).
The key count is DBSIZE, or Meridian's meridian_keys gauge where DBSIZE is
unknown. Prints "READY_S KEYS_S". Polls every 5 ms; talks to 127.0.0.1 only.
"""
import os
import socket
import sys
import time
import urllib.error
import urllib.request

POLL_S = 0.005
TIMEOUT_S = 300


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited too.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def command(port, *args):
    """One command on a fresh connection; the first reply line, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in args]))
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    return None
                data += chunk
            return data.split(b"\r\n")[0].decode()
    except OSError:
        return None


def http_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def key_count(resp, http):
    reply = command(resp, b"DBSIZE")
    if reply and reply.startswith(":"):
        return int(reply[1:])
    if http is not None:
        status, body = http_get(http, "/metrics")
        for line in body.splitlines() if status == 200 else []:
            if line.startswith("meridian_keys "):
                return int(float(line.split()[1]))
    return None


def main():
    start, pid, resp, http, keys = sys.argv[1:6]
    start, pid, resp, keys = float(start), int(pid), int(resp), int(keys)
    http = None if http == "-" else int(http)
    deadline = start + TIMEOUT_S

    def wait(check, what):
        while not check():
            if not alive(pid):
                sys.exit("server %d exited while waiting for %s" % (pid, what))
            if time.time() > deadline:
                sys.exit("timed out waiting for %s" % what)
            time.sleep(POLL_S)
        return time.time() - start

    if http is None:
        ready = wait(lambda: command(resp, b"PING") == "+PONG", "PING")
    else:
        ready = wait(lambda: http_get(http, "/health/ready")[0] == 200, "/health/ready")
    loaded = wait(lambda: key_count(resp, http) == keys, "%d keys" % keys)
    print("%.3f %.3f" % (ready, loaded))


if __name__ == "__main__":
    main()
