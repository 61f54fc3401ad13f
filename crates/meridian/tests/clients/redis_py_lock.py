"""redis-py's Lock against a running Meridian, in RESP2 and RESP3: acquire,
extend, reacquire and release run redis-py's own Lua scripts by EVALSHA
(loaded again after SCRIPT FLUSH answers NOSCRIPT).
Usage: redis_py_lock.py PORT"""

import sys
import time

import redis
from redis.exceptions import LockError, LockNotOwnedError


def check(protocol: int, port: int) -> int:
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, decode_responses=True)
    checks = 0

    def expect(got, want, what):
        nonlocal checks
        if got != want:
            raise AssertionError(f"RESP{protocol} {what}: got {got!r}, want {want!r}")
        checks += 1

    name = f"lock{protocol}:job"
    r.delete(name)
    first = r.lock(name, timeout=5)
    second = r.lock(name, timeout=5)
    expect(first.acquire(blocking=False), True, "acquire")
    token = r.get(name)
    mine = first.local.token
    mine = mine.decode() if isinstance(mine, bytes) else mine
    expect(token, mine, "token stored")
    expect(0 < r.pttl(name) <= 5000, True, "lock ttl")
    expect(second.acquire(blocking=False), False, "a held lock is not acquired twice")
    expect(second.acquire(blocking=True, blocking_timeout=0.2), False, "blocking acquire times out")
    expect(first.owned(), True, "owned")
    expect(second.owned(), False, "not owned by the other")

    # extend: adds to the remaining time, or replaces it.
    expect(first.extend(10), True, "extend")
    expect(5000 < r.pttl(name) <= 15000, True, "ttl after extend")
    expect(first.extend(2, replace_ttl=True), True, "extend replace_ttl")
    expect(0 < r.pttl(name) <= 2000, True, "ttl after replace")
    expect(first.reacquire(), True, "reacquire")
    expect(2000 < r.pttl(name) <= 5000, True, "ttl after reacquire")

    # The scripts run by EVALSHA: after SCRIPT FLUSH the server answers
    # NOSCRIPT and redis-py loads them again.
    expect(r.script_flush(), True, "script flush")
    expect(first.extend(1), True, "extend after SCRIPT FLUSH")

    # Only the owner releases.
    try:
        second.release()
        raise AssertionError("release of an unowned lock accepted")
    except LockError:
        checks += 1
    expect(r.get(name), token, "the owner still holds it")
    first.release()
    expect(r.exists(name), 0, "released")
    try:
        first.release()
        raise AssertionError("a second release accepted")
    except LockError:
        checks += 1
    try:
        first.extend(1)
        raise AssertionError("extend of a released lock accepted")
    except LockError:
        checks += 1

    # A lock that expires is free for the next owner, and the old owner's
    # release no longer removes it.
    short = r.lock(name, timeout=0.2)
    expect(short.acquire(blocking=False), True, "acquire with a short timeout")
    time.sleep(0.4)
    expect(second.acquire(blocking=False), True, "acquire after expiry")
    try:
        short.extend(1)
        raise AssertionError("extend by an expired owner accepted")
    except LockNotOwnedError:
        checks += 1
    try:
        short.reacquire()
        raise AssertionError("reacquire by an expired owner accepted")
    except LockNotOwnedError:
        checks += 1
    try:
        short.release()
        raise AssertionError("release by an expired owner accepted")
    except LockNotOwnedError:
        checks += 1
    expect(second.owned(), True, "the new owner keeps it")
    second.release()

    # The context manager.
    with r.lock(name, timeout=5, blocking_timeout=1) as held:
        expect(held.locked(), True, "locked inside with")
    expect(r.exists(name), 0, "released by with")
    return checks


def main() -> None:
    port = int(sys.argv[1])
    total = check(2, port) + check(3, port)
    print(f"redis-py {redis.__version__} Lock: {total} checks passed")


if __name__ == "__main__":
    main()
