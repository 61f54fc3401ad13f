"""Drives Meridian's REST data API with upstash-redis (PyPI), unchanged.

Usage: python3 upstash_py_check.py URL FULL_TOKEN READONLY_TOKEN
"""

import sys

from upstash_redis import Redis
from upstash_redis.errors import UpstashError

url, token, readonly_token = sys.argv[1:4]


def refused(call, needle):
    try:
        call()
    except UpstashError as e:
        assert needle in str(e), f"{needle!r} not in {e}"
        return
    raise AssertionError(f"expected an error containing {needle!r}")


for name, encoding in [("base64", "base64"), ("json", None)]:
    r = Redis(url=url, token=token, rest_encoding=encoding, rest_retries=0)

    def k(s):
        return f"py:{name}:{s}"

    assert r.set(k("s"), "hello wörld \x00 ✓") is True
    assert r.get(k("s")) == "hello wörld \x00 ✓"
    assert r.get(k("missing")) is None
    assert r.incr(k("n")) == 1
    assert r.incrby(k("n"), 41) == 42
    assert r.expire(k("n"), 100) is True
    assert 90 < r.ttl(k("n")) <= 100
    assert r.ping() == "PONG"
    assert r.hset(k("h"), values={"f1": "v1", "f2": "v2"}) == 2
    assert r.hgetall(k("h")) == {"f1": "v1", "f2": "v2"}
    assert r.rpush(k("l"), "a", "b", "c") == 3
    assert r.lrange(k("l"), 0, -1) == ["a", "b", "c"]
    assert r.sadd(k("set"), "x", "y", "x") == 2
    assert sorted(r.smembers(k("set"))) == ["x", "y"]
    assert r.zadd(k("z"), {"a": 1.5, "b": 3}) == 2
    assert r.zrange(k("z"), 0, -1, withscores=True) == [("a", 1.5), ("b", 3.0)]
    assert r.zscore(k("z"), "a") == 1.5
    assert r.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", [k("ev")], [5]) == 5
    sha = r.script_load("return redis.call('GET', KEYS[1])")
    assert r.evalsha(sha, [k("s")]) == "hello wörld \x00 ✓"
    p = r.pipeline()
    p.set(k("p"), "one")
    p.append(k("p"), "two")
    p.get(k("p"))
    assert p.exec() == [True, 6, "onetwo"]
    tx = r.multi()
    tx.set(k("t"), "1")
    tx.incr(k("t"))
    assert tx.exec() == [True, 2]
    refused(lambda: r.incr(k("s")), "not an integer")
    print(f"ok {name}")

wrong = Redis(url=url, token="not-the-right-token-at-all", rest_retries=0)
refused(lambda: wrong.get("py:base64:s"), "Bearer")
ro = Redis(url=url, token=readonly_token, rest_retries=0)
assert ro.get("py:base64:s") == "hello wörld \x00 ✓"
refused(lambda: ro.set("py:ro", "x"), "NOPERM")
refused(lambda: ro.eval("return redis.call('SET', KEYS[1], 'x')", ["py:ro"]), "can't run this command")
print("ok tokens")
