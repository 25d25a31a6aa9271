//! HTTP/1.1 and HTTP/1.0 over TCP and Unix sockets.
//!
//! Spec: message syntax and framing, RFC 9112 <https://www.rfc-editor.org/rfc/rfc9112>
//! (start lines §3–4, fields §5, message body length §6.3, chunked coding §7.1, persistence and
//! pipelining §9.3); semantics, RFC 9110 <https://www.rfc-editor.org/rfc/rfc9110> (methods §9,
//! Expect §10.1.1, status codes §15); PATCH, RFC 5789. Spans follow
//! `docs/http/http-spans.md` (semantic conventions v1.44.0, Stable).
//!
//! [`Http1Framer`] cuts one frame per message head. It reads the start line and four header
//! fields: `Content-Length` and `Transfer-Encoding` (framing), `Host` and `User-Agent`
//! (attributes). Bodies are never buffered: a Content-Length body is covered by the head's
//! frame (`len` = head + body), a chunked body is followed chunk by chunk with skips and ends in
//! a `BodyEnd` frame, a response without either ends at the close. The framing state, shared by
//! both directions, keeps a bounded FIFO of the methods of unanswered requests, because a
//! response to HEAD or CONNECT is framed differently. [`Http1Stitcher`] pairs requests and
//! final responses in order (pipelining is FIFO by RFC 9112 §9.3.2).
//!
//! Supported: every RFC 9110 method plus PATCH and QUERY (others: `_OTHER`), origin-form,
//! absolute-form (userinfo dropped), authority-form (CONNECT) and asterisk-form targets;
//! Content-Length (incl. `n, n` lists), chunked with extensions and trailers (requests and
//! responses), responses without a body (HEAD, 1xx, 204, 304, CONNECT 2xx), bodies that end at
//! the close (HTTP/1.0 or `Connection: close` without a length), interim responses
//! (`100 Continue` for `Expect: 100-continue`, `103 Early Hints`), keep-alive, pipelining,
//! heads split over many reads, bodies of any size (truncated captures, sendfile/splice
//! length-only chunks: a response ends at the chunk holding its true last byte), bare-LF line
//! ends and leading empty lines (RFC 9112 §2.2).
//!
//! Not supported: HTTP/2 (`PRI * HTTP/2.0` is not inferred), HTTP/0.9, TLS (ciphertext is not
//! inferred), the bytes of a tunnel after `101 Switching Protocols` or a CONNECT 2xx (the
//! exchange that opened it is recorded, the rest of the connection is skipped unread).
//!
//! Secrets: header values other than `Host`, `User-Agent`, `Content-Length` and
//! `Transfer-Encoding` are never copied out of the stream buffer (`Authorization`, `Cookie`,
//! `Proxy-Authorization`, `Set-Cookie` and the rest are stepped over); bodies and trailers are
//! never read; the query string keeps its keys and the values of non-sensitive keys only (any
//! key containing `token`, `password`, `key`, `secret`, `sig`, `auth`, `session`, … after
//! percent-decoding and lower-casing has its value replaced by `REDACTED` before it is stored);
//! userinfo of absolute-form targets is dropped; a method outside the conventions' list is kept
//! as `http.request.method_original` only when it looks like one (registered, or up to 16
//! uppercase letters), because the body of a request sent without a length runs into the next
//! request line; `Host`/`User-Agent` values with control characters are not kept, and a field
//! line with CR or NUL makes the message invalid (RFC 9110 §5.5). Every kept string is capped. The path is kept
//! as sent (`url.path` is Required on server spans): a secret placed in a path segment is not
//! recognised, and the path never names a span.
//!
//! Known limits:
//! - Mid-stream attach: a connection opened before the receiver is inferred only where its
//!   conversation turns (`ebpf_common::turn`: the middle of a body can be made of requests), so
//!   it is followed from the first request or response after that turn (a response is then
//!   unmatched and dropped). A response whose request was never seen is dropped;
//!   its framing cannot know the method, so a response to a HEAD sent before attach is taken
//!   for one with a body unless the next response follows it in the same read (the skipped
//!   bytes then cost a resync, and the exchanges they held are dropped, never mispaired).
//! - A read that was already blocked in the kernel when the probes attached is never seen (its
//!   syscall entry predates the tracepoint): on an idle kept-alive connection the first request
//!   after attach is missing on the side that was waiting, and its response is dropped.
//! - Requests lost in a gap leave the method FIFO short: a later response to HEAD or CONNECT
//!   may then be framed with the method of the request before it.
//! - Lost bytes: after a gap the framer resyncs on the next request line of a known method or
//!   the next status line. A response framed after a gap is paired only when exactly one request
//!   could be its own; with pipelined requests in flight they are dropped instead (counted in
//!   `unmatched_*`). A chunked body whose chunk-size line falls in bytes the kernel did not copy
//!   (a single write larger than `ebpf.max_capture_bytes` holding several chunks) cannot be
//!   followed: the record is marked incomplete when the next head arrives. Requests lost in a
//!   gap while later requests were pipelined can make the next response pair with the wrong
//!   request; a request line ending the stream before a gap is not recovered.
//! - A request with no response is not recorded (counted) at the request timeout or the close;
//!   while a response is still arriving nothing is given up (a download of minutes is one span).
//! - A chunked response cut by the close ends at its head's last byte (the times of skipped
//!   chunks are not kept) and is marked incomplete.
//! - `http.response.body.size` is absent for bodies that end at the close; `server.port` is the
//!   port named in `Host`, else the socket's (a bare `Host` is often sent to any port).

mod frame;
mod stitch;
pub mod types;

#[cfg(test)]
mod tests;

pub use frame::Http1Framer;
pub use stitch::Http1Stitcher;
pub use types::{
    Http1Body, Http1Frame, Http1FramingState, Http1Method, Http1Request, Http1Response,
};
