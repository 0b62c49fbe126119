-- wrk script of bench/run: the request from the environment, and a machine-readable summary.
--
--   BENCH_METHOD      request method (default GET)
--   BENCH_TOKEN       sends "Authorization: Bearer <token>" when set
--   BENCH_CTYPE       Content-Type of the body (default application/json)
--   BENCH_BODY        one fixed body
--   BENCH_BODY_LIST   a file with one body per line: each request sends the next line of this
--                     thread's share (line i goes to thread i mod BENCH_THREADS), cycling after
--                     the last one, like `qps --body-list`; done() reports how often a thread
--                     wrapped around
--   BENCH_TOKEN_LIST  a file with one session token per line: each request is sent as the
--                     next user of this thread's share (split and cycled the same way), like
--                     `qps --token-list`; instead of BENCH_TOKEN, with BENCH_BODY or with
--                     BENCH_BODY_LIST (then each request takes the next body and the next token)
--   BENCH_THREADS     wrk's -t (needed with BENCH_BODY_LIST or BENCH_TOKEN_LIST)
--
-- Without BENCH_BODY_LIST and BENCH_TOKEN_LIST there is no request() function: wrk sends one
-- pre-built request and calls no Lua per request, so the script costs nothing while the load
-- runs.

local method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN")
local ctype = os.getenv("BENCH_CTYPE") or "application/json"
local body = os.getenv("BENCH_BODY")
local list = os.getenv("BENCH_BODY_LIST")
local token_list = os.getenv("BENCH_TOKEN_LIST")
if list == "" then list = nil end
if token_list == "" then token_list = nil end

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

-- This thread's share of a list file: its non-empty lines i with i mod nthreads == id.
local function share(path, what, nthreads)
  local mine = {}
  local i = 0
  for line in io.lines(path) do
    if line ~= "" then
      if i % nthreads == id then
        mine[#mine + 1] = line
      end
      i = i + 1
    end
  end
  if #mine == 0 then
    error(what .. " " .. path .. ": no line for thread " .. id)
  end
  return mine
end

if list or token_list then
  function init(args)
    local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
    wrapped = 0
    -- headers is the table every request is formatted from: per request only the
    -- Authorization entry changes (a token list), the body is passed along.
    headers = {}
    for k, v in pairs(wrk.headers) do
      headers[k] = v
    end
    if list then
      bodies = share(list, "BENCH_BODY_LIST", nthreads)
      headers["Content-Type"] = ctype
      pos = 0
    end
    if token_list then
      -- Whole header values, built once: no string concatenation per request.
      auths = share(token_list, "BENCH_TOKEN_LIST", nthreads)
      for k, t in ipairs(auths) do
        auths[k] = "Bearer " .. t:match("^%s*(.-)%s*$")
      end
      tpos = 0
    end
  end

  function request()
    local b = nil
    if bodies then
      pos = pos + 1
      if pos > #bodies then
        pos = 1
        wrapped = wrapped + 1
      end
      b = bodies[pos]
    end
    if auths then
      tpos = tpos % #auths + 1
      headers["Authorization"] = auths[tpos]
    end
    return wrk.format(method, nil, headers, b)
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
