//! `RedisStitcher`: pairs commands with replies, in order, into records.
//!
//! RESP has no request ids: the n-th reply answers the n-th command that gets one. What breaks
//! plain FIFO pairing, and how it is handled:
//! - **Pushes** are not replies: RESP3 `>` frames (except the confirmations of the
//!   (un)subscribe command being answered), RESP2 `message`/`pmessage`/`smessage` arrays while
//!   the connection is in subscribe mode, `MONITOR` lines after `MONITOR`. They are dropped.
//! - **Commands without a reply**: `CLIENT REPLY OFF|SKIP` and what they silence.
//! - **Several replies per command**: `SUBSCRIBE a b c` is confirmed once per channel; the
//!   record ends at the last confirmation. `UNSUBSCRIBE` with no argument ends when the
//!   confirmations' subscription count says nothing of its kind is left.
//! - **Transactions**: `MULTI` … `EXEC` is one record (see [`Txn`]); the queued commands and
//!   their `QUEUED` acknowledgements are not records of their own.
//! - **A reply that started before its command** (its first byte precedes the command's)
//!   answers something we never saw; it is dropped.
//! - **Loss**: the framer marks the first reply after the reply stream was lost with the
//!   command it answers; commands before it are given up (the one whose reply was under way
//!   gets a record marked `EndLost`), and state they may have changed becomes unknown.
//! - **Timeouts**: a command given up by `expire` still gets its reply one day; the reply is
//!   owed and dropped when it comes, so later pairs stay aligned. Blocking commands (`BLPOP`,
//!   `XREAD`, `WAIT`, …) are exempt from the timeout.
//! - **A pipeline deeper than the queue bound**: the pipeline drops the oldest queued
//!   commands; the gap in the framer's sequence numbers says how many, and their replies are
//!   owed likewise.
//! - **Lost commands** (a gap in the command stream): the next command is marked; a reply
//!   answers it only if it was sent after the latest reply, else it is given up (its reply
//!   may be a lost command's). A gap inside one long command's arguments loses no command and
//!   changes nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::model::Protocol;
use crate::protocol::redis::types::*;
use crate::protocol::{ParseStats, ParserLimits, Stitcher, Timed};
use crate::record::{DbExchange, DbOutcome, Exchange, Incomplete, Record};

/// Pairs RESP commands with replies. All connection state lives here.
#[derive(Debug)]
pub struct RedisStitcher {
    limits: ParserLimits,
    /// The connection's database index, when known (`db.namespace`).
    db: Option<u32>,
    /// The text of the last index [`RedisStitcher::namespace`] formatted.
    db_text: Option<(u32, Arc<str>)>,
    /// Protocol version, when known (2 until `HELLO 3`).
    proto: Option<u8>,
    pubsub: PubSub,
    /// After `MONITOR`: simple strings starting with a digit are monitor lines.
    monitor: bool,
    reply_mode: ReplyState,
    /// An open `MULTI`.
    txn: Option<Txn>,
    /// The command being answered.
    current: Option<Pending>,
    /// Replies still to come for commands given up before their reply arrived.
    owed: u64,
    /// First byte of the reply under way (its `Partial` frames), and its last byte so far.
    reply_start: Option<u64>,
    reply_last: u64,
    /// First byte of the latest reply taken or dropped.
    last_reply_start: u64,
    /// Command bytes were lost: replies to lost commands may come before the next command's.
    /// A reply answers the current command only if that command was sent after the latest
    /// reply (so after every reply to a lost command, for a client that waits for its
    /// replies); commands sent before it are given up.
    desync: bool,
    /// Frames of the reply under way are dropped up to its end (it cannot be paired).
    drop_reply: bool,
    /// Sequence number of the last command begun: a jump means the pipeline's queue bound
    /// dropped commands, whose replies are still to come (owed).
    last_seq: u64,
}

/// Subscriptions, as far as the confirmations told.
#[derive(Clone, Copy, Debug, Default)]
struct PubSub {
    channels: Option<u64>,
    patterns: Option<u64>,
    shards: Option<u64>,
    /// RESP2 subscribe mode: only (un)subscribe, `PING`, `QUIT`, `RESET` are allowed and
    /// published messages arrive as plain arrays. `None` when unknown.
    resp2: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyState {
    On,
    Off,
    SkipNext,
}

/// An open transaction: `MULTI` answered `OK`. The record covers `MULTI`'s first byte to the
/// last byte of `EXEC`'s (or `DISCARD`'s) reply, named `MULTI` or `MULTI <command>` when every
/// queued command is the same one (the conventions' naming), with the queued commands' texts
/// and `db.operation.batch.size`.
#[derive(Clone, Debug)]
struct Txn {
    start_ns: u64,
    /// The one command every queued command is (`Some(None)` once they differ or one is
    /// unknown; `None` while nothing is queued).
    common: Option<Option<&'static str>>,
    count: u64,
    /// The queued commands' texts joined with `; `, or the one text they share; `None` once
    /// a queued command is outside the vocabulary.
    text: Option<String>,
    first_text: Option<String>,
    same_text: bool,
    /// A queued `SELECT`: applied if `EXEC` runs every command without error.
    select: Option<Option<u32>>,
}

/// How many replies a command takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    One,
    /// `n` (un)subscribe confirmations of `kind`.
    Confirmations {
        kind: SubKind,
        left: u64,
    },
    /// `UNSUBSCRIBE` & co. without arguments: until nothing of `kind` is left.
    UnsubscribeAll {
        kind: SubKind,
    },
}

#[derive(Clone, Debug)]
struct Pending {
    cmd: RedisCommand,
    start_ns: u64,
    expect: Expect,
    /// Replies taken so far.
    replies: u64,
    end_ns: u64,
    end_lost: bool,
    error: Option<String>,
    /// The last reply taken (the one that decides the outcome and the effects).
    last: Option<RedisReply>,
}

/// What a reply frame is to the command being answered.
enum Role {
    Push,
    Answer,
}

impl RedisStitcher {
    /// `db.namespace`: the database index as text, formatted once per index.
    fn namespace(&mut self) -> Option<Arc<str>> {
        let db = self.db?;
        match &self.db_text {
            Some((d, text)) if *d == db => Some(Arc::clone(text)),
            _ => {
                let text: Arc<str> = Arc::from(db.to_string());
                self.db_text = Some((db, Arc::clone(&text)));
                Some(text)
            }
        }
    }

    /// State that a command we never saw the outcome of may have changed is now unknown.
    fn forget(&mut self, effect: Effect) {
        match effect {
            Effect::Select(_) | Effect::Reset => {
                self.db = None;
                self.txn = None;
            }
            Effect::Multi | Effect::Exec | Effect::Discard => self.txn = None,
            Effect::Hello(_) => self.proto = None,
            Effect::Subscribe(..) | Effect::Unsubscribe(..) => {
                self.pubsub = PubSub::default();
            }
            Effect::Monitor => self.monitor = true,
            Effect::ClientReply(_) => self.reply_mode = ReplyState::On,
            Effect::None => {}
        }
    }

    /// Commands were lost: anything may have happened in between.
    fn forget_all(&mut self) {
        self.db = None;
        self.txn = None;
        self.pubsub = PubSub::default();
        self.reply_mode = ReplyState::On;
    }

    /// Starts answering `req`; `false` when it takes no reply (nothing to wait for).
    fn begin(&mut self, req: Timed<RedisFrame>, stats: &mut ParseStats) -> bool {
        let RedisFrame::Command(cmd) = req.frame else {
            // Only commands are queued as requests; anything else is not ours to answer.
            stats.unmatched_requests += 1;
            return false;
        };
        if cmd.after_loss {
            self.desync = true;
        }
        let dropped = cmd.seq.saturating_sub(self.last_seq.saturating_add(1));
        if dropped > 0 && self.last_seq > 0 {
            // Framed but dropped by the queue bound before we saw them: their replies come
            // first, in order; what they did is unknown.
            self.owed += dropped;
            self.forget_all();
        }
        self.last_seq = cmd.seq;
        let silenced = match (self.reply_mode, cmd.effect) {
            (_, Effect::ClientReply(ReplyMode::On)) => {
                self.reply_mode = ReplyState::On;
                false
            }
            (_, Effect::ClientReply(ReplyMode::Off)) => {
                self.reply_mode = ReplyState::Off;
                true
            }
            (ReplyState::Off, _) => true,
            (_, Effect::ClientReply(ReplyMode::Skip)) => {
                self.reply_mode = ReplyState::SkipNext;
                true
            }
            (ReplyState::SkipNext, _) => {
                self.reply_mode = ReplyState::On;
                true
            }
            (ReplyState::On, _) => false,
        };
        if silenced {
            // Executed, but no reply ever says when it ended: no record.
            return false;
        }
        let expect = match cmd.effect {
            _ if self.txn.is_some() => Expect::One,
            Effect::Subscribe(kind, n) | Effect::Unsubscribe(kind, n) if n > 0 => {
                Expect::Confirmations { kind, left: n }
            }
            Effect::Unsubscribe(kind, _) => Expect::UnsubscribeAll { kind },
            _ => Expect::One,
        };
        self.current = Some(Pending {
            cmd,
            start_ns: req.start_ns,
            expect,
            replies: 0,
            end_ns: req.start_ns,
            end_lost: false,
            error: None,
            last: None,
        });
        true
    }

    /// Whether a reply frame answers the command being answered or is a push.
    fn role_of(&self, r: &RedisReply, cur: Option<&Pending>) -> Role {
        let expects = |kind: SubKind| match cur.map(|p| p.expect) {
            Some(Expect::Confirmations { kind: k, .. } | Expect::UnsubscribeAll { kind: k }) => {
                k == kind
            }
            _ => false,
        };
        let confirmation = match r.word {
            Word::Subscribe(k) | Word::Unsubscribe(k) => Some(k),
            _ => None,
        };
        match r.shape {
            Shape::Push => match confirmation {
                Some(k) if expects(k) => Role::Answer,
                _ => Role::Push,
            },
            Shape::Array if self.proto != Some(3) => {
                let message = matches!(r.word, Word::Message | Word::PMessage | Word::SMessage);
                let in_mode = match self.pubsub.resp2 {
                    Some(on) => on,
                    // Unknown (seen mid-stream): only commands allowed in subscribe mode can
                    // be waiting while messages arrive.
                    None => cur.is_none_or(|p| allowed_in_subscribe_mode(&p.cmd)),
                };
                let stray_confirmation = confirmation.is_some_and(|k| !expects(k));
                if in_mode && (message || stray_confirmation) {
                    Role::Push
                } else {
                    Role::Answer
                }
            }
            Shape::Simple if self.monitor && r.word == Word::MonitorLine => Role::Push,
            _ => Role::Answer,
        }
    }

    /// A reply frame that answers nothing we hold (no command waiting, or it started before
    /// the command did).
    fn orphan(&mut self, frame: &Timed<RedisFrame>, stats: &mut ParseStats) {
        let r = match &frame.frame {
            RedisFrame::Reply(r) => r,
            // The first part of a reply: its end decides.
            RedisFrame::Partial { .. } => return,
            RedisFrame::Command(_) => return,
        };
        self.reply_start = None;
        if let Role::Push = self.role_of(r, None) {
            return;
        }
        self.last_reply_start = frame.start_ns;
        if self.proto != Some(3)
            && self.pubsub.resp2.is_none()
            && r.shape == Shape::Array
            && matches!(r.word, Word::Message | Word::PMessage | Word::SMessage)
        {
            // Seen mid-stream: a published message says the connection is subscribed.
            self.pubsub.resp2 = Some(true);
            return;
        }
        if self.owed > 0 {
            self.owed -= 1;
            return;
        }
        if r.word == Word::Queued {
            // A command queued in a transaction whose `MULTI` we never saw.
            return;
        }
        stats.unmatched_responses += 1;
        // A reply to a command we never saw: that command may have been a `SELECT`.
        self.forget_all();
    }

    /// Takes one reply for the current command; `true` when the command is fully answered.
    fn feed(&mut self, r: RedisReply, end_ns: u64, complete: bool) -> bool {
        let Some(cur) = self.current.as_mut() else {
            return true;
        };
        cur.replies += 1;
        cur.end_ns = end_ns;
        cur.end_lost |= !complete;
        if cur.error.is_none() {
            cur.error.clone_from(&r.error);
        }
        let is_error = r.shape == Shape::Error;
        let count = r.last_int.and_then(|v| u64::try_from(v).ok());
        let confirmation = match r.word {
            Word::Subscribe(k) | Word::Unsubscribe(k) => Some(k),
            _ => None,
        };
        let expect = cur.expect;
        cur.last = Some(r.clone());
        if let (Some(kind), Some(c)) = (confirmation, count) {
            self.count_subscriptions(kind, c, r.shape);
        }
        match expect {
            _ if is_error => true,
            Expect::One => true,
            Expect::Confirmations { kind, left } => {
                let left = if confirmation == Some(kind) {
                    left.saturating_sub(1)
                } else {
                    0
                };
                if let Some(cur) = self.current.as_mut() {
                    cur.expect = Expect::Confirmations { kind, left };
                }
                left == 0
            }
            Expect::UnsubscribeAll { kind } => {
                confirmation != Some(kind) || self.left_of(kind, count) == Some(0)
            }
        }
    }

    /// Subscriptions of `kind` left after a confirmation carrying `count`.
    fn left_of(&self, kind: SubKind, count: Option<u64>) -> Option<u64> {
        if count == Some(0) {
            return Some(0);
        }
        match kind {
            SubKind::Channel => self.pubsub.channels,
            SubKind::Pattern => self.pubsub.patterns,
            SubKind::Shard => count,
        }
    }

    /// Follows the subscription counts of confirmations (`count` is channels + patterns for
    /// the first two kinds, shard channels for the third).
    fn count_subscriptions(&mut self, kind: SubKind, count: u64, shape: Shape) {
        let ps = &mut self.pubsub;
        match kind {
            SubKind::Channel | SubKind::Pattern if count == 0 => {
                ps.channels = Some(0);
                ps.patterns = Some(0);
            }
            SubKind::Channel => ps.channels = ps.patterns.map(|p| count.saturating_sub(p)),
            SubKind::Pattern => ps.patterns = ps.channels.map(|c| count.saturating_sub(c)),
            SubKind::Shard => ps.shards = Some(count),
        }
        match shape {
            Shape::Push => self.proto = Some(3),
            Shape::Array => {
                let others = match kind {
                    SubKind::Shard => ps.channels.unwrap_or(0) + ps.patterns.unwrap_or(0),
                    _ => ps.shards.unwrap_or(0),
                };
                ps.resp2 = Some(count > 0 || others > 0);
            }
            _ => {}
        }
    }

    /// The current command is answered: apply its effects, emit its record.
    fn finish(&mut self, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let Some(p) = self.current.take() else {
            return;
        };
        let ok = p.error.is_none();
        let word = p.last.as_ref().map(|r| r.word).unwrap_or_default();
        // Inside a transaction: queued (or refused) commands become part of it.
        if let Some(txn) = self.txn.as_mut()
            && !matches!(p.cmd.effect, Effect::Exec | Effect::Discard | Effect::Reset)
        {
            // Queued or refused (a refused one makes `EXEC` fail with `EXECABORT`): either
            // way the client sent it as part of the transaction.
            txn.add(&p.cmd, self.limits.max_query_text_bytes);
            return;
        }
        let namespace = self.namespace();
        match p.cmd.effect {
            Effect::Select(Some(i)) if ok => self.db = Some(i),
            Effect::Hello(Some(v)) if ok => self.proto = Some(v),
            Effect::Monitor if ok => self.monitor = true,
            Effect::Reset if ok => {
                self.db = Some(0);
                self.proto = Some(2);
                self.pubsub = PubSub {
                    channels: Some(0),
                    patterns: Some(0),
                    shards: Some(0),
                    resp2: Some(false),
                };
                self.monitor = false;
                self.reply_mode = ReplyState::On;
                self.txn = None;
            }
            Effect::Multi if ok => {
                self.txn = Some(Txn::new(p.start_ns));
                return;
            }
            Effect::Exec | Effect::Discard => {
                if let Some(txn) = self.txn.take() {
                    self.finish_txn(txn, p, namespace, out, stats);
                    return;
                }
            }
            _ => {}
        }
        if word == Word::Queued {
            // Queued in a transaction whose `MULTI` we never saw: not executed yet.
            return;
        }
        let outcome = match p.error {
            Some(code) => DbOutcome::Error { code, detail: None },
            None => DbOutcome::Success,
        };
        let exchange = DbExchange {
            namespace,
            query_text: p
                .cmd
                .name
                .map(|n| query_text(n, p.cmd.args, self.limits.max_query_text_bytes)),
            operation: Some(p.cmd.name.unwrap_or(OTHER).to_string()),
            outcome,
            ..DbExchange::default()
        };
        emit(p.start_ns, p.end_ns, p.end_lost, exchange, out, stats);
    }

    fn finish_txn(
        &mut self,
        txn: Txn,
        p: Pending,
        namespace: Option<Arc<str>>,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        let last = p.last.unwrap_or_default();
        let executed = p.cmd.effect == Effect::Exec && p.error.is_none();
        let error = p.error.or_else(|| last.inner_error.clone());
        if let Some(select) = txn.select
            && executed
            && last.shape != Shape::Null
        {
            // Applied only when every queued command ran without error; otherwise unknown.
            self.db = if last.inner_error.is_none() {
                select.or(self.db)
            } else {
                None
            };
        }
        let operation = if p.cmd.effect == Effect::Discard {
            "DISCARD".to_string()
        } else {
            match txn.common.flatten() {
                Some(name) => format!("MULTI {name}"),
                None => "MULTI".to_string(),
            }
        };
        let text = if txn.same_text {
            txn.first_text
        } else {
            txn.text
        };
        let exchange = DbExchange {
            namespace,
            query_text: text,
            operation: Some(operation),
            batch_size: Some(txn.count),
            outcome: match error {
                Some(code) => DbOutcome::Error { code, detail: None },
                None => DbOutcome::Success,
            },
            ..DbExchange::default()
        };
        emit(txn.start_ns, p.end_ns, p.end_lost, exchange, out, stats);
    }

    /// Gives up on the current command: its reply was lost (`lost`) or is overdue. A reply
    /// that had started yields a record marked `EndLost`.
    fn give_up(&mut self, lost: bool, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let Some(mut p) = self.current.take() else {
            return;
        };
        let started = self.reply_start.is_some() || p.replies > 0;
        if lost {
            self.reply_start = None;
        } else {
            // The rest of its replies will still come: drop them when they do.
            self.owed += match p.expect {
                Expect::Confirmations { left, .. } => left,
                Expect::One | Expect::UnsubscribeAll { .. } => 1,
            };
        }
        if lost && started && self.txn.is_none() && !matches!(p.cmd.effect, Effect::Multi) {
            if p.replies == 0 {
                p.end_ns = self.reply_last.max(p.start_ns);
            }
            p.end_lost = true;
            let effect = p.cmd.effect;
            self.current = Some(p);
            self.finish(out, stats);
            self.forget(effect);
            return;
        }
        stats.unmatched_requests += 1;
        self.forget(p.cmd.effect);
    }
}

/// `db.operation.name` of a command outside the vocabulary.
const OTHER: &str = "_OTHER";

/// Commands Redis accepts in RESP2 subscribe mode.
fn allowed_in_subscribe_mode(cmd: &RedisCommand) -> bool {
    matches!(
        cmd.name,
        Some(
            "SUBSCRIBE"
                | "PSUBSCRIBE"
                | "SSUBSCRIBE"
                | "UNSUBSCRIBE"
                | "PUNSUBSCRIBE"
                | "SUNSUBSCRIBE"
                | "PING"
                | "QUIT"
                | "RESET"
        )
    )
}

/// Commands that wait for data by design: exempt from the request timeout.
fn blocking(cmd: &RedisCommand) -> bool {
    matches!(
        cmd.name,
        Some(
            "BLPOP"
                | "BRPOP"
                | "BLMOVE"
                | "BLMPOP"
                | "BRPOPLPUSH"
                | "BZPOPMIN"
                | "BZPOPMAX"
                | "BZMPOP"
                | "XREAD"
                | "XREADGROUP"
                | "WAIT"
                | "WAITAOF"
                | "DEBUG SLEEP"
        )
    )
}

/// `db.query.text`: the command with every argument replaced by `?` (`SET ? ?`), cut at a
/// word boundary to `cap` bytes.
pub fn query_text(name: &str, args: u64, cap: usize) -> String {
    let cap = cap.max(name.len());
    let room = (cap - name.len()) / 2;
    let n = usize::try_from(args).unwrap_or(usize::MAX).min(room);
    let mut s = String::with_capacity(name.len() + 2 * n);
    s.push_str(name);
    for _ in 0..n {
        s.push_str(" ?");
    }
    s
}

impl Txn {
    fn new(start_ns: u64) -> Txn {
        Txn {
            start_ns,
            common: None,
            count: 0,
            text: Some(String::new()),
            first_text: None,
            same_text: true,
            select: None,
        }
    }

    fn add(&mut self, cmd: &RedisCommand, cap: usize) {
        self.count += 1;
        self.common = match self.common {
            None => Some(cmd.name),
            Some(c) if c == cmd.name => Some(c),
            Some(_) => Some(None),
        };
        if let Effect::Select(i) = cmd.effect {
            self.select = Some(i);
        }
        let Some(name) = cmd.name else {
            self.text = None;
            self.first_text = None;
            return;
        };
        let piece = query_text(name, cmd.args, cap);
        match &self.first_text {
            None if self.count == 1 => self.first_text = Some(piece.clone()),
            Some(first) if *first != piece => self.same_text = false,
            _ => {}
        }
        if let Some(text) = self.text.as_mut() {
            let sep = if text.is_empty() { 0 } else { 2 };
            if text.len() + sep + piece.len() <= cap {
                if sep > 0 {
                    text.push_str("; ");
                }
                text.push_str(&piece);
            }
        }
    }
}

fn emit(
    start_ns: u64,
    end_ns: u64,
    end_lost: bool,
    exchange: DbExchange,
    out: &mut Vec<Record>,
    stats: &mut ParseStats,
) {
    stats.records += 1;
    out.push(Record {
        protocol: Protocol::Redis,
        start_ns,
        end_ns: end_ns.max(start_ns),
        incomplete: end_lost.then_some(Incomplete::EndLost),
        peer: None,
        exchange: Exchange::Db(exchange),
    });
}

impl Stitcher for RedisStitcher {
    type Frame = RedisFrame;
    type State = ();

    fn new(limits: ParserLimits) -> RedisStitcher {
        RedisStitcher {
            limits,
            db: None,
            db_text: None,
            proto: None,
            pubsub: PubSub::default(),
            monitor: false,
            reply_mode: ReplyState::On,
            txn: None,
            current: None,
            owed: 0,
            reply_start: None,
            reply_last: 0,
            last_reply_start: 0,
            desync: false,
            drop_reply: false,
            last_seq: 0,
        }
    }

    fn seen_from_start(&mut self) {
        // A new connection is on database 0, speaks RESP2, subscribes to nothing.
        self.db = Some(0);
        self.proto = Some(2);
        self.pubsub = PubSub {
            channels: Some(0),
            patterns: Some(0),
            shards: Some(0),
            resp2: Some(false),
        };
    }

    fn stitch(
        &mut self,
        reqs: &mut VecDeque<Timed<RedisFrame>>,
        resps: &mut VecDeque<Timed<RedisFrame>>,
        _state: &mut (),
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        loop {
            if self.current.is_none() {
                let next = reqs.front().map(|r| r.start_ns);
                // Replies that started before the next command answer nothing we hold.
                while let Some(f) = resps.front() {
                    let start = self.reply_start.unwrap_or(f.start_ns);
                    if next.is_some_and(|t| start >= t) {
                        break;
                    }
                    if let Some(f) = resps.pop_front() {
                        self.track_partial(&f);
                        self.orphan(&f, stats);
                    }
                }
                let Some(req) = reqs.pop_front() else {
                    return;
                };
                self.begin(req, stats);
                continue;
            }
            let Some(front) = resps.front_mut() else {
                return;
            };
            // The reply stream was lost before this frame, which answers command `seq`.
            let answers = match &mut front.frame {
                RedisFrame::Reply(r) => r.answers.take(),
                RedisFrame::Partial { answers } => answers.take(),
                RedisFrame::Command(_) => None,
            };
            if let Some(seq) = answers {
                // Replies owed to commands before `seq` were in the lost bytes, if anywhere;
                // this reply answers `seq` exactly.
                self.owed = 0;
                self.desync = false;
                let cur_seq = self.current.as_ref().map_or(u64::MAX, |p| p.cmd.seq);
                if cur_seq < seq {
                    self.give_up(true, out, stats);
                    // Put the mark back for the commands still before it.
                    if let Some(front) = resps.front_mut() {
                        set_answers(&mut front.frame, seq);
                    }
                    continue;
                }
                // The framer assumed the lost bytes ended within the last reply it saw (a
                // capture cut short). If they were whole chunks instead (ring loss), replies
                // to later commands were lost too: a command written after `seq`'s write
                // and before this reply started says so. Then this reply cannot be placed;
                // only commands sent after it pair again.
                let cur_start = self.current.as_ref().map_or(0, |p| p.start_ns);
                let r_start = front.start_ns;
                if reqs
                    .iter()
                    .any(|q| q.start_ns > cur_start && q.start_ns < r_start)
                {
                    self.desync = true;
                    self.last_reply_start = r_start;
                    self.drop_reply = true;
                }
            }
            let Some(f) = resps.pop_front() else {
                return;
            };
            if self.drop_reply {
                if let RedisFrame::Reply(_) = f.frame {
                    self.drop_reply = false;
                    self.reply_start = None;
                    stats.unmatched_responses += 1;
                }
                continue;
            }
            let cur_start = self.current.as_ref().map_or(0, |p| p.start_ns);
            let start = self.reply_start.unwrap_or(f.start_ns);
            if start < cur_start {
                self.track_partial(&f);
                self.orphan(&f, stats);
                continue;
            }
            let r = match f.frame {
                RedisFrame::Reply(r) => r,
                RedisFrame::Partial { .. } => {
                    self.reply_start.get_or_insert(f.start_ns);
                    self.reply_last = f.end_ns;
                    continue;
                }
                RedisFrame::Command(_) => continue,
            };
            self.reply_start = None;
            if let Role::Push = self.role_of(&r, self.current.as_ref()) {
                continue;
            }
            if self.owed > 0 {
                self.owed -= 1;
                continue;
            }
            // `UNSUBSCRIBE` without arguments whose count never said "none left": the first
            // frame that is not one of its confirmations ends it.
            if let Some(Pending {
                expect: Expect::UnsubscribeAll { kind },
                replies,
                ..
            }) = self.current
                && replies > 0
                && r.word != Word::Unsubscribe(kind)
            {
                self.finish(out, stats);
                resps.push_front(Timed {
                    start_ns: start,
                    end_ns: f.end_ns,
                    complete: f.complete,
                    peer: f.peer,
                    frame: RedisFrame::Reply(r),
                });
                continue;
            }
            if self.desync {
                if cur_start <= self.last_reply_start {
                    // Sent before a reply we could not pair: this reply may be a lost
                    // command's. Give the command up and offer the reply to the next one.
                    if let Some(p) = self.current.take() {
                        stats.unmatched_requests += 1;
                        self.forget(p.cmd.effect);
                    }
                    resps.push_front(Timed {
                        start_ns: start,
                        end_ns: f.end_ns,
                        complete: f.complete,
                        peer: f.peer,
                        frame: RedisFrame::Reply(r),
                    });
                    continue;
                }
                self.desync = false;
            }
            self.last_reply_start = start;
            if self.feed(r, f.end_ns, f.complete) {
                self.finish(out, stats);
            }
        }
    }

    fn expire(
        &mut self,
        reqs: &mut VecDeque<Timed<RedisFrame>>,
        resps: &mut VecDeque<Timed<RedisFrame>>,
        deadline_ns: u64,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        let closing = deadline_ns == u64::MAX;
        while let Some(p) = self.current.as_ref() {
            if p.start_ns >= deadline_ns || (!closing && blocking(&p.cmd)) {
                break;
            }
            if let Expect::UnsubscribeAll { .. } = p.expect
                && p.replies > 0
            {
                // Answered as far as we can tell.
                self.finish(out, stats);
            } else {
                self.give_up(closing, out, stats);
            }
            self.stitch(reqs, resps, &mut (), out, stats);
        }
        if self.current.is_none() {
            while resps.front().is_some_and(|f| f.start_ns < deadline_ns) {
                if let Some(f) = resps.pop_front() {
                    self.track_partial(&f);
                    self.orphan(&f, stats);
                }
            }
        }
    }
}

impl RedisStitcher {
    /// Keeps the first byte of a reply under way when its `Partial` frames are dropped with it.
    fn track_partial(&mut self, f: &Timed<RedisFrame>) {
        if let RedisFrame::Partial { .. } = f.frame {
            self.reply_start.get_or_insert(f.start_ns);
            self.reply_last = f.end_ns;
        }
    }
}

fn set_answers(frame: &mut RedisFrame, seq: u64) {
    match frame {
        RedisFrame::Reply(r) => r.answers = Some(seq),
        RedisFrame::Partial { answers } => *answers = Some(seq),
        RedisFrame::Command(_) => {}
    }
}
