//! What Redis holds for a hold, and the Lua scripts that grant and
//! release one atomically.

use std::sync::LazyLock;

use redis::Script;
use uuid::Uuid;

/// Limit, then `SET NX PX`, then the indexes (`KEYS`: the hold, the
/// concert's holds, the customer's holds on the concert). Returns `{1, expires_ms}`,
/// `{0, ms until the other hold lapses}` or `{-1, ms until the customer's
/// oldest hold lapses}`.
pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local hold, holds, customer = KEYS[1], KEYS[2], KEYS[3]
        local value, ttl, limit, seat = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZREMRANGEBYSCORE', customer, '-inf', now)
        if redis.call('ZCARD', customer) >= limit then
            local oldest = redis.call('ZRANGE', customer, 0, 0, 'WITHSCORES')
            return {-1, tonumber(oldest[2]) - now}
        end
        if not redis.call('SET', hold, value, 'NX', 'PX', ttl) then
            return {0, redis.call('PTTL', hold)}
        end
        local expires = now + ttl
        -- Drop lapsed entries while we are here: the index stays as small
        -- as the number of live holds.
        local entries = redis.call('HGETALL', holds)
        for i = 1, #entries, 2 do
            if tonumber(entries[i + 1]) <= now then redis.call('HDEL', holds, entries[i]) end
        end
        redis.call('HSET', holds, seat, expires)
        if redis.call('PTTL', holds) < ttl then redis.call('PEXPIRE', holds, ttl) end
        redis.call('ZADD', customer, expires, seat)
        if redis.call('PTTL', customer) < ttl then redis.call('PEXPIRE', customer, ttl) end
        return {1, expires}
        ",
    )
});

/// Compare-and-delete: only the owner's token releases a hold.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local value = redis.call('GET', KEYS[1])
        if not value or string.sub(value, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then
            return 0
        end
        redis.call('DEL', KEYS[1])
        redis.call('HDEL', KEYS[2], ARGV[2])
        redis.call('ZREM', KEYS[3], ARGV[2])
        return 1
        ",
    )
});

/// What the hold key holds: `token|fence|customer|expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HoldValue {
    pub(super) token: Uuid,
    pub(super) fence: i64,
    pub(super) customer: Uuid,
    pub(super) expires_ms: i64,
}

impl HoldValue {
    pub(super) fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.token, self.fence, self.customer, self.expires_ms
        )
    }

    pub(super) fn decode(value: &str) -> Option<Self> {
        let mut parts = value.split('|');
        let value = Self {
            token: parts.next()?.parse().ok()?,
            fence: parts.next()?.parse().ok()?,
            customer: parts.next()?.parse().ok()?,
            expires_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_values_round_trip() {
        let value = HoldValue {
            token: Uuid::new_v4(),
            fence: 42,
            customer: Uuid::new_v4(),
            expires_ms: 1_700_000_000_000,
        };
        assert_eq!(HoldValue::decode(&value.encode()), Some(value));
        assert_eq!(HoldValue::decode("x|1|2|3"), None);
        assert_eq!(HoldValue::decode(""), None);
    }
}
