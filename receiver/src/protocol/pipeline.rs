//! The one generic frame loop, shared by every protocol.
//!
//! Per connection: two [`ByteStream`]s (egress, ingress), the framer's per-connection state
//! (shared by both directions, because handshake facts seen in one direction shape the other),
//! the stitcher's state, and two bounded frame queues (requests, responses). Each captured chunk
//! goes through:
//!
//! 1. the stream (duplicates trimmed, gaps and overflow turned into a resync request);
//! 2. the loop: resync if asked (`find_boundary` from 0), then `parse` until `Incomplete`:
//!    `Frame` → stamp with the times of its first and last byte, queue, consume; `Skip` →
//!    consume; `Invalid` → count, `find_boundary` from 1 and drop the bytes before it;
//! 3. the trailing gap of the chunk (bytes the kernel did not copy);
//! 4. `stitch`, which turns paired frames into records.
//!
//! A frame's `len` may exceed the buffered bytes: the framer kept the prefix it needs and the
//! stream discards the rest as it arrives (so a gap there loses nothing).

use std::collections::VecDeque;

use crate::protocol::{
    ByteStream, Chunk, Direction, Framer, MessageKind, Parse, ParseStats, ParserLimits, Stitcher,
    Timed,
};
use crate::record::{Record, Role};

/// Safety valve: most framer calls per chunk (each call consumes ≥ 1 byte or stops).
const MAX_STEPS_PER_CHUNK: usize = 1 << 20;

pub struct Pipeline<F: Framer, S: Stitcher<Frame = F::Frame>> {
    framer: F,
    stitcher: S,
    role: Role,
    limits: ParserLimits,
    egress: ByteStream,
    ingress: ByteStream,
    framing: F::State,
    stitching: S::State,
    requests: VecDeque<Timed<F::Frame>>,
    responses: VecDeque<Timed<F::Frame>>,
}

impl<F: Framer, S: Stitcher<Frame = F::Frame>> Pipeline<F, S> {
    pub fn new(framer: F, stitcher: S, role: Role, limits: ParserLimits) -> Self {
        Pipeline {
            framer,
            stitcher,
            role,
            limits,
            egress: ByteStream::new(limits.max_buffer_bytes),
            ingress: ByteStream::new(limits.max_buffer_bytes),
            framing: F::State::default(),
            stitching: S::State::default(),
            requests: VecDeque::new(),
            responses: VecDeque::new(),
        }
    }

    /// Feeds one captured syscall (see [`crate::protocol::ConnParser::on_data`]).
    pub fn on_data(&mut self, chunk: Chunk<'_>, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let Chunk {
            direction,
            pos,
            ts_ns,
            bytes,
            len,
        } = chunk;
        let kind = MessageKind::of(self.role, direction);
        let max = self.limits.max_queued_frames.max(1);
        self.stream(direction).push(pos, ts_ns, bytes, stats);
        // Frame in rounds: when the queue fills (a large result set in one read), stitch to
        // drain it before framing on; only a queue that stitching cannot drain drops frames.
        for _ in 0..MAX_STEPS_PER_CHUNK {
            let full = self.frame_round(direction, kind, true, stats);
            self.stitch(out, stats);
            if !full {
                break;
            }
            if self.queue(kind).len() >= max {
                self.frame_round(direction, kind, false, stats);
                self.stitch(out, stats);
                break;
            }
        }
        // Bytes the kernel reported but did not copy: let the framer cut the head frame from
        // the prefix it has (its tail is then skipped, not lost), then record the gap.
        let captured_end = pos.saturating_add(bytes.len() as u64);
        let reported_end = pos.saturating_add(u64::from(len));
        let Pipeline {
            framer,
            framing,
            egress,
            ingress,
            requests,
            responses,
            ..
        } = self;
        let stream = match direction {
            Direction::Egress => egress,
            Direction::Ingress => ingress,
        };
        let queue = match kind {
            MessageKind::Request => requests,
            MessageKind::Response => responses,
        };
        if reported_end > captured_end && stream.end_pos().is_some_and(|e| e < reported_end) {
            for _ in 0..MAX_STEPS_PER_CHUNK {
                if stream.is_empty() || stream.needs_resync() {
                    break;
                }
                match framer.parse_before_gap(kind, stream.bytes(), framing) {
                    Parse::Frame { frame, len } if len > 0 => {
                        queue_frame(stream, queue, frame, len, kind, max, stats);
                    }
                    Parse::Skip { len } if len > 0 => stream.consume(len as u64),
                    _ => break,
                }
            }
            stream.gap_to(reported_end, stats);
            self.stitch(out, stats);
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

    fn stream(&mut self, direction: Direction) -> &mut ByteStream {
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
        stop_when_full: bool,
        stats: &mut ParseStats,
    ) -> bool {
        let stream = match direction {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        };
        let queue = match kind {
            MessageKind::Request => &mut self.requests,
            MessageKind::Response => &mut self.responses,
        };
        run_framer(
            &self.framer,
            kind,
            stream,
            &mut self.framing,
            queue,
            self.limits.max_queued_frames.max(1),
            stop_when_full,
            stats,
        )
    }

    /// Gives up on requests older than `deadline_ns`.
    pub fn expire(&mut self, deadline_ns: u64, out: &mut Vec<Record>, stats: &mut ParseStats) {
        self.stitcher.expire(
            &mut self.requests,
            &mut self.responses,
            deadline_ns,
            out,
            stats,
        );
    }

    /// Bytes buffered in both directions.
    pub fn buffered_bytes(&self) -> usize {
        self.egress.len() + self.ingress.len()
    }

    /// Frames waiting for a partner (requests, responses); for tests and accounting.
    pub fn queued_frames(&self) -> (usize, usize) {
        (self.requests.len(), self.responses.len())
    }
}

/// Cuts every complete frame off `stream` into `queue`. With `stop_when_full`, returns `true`
/// as soon as the queue holds `max_queued` frames (the caller stitches, then calls again);
/// otherwise the oldest queued frame is dropped for each new one beyond the bound.
#[expect(
    clippy::too_many_arguments,
    reason = "disjoint borrows of the pipeline's fields"
)]
fn run_framer<F: Framer>(
    framer: &F,
    kind: MessageKind,
    stream: &mut ByteStream,
    state: &mut F::State,
    queue: &mut VecDeque<Timed<F::Frame>>,
    max_queued: usize,
    stop_when_full: bool,
    stats: &mut ParseStats,
) -> bool {
    for _ in 0..MAX_STEPS_PER_CHUNK {
        if stream.is_empty() {
            return false;
        }
        if stop_when_full && queue.len() >= max_queued {
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
                queue_frame(stream, queue, frame, len, kind, max_queued, stats);
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

/// Stamps a frame with the times of its first and last buffered byte, queues it (dropping the
/// oldest beyond the bound, counted as unmatched) and consumes its bytes.
fn queue_frame<Fr>(
    stream: &mut ByteStream,
    queue: &mut VecDeque<Timed<Fr>>,
    frame: Fr,
    len: usize,
    kind: MessageKind,
    max_queued: usize,
    stats: &mut ParseStats,
) {
    let first = stream.head_pos();
    let last = first + (len.min(stream.len()) as u64).saturating_sub(1);
    let timed = Timed {
        start_ns: stream.ts_at(first),
        end_ns: stream.ts_at(last),
        frame,
    };
    stats.frames += 1;
    if queue.len() >= max_queued.max(1) {
        queue.pop_front();
        match kind {
            MessageKind::Request => stats.unmatched_requests += 1,
            MessageKind::Response => stats.unmatched_responses += 1,
        }
    }
    queue.push_back(timed);
    stream.consume(len as u64);
}
