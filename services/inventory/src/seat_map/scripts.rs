//! The Lua scripts that read and write the cached maps in Redis, one
//! round trip each, and what a read finds.

use std::collections::HashSet;
use std::sync::LazyLock;

use redis::Script;

use super::view::StoredSeatMap;

/// The value stored in a version key for a concert that does not exist.
pub(super) const MISSING: &str = "missing";

/// One round trip for a read: the version, the map of that version (only
/// when `ARGV[2]` is `1`: a read that has the map in the process asks for
/// the version and the holds alone), and the seats held right now. The map
/// key is built from the version inside the script; it shares the
/// concert's hash tag, so it is on the same slot.
pub(super) static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local version = redis.call('GET', KEYS[1])
        local map = false
        if ARGV[2] == '1' and version and version ~= 'missing' then
            map = redis.call('GET', ARGV[1] .. version)
        end
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local held = {}
        local entries = redis.call('HGETALL', KEYS[2])
        for i = 1, #entries, 2 do
            if tonumber(entries[i + 1]) > now then
                held[#held + 1] = entries[i]
            end
        end
        return {version, map, held}
        ",
    )
});

/// Sets the version key to `ARGV[1]` unless it already holds a higher
/// version: versions only move forward, whoever writes last.
const SET_VERSION_UPWARDS: &str = r"
        local current = redis.call('GET', KEYS[1])
        if current and current ~= 'missing' and tonumber(current) > tonumber(ARGV[1]) then
            return 0
        end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return 1
";

pub(super) static BUMP: LazyLock<Script> = LazyLock::new(|| Script::new(SET_VERSION_UPWARDS));

/// Stores a map under its version's key, then moves the version key up to
/// it (or leaves it, if a newer version is already there).
pub(super) static STORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
        redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
        {SET_VERSION_UPWARDS}
        "
    ))
});

/// Extends the life of a cached map of version `ARGV[1]` (`KEYS[2]`) and
/// of the version key: returns 0, touching nothing, if that map is not
/// cached. The version key moves only upwards, as in [`BUMP`].
pub(super) static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
        if redis.call('PEXPIRE', KEYS[2], ARGV[3]) == 0 then
            return 0
        end
        {SET_VERSION_UPWARDS}
        "
    ))
});

/// What a read of the version and the holds found.
pub(super) enum Head {
    /// The version key says the concert does not exist.
    Missing,
    /// No version key: the map must be read in full (or loaded).
    Unversioned,
    /// The current version, and the seats held right now.
    Current { version: i64, held: HashSet<String> },
}

/// What a read found.
pub(super) enum Read {
    /// The version key says the concert does not exist.
    Missing,
    /// No map cached for the current version (or no version key).
    Miss { held: HashSet<String> },
    Hit {
        map: StoredSeatMap,
        held: HashSet<String>,
    },
}
