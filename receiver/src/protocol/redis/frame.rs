//! `RedisFramer`: cuts commands and replies off a RESP byte stream
//! (<https://redis.io/docs/latest/develop/reference/protocol-spec/>).
//!
//! **Commands.** A RESP array of bulk strings (`*<n>\r\n$<len>\r\n<bytes>\r\n…`) or an inline
//! line (`PING\r\n`, what telnet-style clients and `redis-benchmark`'s `PING_INLINE` send).
//! The framer reads the first element (the name), the second when the name needs it (a
//! container's subcommand, `SELECT`'s index, `HELLO`'s protocol version), the third for
//! `CLIENT REPLY`; every other element is counted and stepped over by its length, never
//! copied, so `AUTH`'s and `HELLO … AUTH`'s credentials are never read at all. A command
//! longer than what is buffered is emitted as soon as its name is known and the rest is
//! skipped by length ([`RedisFramingState::req_left`]).
//!
//! **Replies.** One frame per top-level value, whatever its nesting: the framer follows
//! aggregates with an explicit stack of element counts ([`REDIS_MAX_DEPTH`] deep; a count
//! never sizes anything, so `*2147483647` only costs the bytes that really arrive) and bulk
//! strings by their length without their bytes (a 100 MiB `GET` reply is one frame whose
//! last byte the pipeline stamps). A reply longer than the buffer is consumed as it arrives:
//! [`RedisFrame::Partial`] for what is read so far, [`RedisFrame::Reply`] at its end. Only a
//! few words are classified (`OK`, `QUEUED`, pub/sub kinds, error prefixes); values are never
//! kept. RESP3 attributes (`|`) are stepped over; streamed RESP3 strings and aggregates
//! (`$?`), which Redis never sends, are treated as garbage.
//!
//! **Loss.** A gap or garbage in the reply stream cannot be resynchronised from the bytes: an
//! element deep inside an array looks exactly like a top-level reply. The framer then discards
//! reply bytes until a chunk that follows a new command (see [`RedisFramingState::lost`]) and
//! tells the stitcher which command that first reply answers. A gap in the command stream is
//! resynchronised at the next line that starts a known command.

use crate::protocol::redis::commands;
use crate::protocol::redis::types::*;
use crate::protocol::{Framer, MessageKind, Parse, ParserLimits};

/// Frames RESP. Holds only caps derived from [`ParserLimits`].
#[derive(Clone, Copy, Debug)]
pub struct RedisFramer {
    /// Longest inline command line waited for.
    inline_cap: usize,
    /// Longest reply line waited for.
    line_cap: usize,
}

impl Default for RedisFramer {
    fn default() -> Self {
        <RedisFramer as Framer>::new(ParserLimits::default())
    }
}

/// Why a token could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// A valid prefix: wait for more bytes.
    More,
    /// Not RESP.
    Bad,
}

/// Bulk payloads up to this size are waited for whole (a command name, a pub/sub kind, an
/// error prefix); longer ones are stepped over by length.
const SMALL_PAYLOAD: usize = 64;

/// One RESP token of a reply: a scalar, or the header of an aggregate.
#[derive(Clone, Copy, Debug)]
enum Tok<'a> {
    /// `+` simple string, `-` simple error: the line.
    Line(u8, &'a [u8]),
    Int(i64),
    /// `$` bulk string, `=` verbatim string, `!` blob error: the payload when buffered and
    /// small.
    Bulk(u8, Option<&'a [u8]>),
    Null,
    /// `#` boolean, `,` double, `(` big number.
    Scalar,
    /// `*` array, `~` set, `>` push, `%` map, `|` attribute, with the number of values that
    /// follow (a map's pairs count twice).
    Agg(u8, u64),
}

/// The line after a one-byte type marker, up to (not including) `\r\n`; returns the line and
/// the bytes used including the marker and the terminator.
fn line(buf: &[u8], max: usize) -> Result<(&[u8], usize), Need> {
    let body = buf.get(1..).unwrap_or_default();
    let window = body.get(..max.saturating_add(2)).unwrap_or(body);
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if i > max => Err(Need::Bad),
        Some(i) => match (window.get(i), window.get(i + 1)) {
            (Some(b'\r'), Some(b'\n')) => Ok((body.get(..i).unwrap_or_default(), i + 3)),
            (Some(b'\r'), None) => Err(Need::More),
            _ => Err(Need::Bad),
        },
        None if window.len() > max => Err(Need::Bad),
        None => Err(Need::More),
    }
}

/// A decimal `i64` (RESP numbers have no `+` and no spaces).
fn number(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// A length or count line (`$<n>`, `*<n>`): the value and the bytes used.
fn length_line(buf: &[u8]) -> Result<(i64, usize), Need> {
    let (text, used) = line(buf, 20)?;
    number(text).map(|n| (n, used)).ok_or(Need::Bad)
}

/// A bulk string (`$`, `=`, `!`): total length (may run past `buf`) and the payload when it
/// is small and fully buffered. Small payloads are waited for.
fn bulk(buf: &[u8]) -> Result<(usize, Option<&[u8]>), Need> {
    let (n, hdr) = length_line(buf)?;
    let n = usize::try_from(n).map_err(|_| Need::Bad)?;
    let total = hdr
        .checked_add(n)
        .and_then(|t| t.checked_add(2))
        .filter(|&t| t < usize::MAX)
        .ok_or(Need::Bad)?;
    match buf.get(hdr..total) {
        Some(body) => match body.split_at_checked(n) {
            Some((payload, b"\r\n")) => Ok((total, (n <= SMALL_PAYLOAD).then_some(payload))),
            _ => Err(Need::Bad),
        },
        None if n <= SMALL_PAYLOAD => Err(Need::More),
        None => Ok((total, None)),
    }
}

impl RedisFramer {
    fn token<'a>(&self, buf: &'a [u8]) -> Result<(Tok<'a>, usize), Need> {
        let Some(&t) = buf.first() else {
            return Err(Need::More);
        };
        match t {
            b'+' | b'-' => line(buf, self.line_cap).map(|(l, n)| (Tok::Line(t, l), n)),
            b':' => {
                let (l, n) = line(buf, 20)?;
                number(l).map(|v| (Tok::Int(v), n)).ok_or(Need::Bad)
            }
            b'#' | b',' | b'(' => line(buf, 512).map(|(_, n)| (Tok::Scalar, n)),
            b'_' => line(buf, 0).map(|(_, n)| (Tok::Null, n)),
            b'$' | b'=' | b'!' => {
                if t == b'$' && buf.get(1) == Some(&b'-') {
                    return match length_line(buf)? {
                        (-1, n) => Ok((Tok::Null, n)),
                        _ => Err(Need::Bad),
                    };
                }
                bulk(buf).map(|(n, p)| (Tok::Bulk(t, p), n))
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let (count, n) = length_line(buf)?;
                if count == -1 && t == b'*' {
                    return Ok((Tok::Null, n));
                }
                let count = u64::try_from(count).map_err(|_| Need::Bad)?;
                let values = if t == b'%' || t == b'|' {
                    count.checked_mul(2).ok_or(Need::Bad)?
                } else {
                    count
                };
                Ok((Tok::Agg(t, values), n))
            }
            _ => Err(Need::Bad),
        }
    }

    fn parse_reply(&self, buf: &[u8], st: &mut RedisFramingState) -> Parse<RedisFrame> {
        if buf.is_empty() {
            return Parse::Incomplete;
        }
        if st.resp_resync.replace(false) {
            st.stack.clear();
            st.reply = None;
            st.first_pending = false;
            st.pending_answers = None;
            if st.lost.is_none() {
                st.lost = Some(st.resp_mark);
            }
            if st.resp_mid.replace(false) {
                return Parse::Skip { len: buf.len() };
            }
        }
        if let Some(n) = st.lost {
            // Leave only at a chunk start (every call in this mode consumes all it is given)
            // after a new command, and only where a reply can start.
            let starts = matches!(
                buf.first(),
                Some(b'+' | b'-' | b':' | b'$' | b'*' | b'%' | b'~' | b'>' | b'|' | b'_')
                    | Some(b'#' | b',' | b'(' | b'=' | b'!')
            );
            if st.requests <= n || !starts {
                return Parse::Skip { len: buf.len() };
            }
            st.lost = None;
            st.pending_answers = Some(n + 1);
        }
        st.resp_mark = st.requests;
        self.walk_reply(buf, st)
    }

    /// Walks tokens until the reply in progress is complete or the buffer ends.
    fn walk_reply(&self, buf: &[u8], st: &mut RedisFramingState) -> Parse<RedisFrame> {
        let started = st.reply.is_some();
        let mut reply = st.reply.take().unwrap_or_default();
        let mut at = 0usize;
        while let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) {
            let (tok, len) = match self.token(rest) {
                Ok(t) => t,
                Err(Need::More) => break,
                Err(Need::Bad) => {
                    st.stack.clear();
                    st.first_pending = false;
                    return Parse::Invalid;
                }
            };
            note(&mut reply, st, &tok);
            at = at.saturating_add(len);
            let complete = match tok {
                Tok::Agg(t, n) if n > 0 => {
                    if st.stack.len() >= REDIS_MAX_DEPTH {
                        st.stack.clear();
                        st.first_pending = false;
                        return Parse::Invalid;
                    }
                    st.stack.push(Level {
                        left: n,
                        attribute: t == b'|',
                    });
                    false
                }
                Tok::Agg(t, _) => close_element(&mut st.stack, t == b'|'),
                _ => close_element(&mut st.stack, false),
            };
            if complete {
                st.first_pending = false;
                reply.answers = st.pending_answers.take();
                return Parse::Frame {
                    frame: RedisFrame::Reply(reply),
                    len: at,
                };
            }
        }
        if at == 0 {
            if started {
                st.reply = Some(reply);
            }
            return Parse::Incomplete;
        }
        st.reply = Some(reply);
        Parse::Frame {
            frame: RedisFrame::Partial {
                answers: st.pending_answers.take(),
            },
            len: at,
        }
    }

    fn parse_request(&self, buf: &[u8], st: &mut RedisFramingState) -> Parse<RedisFrame> {
        if st.req_resync.replace(false) {
            st.req_left = 0;
            st.req_after_loss = true;
        }
        if st.req_left > 0 {
            return match skip_bulks(buf, st.req_left) {
                Ok((0, _)) => Parse::Incomplete,
                Ok((len, left)) => {
                    st.req_left = left;
                    Parse::Skip { len }
                }
                Err(_) => Parse::Invalid,
            };
        }
        match buf.first() {
            None => Parse::Incomplete,
            Some(b'*') => parse_array(buf, st),
            Some(_) => self.parse_inline(buf, st),
        }
    }

    fn parse_inline(&self, buf: &[u8], st: &mut RedisFramingState) -> Parse<RedisFrame> {
        let first = buf.first().copied().unwrap_or(0);
        let text = first.is_ascii_graphic() || matches!(first, b' ' | b'\t' | b'\r' | b'\n');
        if !text {
            return Parse::Invalid;
        }
        let window = buf.get(..self.inline_cap).unwrap_or(buf);
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            return if buf.len() >= self.inline_cap {
                Parse::Invalid
            } else {
                Parse::Incomplete
            };
        };
        let line = window.get(..nl).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let words = InlineArgs::new(line);
        let count = words.clone().count() as u64;
        if count == 0 {
            // An empty line: Redis reads it and answers nothing.
            return Parse::Skip { len: nl + 1 };
        }
        let mut it = words;
        let [a, b, c] = [it.next(), it.next(), it.next()];
        let command = describe(count, a.unwrap_or_default(), b, c, st);
        Parse::Frame {
            frame: RedisFrame::Command(command),
            len: nl + 1,
        }
    }
}

/// Marks one value complete at the current level, closing every aggregate it completes;
/// `true` when the top-level reply is complete. A completed attribute is not an element of
/// its parent (it annotates the next one).
fn close_element(stack: &mut Vec<Level>, mut attribute: bool) -> bool {
    loop {
        if attribute {
            // An attribute (or a value inside one) never completes a reply on its own.
            return false;
        }
        let Some(level) = stack.last_mut() else {
            return true;
        };
        level.left = level.left.saturating_sub(1);
        if level.left > 0 {
            return false;
        }
        attribute = level.attribute;
        stack.pop();
    }
}

/// Classifies a token of the reply in progress: the top-level value's type, word and error,
/// and among its direct elements the first one's word, the first error and the last integer.
fn note(reply: &mut RedisReply, st: &mut RedisFramingState, tok: &Tok<'_>) {
    if st.stack.iter().any(|l| l.attribute) || matches!(tok, Tok::Agg(b'|', _)) {
        return;
    }
    match st.stack.len() {
        0 => {
            let (shape, word, error) = match *tok {
                Tok::Line(b'+', l) => (Shape::Simple, Word::of_simple(l), None),
                Tok::Line(_, l) => (Shape::Error, Word::Other, Some(error_code(l))),
                Tok::Int(_) => (Shape::Integer, Word::Other, None),
                Tok::Bulk(b'!', p) => (Shape::Error, Word::Other, Some(blob_error(p))),
                Tok::Bulk(..) => (Shape::Bulk, Word::Other, None),
                Tok::Null => (Shape::Null, Word::Other, None),
                Tok::Scalar => (Shape::Scalar, Word::Other, None),
                Tok::Agg(t, _) => {
                    let shape = match t {
                        b'>' => Shape::Push,
                        b'%' => Shape::Map,
                        b'~' => Shape::Set,
                        _ => Shape::Array,
                    };
                    st.first_pending = matches!(shape, Shape::Array | Shape::Push);
                    (shape, Word::Other, None)
                }
            };
            reply.shape = shape;
            reply.word = word;
            reply.error = error;
        }
        1 => {
            if std::mem::take(&mut st.first_pending) {
                reply.word = match *tok {
                    Tok::Line(b'+', l) | Tok::Bulk(b'$', Some(l)) => Word::of_element(l),
                    _ => Word::Other,
                };
            }
            match *tok {
                Tok::Line(b'-', l) => {
                    reply.inner_error.get_or_insert_with(|| error_code(l));
                }
                Tok::Bulk(b'!', p) => {
                    reply.inner_error.get_or_insert_with(|| blob_error(p));
                }
                Tok::Int(v) => reply.last_int = Some(v),
                _ => {}
            }
        }
        _ => {}
    }
}

/// The error prefix of an error line (`WRONGTYPE Operation against…` → `WRONGTYPE`): the
/// first word when it is a conventional upper-case code, else empty (exported as `_OTHER`).
/// Never the message, which can echo keys and values.
fn error_code(l: &[u8]) -> String {
    let word = l.split(|&b| b == b' ').next().unwrap_or_default();
    let conventional = !word.is_empty()
        && word.len() <= REDIS_MAX_ERROR_CODE_BYTES
        && word.first().is_some_and(u8::is_ascii_uppercase)
        && word
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if conventional {
        String::from_utf8_lossy(word).into_owned()
    } else {
        String::new()
    }
}

fn blob_error(p: Option<&[u8]>) -> String {
    p.map(error_code).unwrap_or_default()
}

/// Steps over up to `n` bulk strings; returns the bytes used (may run past `buf` when the last
/// one's payload does) and how many are left.
fn skip_bulks(buf: &[u8], mut n: u64) -> Result<(usize, u64), Need> {
    let mut at = 0usize;
    while n > 0 {
        let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) else {
            break;
        };
        if rest.first() != Some(&b'$') {
            return Err(Need::Bad);
        }
        match bulk(rest) {
            Ok((len, _)) => {
                at = at.saturating_add(len);
                n -= 1;
            }
            // A small payload not yet here: stop before it.
            Err(Need::More) => break,
            Err(Need::Bad) => return Err(Need::Bad),
        }
    }
    Ok((at, n))
}

/// One element of a command array: its length and its payload when small and buffered.
fn element(buf: &[u8]) -> Result<(usize, Option<&[u8]>), Need> {
    if buf.first() != Some(&b'$') {
        return match buf.first() {
            None => Err(Need::More),
            Some(_) => Err(Need::Bad),
        };
    }
    bulk(buf)
}

/// A command array (`*<n>\r\n` then `n` bulk strings).
fn parse_array(buf: &[u8], st: &mut RedisFramingState) -> Parse<RedisFrame> {
    let (count, hdr) = match length_line(buf) {
        Ok(v) => v,
        Err(Need::More) => return Parse::Incomplete,
        Err(Need::Bad) => return Parse::Invalid,
    };
    if count <= 0 {
        // `*0` / `*-1`: Redis reads them and answers nothing.
        return Parse::Skip { len: hdr };
    }
    let count = count as u64;
    if count > REDIS_MAX_ARGS {
        return Parse::Invalid;
    }
    // Read the first elements the name needs; every one of them is small or stepped over.
    let mut at = hdr;
    let mut payloads: [Option<&[u8]>; 3] = [None; 3];
    let mut read = 0u64;
    let mut wanted = 1u64;
    while read < wanted.min(count) {
        let Some(rest) = buf.get(at..) else {
            break;
        };
        match element(rest) {
            Ok((len, p)) => {
                if let Some(slot) = usize::try_from(read).ok().and_then(|i| payloads.get_mut(i)) {
                    *slot = p;
                }
                at = at.saturating_add(len);
                read += 1;
            }
            Err(Need::More) => return Parse::Incomplete,
            Err(Need::Bad) => return Parse::Invalid,
        }
        if read == 1 {
            wanted = elements_needed(payloads[0]);
        }
    }
    let [a, b, c] = payloads;
    let command = describe(count, a.unwrap_or_default(), b, c, st);
    // Step over what is buffered of the rest; the remainder is skipped as it arrives.
    let (more, left) = match buf.get(at..) {
        Some(rest) => match skip_bulks(rest, count - read) {
            Ok(v) => v,
            Err(_) => return Parse::Invalid,
        },
        None => (0, count - read),
    };
    st.req_left = left;
    Parse::Frame {
        frame: RedisFrame::Command(command),
        len: at.saturating_add(more),
    }
}

/// How many leading elements describe a command with this first element.
fn elements_needed(first: Option<&[u8]>) -> u64 {
    match first.and_then(commands::command) {
        Some("CLIENT") => 3,
        Some("SELECT" | "HELLO") => 2,
        Some(name) if commands::is_container(name) => 2,
        _ => 1,
    }
}

/// A command from its element count and first three elements (inline words or bulk
/// payloads; `None` when absent or too long to matter). Stamps the sequence number.
fn describe(
    count: u64,
    first: &[u8],
    second: Option<&[u8]>,
    third: Option<&[u8]>,
    st: &mut RedisFramingState,
) -> RedisCommand {
    let mut name = commands::command(first);
    let mut words = 1u64;
    if let (Some(container), Some(sub)) = (name, second)
        && commands::is_container(container)
        && let Some(full) = commands::subcommand(container, sub)
    {
        name = Some(full);
        words = 2;
    }
    let effect = match name {
        Some("SELECT") => Effect::Select(second.and_then(db_index)),
        Some("HELLO") => Effect::Hello(second.and_then(number).and_then(|v| u8::try_from(v).ok())),
        Some("SUBSCRIBE") => Effect::Subscribe(SubKind::Channel, count - 1),
        Some("PSUBSCRIBE") => Effect::Subscribe(SubKind::Pattern, count - 1),
        Some("SSUBSCRIBE") => Effect::Subscribe(SubKind::Shard, count - 1),
        Some("UNSUBSCRIBE") => Effect::Unsubscribe(SubKind::Channel, count - 1),
        Some("PUNSUBSCRIBE") => Effect::Unsubscribe(SubKind::Pattern, count - 1),
        Some("SUNSUBSCRIBE") => Effect::Unsubscribe(SubKind::Shard, count - 1),
        Some("MULTI") => Effect::Multi,
        Some("EXEC") => Effect::Exec,
        Some("DISCARD") => Effect::Discard,
        Some("RESET") => Effect::Reset,
        Some("MONITOR") => Effect::Monitor,
        Some("CLIENT REPLY") if count == 3 => {
            let mode = third.unwrap_or_default();
            if mode.eq_ignore_ascii_case(b"ON") {
                Effect::ClientReply(ReplyMode::On)
            } else if mode.eq_ignore_ascii_case(b"OFF") {
                Effect::ClientReply(ReplyMode::Off)
            } else if mode.eq_ignore_ascii_case(b"SKIP") {
                Effect::ClientReply(ReplyMode::Skip)
            } else {
                Effect::None
            }
        }
        _ => Effect::None,
    };
    st.requests += 1;
    RedisCommand {
        name,
        args: count.saturating_sub(words),
        effect,
        seq: st.requests,
        after_loss: std::mem::take(&mut st.req_after_loss),
    }
}

/// `SELECT`'s argument: a database index (Redis allows 0..databases).
fn db_index(p: &[u8]) -> Option<u32> {
    number(p)
        .filter(|_| p.first() != Some(&b'-'))
        .and_then(|v| u32::try_from(v).ok())
}

/// The words of an inline command line, split like Redis' `sdssplitargs`: blanks separate
/// words, `"…"` (with backslash escapes) and `'…'` quote them. Yields the raw bytes between
/// the quotes (escapes not decoded: only names and small numbers are ever looked at).
#[derive(Clone)]
struct InlineArgs<'a> {
    rest: &'a [u8],
}

impl<'a> InlineArgs<'a> {
    fn new(line: &'a [u8]) -> InlineArgs<'a> {
        InlineArgs { rest: line }
    }
}

impl<'a> Iterator for InlineArgs<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let s = self.rest.get(start..).unwrap_or_default();
        let (word, used) = match s.first() {
            Some(&q @ (b'"' | b'\'')) => {
                let body = s.get(1..).unwrap_or_default();
                let mut i = 0;
                let mut end = None;
                while let Some(&b) = body.get(i) {
                    let escaped_dq = q == b'"' && b == b'\\';
                    let escaped_sq = q == b'\'' && b == b'\\' && body.get(i + 1) == Some(&b'\'');
                    if escaped_dq || escaped_sq {
                        i += 2;
                        continue;
                    }
                    if b == q {
                        end = Some(i);
                        break;
                    }
                    i += 1;
                }
                match end {
                    Some(e) => (body.get(..e).unwrap_or_default(), e + 2),
                    // Unbalanced quotes (Redis answers a protocol error): the rest is one word.
                    None => (body, s.len()),
                }
            }
            _ => {
                let n = s
                    .iter()
                    .position(u8::is_ascii_whitespace)
                    .unwrap_or(s.len());
                (s.get(..n).unwrap_or_default(), n)
            }
        };
        self.rest = s.get(used..).unwrap_or_default();
        Some(word)
    }
}

/// Whether a command plausibly starts at `rest` (a line start): a RESP array whose first bulk
/// string is a known command, or an inline line starting with one. Too few bytes to tell →
/// plausible (parsing decides).
fn plausible_command(rest: &[u8]) -> bool {
    match rest.first() {
        Some(b'*') => {
            let Ok((count, hdr)) = length_line(rest) else {
                return rest.len() < 24 && rest.get(1).is_none_or(u8::is_ascii_digit);
            };
            if count < 1 || count as u64 > REDIS_MAX_ARGS {
                return false;
            }
            match element(rest.get(hdr..).unwrap_or_default()) {
                Ok((_, Some(name))) => commands::command(name).is_some(),
                Ok((_, None)) => false,
                Err(Need::More) => true,
                Err(Need::Bad) => false,
            }
        }
        Some(b) if b.is_ascii_alphabetic() => {
            let n = rest
                .iter()
                .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
                .unwrap_or(rest.len());
            match rest.get(..n) {
                Some(word) if n < rest.len() => commands::command(word).is_some(),
                _ => n <= commands::MAX_NAME_BYTES,
            }
        }
        _ => false,
    }
}

impl Framer for RedisFramer {
    type Frame = RedisFrame;
    type State = RedisFramingState;

    fn new(limits: ParserLimits) -> RedisFramer {
        // Never wait for more than the stream can buffer.
        let room = limits.max_buffer_bytes.saturating_sub(1).max(16);
        RedisFramer {
            inline_cap: REDIS_MAX_INLINE_BYTES.min(room),
            line_cap: REDIS_MAX_LINE_BYTES.min(room),
        }
    }

    fn parse(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut RedisFramingState,
    ) -> Parse<RedisFrame> {
        match kind {
            MessageKind::Request => self.parse_request(buf, state),
            MessageKind::Response => self.parse_reply(buf, state),
        }
    }

    fn find_boundary(
        &self,
        kind: MessageKind,
        buf: &[u8],
        from: usize,
        state: &RedisFramingState,
    ) -> Option<usize> {
        match kind {
            MessageKind::Request => {
                state.req_resync.set(true);
                (from..buf.len()).find(|&i| {
                    let line_start = i == 0 || buf.get(i - 1) == Some(&b'\n');
                    line_start && plausible_command(buf.get(i..).unwrap_or_default())
                })
            }
            // Replies cannot be resynchronised from the bytes: the parse that follows
            // discards them until a chunk after the next command (see `lost`).
            MessageKind::Response => {
                state.resp_resync.set(true);
                if from > 0 {
                    state.resp_mid.set(true);
                }
                (from < buf.len()).then_some(from)
            }
        }
    }

    fn parse_before_gap(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut RedisFramingState,
    ) -> Parse<RedisFrame> {
        // Commands and replies are already cut from prefixes (lengths are stepped over);
        // nothing more can be read from a prefix.
        self.parse(kind, buf, state)
    }
}
