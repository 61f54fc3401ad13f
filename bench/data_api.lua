-- wrk script for bench/data-api.sh: POST / with GET or SET (WRK_OP) of a
-- random key out of WRK_KEYS, authorized with WRK_TOKEN, on keep-alive
-- connections.
local op = os.getenv("WRK_OP") or "GET"
local keys = tonumber(os.getenv("WRK_KEYS") or "10000")
local headers = {
  ["Authorization"] = "Bearer " .. (os.getenv("WRK_TOKEN") or ""),
  ["Content-Type"] = "application/json",
}
local errors = 0

request = function()
  local key = "key:" .. math.random(0, keys - 1)
  local body
  if op == "SET" then
    body = '["SET","' .. key .. '","xxx"]'
  else
    body = '["GET","' .. key .. '"]'
  end
  return wrk.format("POST", "/", headers, body)
end

response = function(status, _, _)
  if status ~= 200 then
    errors = errors + 1
  end
end

done = function(summary, latency, _)
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d non200=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.status))
end
