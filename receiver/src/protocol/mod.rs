//! Protocol parsing: pure, synchronous, no unsafe, no aya/tokio/OTLP imports.
//!
//! Each protocol is one folder with fixed file roles (`mod.rs`, `types.rs`, `frame.rs`,
//! `stitch.rs`, `tests.rs`, `testdata/`). A [`Framer`] cuts frames off a byte stream (or reads
//! one datagram), a [`Stitcher`] pairs request frames with response frames into [`Record`]s,
//! and the one generic loop in [`pipeline`] drives both (frame → push, skip, incomplete,
//! invalid → count and resync). [`ConnParser`] is the closed set of per-connection parsers the
//! tracker holds, generated from the protocol declaration in [`crate::model`].
//!
//! Adding a protocol = one folder here, one line in `for_each_protocol!`, one inference
//! function in `ebpf/probes/src/infer/`, one semantic-convention mapping in `span/`, one e2e
//! file in `integration/tests/`.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

pub mod chaos;
pub mod cursor;
pub mod dns;
pub mod http1;
pub mod mysql;
pub mod pipeline;
pub mod postgres;
pub mod redis;
pub mod sql;
pub mod stream;
#[cfg(test)]
pub(crate) mod testkit;

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::model::{Direction, Protocol, Role};
use crate::record::Record;

pub use cursor::Cursor;
pub use pipeline::Pipeline;
pub use stream::ByteStream;

/// Whether the bytes being framed are requests or responses for this connection
/// (egress of a client = requests; egress of a server = responses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    Response,
}

impl MessageKind {
    /// The kind of message flowing in `direction` on a connection where we play `role`.
    pub fn of(role: Role, direction: Direction) -> MessageKind {
        match (role, direction) {
            (Role::Client, Direction::Egress) | (Role::Server, Direction::Ingress) => {
                MessageKind::Request
            }
            (Role::Client, Direction::Ingress) | (Role::Server, Direction::Egress) => {
                MessageKind::Response
            }
        }
    }
}

/// Bytes from the wire as text of at most `cap` bytes. Invalid UTF-8 becomes U+FFFD, three
/// bytes for each bad byte, so converting a capped slice can triple it: the text is cut again,
/// on a character boundary, after the conversion.
pub fn text_within(bytes: &[u8], cap: usize) -> String {
    let cut = bytes.get(..cap).unwrap_or(bytes);
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if text.len() > cap {
        text.truncate(text.floor_char_boundary(cap));
    }
    text
}

/// `Parse::Frame` length of a message that ends only when the connection closes (an HTTP/1.0
/// response without Content-Length): the stream discards everything after it and the frame's
/// end is the last byte seen before the close.
pub const UNTIL_CLOSE: usize = usize::MAX;

/// Outcome of cutting one frame off the head of a stream. Bad bytes are an outcome, not an
/// error, and never a panic.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<F> {
    /// A complete frame spanning `len` bytes from the head. `len` may exceed the buffered
    /// bytes when the framer kept the prefix it needs: the stream discards the rest of the
    /// frame as it arrives (a gap there loses nothing), and the frame is stamped with the time
    /// of its true last byte once that arrives. [`UNTIL_CLOSE`]: the frame ends at the close.
    Frame { frame: F, len: usize },
    /// `len` valid bytes that yield no frame (e.g. a handshake packet kept only as state);
    /// like `Frame`, `len` may run past the buffered bytes.
    Skip { len: usize },
    /// The head is a valid prefix; nothing consumed, wait for more bytes.
    Incomplete,
    /// Not this protocol at this offset; the pipeline resyncs via `find_boundary`.
    Invalid,
}

/// The bytes of one captured syscall (or one datagram) in one direction of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    pub direction: Direction,
    /// Stream position of `bytes[0]`.
    pub pos: u64,
    /// Kernel boot-time ns of the syscall.
    pub ts_ns: u64,
    /// The captured bytes (≤ `len`).
    pub bytes: &'a [u8],
    /// Bytes the syscall transferred; the `len - bytes.len()` after `bytes` were not captured
    /// and form a gap of known size (all of them for sendfile/splice).
    pub len: u32,
    /// One whole message of a datagram socket: framed on its own, boundaries kept.
    pub datagram: bool,
    /// The datagram's peer, when the syscall named it (unconnected UDP).
    pub peer: Option<SocketAddr>,
}

/// A frame stamped by the pipeline with the times of its first and last byte.
#[derive(Clone, Debug, PartialEq)]
pub struct Timed<F> {
    pub start_ns: u64,
    pub end_ns: u64,
    /// False when the frame's last byte was never seen (lost in a gap, or the connection closed
    /// first): `end_ns` is then the last byte that was.
    pub complete: bool,
    /// The datagram's peer (unconnected UDP), else `None`.
    pub peer: Option<SocketAddr>,
    pub frame: F,
}

impl<F> Timed<F> {
    /// A complete frame without a peer (for tests and stitchers building their own).
    pub fn new(start_ns: u64, end_ns: u64, frame: F) -> Timed<F> {
        Timed {
            start_ns,
            end_ns,
            complete: true,
            peer: None,
            frame,
        }
    }
}

/// Bytes → frames. One impl per protocol, in `<proto>/frame.rs`.
pub trait Framer {
    type Frame;
    /// Per-connection framing state (capability flags, …).
    type State: Default;

    fn new(limits: ParserLimits) -> Self;

    fn parse(&self, kind: MessageKind, buf: &[u8], state: &mut Self::State) -> Parse<Self::Frame>;

    /// Offset (≥ `from`) of the next plausible frame start in `buf`, for resync after loss or
    /// garbage; `None` when there is none yet.
    fn find_boundary(
        &self,
        kind: MessageKind,
        buf: &[u8],
        from: usize,
        state: &Self::State,
    ) -> Option<usize>;

    /// Like `parse`, but the bytes after `buf` were not captured (the kernel copied only a
    /// prefix of a long message): cut a frame from what there is when its length is known, so
    /// the pipeline can skip the rest. The default cannot.
    fn parse_before_gap(
        &self,
        _kind: MessageKind,
        _buf: &[u8],
        _state: &mut Self::State,
    ) -> Parse<Self::Frame> {
        Parse::Incomplete
    }

    /// One whole datagram (`truncated`: its tail was not captured). The default frames it
    /// like the head of a stream; protocols whose stream form adds framing (DNS over TCP has a
    /// length prefix) override it.
    fn parse_datagram(
        &self,
        kind: MessageKind,
        msg: &[u8],
        truncated: bool,
        state: &mut Self::State,
    ) -> Parse<Self::Frame> {
        if truncated {
            self.parse_before_gap(kind, msg, state)
        } else {
            self.parse(kind, msg, state)
        }
    }
}

/// Frames → records. One impl per protocol, in `<proto>/stitch.rs`.
pub trait Stitcher {
    type Frame;
    type State: Default;

    fn new(limits: ParserLimits) -> Self;

    /// Pairs requests with responses, appending to `out`. Removes matched frames and frames
    /// that can never match (counted in `stats`); leaves the rest queued.
    fn stitch(
        &mut self,
        reqs: &mut VecDeque<Timed<Self::Frame>>,
        resps: &mut VecDeque<Timed<Self::Frame>>,
        state: &mut Self::State,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    );

    /// The connection was seen from its first byte (the kernel saw its socket, connect or
    /// accept while the receiver ran), so state the protocol defines for a new connection is
    /// known (Redis: database 0). Never called for connections that predate the receiver.
    fn seen_from_start(&mut self) {}

    /// Gives up on requests whose first byte is older than `deadline_ns` (`u64::MAX` when the
    /// connection is gone).
    fn expire(
        &mut self,
        reqs: &mut VecDeque<Timed<Self::Frame>>,
        resps: &mut VecDeque<Timed<Self::Frame>>,
        deadline_ns: u64,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    );
}

/// Counters a parser accumulates; the tracker adds them to the self-metrics per protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Frames parsed.
    pub frames: u64,
    /// Times the framer said `Invalid` (a stream position or a datagram that is not the
    /// protocol).
    pub invalid: u64,
    /// Resyncs after invalid bytes or a gap in the stream.
    pub resyncs: u64,
    /// Bytes lost to gaps (capture truncation or kernel loss) or skipped while resyncing.
    pub bytes_lost: u64,
    /// Requests that never got a response (expired or superseded).
    pub unmatched_requests: u64,
    /// Responses with no request to pair with.
    pub unmatched_responses: u64,
    /// Records produced.
    pub records: u64,
    /// Bytes dropped because a connection's buffer exceeded its cap.
    pub buffer_overflow_bytes: u64,
}

impl ParseStats {
    pub fn add(&mut self, o: &ParseStats) {
        self.frames += o.frames;
        self.invalid += o.invalid;
        self.resyncs += o.resyncs;
        self.bytes_lost += o.bytes_lost;
        self.unmatched_requests += o.unmatched_requests;
        self.unmatched_responses += o.unmatched_responses;
        self.records += o.records;
        self.buffer_overflow_bytes += o.buffer_overflow_bytes;
    }
}

/// Bounds for one connection's parser.
#[derive(Clone, Copy, Debug)]
pub struct ParserLimits {
    /// Most unparsed bytes kept per direction; beyond it the oldest bytes are dropped (counted).
    pub max_buffer_bytes: usize,
    /// Most frames queued per direction waiting for a partner.
    pub max_queued_frames: usize,
    /// Most bytes of query text kept (after sanitising).
    pub max_query_text_bytes: usize,
}

impl ParserLimits {
    /// Most bytes a framer may wait for before cutting a frame: never more than the stream
    /// can buffer.
    pub fn frame_room(&self) -> usize {
        self.max_buffer_bytes.saturating_sub(8).max(64)
    }

    /// Most raw bytes of a statement a framer keeps: sanitising shrinks text (literals become
    /// `?`), so more than the output cap, within [`ParserLimits::frame_room`].
    pub fn raw_text_cap(&self) -> usize {
        self.max_query_text_bytes
            .saturating_mul(4)
            .clamp(256, 64 * 1024)
            .min(self.frame_room())
    }
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_buffer_bytes: 256 * 1024,
            max_queued_frames: 1024,
            max_query_text_bytes: 2048,
        }
    }
}

macro_rules! conn_parser {
    ($($variant:ident $name:ident $kernel:ident $framer:path, $stitcher:path;)*) => {
        /// The parser of one connection: the closed enum the tracker holds, one variant per
        /// line of the protocol declaration. Boxed: protocols' states differ in size, and one
        /// allocation per connection is nothing next to its buffers.
        pub enum ConnParser {
            $($variant(Box<Pipeline<$framer, $stitcher>>),)*
        }

        impl ConnParser {
            pub fn new(protocol: Protocol, role: Role, limits: ParserLimits) -> ConnParser {
                match protocol {
                    $(Protocol::$variant => ConnParser::$variant(Box::new(Pipeline::new(role, limits))),)*
                }
            }

            pub fn protocol(&self) -> Protocol {
                match self {
                    $(ConnParser::$variant(_) => Protocol::$variant,)*
                }
            }

            /// Feeds one captured syscall (or datagram).
            pub fn on_data(&mut self, chunk: Chunk<'_>, out: &mut Vec<Record>, stats: &mut ParseStats) {
                match self {
                    $(ConnParser::$variant(p) => p.on_data(chunk, out, stats),)*
                }
            }

            /// The connection was seen from its start (see `Stitcher::seen_from_start`).
            pub fn seen_from_start(&mut self) {
                match self {
                    $(ConnParser::$variant(p) => p.seen_from_start(),)*
                }
            }

            /// Gives up on requests older than `deadline_ns` (sweep tick).
            pub fn expire(&mut self, deadline_ns: u64, out: &mut Vec<Record>, stats: &mut ParseStats) {
                match self {
                    $(ConnParser::$variant(p) => p.expire(deadline_ns, out, stats),)*
                }
            }

            /// The connection is gone: frames waiting for their last byte end here, then
            /// every pending request is settled.
            pub fn close(&mut self, out: &mut Vec<Record>, stats: &mut ParseStats) {
                match self {
                    $(ConnParser::$variant(p) => p.close(out, stats),)*
                }
            }

            /// Gives the memory of empty buffers and queues back (an idle connection keeps
            /// only its state; the next message allocates again).
            pub fn release_idle(&mut self) {
                match self {
                    $(ConnParser::$variant(p) => p.release_idle(),)*
                }
            }

            /// Drops every buffered byte (counted as buffer overflow) and resynchronises.
            pub fn discard_buffered(&mut self, stats: &mut ParseStats) {
                match self {
                    $(ConnParser::$variant(p) => p.discard_buffered(stats),)*
                }
            }

            /// Bytes buffered in both directions (for memory accounting).
            pub fn buffered_bytes(&self) -> usize {
                match self {
                    $(ConnParser::$variant(p) => p.buffered_bytes(),)*
                }
            }
        }
    };
}

crate::for_each_protocol!(conn_parser);

#[cfg(test)]
mod text_tests {
    use super::text_within;

    #[test]
    fn text_within_never_exceeds_its_cap() {
        assert_eq!(text_within(b"abcdef", 4), "abcd");
        assert_eq!(text_within("é".repeat(3).as_bytes(), 5), "éé");
        // Each invalid byte is a 3-byte U+FFFD; a cut one is left out.
        assert_eq!(text_within(&[0xff; 10], 10), "\u{fffd}".repeat(3));
        assert_eq!(text_within(&[0xff; 2], 10), "\u{fffd}".repeat(2));
        for cap in 0..40 {
            for bytes in [&[0xc3u8; 40][..], &[0xe2, 0x82, 0xac, 0xff, b'a'].repeat(8)] {
                assert!(text_within(bytes, cap).len() <= cap);
            }
        }
    }
}
