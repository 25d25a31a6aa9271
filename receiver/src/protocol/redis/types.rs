//! Redis frames and the per-connection framing state.

use std::cell::Cell;

/// Most nested aggregate levels followed in one reply (`COMMAND DOCS` uses about 8); deeper is
/// treated as garbage.
pub const REDIS_MAX_DEPTH: usize = 64;
/// Longest inline command line (Redis' own `PROTO_INLINE_MAX_SIZE`).
pub const REDIS_MAX_INLINE_BYTES: usize = 64 * 1024;
/// Longest simple string / error / number line followed in a reply; longer is garbage.
pub const REDIS_MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest error prefix kept (`db.response.status_code`).
pub const REDIS_MAX_ERROR_CODE_BYTES: usize = 32;
/// Most elements in a command (Redis itself refuses more than `INT_MAX`).
pub const REDIS_MAX_ARGS: u64 = i32::MAX as u64;

/// One frame: a command (request) or a reply (response).
#[derive(Clone, Debug, PartialEq)]
pub enum RedisFrame {
    Command(RedisCommand),
    Reply(RedisReply),
    /// The first part of a reply that continues in later bytes: tells the stitcher a reply is
    /// under way and when its bytes were seen. The reply's [`RedisFrame::Reply`] follows.
    /// `answers` as in [`RedisReply::answers`].
    Partial {
        answers: Option<u64>,
    },
}

/// A command, RESP array of bulk strings or inline line. Only the name (and for a few
/// commands one small argument the stitcher needs) is read; every other argument is counted,
/// never copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisCommand {
    /// Vocabulary name (`GET`, `CLIENT SETINFO`), `None` outside the vocabulary.
    pub name: Option<&'static str>,
    /// Elements after the name (each is a `?` in `db.query.text`).
    pub args: u64,
    /// What the command does to the connection's state.
    pub effect: Effect,
    /// 1 for the first command framed on the connection, then +1 each.
    pub seq: u64,
    /// Command bytes were lost before this one (gap or garbage): commands may be missing.
    pub after_loss: bool,
}

/// The connection-level effect of a command, as far as the stitcher must follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// `SELECT <index>` (`None`: not a valid index; the server refuses it).
    Select(Option<u32>),
    /// `HELLO [protover …]`.
    Hello(Option<u8>),
    /// `SUBSCRIBE`/`PSUBSCRIBE`/`SSUBSCRIBE` with this many channels.
    Subscribe(SubKind, u64),
    /// `UNSUBSCRIBE`/… with this many channels (0: all of them).
    Unsubscribe(SubKind, u64),
    Multi,
    Exec,
    Discard,
    Reset,
    Monitor,
    /// `CLIENT REPLY ON|OFF|SKIP`.
    ClientReply(ReplyMode),
}

/// The three families of pub/sub subscriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubKind {
    /// `SUBSCRIBE` channels.
    Channel,
    /// `PSUBSCRIBE` patterns.
    Pattern,
    /// `SSUBSCRIBE` shard channels.
    Shard,
}

/// `CLIENT REPLY` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    Skip,
}

/// What a complete reply was, as far as pairing and the span need to know. Nothing of its
/// content is kept beyond the classification words below (never a value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisReply {
    /// Type of the top-level value.
    pub shape: Shape,
    /// A simple string's meaning, or the first element's word for an array or push
    /// (`message`, `subscribe`, …).
    pub word: Word,
    /// Error prefix of a simple or blob error (`ERR`, `WRONGTYPE`); empty when the error has
    /// no conventional prefix.
    pub error: Option<String>,
    /// First error among the elements of a top-level aggregate (an `EXEC` result).
    pub inner_error: Option<String>,
    /// The last integer element of a top-level aggregate (the subscription count of a pub/sub
    /// confirmation).
    pub last_int: Option<i64>,
    /// The reply stream was lost before this reply, which answers the command with this
    /// sequence number (see `RedisFramingState::lost`).
    pub answers: Option<u64>,
}

/// Type of a reply's top-level value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    #[default]
    Simple,
    Error,
    Integer,
    Bulk,
    /// RESP2 null bulk/array, RESP3 `_`.
    Null,
    /// Boolean, double, big number.
    Scalar,
    Array,
    Map,
    Set,
    /// RESP3 `>`: out-of-band data, never a reply unless it confirms a (un)subscription.
    Push,
}

/// Words of replies the stitcher cares about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Word {
    #[default]
    Other,
    Ok,
    Queued,
    Pong,
    Reset,
    /// A `MONITOR` line (`+1700000000.123456 [0 127.0.0.1:5000] "GET" …`).
    MonitorLine,
    Message,
    PMessage,
    SMessage,
    Subscribe(SubKind),
    Unsubscribe(SubKind),
}

impl Word {
    /// Classifies a simple string's content.
    pub fn of_simple(s: &[u8]) -> Word {
        match s {
            b"OK" => Word::Ok,
            b"QUEUED" => Word::Queued,
            b"PONG" => Word::Pong,
            b"RESET" => Word::Reset,
            [d, ..] if d.is_ascii_digit() => Word::MonitorLine,
            _ => Word::Other,
        }
    }

    /// Classifies the first element of an array or push (pub/sub kinds are lower case).
    pub fn of_element(s: &[u8]) -> Word {
        match s {
            b"message" => Word::Message,
            b"pmessage" => Word::PMessage,
            b"smessage" => Word::SMessage,
            b"subscribe" => Word::Subscribe(SubKind::Channel),
            b"psubscribe" => Word::Subscribe(SubKind::Pattern),
            b"ssubscribe" => Word::Subscribe(SubKind::Shard),
            b"unsubscribe" => Word::Unsubscribe(SubKind::Channel),
            b"punsubscribe" => Word::Unsubscribe(SubKind::Pattern),
            b"sunsubscribe" => Word::Unsubscribe(SubKind::Shard),
            b"pong" => Word::Pong,
            _ => Word::Other,
        }
    }

    /// Longest element payload [`Word::of_element`] can match.
    pub const MAX_ELEMENT: usize = 12;
}

/// One open aggregate of the reply being framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Elements still to come.
    pub left: u64,
    /// A RESP3 attribute: it annotates the value after it and is not an element itself.
    pub attribute: bool,
}

/// Per-connection framing state, shared by both directions.
#[derive(Debug)]
pub struct RedisFramingState {
    /// Commands framed so far (the `seq` of the last one).
    pub requests: u64,
    /// Bulk strings of the current command still to step over (its frame is already out).
    pub req_left: u64,
    /// Set by `find_boundary` when command bytes were dropped: the next command is flagged
    /// `after_loss` and any half-read command is forgotten. A `Cell` because `find_boundary`
    /// only borrows the state.
    pub req_resync: Cell<bool>,
    /// The next command frame follows lost command bytes.
    pub req_after_loss: bool,
    /// Open aggregates of the reply being framed, outermost first.
    pub stack: Vec<Level>,
    /// The reply being framed, when it spans several parse calls.
    pub reply: Option<RedisReply>,
    /// Whether the first element of the top-level aggregate is still to be classified.
    pub first_pending: bool,
    /// Reply bytes are discarded until the first chunk that follows a new command: `Some(n)`
    /// where `n` is `requests` when the reply stream was lost. RESP cannot be resynchronised
    /// from the bytes alone (an element deep in an array looks like a top-level reply), but a
    /// client that waits for its replies sends its next command only after the last byte of
    /// the previous reply, so the reply chunk after that command starts a reply. Starts lost
    /// (`Some(0)`): on a connection seen from its start no reply precedes the first command,
    /// and a connection seen mid-stream is read from the first reply after its next command.
    pub lost: Option<u64>,
    /// `requests` when reply bytes were last framed: if the reply stream is lost after them,
    /// a command framed since then was sent after the last reply byte we have.
    pub resp_mark: u64,
    /// Set by `find_boundary` when reply bytes were dropped (gap, overflow, garbage).
    pub resp_resync: Cell<bool>,
    /// With `resp_resync`: the bytes given to the next parse do not start at a chunk start.
    pub resp_mid: Cell<bool>,
    /// The first reply after leaving `lost` answers this command.
    pub pending_answers: Option<u64>,
}

impl Default for RedisFramingState {
    fn default() -> Self {
        RedisFramingState {
            requests: 0,
            req_left: 0,
            req_resync: Cell::new(false),
            req_after_loss: false,
            stack: Vec::new(),
            reply: None,
            first_pending: false,
            lost: Some(0),
            resp_mark: 0,
            resp_resync: Cell::new(false),
            resp_mid: Cell::new(false),
            pending_answers: None,
        }
    }
}
