-- wrk script: POST /api/orders with a distinct JSON body per request and a Bearer token.
-- Environment: BENCH_TOKEN (access token), BENCH_PRODUCTS (comma-separated product ids),
-- BENCH_PHASE (tags the payment token tok_bench_<phase>_..., so the saga rows of a phase can be
-- counted), BENCH_DELAY_MS (optional think time per connection, paces a run to an approximate rate).
-- Every non-2xx response is counted by status; done() prints one JSON line after
-- "BENCH_WRK_JSON " that bench/stats.py parses (latencies in milliseconds).

local token = os.getenv("BENCH_TOKEN") or ""
local phase = os.getenv("BENCH_PHASE") or "run"
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
local products = {}
for id in string.gmatch(os.getenv("BENCH_PRODUCTS") or "SKU-0001", "[^,]+") do
  table.insert(products, id)
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  statuses = {}
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
end

function request()
  counter = counter + 1
  local product = products[(counter % #products) + 1]
  local body = string.format(
    '{"items":[{"product_id":"%s","quantity":1}],"payment":{"method":"card","token":"tok_bench_%s_%d_%d"}}',
    product, phase, tid, counter)
  return wrk.format("POST", "/api/orders", headers, body)
end

function response(status, hdrs, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses") or {}
    for code, n in pairs(counts) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, string.format('"%s":%d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"statuses":{%s},' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_ms":{"mean":%.3f,"p50":%.3f,"p90":%.3f,"p95":%.3f,"p99":%.3f,"max":%.3f,"stdev":%.3f}}\n',
    summary.duration, summary.requests, summary.bytes, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    latency.stdev / 1000))
end
