// Drives Meridian's REST data API with @upstash/redis, unchanged.
// Usage: node upstash_js_check.mjs URL FULL_TOKEN READONLY_TOKEN
import assert from "node:assert/strict";
import { Redis } from "@upstash/redis";

const [url, token, readonlyToken] = process.argv.slice(2);
const noRetry = { retries: 0, backoff: () => 0 };
// The SDK's default: base64 responses, automatic JSON deserialization.
const redis = new Redis({ url, token, retry: noRetry });
// Plain JSON responses.
const plain = new Redis({ url, token, retry: noRetry, responseEncoding: false });

for (const [name, r] of [["base64", redis], ["json", plain]]) {
  const k = (s) => `js:${name}:${s}`;
  // Strings, binary-safe text, counters, expiry.
  assert.equal(await r.set(k("s"), "hello wörld \u0000 ✓"), "OK");
  assert.equal(await r.get(k("s")), "hello wörld \u0000 ✓");
  assert.equal(await r.get(k("missing")), null);
  assert.equal(await r.incr(k("n")), 1);
  assert.equal(await r.incrby(k("n"), 41), 42);
  assert.equal(await r.expire(k("n"), 100), 1);
  const ttl = await r.ttl(k("n"));
  assert.ok(ttl > 90 && ttl <= 100, `ttl ${ttl}`);
  assert.equal(await r.set(k("obj"), { a: 1, b: [2, 3] }), "OK");
  assert.deepEqual(await r.get(k("obj")), { a: 1, b: [2, 3] });
  assert.equal(await r.ping(), "PONG");
  // Hashes.
  assert.equal(await r.hset(k("h"), { f1: "v1", f2: "v2" }), 2);
  assert.equal(await r.hget(k("h"), "f1"), "v1");
  assert.deepEqual(await r.hgetall(k("h")), { f1: "v1", f2: "v2" });
  // Lists.
  assert.equal(await r.rpush(k("l"), "a", "b", "c"), 3);
  assert.equal(await r.lpush(k("l"), "z"), 4);
  assert.deepEqual(await r.lrange(k("l"), 0, -1), ["z", "a", "b", "c"]);
  assert.equal(await r.lpop(k("l")), "z");
  // Sets.
  assert.equal(await r.sadd(k("set"), "x", "y", "x"), 2);
  assert.deepEqual((await r.smembers(k("set"))).sort(), ["x", "y"]);
  assert.equal(await r.sismember(k("set"), "y"), 1);
  // Sorted sets, scores as RESP2 renders them.
  assert.equal(await r.zadd(k("z"), { score: 1.5, member: "a" }, { score: 3, member: "b" }), 2);
  assert.deepEqual(await r.zrange(k("z"), 0, -1, { withScores: true }), ["a", 1.5, "b", 3]);
  assert.equal(await r.zscore(k("z"), "a"), 1.5);
  assert.equal(await r.zincrby(k("z"), 2, "a"), 3.5);
  // Scripts: EVAL, and the SDK's Script (EVALSHA, EVAL after NOSCRIPT).
  assert.equal(await r.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", [k("ev")], [5]), 5);
  const script = r.createScript("return redis.call('GET', KEYS[1])");
  assert.equal(await script.exec([k("s")], []), "hello wörld \u0000 ✓");
  assert.equal(await script.exec([k("s")], []), "hello wörld \u0000 ✓");
  // A pipeline: each command on its own, an error in one leaves the others.
  const p = r.pipeline();
  p.set(k("p1"), "one");
  p.incr(k("p1"));
  p.get(k("p1"));
  const results = await p.exec({ keepErrors: true });
  assert.equal(results[0].result, "OK");
  assert.match(results[1].error, /not an integer/);
  assert.equal(results[2].result, "one");
  // A transaction.
  const tx = r.multi();
  tx.set(k("t"), "1");
  tx.incr(k("t"));
  tx.get(k("t"));
  assert.deepEqual(await tx.exec(), ["OK", 2, 2]);
  // A command error.
  await assert.rejects(r.incr(k("s")), /not an integer/);
  console.log(`ok ${name}`);
}

// A wrong token is refused with 401 and a JSON error.
const wrong = new Redis({ url, token: "not-the-right-token-at-all", retry: noRetry });
await assert.rejects(wrong.get("js:base64:s"), /Bearer/);
// The read-only token reads but may not write, nor write from a script.
const ro = new Redis({ url, token: readonlyToken, retry: noRetry });
assert.equal(await ro.get("js:base64:s"), "hello wörld \u0000 ✓");
await assert.rejects(ro.set("js:ro", "x"), /NOPERM/);
await assert.rejects(ro.eval("return redis.call('SET', KEYS[1], 'x')", ["js:ro"], []), /can.t run this command/);
assert.equal(await redis.exists("js:ro"), 0);
console.log("ok tokens");
