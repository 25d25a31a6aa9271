//! HTTP/1.x frames, framing state and the text helpers (caps, query redaction).

use std::cell::Cell;
use std::collections::VecDeque;

use crate::protocol::MessageKind;

/// Most bytes of a message head (start line and header fields) the framer waits for; a head
/// that runs longer is not HTTP we can follow (nginx's default for a whole head is 4 × 8 KiB).
pub const HTTP_MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most bytes of a chunk-size line (size and chunk extensions, RFC 9112 §7.1.1).
pub const HTTP_MAX_CHUNK_LINE_BYTES: usize = 1024;
/// Most bytes of the request line the framer waits for before it must see its end.
pub const HTTP_MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;
/// Caps of the strings a record keeps.
pub const HTTP_MAX_PATH_BYTES: usize = 512;
pub const HTTP_MAX_QUERY_BYTES: usize = 512;
pub const HTTP_MAX_HOST_BYTES: usize = 255;
pub const HTTP_MAX_USER_AGENT_BYTES: usize = 256;
pub const HTTP_MAX_METHOD_BYTES: usize = 32;
/// Runs of request methods remembered for response framing (see [`MethodFifo`]).
pub const HTTP_MAX_METHOD_RUNS: usize = 64;
/// A body length beyond this is not believed (no real body is 4 EiB long).
pub const HTTP_MAX_BODY_BYTES: u64 = 1 << 62;

/// The methods the semantic conventions know (RFC 9110 §9, PATCH from RFC 5789, QUERY). Any
/// other is `_OTHER` with the original kept apart.
pub const HTTP_KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
];

/// Substrings of a query key (lower-cased, percent-decoded) whose value is replaced by
/// `REDACTED`. Over-redacting (`passport`, `monkey`) is the accepted price of never leaking.
pub const HTTP_SENSITIVE_KEY_PARTS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "pwd",
    "pass",
    "key",
    "secret",
    "signature",
    "sig",
    "auth",
    "credential",
    "session",
    "jwt",
    "cookie",
    "private",
    "otp",
    "code",
];

/// What the framer cut off the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Http1Frame {
    /// A request head; with a Content-Length body the frame covers the body too.
    Request(Http1Request),
    /// A response head; with a Content-Length body the frame covers the body, with a body that
    /// ends at the close the frame runs to the close.
    Response(Http1Response),
    /// The last chunk and trailer section of a chunked body (the frame holds the body's last
    /// byte, so its time is the message's end). `size`: the sum of the chunk sizes.
    BodyEnd { size: u64 },
}

/// How a message's body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http1Body {
    /// No body (a request without Content-Length or Transfer-Encoding, a response to HEAD,
    /// 1xx, 204, 304, a 2xx to CONNECT).
    None,
    /// Content-Length: the frame covers it.
    Length(u64),
    /// Transfer-Encoding ending in `chunked`: a [`Http1Frame::BodyEnd`] frame follows.
    Chunked,
    /// A response without either: the body ends when the connection closes.
    UntilClose,
}

impl Http1Body {
    /// The body size a span reports, when the head tells it.
    pub fn size(self) -> Option<u64> {
        match self {
            Http1Body::Length(n) => Some(n),
            Http1Body::None | Http1Body::Chunked | Http1Body::UntilClose => None,
        }
    }
}

/// Registered methods (IANA HTTP Method Registry) that the uppercase-letters rule of
/// [`Http1Method::from_token`] would not keep.
const HTTP_REGISTERED_ODD_METHODS: &[&str] =
    &["BASELINE-CONTROL", "VERSION-CONTROL", "UPDATEREDIRECTREF"];

/// The method of a request: one the conventions know, or another token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Http1Method {
    Known(&'static str),
    /// Not one the conventions know; the token is kept (for `http.request.method_original`)
    /// only when it looks like a method: a registered one, or at most 16 uppercase letters
    /// (`PURGE`, `PROPFIND`, `BAN`). Anything else may be body bytes of a request sent without
    /// a length, which run into the next request line: those never leave.
    Other(Option<String>),
}

impl Http1Method {
    pub fn from_token(token: &[u8]) -> Http1Method {
        if let Some(m) = HTTP_KNOWN_METHODS.iter().find(|m| m.as_bytes() == token) {
            return Http1Method::Known(m);
        }
        let method_like = (1..=16).contains(&token.len())
            && token.iter().all(u8::is_ascii_uppercase)
            || HTTP_REGISTERED_ODD_METHODS
                .iter()
                .any(|m| m.as_bytes() == token);
        Http1Method::Other(method_like.then(|| cap_text(token, HTTP_MAX_METHOD_BYTES)))
    }

    /// What response framing needs to know of the method.
    pub fn kind(&self) -> MethodKind {
        match self {
            Http1Method::Known("HEAD") => MethodKind::Head,
            Http1Method::Known("CONNECT") => MethodKind::Connect,
            _ => MethodKind::Other,
        }
    }
}

/// A request head: only the fields a span uses. `Authorization`, `Cookie` and every other
/// header value are never copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http1Request {
    pub method: Http1Method,
    /// `url.path` (origin-form or absolute-form target; `*` for `OPTIONS *`); `None` for
    /// CONNECT's authority-form.
    pub path: Option<String>,
    /// `url.query` with sensitive values redacted; `None` when the target has no `?`.
    pub query: Option<String>,
    /// Host and port from the absolute-form target or CONNECT authority, else `Host`.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user_agent: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub body: Http1Body,
    /// Bytes were lost or skipped just before this head (a gap, a resync): earlier requests
    /// may be missing.
    pub after_gap: bool,
}

/// A response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http1Response {
    pub status: u16,
    pub minor: u8,
    pub body: Http1Body,
    /// Bytes were lost or skipped just before this head: earlier responses may be missing.
    pub after_gap: bool,
}

impl Http1Response {
    /// 1xx other than 101: an interim response, followed by the final one (RFC 9110 §15.2).
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// What response framing needs to know of a request's method (RFC 9112 §6.3 rules 1–2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    /// The response has no body whatever its headers say.
    Head,
    /// A 2xx response has no body and turns the connection into a tunnel.
    Connect,
    Other,
}

/// The methods of requests whose final response has not been framed yet, oldest first,
/// run-length encoded so a deep pipeline of GETs costs one entry. Bounded: past
/// [`HTTP_MAX_METHOD_RUNS`] runs the oldest is forgotten and its responses are framed as if
/// the method were a GET (which only matters for HEAD and CONNECT).
#[derive(Clone, Debug, Default)]
pub struct MethodFifo {
    runs: VecDeque<(MethodKind, u32)>,
}

impl MethodFifo {
    pub fn push(&mut self, kind: MethodKind) {
        if let Some((k, n)) = self.runs.back_mut()
            && *k == kind
            && *n < u32::MAX
        {
            *n += 1;
            return;
        }
        if self.runs.len() >= HTTP_MAX_METHOD_RUNS {
            self.runs.pop_front();
        }
        self.runs.push_back((kind, 1));
    }

    /// The oldest method, removed; `None` when no request is pending (attached mid-stream).
    pub fn pop(&mut self) -> Option<MethodKind> {
        let (kind, n) = self.runs.front_mut()?;
        let kind = *kind;
        *n -= 1;
        if *n == 0 {
            self.runs.pop_front();
        }
        Some(kind)
    }

    pub fn len(&self) -> usize {
        self.runs.iter().map(|&(_, n)| n as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// Where one direction is inside a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyState {
    /// At a message head (or resyncing to one).
    #[default]
    Head,
    /// Inside a chunked body, at a chunk-size line; `total`: chunk bytes so far.
    Chunked { total: u64 },
}

/// Per-connection framing state, shared by both directions: response framing depends on the
/// request's method.
#[derive(Debug, Default)]
pub struct Http1FramingState {
    pub methods: MethodFifo,
    pub request: DirectionState,
    pub response: DirectionState,
    /// A 101 Switching Protocols or a 2xx to CONNECT: the rest of the connection is not HTTP.
    pub tunnel: bool,
}

impl Http1FramingState {
    pub fn of(&mut self, kind: MessageKind) -> &mut DirectionState {
        match kind {
            MessageKind::Request => &mut self.request,
            MessageKind::Response => &mut self.response,
        }
    }

    pub fn get(&self, kind: MessageKind) -> &DirectionState {
        match kind {
            MessageKind::Request => &self.request,
            MessageKind::Response => &self.response,
        }
    }
}

/// Framing state of one direction.
#[derive(Debug, Default)]
pub struct DirectionState {
    pub body: BodyState,
    /// Set by `find_boundary` (which sees the state read-only): the pipeline is resyncing this
    /// direction after a gap or invalid bytes. The next `parse` drops any chunked body in
    /// progress and marks the next head `after_gap`.
    pub resyncing: Cell<bool>,
    /// The next head follows lost or skipped bytes.
    pub after_gap: bool,
    /// Offset of the first line of the head being received that is not known whole (0: none
    /// seen yet): a head arriving in many reads is scanned once.
    pub scanned: usize,
}

// ---- text helpers ---------------------------------------------------------------------------

/// Bytes as text of at most `cap` bytes (invalid UTF-8 becomes U+FFFD, still within the cap).
pub fn cap_text(bytes: &[u8], cap: usize) -> String {
    crate::protocol::text_within(bytes, cap)
}

/// RFC 9110 §5.6.2 `tchar` (a `match`, which compiles to bit tests: every byte of every field
/// name goes through it).
pub fn is_tchar(b: u8) -> bool {
    matches!(
        b,
        b'0'..=b'9'
            | b'a'..=b'z'
            | b'A'..=b'Z'
            | b'!'
            | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    )
}

/// Whether a query key names a secret: a sensitive substring of the key, lower-cased and
/// percent-decoded (`%74oken` is `token`), `+` read as a space.
pub fn is_sensitive_key(key: &[u8]) -> bool {
    let mut decoded = Vec::with_capacity(key.len().min(128));
    let mut i = 0;
    while let Some(&b) = key.get(i) {
        if decoded.len() >= 128 {
            // A key this long is matched on its first 128 decoded bytes, and anything past
            // them also counts as sensitive when it could hide a name.
            return true;
        }
        let hex = |j: usize| key.get(j).and_then(|&h| (h as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                decoded.push(b' ');
                i += 1;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    decoded.make_ascii_lowercase();
    HTTP_SENSITIVE_KEY_PARTS
        .iter()
        .any(|part| crate::protocol::cursor::find(&decoded, part.as_bytes()).is_some())
}

/// The query with the value of every sensitive key replaced by `REDACTED`, cut at a parameter
/// boundary to at most `cap` bytes (a first parameter longer than that is cut inside).
pub fn redact_query(query: &[u8], cap: usize) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(query.len().min(cap) + 16);
    for (i, param) in query.split(|&b| b == b'&').enumerate() {
        let mut piece: Vec<u8> = Vec::new();
        if i > 0 {
            piece.push(b'&');
        }
        match param.iter().position(|&b| b == b'=') {
            Some(eq) => {
                let key = param.get(..eq).unwrap_or_default();
                piece.extend_from_slice(key);
                piece.push(b'=');
                if is_sensitive_key(key) {
                    piece.extend_from_slice(b"REDACTED");
                } else {
                    piece.extend_from_slice(param.get(eq + 1..).unwrap_or_default());
                }
            }
            None => piece.extend_from_slice(param),
        }
        if out.len() + piece.len() > cap {
            if out.is_empty() {
                out.extend_from_slice(piece.get(..cap).unwrap_or(&piece));
            }
            break;
        }
        out.extend_from_slice(&piece);
    }
    crate::protocol::text_within(&out, cap)
}

/// `host[:port]`, `[v6]:port`: the host (capped) and port, when it looks like an authority.
pub fn parse_authority(a: &[u8]) -> (Option<String>, Option<u16>) {
    // userinfo never leaves: `user:pass@host` keeps only the host.
    let a = match a.iter().rposition(|&b| b == b'@') {
        Some(at) => a.get(at + 1..).unwrap_or_default(),
        None => a,
    };
    let (host, port) = if a.first() == Some(&b'[') {
        match a.iter().position(|&b| b == b']') {
            Some(end) => {
                let host = a.get(..=end).unwrap_or_default();
                let rest = a.get(end + 1..).unwrap_or_default();
                (host, rest.strip_prefix(b":"))
            }
            None => return (None, None),
        }
    } else {
        match a.iter().rposition(|&b| b == b':') {
            Some(c) => (
                a.get(..c).unwrap_or_default(),
                Some(a.get(c + 1..).unwrap_or_default()),
            ),
            None => (a, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=[]:".contains(&b));
    let port = port.and_then(|p| {
        if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(p).ok()?.parse::<u16>().ok()
    });
    let host = host_ok.then(|| cap_text(host, HTTP_MAX_HOST_BYTES));
    (host, port.filter(|_| host_ok))
}
