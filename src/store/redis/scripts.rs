//! The Lua scripts behind the writes that must check that the run exists: check and write in one
//! atomic round trip. Each returns an integer.

// KEYS[1] = run hash, KEYS[2] = batten:runs, KEYS[3] = the workflow's run index; ARGV = run_id,
// created_at, then the hash's field/value pairs. 0: the run exists.
pub(super) const CREATE_RUN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1";

// KEYS[1] = run hash; ARGV = status, updated_at, has_error, error, has_result, result, fence ('' for
// none). 0: no run; -2 - token: the fence is not the run's held lease (its token is `token`).
pub(super) const FINISH_STATUS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[7] ~= '' then
  local f = redis.call('HMGET', KEYS[1], 'lease_token', 'lease_owner')
  local token = f[1] or '0'
  if token ~= ARGV[7] or not f[2] then return -2 - tonumber(token) end
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[2])
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'result', ARGV[6]) end
return 1";

// KEYS[1] = run hash, KEYS[2] = its event list; ARGV = the fence ('' for none), then the events.
// Returns the list's new length; -1: no run; -2 - token: the fence is not the run's held lease.
// One RPUSH per event: `unpack` of thousands of arguments overflows Lua's stack.
pub(super) const APPEND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= '' then
  local f = redis.call('HMGET', KEYS[1], 'lease_token', 'lease_owner')
  local token = f[1] or '0'
  if token ~= ARGV[1] or not f[2] then return -2 - tonumber(token) end
end
local length = 0
for i = 2, #ARGV do length = redis.call('RPUSH', KEYS[2], ARGV[i]) end
return length";

// KEYS[1] = run hash; ARGV = now, expires_at, take_over ('' for none), owner JSON. nil: no run;
// else {won '1'/'0', token, owner, heartbeat_at, expires_at} of the lease now held.
pub(super) const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local f = redis.call('HMGET', KEYS[1], 'lease_token', 'lease_owner', 'lease_heartbeat', 'lease_expires')
local token = f[1] or '0'
if f[2] and tonumber(f[4]) > tonumber(ARGV[1]) and ARGV[3] ~= token then
  return {'0', token, f[2], f[3], f[4]}
end
token = tostring(tonumber(token) + 1)
redis.call('HSET', KEYS[1], 'lease_token', token, 'lease_owner', ARGV[4],
  'lease_heartbeat', ARGV[1], 'lease_expires', ARGV[2])
return {'1', token, ARGV[4], ARGV[1], ARGV[2]}";

// KEYS[1] = run hash; ARGV = token, now, expires_at. nil: no run; {'0', token}: not the held
// lease (the run's token is `token`); {'1', owner}: renewed.
pub(super) const RENEW: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local f = redis.call('HMGET', KEYS[1], 'lease_token', 'lease_owner')
local token = f[1] or '0'
if token ~= ARGV[1] or not f[2] then return {'0', token} end
redis.call('HSET', KEYS[1], 'lease_heartbeat', ARGV[2], 'lease_expires', ARGV[3])
return {'1', f[2]}";

// KEYS[1] = run hash; ARGV[1] = token. -1: no run; 0: not the held lease; 1: released.
pub(super) const RELEASE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local f = redis.call('HMGET', KEYS[1], 'lease_token', 'lease_owner')
if (f[1] or '0') ~= ARGV[1] or not f[2] then return 0 end
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_heartbeat', 'lease_expires')
return 1";

// KEYS[1] = run hash, KEYS[2] = its control key; ARGV[1] = the control, or '' to clear it. 0: no run.
pub(super) const SET_CONTROL: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[1]) end
return 1";

// KEYS[1] = run hash, KEYS[2] = its decision hash; ARGV = step_id, decision. -1: no run, 0: decided.
pub(super) const DECIDE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])";
