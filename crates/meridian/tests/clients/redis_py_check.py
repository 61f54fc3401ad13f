"""redis-py against a running Meridian, in RESP2 and RESP3: real client code,
connection pool, pipelines and transactions. Usage: redis_py_check.py PORT"""

import sys

import redis


def check(protocol: int, port: int) -> int:
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, decode_responses=True)
    checks = 0

    def expect(got, want, what):
        nonlocal checks
        if got != want:
            raise AssertionError(f"RESP{protocol} {what}: got {got!r}, want {want!r}")
        checks += 1

    prefix = f"py{protocol}:"
    expect(r.ping(), True, "ping")
    expect(r.set(prefix + "s", "v"), True, "set")
    expect(r.get(prefix + "s"), "v", "get")
    expect(r.incr(prefix + "n", 5), 5, "incr")
    expect(r.incrbyfloat(prefix + "f", 1.5), 1.5, "incrbyfloat")
    expect(r.set(prefix + "t", "x", ex=100), True, "set ex")
    ttl = r.ttl(prefix + "t")
    expect(0 < ttl <= 100, True, "ttl")
    expect(r.mset({prefix + "a": "1", prefix + "b": "2"}), True, "mset")
    expect(r.mget([prefix + "a", prefix + "b", prefix + "missing"]), ["1", "2", None], "mget")
    with r.pipeline(transaction=True) as p:
        p.set(prefix + "tx", "1").incr(prefix + "tx").get(prefix + "tx")
        expect(p.execute(), [True, 2, "2"], "multi/exec")
    with r.pipeline(transaction=False) as p:
        for i in range(100):
            p.set(f"{prefix}pipe{i}", i)
        expect(all(p.execute()), True, "pipeline")
    expect(r.get(prefix + "pipe99"), "99", "pipelined value")
    try:
        r.execute_command("NOSUCHCOMMAND")
        raise AssertionError("unknown command accepted")
    except redis.ResponseError as e:
        expect(str(e).startswith("unknown command"), True, "unknown command error")
    expect(r.delete(prefix + "s"), 1, "del")
    expect(r.exists(prefix + "s"), 0, "exists after del")
    return checks


def main() -> None:
    port = int(sys.argv[1])
    total = check(2, port) + check(3, port)
    print(f"redis-py {redis.__version__}: {total} checks passed")


if __name__ == "__main__":
    main()
