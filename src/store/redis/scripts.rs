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

// KEYS[1] = run hash; ARGV = status, updated_at, has_error, error, has_result, result. 0: no run.
pub(super) const FINISH_STATUS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[2])
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'result', ARGV[6]) end
return 1";

// KEYS[1] = run hash, KEYS[2] = its event list; ARGV = the events. Returns the list's new length,
// or -1: no run.
// One RPUSH per event: `unpack` of thousands of arguments overflows Lua's stack.
pub(super) const APPEND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local length = 0
for i = 1, #ARGV do length = redis.call('RPUSH', KEYS[2], ARGV[i]) end
return length";

// KEYS[1] = run hash, KEYS[2] = its control key; ARGV[1] = the control, or '' to clear it. 0: no run.
pub(super) const SET_CONTROL: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[1]) end
return 1";

// KEYS[1] = run hash, KEYS[2] = its decision hash; ARGV = step_id, decision. -1: no run, 0: decided.
pub(super) const DECIDE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])";
