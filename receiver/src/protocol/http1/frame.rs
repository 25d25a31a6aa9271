//! `Http1Framer`: cuts HTTP/1.x messages off a byte stream (RFC 9112).
//!
//! A message is a head (start line, header fields, an empty line; §2.1) and a body delimited
//! by the rules of §6.3, in this order:
//! 1. a response to HEAD, a 1xx, 204 or 304 has no body;
//! 2. a 2xx to CONNECT has no body and the connection becomes a tunnel (so does a 101);
//! 3. Transfer-Encoding whose final coding is `chunked`: chunks up to the last chunk and the
//!    trailer section (§7.1); a request with another final coding is rejected by servers (400),
//!    a response with one is read until the close;
//! 4. Content-Length (a list of equal values is one value; different values are invalid);
//! 5. otherwise a request has no body and a response runs until the connection closes.
//!
//! The framer never needs body bytes: a Content-Length message is ONE frame whose `len` covers
//! head and body (the pipeline discards the body as it arrives, whether captured, truncated or
//! moved by sendfile, and stamps the frame with the time of its true last byte). A chunked body
//! is followed by its chunk-size lines, each chunk's data skipped with `Parse::Skip` (which may
//! run past the buffered bytes), and ends in a [`Http1Frame::BodyEnd`] frame cut at the last
//! chunk and trailers, whose time is the message's end. A response that ends at the close is
//! one frame of length [`UNTIL_CLOSE`].
//!
//! Response framing depends on the request method, so the framing state (shared by both
//! directions) keeps a bounded FIFO of the methods of requests not answered yet.

use crate::protocol::http1::types::*;
use crate::protocol::{Framer, MessageKind, Parse, ParserLimits, UNTIL_CLOSE};

/// Frames HTTP/1.x messages. Holds only the head cap derived from [`ParserLimits`].
#[derive(Debug)]
pub struct Http1Framer {
    head_cap: usize,
}

impl Default for Http1Framer {
    fn default() -> Self {
        <Http1Framer as Framer>::new(ParserLimits::default())
    }
}

/// Whether a message plausibly starts at the head of some bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// A whole, well-formed start line.
    Yes,
    /// A valid prefix of a start line; more bytes will tell.
    Maybe,
    No,
}

impl Framer for Http1Framer {
    type Frame = Http1Frame;
    type State = Http1FramingState;

    fn new(limits: ParserLimits) -> Http1Framer {
        // Never wait for more than the stream can buffer.
        let room = limits.max_buffer_bytes.saturating_sub(8).max(64);
        Http1Framer {
            head_cap: HTTP_MAX_HEAD_BYTES.min(room),
        }
    }

    fn parse(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut Http1FramingState,
    ) -> Parse<Http1Frame> {
        if state.tunnel {
            // After 101 or CONNECT's 2xx the bytes belong to another protocol.
            return Parse::Skip { len: UNTIL_CLOSE };
        }
        let dir = state.of(kind);
        if dir.resyncing.replace(false) {
            // Bytes were lost: a chunked body in progress cannot be followed any further.
            dir.body = BodyState::Head;
            dir.after_gap = true;
            dir.scanned = 0;
        }
        match dir.body {
            BodyState::Chunked { total } => self.parse_chunk(kind, buf, state, total),
            BodyState::Head => {
                // RFC 9112 §2.2: empty lines before a start line are ignored.
                match buf {
                    [b'\n', ..] => return Parse::Skip { len: 1 },
                    [b'\r', b'\n', ..] => return Parse::Skip { len: 2 },
                    [b'\r'] => return Parse::Incomplete,
                    _ => {}
                }
                match kind {
                    MessageKind::Request => self.parse_request(buf, state),
                    MessageKind::Response => self.parse_response(buf, state),
                }
            }
        }
    }

    fn find_boundary(
        &self,
        kind: MessageKind,
        buf: &[u8],
        from: usize,
        state: &Http1FramingState,
    ) -> Option<usize> {
        // Called only when bytes were lost or rejected: the next parse starts afresh.
        state.get(kind).resyncing.set(true);
        let at = |i: usize| buf.get(i..).unwrap_or_default();
        match kind {
            MessageKind::Request => (from..buf.len()).find(|&i| known_request_start(at(i))),
            MessageKind::Response => (from..buf.len()).find(|&i| status_line(at(i)).0 != Start::No),
        }
    }
}

impl Http1Framer {
    fn parse_request(&self, buf: &[u8], state: &mut Http1FramingState) -> Parse<Http1Frame> {
        // The start line is checked as it arrives, until a later call knows it is whole.
        if state.request.scanned == 0 {
            match request_line(buf).0 {
                Start::No => return Parse::Invalid,
                Start::Maybe => return Parse::Incomplete,
                Start::Yes => {}
            }
        }
        let (head_len, fields) =
            match self.head(buf, after_first_line(buf), &mut state.request.scanned) {
                Head::Complete { len, fields } => (len, fields),
                Head::Incomplete { .. } => return Parse::Incomplete,
                Head::Invalid => return Parse::Invalid,
            };
        let (Start::Yes, Some(line)) = request_line(buf) else {
            return Parse::Invalid;
        };
        // §6.3 rules 3–5 for requests: a Transfer-Encoding that does not end in chunked is
        // answered 400 and the connection closed; no length means no body.
        let body = match (fields.te, fields.content_length) {
            (Some(true), _) => Http1Body::Chunked,
            (Some(false), _) => return Parse::Invalid,
            (None, Some(n)) => Http1Body::Length(n),
            (None, None) => Http1Body::None,
        };
        let Some(len) = frame_len(head_len, body) else {
            return Parse::Invalid;
        };
        let method = Http1Method::from_token(line.method);
        if state.request.after_gap && !matches!(method, Http1Method::Known(_)) {
            // Resync lands only on known methods; a candidate cut by the end of a read ("C…")
            // must not turn into one that is not (body bytes run into the next request line
            // would become `http.request.method_original`).
            return Parse::Invalid;
        }
        let target = Target::parse(line.target, &method);
        let (host, port) = match target.authority {
            Some(a) => parse_authority(a),
            None => fields.host.map_or((None, None), parse_authority),
        };
        state.methods.push(method.kind());
        let dir = &mut state.request;
        if body == Http1Body::Chunked {
            dir.body = BodyState::Chunked { total: 0 };
        }
        let after_gap = std::mem::take(&mut dir.after_gap);
        Parse::Frame {
            frame: Http1Frame::Request(Http1Request {
                method,
                path: target.path.map(|p| cap_text(p, HTTP_MAX_PATH_BYTES)),
                query: target.query.map(|q| redact_query(q, HTTP_MAX_QUERY_BYTES)),
                host,
                port,
                user_agent: fields
                    .user_agent
                    .filter(|ua| !ua.is_empty())
                    .map(|ua| cap_text(ua, HTTP_MAX_USER_AGENT_BYTES)),
                minor: line.minor,
                body,
                after_gap,
            }),
            len,
        }
    }

    fn parse_response(&self, buf: &[u8], state: &mut Http1FramingState) -> Parse<Http1Frame> {
        let (start, status) = status_line(buf);
        match start {
            Start::No => return Parse::Invalid,
            Start::Maybe => return Parse::Incomplete,
            Start::Yes => {}
        }
        let Some((minor, status)) = status else {
            return Parse::Invalid;
        };
        let (head_len, fields) =
            match self.head(buf, after_first_line(buf), &mut state.response.scanned) {
                Head::Complete { len, fields } => (len, fields),
                Head::Incomplete { .. } => return Parse::Incomplete,
                Head::Invalid => return Parse::Invalid,
            };
        let interim = (100..200).contains(&status) && status != 101;
        let body = if interim {
            // An interim response answers no request by itself: the method stays queued.
            Http1Body::None
        } else {
            // No request seen for it (attached mid-connection, or lost): a response to HEAD
            // cannot be told apart, except when the next response follows it at once.
            let method = state.methods.pop().unwrap_or_else(|| {
                let next = buf.get(head_len..).unwrap_or_default();
                if status_line(next).0 == Start::No || next.is_empty() {
                    MethodKind::Other
                } else {
                    MethodKind::Head
                }
            });
            let success = (200..300).contains(&status);
            if status == 101 || (method == MethodKind::Connect && success) {
                state.tunnel = true;
                Http1Body::None
            } else if method == MethodKind::Head || status == 204 || status == 304 {
                Http1Body::None
            } else {
                match (fields.te, fields.content_length) {
                    (Some(true), _) => Http1Body::Chunked,
                    (Some(false), _) => Http1Body::UntilClose,
                    (None, Some(n)) => Http1Body::Length(n),
                    (None, None) => Http1Body::UntilClose,
                }
            }
        };
        let Some(len) = frame_len(head_len, body) else {
            return Parse::Invalid;
        };
        let dir = &mut state.response;
        if body == Http1Body::Chunked {
            dir.body = BodyState::Chunked { total: 0 };
        }
        let after_gap = std::mem::take(&mut dir.after_gap);
        Parse::Frame {
            frame: Http1Frame::Response(Http1Response {
                status,
                minor,
                body,
                after_gap,
            }),
            len,
        }
    }

    /// One step inside a chunked body (RFC 9112 §7.1): a chunk is skipped whole (size line,
    /// data, CRLF) without its data being buffered; the last chunk and trailers are a frame.
    fn parse_chunk(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut Http1FramingState,
        total: u64,
    ) -> Parse<Http1Frame> {
        let Some(nl) = buf
            .iter()
            .take(HTTP_MAX_CHUNK_LINE_BYTES)
            .position(|&b| b == b'\n')
        else {
            let plausible = buf.first().is_some_and(u8::is_ascii_hexdigit)
                && buf.len() < HTTP_MAX_CHUNK_LINE_BYTES;
            return if plausible {
                Parse::Incomplete
            } else {
                Parse::Invalid
            };
        };
        let line = buf.get(..nl).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(size) = chunk_size(line) else {
            return Parse::Invalid;
        };
        let line_len = nl + 1;
        if size > 0 {
            let Some(total) = total
                .checked_add(size)
                .filter(|&t| t <= HTTP_MAX_BODY_BYTES)
            else {
                return Parse::Invalid;
            };
            state.of(kind).body = BodyState::Chunked { total };
            // The chunk's data and the CRLF after it.
            let skip = usize::try_from(size)
                .ok()
                .and_then(|s| s.checked_add(line_len + 2));
            return match skip {
                Some(len) => Parse::Skip { len },
                None => Parse::Invalid,
            };
        }
        // The last chunk: the trailer section (fields, validated and never kept) ends at an
        // empty line.
        let rest = buf.get(line_len..).unwrap_or_default();
        let trailers = match self.head(rest, 0, &mut state.of(kind).scanned) {
            Head::Complete { len, .. } => len,
            Head::Incomplete { .. } => return Parse::Incomplete,
            Head::Invalid => return Parse::Invalid,
        };
        state.of(kind).body = BodyState::Head;
        Parse::Frame {
            frame: Http1Frame::BodyEnd { size: total },
            len: line_len + trailers,
        }
    }

    /// [`read_head`](Self::read_head) resumed where an earlier call on the same head stopped
    /// (`scanned`: the first line not known whole, 0 when nothing is known), so a head that
    /// arrives a byte at a time is scanned once, not once per byte. The fields of a whole head
    /// are then read in one more pass.
    fn head<'a>(&self, buf: &'a [u8], first_field: usize, scanned: &mut usize) -> Head<'a> {
        if *scanned > buf.len() {
            *scanned = 0;
        }
        if *scanned > first_field {
            match self.read_head(buf, *scanned, false) {
                Head::Incomplete { resume } => {
                    *scanned = resume;
                    return Head::Incomplete { resume };
                }
                Head::Invalid => {
                    *scanned = 0;
                    return Head::Invalid;
                }
                Head::Complete { .. } => {}
            }
        }
        let head = self.read_head(buf, first_field, true);
        *scanned = match head {
            // A head's resume point is past its whole start line (never 0), which the next
            // call then does not check again.
            Head::Incomplete { resume } => resume,
            Head::Complete { .. } | Head::Invalid => 0,
        };
        head
    }

    /// Reads the field lines of a head from `from` (just after its start line) to its empty
    /// line, in one pass: the head's length and the fields framing needs. A complete line that
    /// is not a field is invalid at once; a head over the cap is invalid, not buffered on.
    fn read_head<'a>(&self, buf: &'a [u8], from: usize, mut first: bool) -> Head<'a> {
        let mut fields = Fields::default();
        let mut at = from;
        loop {
            let rest = buf.get(at..).unwrap_or_default();
            let (line_len, nl) = match line_end(rest) {
                LineEnd::Line { len, newline } => (len, newline),
                LineEnd::Incomplete => {
                    return if buf.len() >= self.head_cap {
                        Head::Invalid
                    } else {
                        Head::Incomplete { resume: at }
                    };
                }
                LineEnd::Invalid => return Head::Invalid,
            };
            let end = at + nl + 1;
            if end > self.head_cap {
                return Head::Invalid;
            }
            let line = rest.get(..line_len).unwrap_or_default();
            if line.is_empty() {
                return Head::Complete { len: end, fields };
            }
            if fields.add(line, first).is_none() {
                return Head::Invalid;
            }
            first = false;
            at = end;
        }
    }
}

/// Where the line at the start of a head's remaining bytes ends.
pub(super) enum LineEnd {
    /// `len` bytes of content, then a CRLF or LF whose `\n` is at `newline`.
    Line { len: usize, newline: usize },
    /// No line end yet.
    Incomplete,
    /// A NUL, or a CR not followed by LF (RFC 9110 §5.5: invalid and dangerous in a field;
    /// a bare CR would join two lines into one value).
    Invalid,
}

/// The end of the first line of `rest`, found in one pass over its control bytes (eight bytes
/// at a time): the line's content never holds a CR or NUL when this returns a `Line`.
pub(super) fn line_end(rest: &[u8]) -> LineEnd {
    let mut scan = 0;
    loop {
        let Some(c) = find_control(rest.get(scan..).unwrap_or_default()) else {
            return LineEnd::Incomplete;
        };
        let pos = scan + c;
        match rest.get(pos) {
            Some(b'\n') => {
                return LineEnd::Line {
                    len: pos,
                    newline: pos,
                };
            }
            Some(b'\r') => {
                return match rest.get(pos + 1) {
                    Some(b'\n') => LineEnd::Line {
                        len: pos,
                        newline: pos + 1,
                    },
                    None => LineEnd::Incomplete,
                    Some(_) => LineEnd::Invalid,
                };
            }
            Some(0) => return LineEnd::Invalid,
            // A tab or another control byte: the field's own checks judge it.
            _ => scan = pos + 1,
        }
    }
}

/// What reading a head's field lines gave.
enum Head<'a> {
    Complete {
        len: usize,
        fields: Fields<'a>,
    },
    /// Lines before `resume` are valid fields; the line there is not whole yet.
    Incomplete {
        resume: usize,
    },
    Invalid,
}

/// Offset just past the first line of `buf` (its start line, known to be complete).
fn after_first_line(buf: &[u8]) -> usize {
    find_byte(buf, b'\n').map_or(buf.len(), |n| n + 1)
}

/// Offset of the first `needle` in `hay` (heads are scanned for line ends on every message, so
/// this is the framer's inner loop).
pub(super) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    find_below(hay, needle, 1)
}

/// Offset of the first control byte (below 0x20) in `hay`.
pub(super) fn find_control(hay: &[u8]) -> Option<usize> {
    find_below(hay, 0, 0x20)
}

/// Offset of the first byte `b` of `hay` with `b ^ xor < limit` (`limit` ≤ 0x80), eight bytes
/// at a time. Per byte, `x - limit` sets the top bit for `x < limit` (and for `x >= 0x80 +
/// limit`, which `!x` masks out); borrows only flag bytes above a real one, so the lowest flag
/// is exact.
fn find_below(hay: &[u8], xor: u8, limit: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(u64::from(xor));
    let below = LO.wrapping_mul(u64::from(limit));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word) ^ pattern;
        let flags = x.wrapping_sub(below) & !x & HI;
        if flags != 0 {
            return Some(base + (flags.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b ^ xor < limit)
        .map(|p| base + p)
}

/// `head_len` plus a Content-Length body, or the close; `None` when it does not fit.
fn frame_len(head_len: usize, body: Http1Body) -> Option<usize> {
    match body {
        Http1Body::Length(n) => usize::try_from(n).ok()?.checked_add(head_len),
        Http1Body::UntilClose => Some(UNTIL_CLOSE),
        Http1Body::None | Http1Body::Chunked => Some(head_len),
    }
}

/// The pieces of a request line.
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    minor: u8,
}

/// Checks `method SP request-target SP HTTP/1.x CRLF` (RFC 9112 §3) at the head of `buf`,
/// as far as `buf` goes. A bare LF ends a line too (§2.2).
fn request_line(buf: &[u8]) -> (Start, Option<RequestLine<'_>>) {
    let method_len = buf.iter().take_while(|&&b| is_tchar(b)).count();
    if method_len == buf.len() {
        return (prefix_ok(method_len > 0 || buf.is_empty()), None);
    }
    if method_len == 0 || method_len > HTTP_MAX_METHOD_BYTES || buf.get(method_len) != Some(&b' ') {
        return (Start::No, None);
    }
    let t0 = method_len + 1;
    let rest = buf.get(t0..).unwrap_or_default();
    let target_len = rest.iter().take_while(|&&b| b > b' ' && b != 0x7f).count();
    if t0 + target_len > HTTP_MAX_REQUEST_LINE_BYTES {
        return (Start::No, None);
    }
    if target_len == rest.len() {
        return (Start::Maybe, None);
    }
    if target_len == 0 || rest.get(target_len) != Some(&b' ') {
        return (Start::No, None);
    }
    let v0 = t0 + target_len + 1;
    let (start, minor) = version_then_eol(buf.get(v0..).unwrap_or_default());
    let line = minor.map(|minor| RequestLine {
        method: buf.get(..method_len).unwrap_or_default(),
        target: rest.get(..target_len).unwrap_or_default(),
        minor,
    });
    (start, line)
}

/// `HTTP/1.0` or `HTTP/1.1` then the end of the line.
fn version_then_eol(v: &[u8]) -> (Start, Option<u8>) {
    const VERSION: &[u8] = b"HTTP/1.";
    let n = v.len().min(VERSION.len());
    if v.get(..n) != VERSION.get(..n) {
        return (Start::No, None);
    }
    let minor = match v.get(VERSION.len()) {
        None => return (Start::Maybe, None),
        Some(b'0') => 0,
        Some(b'1') => 1,
        Some(_) => return (Start::No, None),
    };
    match v.get(VERSION.len() + 1..) {
        Some([b'\n', ..]) | Some([b'\r', b'\n', ..]) => (Start::Yes, Some(minor)),
        Some([]) | Some([b'\r']) | None => (Start::Maybe, None),
        Some(_) => (Start::No, None),
    }
}

fn prefix_ok(ok: bool) -> Start {
    if ok { Start::Maybe } else { Start::No }
}

/// A request of a method the conventions know starts at the head of `rest` (or may: `rest`
/// is a prefix of one). Resync only lands on known methods: bodies rarely contain them.
fn known_request_start(rest: &[u8]) -> bool {
    HTTP_KNOWN_METHODS.iter().any(|m| {
        let m = m.as_bytes();
        if rest.len() <= m.len() {
            return m.starts_with(rest);
        }
        rest.starts_with(m) && rest.get(m.len()) == Some(&b' ') && request_line(rest).0 != Start::No
    })
}

/// Checks `HTTP/1.x SP 3DIGIT SP reason-phrase CRLF` (RFC 9112 §4; the SP before an empty
/// reason is often left out) at the head of `buf`: (verdict, (minor, status)).
fn status_line(buf: &[u8]) -> (Start, Option<(u8, u16)>) {
    const VERSION: &[u8] = b"HTTP/1.";
    let n = buf.len().min(VERSION.len());
    if buf.get(..n) != VERSION.get(..n) {
        return (Start::No, None);
    }
    let mut at = VERSION.len();
    let minor = match buf.get(at) {
        None => return (Start::Maybe, None),
        Some(b'0') => 0,
        Some(b'1') => 1,
        Some(_) => return (Start::No, None),
    };
    at += 1;
    match buf.get(at) {
        None => return (Start::Maybe, None),
        Some(b' ') => at += 1,
        Some(_) => return (Start::No, None),
    }
    let mut status: u16 = 0;
    for _ in 0..3 {
        match buf.get(at) {
            None => return (Start::Maybe, None),
            Some(d) if d.is_ascii_digit() => status = status * 10 + u16::from(d - b'0'),
            Some(_) => return (Start::No, None),
        }
        at += 1;
    }
    if status < 100 {
        return (Start::No, None);
    }
    match buf.get(at) {
        None => return (Start::Maybe, None),
        Some(b' ') | Some(b'\r') | Some(b'\n') => {}
        Some(_) => return (Start::No, None),
    }
    // The reason phrase: any text up to the end of the line.
    let rest = buf.get(at..).unwrap_or_default();
    match rest
        .iter()
        .take(HTTP_MAX_REQUEST_LINE_BYTES)
        .position(|&b| b == b'\n')
    {
        Some(nl) => {
            let reason = rest.get(..nl).unwrap_or_default();
            let reason = reason.strip_suffix(b"\r").unwrap_or(reason);
            if reason
                .iter()
                .any(|&b| b == b'\r' || (b < b' ' && b != b'\t'))
            {
                return (Start::No, None);
            }
            (Start::Yes, Some((minor, status)))
        }
        None if rest.len() < HTTP_MAX_REQUEST_LINE_BYTES => (Start::Maybe, None),
        None => (Start::No, None),
    }
}

/// A chunk-size line: hex size, then nothing, or chunk extensions after optional whitespace.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let hex = line.get(..digits)?;
    let significant = hex.iter().skip_while(|&&b| b == b'0').count();
    if digits == 0 || significant > 15 {
        return None;
    }
    let rest = line.get(digits..)?;
    let rest_ok = rest
        .iter()
        .find(|&&b| b != b' ' && b != b'\t')
        .is_none_or(|&b| b == b';');
    if !rest_ok {
        return None;
    }
    let size = hex.iter().try_fold(0u64, |acc, &b| {
        let d = u64::from((b as char).to_digit(16)?);
        acc.checked_mul(16)?.checked_add(d)
    })?;
    (size <= HTTP_MAX_BODY_BYTES).then_some(size)
}

/// An obsolete line folding (RFC 9112 §5.2): a continuation of the previous field's value.
fn is_fold(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ') | Some(b'\t'))
}

/// `name: value` with a token name and no whitespace before the colon (RFC 9112 §5.1): the
/// name and the value without surrounding whitespace.
fn field_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line.get(..colon)?;
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let value = line.get(colon + 1..)?;
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !ws(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    Some((name, value.get(start..end.max(start))?))
}

/// The header fields of a head that framing and spans need; every other value is stepped over.
#[derive(Debug, Default)]
struct Fields<'a> {
    content_length: Option<u64>,
    /// Transfer-Encoding present: whether its final coding is `chunked`.
    te: Option<bool>,
    host: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Takes one field line (not empty, and without CR or NUL: [`line_end`] rejects those);
    /// `None` when it is not a field or the framing fields contradict each other. `first`: the
    /// head's first field line (it cannot be a folding).
    fn add(&mut self, line: &'a [u8], first: bool) -> Option<()> {
        if is_fold(line) {
            return (!first).then_some(());
        }
        let (name, value) = field_line(line)?;
        // Most fields are none of the four: their length says so without a comparison.
        if !matches!(name.len(), 4 | 10 | 14 | 17) {
            return Some(());
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            // `5, 5` is one length (RFC 9110 §8.6); different lengths are an attack or a
            // broken peer: not framed.
            for item in value.split(|&b| b == b',') {
                let n = parse_decimal(trim(item))?;
                if self.content_length.is_some_and(|m| m != n) {
                    return None;
                }
                self.content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value
                .split(|&b| b == b',')
                .map(trim)
                .rfind(|c| !c.is_empty());
            if let Some(last) = last {
                self.te = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name.eq_ignore_ascii_case(b"host") && is_clean(value) {
            self.host.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"user-agent") && is_clean(value) {
            self.user_agent.get_or_insert(value);
        }
        Some(())
    }
}

/// A field value without control characters (RFC 9110 §5.5: CR, LF and NUL are never valid,
/// and a bare CR would mean two lines ran together): only such a value is kept.
fn is_clean(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    s.get(start..end.max(start)).unwrap_or_default()
}

/// 1DIGIT… as a body length (at most [`HTTP_MAX_BODY_BYTES`]).
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    (n <= HTTP_MAX_BODY_BYTES).then_some(n)
}

/// A request target split into what spans use (RFC 9112 §3.2).
struct Target<'a> {
    path: Option<&'a [u8]>,
    query: Option<&'a [u8]>,
    /// From the absolute form (`http://host:port/p`) or CONNECT's authority form.
    authority: Option<&'a [u8]>,
}

impl<'a> Target<'a> {
    fn parse(t: &'a [u8], method: &Http1Method) -> Target<'a> {
        if *method == Http1Method::Known("CONNECT") {
            return Target {
                path: None,
                query: None,
                authority: Some(t),
            };
        }
        let mut authority = None;
        let mut rest = t;
        for scheme in [&b"http://"[..], b"https://"] {
            if t.len() >= scheme.len()
                && t.get(..scheme.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            {
                let after = t.get(scheme.len()..).unwrap_or_default();
                let end = after
                    .iter()
                    .position(|&b| b == b'/' || b == b'?' || b == b'#')
                    .unwrap_or(after.len());
                authority = after.get(..end);
                rest = after.get(end..).unwrap_or_default();
            }
        }
        // A fragment never reaches a server, but drop it if a client sends one.
        let rest = match rest.iter().position(|&b| b == b'#') {
            Some(h) => rest.get(..h).unwrap_or_default(),
            None => rest,
        };
        let (path, query) = match rest.iter().position(|&b| b == b'?') {
            Some(q) => (
                rest.get(..q).unwrap_or_default(),
                rest.get(q + 1..).map(|q| q as &[u8]),
            ),
            None => (rest, None),
        };
        let path = if path.is_empty() && authority.is_some() {
            Some(&b"/"[..])
        } else {
            Some(path).filter(|p| !p.is_empty())
        };
        Target {
            path,
            query,
            authority,
        }
    }
}
