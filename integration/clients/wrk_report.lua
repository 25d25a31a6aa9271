-- wrk script used by the harness (`clients::http::wrk`): prints one machine-readable summary
-- line at the end. Requests are wrk's default GET of the URL given on the command line.
-- WRK_MAX_REQUESTS=N: each thread stops after N responses and prints `WRK_CAP` (a request count
-- instead of a duration; requests in flight on the thread's other connections when it stops are
-- abandoned). The harness then sends SIGINT, which ends wrk's wait for the duration.
-- WRK_UNIQUE_PATH_PREFIX=/u/: every request gets a path of its own,
-- `<prefix><thread>/<n>/orders/<m>` (cardinality tests); WRK_OTHER_METHOD_EVERY=K: every K-th of
-- those requests uses a method of its own, `FOO` and letters (an extension method nginx accepts).
local unique_prefix = os.getenv("WRK_UNIQUE_PATH_PREFIX")
local other_every = tonumber(os.getenv("WRK_OTHER_METHOD_EVERY") or "")
if unique_prefix then
  local threads = 0
  setup = function(thread)
    threads = threads + 1
    thread:set("thread_id", threads)
  end
  local n = 0
  local letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
  request = function()
    n = n + 1
    local method = "GET"
    if other_every and n % other_every == 0 then
      method = "FOO"
      local k = n
      while k > 0 do
        local d = k % 26
        method = method .. letters:sub(d + 1, d + 1)
        k = math.floor(k / 26)
      end
    end
    local path = string.format("%s%d/%d/orders/%d", unique_prefix, thread_id or 0, n, (n * 7919) % 100003)
    return wrk.format(method, path)
  end
end
local max_requests = tonumber(os.getenv("WRK_MAX_REQUESTS") or "")
if max_requests then
  local seen = 0
  response = function(status, headers, body)
    seen = seen + 1
    if seen == max_requests then
      io.write("WRK_CAP\n")
      io.stdout:flush()
    end
    if seen >= max_requests then
      wrk.thread:stop()
    end
  end
end
done = function(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"latency_mean_us": %.1f, "latency_max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency.mean, latency.max))
end
