-- wrk script for the ack-path benchmark: POSTs pre-signed, distinct Stripe deliveries.
--
-- BENCH_BODIES: a file of lines "<Stripe-Signature header>\t<JSON body>" (signed just before the run).
-- BENCH_PATH:   the webhook path (default /webhooks/stripe).
-- BENCH_RATE:   total requests per second across threads; 0 = as fast as the server answers.
-- Each wrk thread takes a disjoint slice of the bodies and stops before it could reuse one, so every
-- request is a distinct event (the load is bounded by count as well as by wrk's -d duration).
-- done() prints one line "BENCH_RESULT {json}" with counts and latency percentiles (microseconds).

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local path = os.getenv("BENCH_PATH") or "/webhooks/stripe"
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local requests_ = {}
local limit = 0
local index = 0
local responses = 0
non2xx = 0
statuses = ""
t_first = 0
t_stop = 0
local status_counts = {}

function init(args)
  local total_threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local connections = tonumber(os.getenv("BENCH_CONNECTIONS") or "1")
  local lines = {}
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    lines[#lines + 1] = line
  end
  local per = math.floor(#lines / total_threads)
  local first = (tid - 1) * per
  for i = 1, per do
    local line = lines[first + i]
    local tab = line:find("\t", 1, true)
    local headers = {
      ["Stripe-Signature"] = line:sub(1, tab - 1),
      ["Content-Type"] = "application/json",
    }
    requests_[i] = wrk.format("POST", path, headers, line:sub(tab + 1))
  end
  -- In flight when we stop: at most this thread's connections; keep those within the slice too.
  limit = per - math.ceil(connections / total_threads) - 1
  lines = nil
  collectgarbage()
end

if rate > 0 then
  local interval
  local next_slot
  -- An open-ish loop: requests go out on a fixed schedule (this thread's share of BENCH_RATE),
  -- whatever the responses do; when the server falls behind the schedule restarts from now.
  function delay()
    local total_threads = tonumber(os.getenv("BENCH_THREADS") or "1")
    interval = interval or (1000.0 * total_threads / rate)
    local now = now_ms()
    if next_slot == nil or next_slot < now then
      next_slot = now
    end
    local wait = next_slot - now
    next_slot = next_slot + interval
    return wait
  end
end

function request()
  if index == 0 then
    t_first = now_ms()
  end
  index = index + 1
  return requests_[index]
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    status_counts[status] = (status_counts[status] or 0) + 1
    local parts = {}
    for code, n in pairs(status_counts) do
      parts[#parts + 1] = code .. ":" .. n
    end
    statuses = table.concat(parts, ",")
  end
  if responses >= limit then
    t_stop = now_ms()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total_non2xx = 0
  local all_statuses = {}
  local first, stop, stopped = nil, 0, 0
  for _, thread in ipairs(threads) do
    local f = tonumber(thread:get("t_first")) or 0
    if f > 0 and (first == nil or f < first) then
      first = f
    end
    local st = tonumber(thread:get("t_stop")) or 0
    if st > 0 then
      stopped = stopped + 1
      if st > stop then
        stop = st
      end
    end
    total_non2xx = total_non2xx + (tonumber(thread:get("non2xx")) or 0)
    local s = thread:get("statuses")
    if s and s ~= "" then
      all_statuses[#all_statuses + 1] = s
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"non2xx": %d, "statuses": "%s", "threads_stopped_by_count": %d, "count_span_ms": %.1f, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    total_non2xx, table.concat(all_statuses, ","), stopped, (stopped > 0 and first) and (stop - first) or 0,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
