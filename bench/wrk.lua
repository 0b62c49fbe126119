-- wrk script of bench/run: the request from the environment, and a machine-readable summary.
--
--   BENCH_METHOD     request method (default GET)
--   BENCH_TOKEN      sends "Authorization: Bearer <token>" when set
--   BENCH_CTYPE      Content-Type of the body (default application/json)
--   BENCH_BODY       one fixed body
--   BENCH_BODY_LIST  a file with one body per line: each request sends the next line of this
--                    thread's share (line i goes to thread i mod BENCH_THREADS), cycling after
--                    the last one, like `qps --body-list`; done() reports how often a thread
--                    wrapped around
--   BENCH_THREADS    wrk's -t (needed with BENCH_BODY_LIST)
--
-- Without BENCH_BODY_LIST there is no request() function: wrk sends one pre-built request
-- and calls no Lua per request, so the script costs nothing while the load runs.

local method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN")
local ctype = os.getenv("BENCH_CTYPE") or "application/json"
local body = os.getenv("BENCH_BODY")
local list = os.getenv("BENCH_BODY_LIST")

wrk.method = method
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = ctype
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

if list and list ~= "" then
  function init(args)
    local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
    bodies = {}
    local i = 0
    for line in io.lines(list) do
      if line ~= "" then
        if i % nthreads == id then
          bodies[#bodies + 1] = line
        end
        i = i + 1
      end
    end
    if #bodies == 0 then
      error("BENCH_BODY_LIST " .. list .. ": no body for thread " .. id)
    end
    headers = { ["Content-Type"] = ctype }
    if token and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
    end
    pos = 0
    wrapped = 0
  end

  function request()
    pos = pos + 1
    if pos > #bodies then
      pos = 1
      wrapped = wrapped + 1
    end
    return wrk.format(method, nil, headers, bodies[pos])
  end
end

function done(summary, latency, requests)
  local wraps = 0
  for _, t in ipairs(threads) do
    wraps = wraps + (tonumber(t:get("wrapped")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"non2xx":%d,"wraps":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.timeout, e.status, wraps))
end
