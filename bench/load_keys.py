#!/usr/bin/env python3
"""Loads N string keys into a RESP server, pipelined: SET key:NNNNNNNNN <value>.

Usage: load_keys.py PORT COUNT [VALUE] [START]
Keys are key:%09d for START..START+COUNT-1; VALUE defaults to "abc" (3 bytes).
Exits non-zero unless every SET is answered +OK. Talks to 127.0.0.1 only.
"""
import socket
import sys
import time

CHUNK = 10_000


def main():
    port = int(sys.argv[1])
    count = int(sys.argv[2])
    value = (sys.argv[3] if len(sys.argv) > 3 else "abc").encode()
    start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tail = b"\r\n$%d\r\n%s\r\n" % (len(value), value)
    began = time.monotonic()
    for base in range(start, start + count, CHUNK):
        n = min(CHUNK, start + count - base)
        payload = b"".join(
            b"*3\r\n$3\r\nSET\r\n$13\r\nkey:%09d" % i + tail for i in range(base, base + n)
        )
        sock.sendall(payload)
        want = b"+OK\r\n" * n
        got = bytearray()
        while len(got) < len(want):
            data = sock.recv(1 << 20)
            if not data:
                sys.exit("server closed the connection")
            got += data
        if bytes(got) != want:
            sys.exit("unexpected reply near key:%09d: %r" % (base, bytes(got[:200])))
    elapsed = time.monotonic() - began
    print("loaded %d keys in %.2fs (%.0f keys/s)" % (count, elapsed, count / elapsed))


if __name__ == "__main__":
    main()
