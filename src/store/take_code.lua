-- Take an authorization code: check, consume and mark used, in one atomic step.
-- Mirrors record::check in src/contract/record.rs; both stores run the same tests.
-- A member named twice counts by its last occurrence (cjson); CodeRecord::parse
-- reads it the same way, so the two stores never disagree on a record.
--
-- KEYS[1]  <prefix>code:{<code>}   the record written by the login frontend
-- KEYS[2]  <prefix>used:{<code>}   the used marker (same hash tag, same slot)
-- ARGV[1]  authenticated client_id
-- ARGV[2]  "1" if the request carried redirect_uri, else "0"
-- ARGV[3]  redirect_uri (empty when ARGV[2] is "0")
-- ARGV[4]  BASE64URL(SHA256(code_verifier)), computed by the service
-- ARGV[5]  code_verifier (compared only for the plain method)
-- ARGV[6]  "1" if this client may use the plain method, else "0"
-- ARGV[7]  the used marker's value: "<grant_id> <tokens_expire_at>"
-- ARGV[8]  the used marker's TTL in seconds
--
-- Answers {"taken", record} | {"unknown"} | {"replay", marker}
--       | {"bad_record", reason} | {<mismatch word>}
-- A mismatch leaves the record in place: holding the code alone must not be
-- enough to destroy it.

local raw = redis.call('GET', KEYS[1])
if not raw then
  local marker = redis.call('GET', KEYS[2])
  if marker then
    return {'replay', marker}
  end
  return {'unknown'}
end

local function bad(reason)
  redis.call('DEL', KEYS[1])
  return {'bad_record', reason}
end

local ok, rec = pcall(cjson.decode, raw)
if not ok then
  return bad('record is not valid JSON')
end
if type(rec) ~= 'table' then
  return bad('record is not a JSON object')
end
if type(rec.client_id) ~= 'string' then
  return bad('client_id is missing or not a string')
end
if type(rec.code_challenge) ~= 'string' then
  return bad('code_challenge is missing or not a string')
end
local method = rec.code_challenge_method
if method ~= 'S256' and method ~= 'plain' then
  return bad('code_challenge_method is missing or not S256 or plain')
end
local stored_uri = rec.redirect_uri
if stored_uri == cjson.null then
  stored_uri = nil
end
if stored_uri ~= nil and type(stored_uri) ~= 'string' then
  return bad('redirect_uri is not a string')
end

if rec.client_id ~= ARGV[1] then
  return {'client_mismatch'}
end
if stored_uri == nil then
  if ARGV[2] == '1' then
    return {'redirect_mismatch'}
  end
elseif ARGV[2] ~= '1' or stored_uri ~= ARGV[3] then
  return {'redirect_mismatch'}
end

local expected
if method == 'S256' then
  expected = ARGV[4]
else
  if ARGV[6] ~= '1' then
    return {'plain_not_allowed'}
  end
  expected = ARGV[5]
end
-- Compare digests of the two values, not the values: the time the comparison
-- takes then says nothing about a prefix an attacker could choose. The
-- service compares again in constant time once it holds the record.
if redis.sha1hex(rec.code_challenge) ~= redis.sha1hex(expected) then
  return {'pkce_mismatch'}
end

redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[7], 'EX', ARGV[8])
return {'taken', raw}
