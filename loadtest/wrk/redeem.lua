-- wrk as a second load generator for the same scenario: each request redeems
-- the next code of a seed file (`loadgen seed --out FILE`, NDJSON), once.
-- wrk is written in C and costs less CPU per request than loadgen, so on a
-- machine the service shares it shows how much the generator itself takes.
--
--   CODES_FILE=codes.ndjson wrk -t1 -c64 -d10s -s loadtest/wrk/redeem.lua http://127.0.0.1:8080
--
-- One thread (-t1): each wrk thread loads the file on its own, so more
-- threads would send the same codes. When the codes run out the thread
-- stops sending (wrk 4.1's thread:stop()) and the summary says so instead
-- of a rate: wrk still waits out -d, so its rates would undercount.
-- It checks what wrk can check cheaply: every answer was 2xx (wrk counts
-- the others as "Non-2xx"), and no code was sent twice.

local codes = {}
local next_code = 0
exhausted = false -- global: done() reads it with thread:get
local thread

local function form_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

function setup(t)
  thread = t
end

function init(args)
  local path = os.getenv("CODES_FILE") or error("set CODES_FILE to a seed file")
  local default_client = os.getenv("CLIENT_ID") or "loadtest"
  local n = 0
  for line in io.lines(path) do
    local code = line:match('"code":"([^"]+)"')
    if code then
      local body = "grant_type=authorization_code&code=" .. form_encode(code)
        .. "&client_id=" .. form_encode(line:match('"client_id":"([^"]+)"') or default_client)
        .. "&code_verifier=" .. form_encode(line:match('"code_verifier":"([^"]+)"'))
      local redirect = line:match('"redirect_uri":"([^"]+)"')
      if redirect then
        body = body .. "&redirect_uri=" .. form_encode(redirect)
      end
      n = n + 1
      codes[n] = wrk.format("POST", "/oauth/token",
        { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
    end
  end
end

function request()
  next_code = next_code + 1
  local r = codes[next_code]
  if r == nil then
    -- Out of codes: stop this thread once the answers in flight are in.
    -- Meanwhile the connections each send one request that cannot succeed
    -- (an unknown code, counted as Non-2xx); wrk needs a request here.
    exhausted = true
    return wrk.format("POST", "/oauth/token",
      { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=authorization_code&code=exhausted&client_id=x&code_verifier=x")
  end
  return r
end

function response(status, headers, body)
  if exhausted then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  if thread and thread:get("exhausted") then
    -- wrk still waits out -d, so its per-second figures undercount.
    io.write(string.format(
      "the codes ran out after %d requests: the thread stopped sending; "
        .. "wrk's rates are over the whole -d and do not count; seed more codes and run again\n",
      summary.requests))
    return
  end
  io.write(string.format(
    "redemptions: %d in %.2f s = %.0f/s; p50 %.2f ms, p99 %.2f ms; errors %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad))
end
