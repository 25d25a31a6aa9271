//! The one generic frame loop, shared by every protocol.
//!
//! Per connection: two [`ByteStream`]s (egress, ingress), the framer's per-connection state
//! (shared by both directions, because handshake facts seen in one direction shape the other),
//! the stitcher's state, and two bounded frame queues (requests, responses).
//!
//! **Stream mode** (TCP, Unix sockets). Each captured chunk goes through:
//! 1. the stream (duplicates trimmed, gaps and overflow turned into a resync request);
//! 2. the *tail* check: a frame longer than the bytes buffered when it was cut (a response body
//!    the framer follows by its length, bytes moved by sendfile) waits here until the chunk
//!    holding its last byte arrives, and is stamped with that chunk's time. If that chunk was
//!    lost, or the connection closes first, the frame is queued marked incomplete;
//! 3. the loop: resync if asked (`find_boundary` from 0), then `parse` until `Incomplete`:
//!    `Frame` → stamp with the times of its first and last byte, queue, consume; `Skip` →
//!    consume; `Invalid` → count, `find_boundary` from 1 and drop the bytes before it;
//! 4. the trailing gap of the chunk (bytes the kernel did not copy);
//! 5. `stitch`, which turns paired frames into records.
//!
//! **Datagram mode** (UDP). One chunk is one message: framed on its own with
//! `Framer::parse_datagram`, stamped with the chunk's time and peer, never buffered across
//! chunks; an invalid datagram is counted and dropped (no resync needed).

use std::collections::VecDeque;

use crate::model::{Direction, Role};
use crate::protocol::{
    ByteStream, Chunk, Framer, MessageKind, Parse, ParseStats, ParserLimits, Stitcher, Timed,
};
use crate::record::Record;

/// Safety valve: most framer calls per chunk (each call consumes ≥ 1 byte or stops).
const MAX_STEPS_PER_CHUNK: usize = 1 << 20;

/// A frame cut before its last byte arrived, waiting for it.
struct Tail<Fr> {
    timed: Timed<Fr>,
    kind: MessageKind,
    /// Stream position just past the frame's last byte (`u64::MAX`: until the close).
    end_pos: u64,
}

/// One direction: its bytes and the frame waiting for its last byte.
struct Side<Fr> {
    stream: ByteStream,
    /// Boxed: most connections have none, and a frame is large next to the rest of a side.
    tail: Option<Box<Tail<Fr>>>,
    /// Time of the newest chunk seen in this direction.
    last_ts: u64,
}

pub struct Pipeline<F: Framer, S: Stitcher<Frame = F::Frame>> {
    framer: F,
    stitcher: S,
    role: Role,
    limits: ParserLimits,
    egress: Side<F::Frame>,
    ingress: Side<F::Frame>,
    framing: F::State,
    stitching: S::State,
    requests: VecDeque<Timed<F::Frame>>,
    responses: VecDeque<Timed<F::Frame>>,
}

impl<F: Framer, S: Stitcher<Frame = F::Frame>> Pipeline<F, S> {
    pub fn new(role: Role, limits: ParserLimits) -> Self {
        let side = || Side {
            stream: ByteStream::new(limits.max_buffer_bytes),
            tail: None,
            last_ts: 0,
        };
        Pipeline {
            framer: F::new(limits),
            stitcher: S::new(limits),
            role,
            limits,
            egress: side(),
            ingress: side(),
            framing: F::State::default(),
            stitching: S::State::default(),
            requests: VecDeque::new(),
            responses: VecDeque::new(),
        }
    }

    /// Feeds one captured syscall (see [`crate::protocol::ConnParser::on_data`]).
    pub fn on_data(&mut self, chunk: Chunk<'_>, out: &mut Vec<Record>, stats: &mut ParseStats) {
        if chunk.datagram {
            self.on_datagram(chunk, out, stats);
            return;
        }
        let Chunk {
            direction,
            pos,
            ts_ns,
            bytes,
            len,
            ..
        } = chunk;
        let kind = MessageKind::of(self.role, direction);
        let max = self.limits.max_queued_frames.max(1);
        let reported_end = pos.saturating_add(u64::from(len));
        let at = ChunkSpan {
            pos,
            end: reported_end,
            ts_ns,
        };
        {
            let side = self.side(direction);
            side.stream.push(pos, ts_ns, bytes, stats);
        }
        self.settle_tail(direction, at, stats);
        // Frame in rounds: when the queue fills (a large result set in one read), stitch to
        // drain it before framing on; only a queue that stitching cannot drain drops frames.
        for _ in 0..MAX_STEPS_PER_CHUNK {
            let full = self.frame_round(direction, kind, at, true, stats);
            self.stitch(out, stats);
            if !full {
                break;
            }
            if self.queue(kind).len() >= max {
                self.frame_round(direction, kind, at, false, stats);
                self.stitch(out, stats);
                break;
            }
        }
        // Bytes the kernel reported but did not copy: let the framer cut the head frame from
        // the prefix it has (its tail is then skipped, not lost), then record the gap.
        let captured_end = pos.saturating_add(bytes.len() as u64);
        let Parts {
            framer,
            framing,
            side,
            queue,
        } = self.parts(direction, kind);
        if reported_end > captured_end && side.stream.end_pos().is_some_and(|e| e < reported_end) {
            for _ in 0..MAX_STEPS_PER_CHUNK {
                if side.stream.is_empty() || side.stream.needs_resync() || side.tail.is_some() {
                    break;
                }
                match framer.parse_before_gap(kind, side.stream.bytes(), framing) {
                    Parse::Frame { frame, len } if len > 0 => {
                        queue_frame(side, queue, frame, len, kind, max, at, stats);
                    }
                    Parse::Skip { len } if len > 0 => side.stream.consume(len as u64),
                    _ => break,
                }
            }
            side.stream.gap_to(reported_end, stats);
            self.stitch(out, stats);
        }
    }

    /// Datagram mode: the chunk is one whole message.
    fn on_datagram(&mut self, chunk: Chunk<'_>, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let kind = MessageKind::of(self.role, chunk.direction);
        let truncated = (chunk.bytes.len() as u64) < u64::from(chunk.len);
        if truncated {
            stats.bytes_lost += u64::from(chunk.len) - chunk.bytes.len() as u64;
        }
        self.side(chunk.direction).last_ts = chunk.ts_ns;
        match self
            .framer
            .parse_datagram(kind, chunk.bytes, truncated, &mut self.framing)
        {
            Parse::Frame { frame, .. } => {
                stats.frames += 1;
                let max = self.limits.max_queued_frames.max(1);
                let queue = match kind {
                    MessageKind::Request => &mut self.requests,
                    MessageKind::Response => &mut self.responses,
                };
                push_bounded(
                    queue,
                    Timed {
                        start_ns: chunk.ts_ns,
                        end_ns: chunk.ts_ns,
                        complete: true,
                        peer: chunk.peer,
                        frame,
                    },
                    kind,
                    max,
                    stats,
                );
                self.stitch(out, stats);
            }
            Parse::Skip { .. } => {}
            Parse::Incomplete | Parse::Invalid => {
                stats.invalid += 1;
                stats.bytes_lost += chunk.bytes.len() as u64;
            }
        }
    }

    /// Completes the tail of `direction` if `at` holds its last byte, or marks it incomplete if
    /// `at` starts past it (the chunk holding it was lost).
    fn settle_tail(&mut self, direction: Direction, at: ChunkSpan, stats: &mut ParseStats) {
        let max = self.limits.max_queued_frames.max(1);
        let kind = MessageKind::of(self.role, direction);
        let Parts { side, queue, .. } = self.parts(direction, kind);
        settle(side, queue, kind, at, max, stats);
        side.last_ts = side.last_ts.max(at.ts_ns);
    }

    /// Disjoint borrows of what framing one direction needs: its side and the queue of `kind`.
    fn parts(&mut self, direction: Direction, kind: MessageKind) -> Parts<'_, F> {
        Parts {
            framer: &self.framer,
            framing: &mut self.framing,
            side: match direction {
                Direction::Egress => &mut self.egress,
                Direction::Ingress => &mut self.ingress,
            },
            queue: match kind {
                MessageKind::Request => &mut self.requests,
                MessageKind::Response => &mut self.responses,
            },
        }
    }

    fn stitch(&mut self, out: &mut Vec<Record>, stats: &mut ParseStats) {
        self.stitcher.stitch(
            &mut self.requests,
            &mut self.responses,
            &mut self.stitching,
            out,
            stats,
        );
    }

    fn side(&mut self, direction: Direction) -> &mut Side<F::Frame> {
        match direction {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        }
    }

    fn queue(&self, kind: MessageKind) -> &VecDeque<Timed<F::Frame>> {
        match kind {
            MessageKind::Request => &self.requests,
            MessageKind::Response => &self.responses,
        }
    }

    /// One framing round over the stream of `direction` into the queue of `kind`.
    fn frame_round(
        &mut self,
        direction: Direction,
        kind: MessageKind,
        at: ChunkSpan,
        stop_when_full: bool,
        stats: &mut ParseStats,
    ) -> bool {
        let max_queued = self.limits.max_queued_frames.max(1);
        let Parts {
            framer,
            framing,
            side,
            queue,
        } = self.parts(direction, kind);
        run_framer(
            framer,
            kind,
            side,
            framing,
            queue,
            Bounds {
                max_queued,
                stop_when_full,
            },
            at,
            stats,
        )
    }

    /// The connection was seen from its start (see [`Stitcher::seen_from_start`]).
    pub fn seen_from_start(&mut self) {
        self.stitcher.seen_from_start();
    }

    /// Gives up on requests older than `deadline_ns`. Not while a response is still arriving
    /// (a frame waiting for its last byte, e.g. a download of minutes): it answers the oldest
    /// request, which is then not unanswered however old it is. The close (`u64::MAX`) settles
    /// everything.
    /// See `ConnParser::release_idle`.
    pub fn release_idle(&mut self) {
        for q in [&mut self.requests, &mut self.responses] {
            if q.is_empty() && q.capacity() > 0 {
                *q = VecDeque::new();
            }
        }
        self.egress.stream.release_idle();
        self.ingress.stream.release_idle();
    }

    pub fn expire(&mut self, deadline_ns: u64, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let answering = [&self.egress, &self.ingress].iter().any(|s| {
            s.tail
                .as_ref()
                .is_some_and(|t| t.kind == MessageKind::Response)
        });
        if answering && deadline_ns != u64::MAX {
            return;
        }
        self.stitcher.expire(
            &mut self.requests,
            &mut self.responses,
            deadline_ns,
            out,
            stats,
        );
    }

    /// The connection closed: a frame that runs until the close ends at the last byte seen;
    /// any other frame still waiting for its last byte is queued as incomplete. Then every
    /// pending request is settled.
    pub fn close(&mut self, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let max = self.limits.max_queued_frames.max(1);
        for side in [&mut self.egress, &mut self.ingress] {
            if let Some(tail) = side.tail.take() {
                let mut timed = tail.timed;
                timed.end_ns = side.last_ts.max(timed.start_ns);
                timed.complete = tail.end_pos == u64::MAX;
                let queue = match tail.kind {
                    MessageKind::Request => &mut self.requests,
                    MessageKind::Response => &mut self.responses,
                };
                push_bounded(queue, timed, tail.kind, max, stats);
            }
        }
        self.stitch(out, stats);
        self.expire(u64::MAX, out, stats);
    }

    /// Bytes buffered in both directions.
    /// See `ConnParser::discard_buffered`.
    pub fn discard_buffered(&mut self, stats: &mut ParseStats) {
        for side in [&mut self.egress, &mut self.ingress] {
            let n = side.stream.len();
            if n > 0 {
                stats.buffer_overflow_bytes += n as u64;
                side.stream.clear();
                side.stream.set_resync(true);
            }
        }
    }

    pub fn buffered_bytes(&self) -> usize {
        self.egress.stream.len() + self.ingress.stream.len()
    }

    /// Frames waiting for a partner (requests, responses); for tests and accounting.
    pub fn queued_frames(&self) -> (usize, usize) {
        (self.requests.len(), self.responses.len())
    }
}

/// What framing one direction borrows from the pipeline.
struct Parts<'a, F: Framer> {
    framer: &'a F,
    framing: &'a mut F::State,
    side: &'a mut Side<F::Frame>,
    queue: &'a mut VecDeque<Timed<F::Frame>>,
}

/// The stream positions a chunk reported (captured or not) and its time.
#[derive(Clone, Copy, Debug)]
struct ChunkSpan {
    pos: u64,
    /// Just past the chunk's last reported byte.
    end: u64,
    ts_ns: u64,
}

#[derive(Clone, Copy)]
struct Bounds {
    max_queued: usize,
    /// Return `true` as soon as the queue holds `max_queued` frames (the caller stitches, then
    /// calls again); otherwise the oldest queued frame is dropped for each new one beyond it.
    stop_when_full: bool,
}

/// See [`Pipeline::settle_tail`]; `queue` is the queue of the side's `kind`.
fn settle<Fr>(
    side: &mut Side<Fr>,
    queue: &mut VecDeque<Timed<Fr>>,
    kind: MessageKind,
    at: ChunkSpan,
    max: usize,
    stats: &mut ParseStats,
) {
    let Some(tail) = side.tail.as_ref() else {
        return;
    };
    let ends_here = at.pos < tail.end_pos && at.end >= tail.end_pos;
    let lost = at.pos >= tail.end_pos;
    if !ends_here && !lost {
        return;
    }
    let Some(tail) = side.tail.take() else {
        return;
    };
    let mut timed = tail.timed;
    if ends_here {
        timed.end_ns = at.ts_ns.max(timed.start_ns);
    } else {
        // The chunk with the last byte never arrived: its time is unknown.
        timed.end_ns = side.last_ts.max(timed.start_ns);
        timed.complete = false;
    }
    push_bounded(queue, timed, kind, max, stats);
}

/// Cuts every complete frame off the stream of `side` into `queue`.
#[expect(
    clippy::too_many_arguments,
    reason = "disjoint borrows of the pipeline's fields"
)]
fn run_framer<F: Framer>(
    framer: &F,
    kind: MessageKind,
    side: &mut Side<F::Frame>,
    state: &mut F::State,
    queue: &mut VecDeque<Timed<F::Frame>>,
    bounds: Bounds,
    at: ChunkSpan,
    stats: &mut ParseStats,
) -> bool {
    for _ in 0..MAX_STEPS_PER_CHUNK {
        let stream = &mut side.stream;
        if stream.is_empty() || side.tail.is_some() {
            return false;
        }
        if bounds.stop_when_full && queue.len() >= bounds.max_queued {
            return true;
        }
        if stream.needs_resync() {
            match framer.find_boundary(kind, stream.bytes(), 0, state) {
                Some(at) => {
                    if at > 0 {
                        stats.bytes_lost += at as u64;
                        stream.consume(at as u64);
                    }
                    stats.resyncs += 1;
                    stream.set_resync(false);
                }
                None => {
                    stats.bytes_lost += stream.len() as u64;
                    stream.clear();
                    return false;
                }
            }
            continue;
        }
        match framer.parse(kind, stream.bytes(), state) {
            Parse::Frame { frame, len } if len > 0 => {
                queue_frame(side, queue, frame, len, kind, bounds.max_queued, at, stats);
            }
            Parse::Skip { len } if len > 0 => stream.consume(len as u64),
            Parse::Incomplete => return false,
            Parse::Frame { .. } | Parse::Skip { .. } | Parse::Invalid => {
                stats.invalid += 1;
                match framer.find_boundary(kind, stream.bytes(), 1, state) {
                    Some(at) if at > 0 => {
                        stats.resyncs += 1;
                        stats.bytes_lost += at as u64;
                        stream.consume(at as u64);
                    }
                    _ => {
                        stats.bytes_lost += stream.len() as u64;
                        stream.clear();
                        stream.set_resync(true);
                        return false;
                    }
                }
            }
        }
    }
    false
}

/// Stamps a frame with the times of its first and last byte and queues it, consuming its
/// bytes. A frame longer than what is buffered becomes the side's tail: it is queued when the
/// chunk holding its last byte arrives (at once when that is the current chunk `at`).
#[expect(
    clippy::too_many_arguments,
    reason = "disjoint borrows of the pipeline's fields"
)]
fn queue_frame<Fr>(
    side: &mut Side<Fr>,
    queue: &mut VecDeque<Timed<Fr>>,
    frame: Fr,
    len: usize,
    kind: MessageKind,
    max_queued: usize,
    at: ChunkSpan,
    stats: &mut ParseStats,
) {
    let stream = &mut side.stream;
    let first = stream.head_pos();
    let buffered = stream.len();
    let start_ns = stream.ts_at(first);
    stats.frames += 1;
    if len <= buffered {
        let last = first + (len as u64).saturating_sub(1);
        let timed = Timed {
            start_ns,
            end_ns: stream.ts_at(last),
            complete: true,
            peer: None,
            frame,
        };
        stream.consume(len as u64);
        push_bounded(queue, timed, kind, max_queued, stats);
        return;
    }
    let end_pos = if len == super::UNTIL_CLOSE {
        u64::MAX
    } else {
        first.saturating_add(len as u64)
    };
    let last_buffered = first + (buffered as u64).saturating_sub(1);
    let timed = Timed {
        start_ns,
        end_ns: stream.ts_at(last_buffered),
        complete: true,
        peer: None,
        frame,
    };
    stream.consume(len as u64);
    if at.end >= end_pos {
        // The last byte is in the current chunk, past what was captured.
        let mut timed = timed;
        timed.end_ns = at.ts_ns.max(timed.start_ns);
        push_bounded(queue, timed, kind, max_queued, stats);
        return;
    }
    side.tail = Some(Box::new(Tail {
        timed,
        kind,
        end_pos,
    }));
}

/// Queues a frame, dropping the oldest beyond the bound (counted as unmatched).
fn push_bounded<Fr>(
    queue: &mut VecDeque<Timed<Fr>>,
    timed: Timed<Fr>,
    kind: MessageKind,
    max_queued: usize,
    stats: &mut ParseStats,
) {
    if queue.len() >= max_queued.max(1) {
        queue.pop_front();
        match kind {
            MessageKind::Request => stats.unmatched_requests += 1,
            MessageKind::Response => stats.unmatched_responses += 1,
        }
    }
    queue.push_back(timed);
}

#[cfg(test)]
mod tests;
