//! The command vocabulary: every name `db.operation.name` may take.
//!
//! Command names come from the client, so exporting them as sent would let any client mint
//! span names (and span-metric series) at will, and a password typed in the wrong place would
//! become a name. Only names in this table are exported, upper-cased; anything else is `_OTHER`
//! with no query text. The table is the command set of Redis 7.0 as its `COMMAND` reply lists
//! it, plus the commands later versions added that clients already send (Redis 7.2: `CLIENT
//! SETINFO`, `CLIENT NO-TOUCH`, `WAITAOF`; 7.4: the hash-field expiry commands; 8.x:
//! `HGETDEL`/`HGETEX`/`HSETEX`, vector sets, `CLUSTER SLOT-STATS`, `CLIENT
//! MAINT_NOTIFICATIONS`). Module commands (`JSON.GET`, `FT.SEARCH`, …) are `_OTHER`.
//!
//! Container commands (`CLIENT`, `CONFIG`, `SCRIPT`, …) are named with their subcommand, as the
//! conventions' examples do (`CLIENT SETINFO`); an unknown subcommand leaves the container's
//! name alone and counts as an argument.

/// Longest name or subcommand we look up (`GEORADIUSBYMEMBER_RO` is 20 bytes).
pub const MAX_NAME_BYTES: usize = 32;

/// Single-word commands, sorted (binary search). Containers are in [`CONTAINERS`] too.
const COMMANDS: &[&str] = &[
    "ACL",
    "APPEND",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITOP",
    "BITPOS",
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "COPY",
    "DBSIZE",
    "DEBUG",
    "DECR",
    "DECRBY",
    "DEL",
    "DISCARD",
    "DUMP",
    "ECHO",
    "EVAL",
    "EVALSHA",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXEC",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "FAILOVER",
    "FCALL",
    "FCALL_RO",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HELLO",
    "HEXISTS",
    "HEXPIRE",
    "HEXPIREAT",
    "HEXPIRETIME",
    "HGET",
    "HGETALL",
    "HGETDEL",
    "HGETEX",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HPERSIST",
    "HPEXPIRE",
    "HPEXPIREAT",
    "HPEXPIRETIME",
    "HPTTL",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETEX",
    "HSETNX",
    "HSTRLEN",
    "HTTL",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LATENCY",
    "LCS",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LMPOP",
    "LOLWUT",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MEMORY",
    "MGET",
    "MIGRATE",
    "MODULE",
    "MONITOR",
    "MOVE",
    "MSET",
    "MSETNX",
    "MULTI",
    "OBJECT",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PFADD",
    "PFCOUNT",
    "PFDEBUG",
    "PFMERGE",
    "PFSELFTEST",
    "PING",
    "PSETEX",
    "PSUBSCRIBE",
    "PSYNC",
    "PTTL",
    "PUBLISH",
    "PUBSUB",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "RENAME",
    "RENAMENX",
    "REPLCONF",
    "REPLICAOF",
    "RESET",
    "RESTORE",
    "RESTORE-ASKING",
    "ROLE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SAVE",
    "SCAN",
    "SCARD",
    "SCRIPT",
    "SDIFF",
    "SDIFFSTORE",
    "SELECT",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SHUTDOWN",
    "SINTER",
    "SINTERCARD",
    "SINTERSTORE",
    "SISMEMBER",
    "SLAVEOF",
    "SLOWLOG",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SORT_RO",
    "SPOP",
    "SPUBLISH",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "SSUBSCRIBE",
    "STRLEN",
    "SUBSCRIBE",
    "SUBSTR",
    "SUNION",
    "SUNIONSTORE",
    "SUNSUBSCRIBE",
    "SWAPDB",
    "SYNC",
    "TIME",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "UNSUBSCRIBE",
    "UNWATCH",
    "VADD",
    "VCARD",
    "VDIM",
    "VEMB",
    "VGETATTR",
    "VINFO",
    "VLINKS",
    "VRANDMEMBER",
    "VREM",
    "VSETATTR",
    "VSIM",
    "WAIT",
    "WAITAOF",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XGROUP",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREADGROUP",
    "XREVRANGE",
    "XSETID",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTER",
    "ZINTERCARD",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMPOP",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
    "ZUNIONSTORE",
];

/// Container commands and their two-word names, each list sorted by subcommand.
const CONTAINERS: &[(&str, &[&str])] = &[
    (
        "ACL",
        &[
            "ACL CAT",
            "ACL DELUSER",
            "ACL DRYRUN",
            "ACL GENPASS",
            "ACL GETUSER",
            "ACL HELP",
            "ACL LIST",
            "ACL LOAD",
            "ACL LOG",
            "ACL SAVE",
            "ACL SETUSER",
            "ACL USERS",
            "ACL WHOAMI",
        ],
    ),
    (
        "CLIENT",
        &[
            "CLIENT CACHING",
            "CLIENT CAPA",
            "CLIENT GETNAME",
            "CLIENT GETREDIR",
            "CLIENT HELP",
            "CLIENT ID",
            "CLIENT INFO",
            "CLIENT KILL",
            "CLIENT LIST",
            "CLIENT MAINT_NOTIFICATIONS",
            "CLIENT NO-EVICT",
            "CLIENT NO-TOUCH",
            "CLIENT PAUSE",
            "CLIENT REPLY",
            "CLIENT SETINFO",
            "CLIENT SETNAME",
            "CLIENT TRACKING",
            "CLIENT TRACKINGINFO",
            "CLIENT UNBLOCK",
            "CLIENT UNPAUSE",
        ],
    ),
    (
        "CLUSTER",
        &[
            "CLUSTER ADDSLOTS",
            "CLUSTER ADDSLOTSRANGE",
            "CLUSTER BUMPEPOCH",
            "CLUSTER COUNT-FAILURE-REPORTS",
            "CLUSTER COUNTKEYSINSLOT",
            "CLUSTER DELSLOTS",
            "CLUSTER DELSLOTSRANGE",
            "CLUSTER FAILOVER",
            "CLUSTER FLUSHSLOTS",
            "CLUSTER FORGET",
            "CLUSTER GETKEYSINSLOT",
            "CLUSTER HELP",
            "CLUSTER INFO",
            "CLUSTER KEYSLOT",
            "CLUSTER LINKS",
            "CLUSTER MEET",
            "CLUSTER MYID",
            "CLUSTER MYSHARDID",
            "CLUSTER NODES",
            "CLUSTER REPLICAS",
            "CLUSTER REPLICATE",
            "CLUSTER RESET",
            "CLUSTER SAVECONFIG",
            "CLUSTER SET-CONFIG-EPOCH",
            "CLUSTER SETSLOT",
            "CLUSTER SHARDS",
            "CLUSTER SLAVES",
            "CLUSTER SLOT-STATS",
            "CLUSTER SLOTS",
        ],
    ),
    (
        "COMMAND",
        &[
            "COMMAND COUNT",
            "COMMAND DOCS",
            "COMMAND GETKEYS",
            "COMMAND GETKEYSANDFLAGS",
            "COMMAND HELP",
            "COMMAND INFO",
            "COMMAND LIST",
        ],
    ),
    (
        "CONFIG",
        &[
            "CONFIG GET",
            "CONFIG HELP",
            "CONFIG RESETSTAT",
            "CONFIG REWRITE",
            "CONFIG SET",
        ],
    ),
    (
        "DEBUG",
        &[
            "DEBUG HELP",
            "DEBUG JMAP",
            "DEBUG OBJECT",
            "DEBUG RELOAD",
            "DEBUG SET-ACTIVE-EXPIRE",
            "DEBUG SLEEP",
        ],
    ),
    (
        "FUNCTION",
        &[
            "FUNCTION DELETE",
            "FUNCTION DUMP",
            "FUNCTION FLUSH",
            "FUNCTION HELP",
            "FUNCTION KILL",
            "FUNCTION LIST",
            "FUNCTION LOAD",
            "FUNCTION RESTORE",
            "FUNCTION STATS",
        ],
    ),
    (
        "LATENCY",
        &[
            "LATENCY DOCTOR",
            "LATENCY GRAPH",
            "LATENCY HELP",
            "LATENCY HISTOGRAM",
            "LATENCY HISTORY",
            "LATENCY LATEST",
            "LATENCY RESET",
        ],
    ),
    (
        "MEMORY",
        &[
            "MEMORY DOCTOR",
            "MEMORY HELP",
            "MEMORY MALLOC-STATS",
            "MEMORY PURGE",
            "MEMORY STATS",
            "MEMORY USAGE",
        ],
    ),
    (
        "MODULE",
        &[
            "MODULE HELP",
            "MODULE LIST",
            "MODULE LOAD",
            "MODULE LOADEX",
            "MODULE UNLOAD",
        ],
    ),
    (
        "OBJECT",
        &[
            "OBJECT ENCODING",
            "OBJECT FREQ",
            "OBJECT HELP",
            "OBJECT IDLETIME",
            "OBJECT REFCOUNT",
        ],
    ),
    (
        "PUBSUB",
        &[
            "PUBSUB CHANNELS",
            "PUBSUB HELP",
            "PUBSUB NUMPAT",
            "PUBSUB NUMSUB",
            "PUBSUB SHARDCHANNELS",
            "PUBSUB SHARDNUMSUB",
        ],
    ),
    (
        "SCRIPT",
        &[
            "SCRIPT DEBUG",
            "SCRIPT EXISTS",
            "SCRIPT FLUSH",
            "SCRIPT HELP",
            "SCRIPT KILL",
            "SCRIPT LOAD",
        ],
    ),
    (
        "SLOWLOG",
        &[
            "SLOWLOG GET",
            "SLOWLOG HELP",
            "SLOWLOG LEN",
            "SLOWLOG RESET",
        ],
    ),
    (
        "XGROUP",
        &[
            "XGROUP CREATE",
            "XGROUP CREATECONSUMER",
            "XGROUP DELCONSUMER",
            "XGROUP DESTROY",
            "XGROUP HELP",
            "XGROUP SETID",
        ],
    ),
    (
        "XINFO",
        &[
            "XINFO CONSUMERS",
            "XINFO GROUPS",
            "XINFO HELP",
            "XINFO STREAM",
        ],
    ),
];

/// Upper-cases `raw` into `buf`; `None` when it is empty, too long or not a plausible name.
pub fn upper<'b>(raw: &[u8], buf: &'b mut [u8; MAX_NAME_BYTES]) -> Option<&'b [u8]> {
    if raw.is_empty() || raw.len() > MAX_NAME_BYTES {
        return None;
    }
    for (dst, &b) in buf.iter_mut().zip(raw) {
        if !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return None;
        }
        *dst = b.to_ascii_uppercase();
    }
    buf.get(..raw.len())
}

/// A name of at most [`MAX_NAME_BYTES`] as four big-endian words, zero-padded: keys order as
/// the names' bytes do (no name holds a zero byte), so a lookup compares integers instead of
/// calling `memcmp` at every probe (it runs for every command on the wire, twice).
type Key = [u64; 4];

/// The key of an upper-case name (the vocabulary's at compile time, [`upper`]'s output at run
/// time).
#[allow(
    clippy::indexing_slicing,
    reason = "`i` stays below both lengths (the loop's condition)"
)]
const fn key_of(name: &[u8]) -> Key {
    let mut key = [0u64; 4];
    let mut i = 0;
    while i < name.len() && i < MAX_NAME_BYTES {
        key[i / 8] |= (name[i] as u64) << (56 - 8 * (i % 8));
        i += 1;
    }
    key
}

/// [`COMMANDS`] as keys, in the same (sorted) order.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build"
)]
const COMMAND_KEYS: [Key; COMMANDS.len()] = {
    let mut keys = [[0u64; 4]; COMMANDS.len()];
    let mut i = 0;
    while i < COMMANDS.len() {
        keys[i] = key_of(COMMANDS[i].as_bytes());
        i += 1;
    }
    keys
};

/// The vocabulary name of a command's first word (any case), or `None`.
pub fn command(raw: &[u8]) -> Option<&'static str> {
    let mut buf = [0u8; MAX_NAME_BYTES];
    let key = key_of(upper(raw, &mut buf)?);
    COMMAND_KEYS
        .binary_search(&key)
        .ok()
        .and_then(|i| COMMANDS.get(i).copied())
}

/// Whether `name` (a vocabulary name) takes a subcommand.
pub fn is_container(name: &str) -> bool {
    CONTAINERS.iter().any(|(c, _)| *c == name)
}

/// The two-word name of `container` with subcommand `raw` (any case), or `None`.
pub fn subcommand(container: &str, raw: &[u8]) -> Option<&'static str> {
    let mut buf = [0u8; MAX_NAME_BYTES];
    let sub = upper(raw, &mut buf)?;
    let (_, subs) = CONTAINERS.iter().find(|(c, _)| *c == container)?;
    let skip = container.len() + 1;
    subs.binary_search_by(|full| full.as_bytes().get(skip..).unwrap_or_default().cmp(sub))
        .ok()
        .and_then(|i| subs.get(i).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_unique_and_consistent() {
        assert!(
            COMMANDS.windows(2).all(|w| w[0] < w[1]),
            "COMMANDS not sorted"
        );
        for (c, subs) in CONTAINERS {
            assert!(command(c.as_bytes()).is_some(), "{c} missing from COMMANDS");
            let tails: Vec<&str> = subs
                .iter()
                .map(|s| s.strip_prefix(c).unwrap().strip_prefix(' ').unwrap())
                .collect();
            assert!(tails.windows(2).all(|w| w[0] < w[1]), "{c} not sorted");
            for s in *subs {
                let tail = s.split(' ').nth(1).unwrap();
                assert_eq!(subcommand(c, tail.to_lowercase().as_bytes()), Some(*s));
            }
        }
        for c in COMMANDS {
            assert!(c.len() <= MAX_NAME_BYTES);
            assert_eq!(command(c.to_lowercase().as_bytes()), Some(*c), "{c}");
        }
        assert!(
            COMMAND_KEYS.windows(2).all(|w| w[0] < w[1]),
            "keys do not order as the names"
        );
    }

    #[test]
    fn lookups() {
        assert_eq!(command(b"get"), Some("GET"));
        assert_eq!(command(b"GeoRadius_RO"), Some("GEORADIUS_RO"));
        assert_eq!(command(b"restore-asking"), Some("RESTORE-ASKING"));
        assert_eq!(command(b"FOO"), None);
        assert_eq!(command(b""), None);
        assert_eq!(command(b"GET\0"), None);
        assert_eq!(command(&[b'A'; 40]), None);
        assert_eq!(subcommand("CLIENT", b"setinfo"), Some("CLIENT SETINFO"));
        assert_eq!(subcommand("CONFIG", b"get"), Some("CONFIG GET"));
        assert_eq!(subcommand("CONFIG", b"nope"), None);
        assert_eq!(subcommand("GET", b"x"), None);
        assert!(is_container("SCRIPT") && !is_container("SET"));
    }
}
