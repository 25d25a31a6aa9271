//! One direction's bytes, addressed by stream position, with duplicates, gaps and skips.
//!
//! The kernel reports every captured syscall as `(pos, ts, bytes, len)`: `bytes` start at stream
//! position `pos`, and the `len - bytes.len()` bytes after them were not captured. A
//! [`ByteStream`] keeps only the bytes not yet framed (normally the head of one incomplete
//! frame), and:
//!
//! - trims positions it has already seen (duplicates after a retried read, overlapping events);
//! - turns positions beyond its end into a *gap*: the partial bytes before the gap cannot be
//!   completed, so they are dropped (counted in `bytes_lost`) and the stream asks for a resync;
//! - honours a *skip*: a framer may cut a frame that is longer than what is buffered (a 16 MiB
//!   row, the parameters of `COM_STMT_EXECUTE`); the stream then discards bytes up to the end of
//!   that frame as they arrive. A gap inside a skipped region loses nothing we wanted, so it is
//!   not a loss and needs no resync (this is how truncated captures of big messages survive);
//! - is bounded by `max_buffer_bytes`: beyond it the oldest bytes are dropped (counted in
//!   `buffer_overflow_bytes`) and the stream resyncs;
//! - keeps a small position → timestamp index so a frame is stamped with the times of the
//!   chunks holding its first and last byte.

use std::collections::VecDeque;

use crate::protocol::ParseStats;

/// Most (position, timestamp) entries kept; beyond it neighbouring chunks share a timestamp.
const MAX_TS_ENTRIES: usize = 64;

/// Bytes of one direction of a connection that are not framed yet.
#[derive(Debug)]
pub struct ByteStream {
    /// Backing storage; live bytes are `buf[head..]`.
    buf: Vec<u8>,
    head: usize,
    /// Stream position of the first live byte.
    head_pos: u64,
    /// Stream position just past everything seen (bytes or gaps); `None` before the first push.
    end_pos: Option<u64>,
    /// Bytes before this position belong to a frame already cut and are discarded on arrival.
    skip_until: u64,
    /// The live bytes do not start at a frame boundary (after a gap or overflow).
    resync: bool,
    /// (position of a chunk's first byte, its timestamp), ascending.
    ts_index: VecDeque<(u64, u64)>,
    max_bytes: usize,
}

impl ByteStream {
    pub fn new(max_bytes: usize) -> ByteStream {
        ByteStream {
            buf: Vec::new(),
            head: 0,
            head_pos: 0,
            end_pos: None,
            skip_until: 0,
            resync: false,
            ts_index: VecDeque::new(),
            max_bytes: max_bytes.max(16),
        }
    }

    /// The live (unframed) bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(self.head..).unwrap_or_default()
    }

    /// Number of live bytes.
    pub fn len(&self) -> usize {
        self.buf.len().saturating_sub(self.head)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the live bytes must be realigned with `Framer::find_boundary` before parsing.
    pub fn needs_resync(&self) -> bool {
        self.resync
    }

    pub fn set_resync(&mut self, resync: bool) {
        self.resync = resync;
    }

    /// Stream position just past everything seen (bytes or gaps).
    pub fn end_pos(&self) -> Option<u64> {
        self.end_pos
    }

    /// Stream position of the first live byte.
    pub fn head_pos(&self) -> u64 {
        self.head_pos
    }

    /// Adds captured bytes starting at stream position `pos`.
    pub fn push(&mut self, pos: u64, ts_ns: u64, bytes: &[u8], stats: &mut ParseStats) {
        let end = *self.end_pos.get_or_insert_with(|| {
            self.head_pos = pos;
            self.skip_until = pos;
            pos
        });
        if pos > end {
            self.gap_to(pos, stats);
        }
        let end = self.end_pos.unwrap_or(pos);
        // Trim what we have already seen (duplicates).
        let dup = usize::try_from(end.saturating_sub(pos)).unwrap_or(usize::MAX);
        let Some(mut fresh) = bytes.get(dup..) else {
            return;
        };
        let mut at = pos.max(end);
        // Discard the tail of a frame that was cut before all its bytes arrived.
        if self.skip_until > at {
            let n = usize::try_from(self.skip_until - at).unwrap_or(usize::MAX);
            let n = n.min(fresh.len());
            fresh = fresh.get(n..).unwrap_or_default();
            at += n as u64;
            if self.is_empty() {
                self.head_pos = at;
            }
        }
        self.end_pos = Some(at + fresh.len() as u64);
        if fresh.is_empty() {
            return;
        }
        if self.is_empty() {
            self.head_pos = at;
        }
        self.compact();
        self.buf.extend_from_slice(fresh);
        self.note_ts(at, ts_ns);
        let over = self.len().saturating_sub(self.max_bytes);
        if over > 0 {
            stats.buffer_overflow_bytes += over as u64;
            self.advance(over);
            self.resync = true;
        }
    }

    /// Records that the stream continues at `to_pos` but the bytes before it were not captured.
    pub fn gap_to(&mut self, to_pos: u64, stats: &mut ParseStats) {
        let Some(end) = self.end_pos else {
            self.end_pos = Some(to_pos);
            self.head_pos = to_pos;
            self.skip_until = to_pos;
            return;
        };
        if to_pos <= end {
            return;
        }
        self.end_pos = Some(to_pos);
        if self.skip_until >= to_pos {
            // The missing bytes were going to be skipped anyway.
            return;
        }
        let missing = to_pos - end.max(self.skip_until);
        stats.bytes_lost += missing + self.len() as u64;
        self.clear_to(to_pos);
        self.resync = true;
    }

    /// Consumes `n` bytes from the head. `n` may exceed what is buffered: the rest of the frame
    /// is discarded as it arrives.
    pub fn consume(&mut self, n: u64) {
        let have = self.len() as u64;
        if n <= have {
            self.advance(usize::try_from(n).unwrap_or(usize::MAX));
        } else {
            let target = self.head_pos.saturating_add(n);
            self.clear_to(self.head_pos + have);
            self.skip_until = self.skip_until.max(target);
            self.head_pos = target;
        }
    }

    /// Drops every live byte (they are counted by the caller).
    pub fn clear(&mut self) {
        let to = self.head_pos + self.len() as u64;
        self.clear_to(to);
    }

    /// Timestamp of the chunk holding the byte at `pos` (the oldest known one if `pos` precedes
    /// the index).
    pub fn ts_at(&self, pos: u64) -> u64 {
        let i = self.ts_index.partition_point(|&(p, _)| p <= pos);
        match i.checked_sub(1).and_then(|i| self.ts_index.get(i)) {
            Some(&(_, ts)) => ts,
            None => self.ts_index.front().map_or(0, |&(_, ts)| ts),
        }
    }

    fn advance(&mut self, n: usize) {
        let n = n.min(self.len());
        self.head += n;
        self.head_pos += n as u64;
        if self.is_empty() {
            self.buf.clear();
            self.head = 0;
            // No live byte is left to stamp: an entry kept here would be the oldest one when
            // the index fills up and would stamp the next frame with a chunk before it.
            self.ts_index.clear();
        }
        self.prune_ts();
    }

    fn clear_to(&mut self, pos: u64) {
        self.buf.clear();
        self.head = 0;
        self.head_pos = pos;
        self.ts_index.clear();
    }

    /// Frees the buffer and the timestamp index when no byte is live (an idle connection).
    pub fn release_idle(&mut self) {
        if self.is_empty() {
            if self.buf.capacity() > 0 {
                self.buf = Vec::new();
                self.head = 0;
            }
            if self.ts_index.capacity() > 0 {
                self.ts_index = VecDeque::new();
            }
        }
    }

    /// Moves live bytes to the front when the dead prefix dominates, so memory stays bounded.
    fn compact(&mut self) {
        if self.head > 0 && self.head >= self.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    fn note_ts(&mut self, pos: u64, ts_ns: u64) {
        if self.ts_index.len() >= MAX_TS_ENTRIES {
            // Keep the oldest entry (it stamps the head frame); merge the next one into it.
            self.ts_index.remove(1);
        }
        self.ts_index.push_back((pos, ts_ns));
    }

    /// Drops index entries for chunks wholly before the head (keeps the one holding the head).
    fn prune_ts(&mut self) {
        while self.ts_index.len() > 1
            && self
                .ts_index
                .get(1)
                .is_some_and(|&(p, _)| p <= self.head_pos)
        {
            self.ts_index.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_trimmed() {
        let mut s = ByteStream::new(1024);
        let mut st = ParseStats::default();
        s.push(100, 1, b"abcd", &mut st);
        s.push(102, 2, b"cdef", &mut st);
        s.push(100, 3, b"ab", &mut st);
        assert_eq!(s.bytes(), b"abcdef");
        assert_eq!(s.ts_at(100), 1);
        assert_eq!(s.ts_at(104), 2);
        assert_eq!(st, ParseStats::default());
    }

    #[test]
    fn an_idle_stream_gives_its_memory_back_and_keeps_its_position() {
        let mut s = ByteStream::new(1024);
        let mut st = ParseStats::default();
        s.push(0, 1, b"abcd", &mut st);
        s.release_idle();
        assert_eq!(s.bytes(), b"abcd", "live bytes are kept");
        s.clear();
        s.release_idle();
        assert_eq!((s.buf.capacity(), s.ts_index.capacity()), (0, 0));
        s.push(4, 2, b"ef", &mut st);
        assert_eq!((s.bytes(), s.head_pos(), s.ts_at(4)), (&b"ef"[..], 4, 2));
        assert_eq!(st, ParseStats::default());
    }

    #[test]
    fn gap_drops_partial_bytes_and_requests_resync() {
        let mut s = ByteStream::new(1024);
        let mut st = ParseStats::default();
        s.push(0, 1, b"abc", &mut st);
        s.push(10, 2, b"xyz", &mut st);
        assert_eq!(s.bytes(), b"xyz");
        assert_eq!(s.head_pos(), 10);
        assert!(s.needs_resync());
        assert_eq!(st.bytes_lost, 3 + 7);
    }

    #[test]
    fn a_frame_in_many_small_chunks_after_an_empty_stream_keeps_its_first_time() {
        let mut s = ByteStream::new(1024);
        let mut st = ParseStats::default();
        s.push(0, 1, b"old", &mut st);
        s.consume(3);
        assert!(s.is_empty());
        // More chunks than the index holds, all of one frame, all later than the old one.
        for i in 0..(2 * MAX_TS_ENTRIES as u64) {
            s.push(3 + i, 10 + i, b"x", &mut st);
        }
        assert_eq!(s.ts_at(3), 10, "stamped with its own first chunk");
        assert!(s.ts_at(3 + 2 * MAX_TS_ENTRIES as u64 - 1) >= 10);
    }

    #[test]
    fn gap_inside_skip_is_not_a_loss() {
        let mut s = ByteStream::new(1024);
        let mut st = ParseStats::default();
        s.push(0, 1, b"abcd", &mut st);
        s.consume(20);
        assert!(s.is_empty());
        s.gap_to(15, &mut st);
        s.push(15, 2, b"0123456789", &mut st);
        assert_eq!(s.bytes(), b"56789");
        assert_eq!(s.head_pos(), 20);
        assert!(!s.needs_resync());
        assert_eq!(st.bytes_lost, 0);
    }

    #[test]
    fn overflow_drops_oldest() {
        let mut s = ByteStream::new(16);
        let mut st = ParseStats::default();
        s.push(0, 1, &[7u8; 20], &mut st);
        assert_eq!(s.len(), 16);
        assert_eq!(st.buffer_overflow_bytes, 4);
        assert!(s.needs_resync());
        assert_eq!(s.head_pos(), 4);
    }
}
