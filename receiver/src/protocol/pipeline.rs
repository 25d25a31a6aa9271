//! The one generic frame loop. (Being written.)
use crate::protocol::{Direction, ParseStats, ParserLimits};
use crate::record::{Record, Role};

pub struct Pipeline<F, S> {
    _f: F,
    _s: S,
}

impl<F, S> Pipeline<F, S> {
    pub fn new(framer: F, stitcher: S, _role: Role, _limits: ParserLimits) -> Self {
        Pipeline { _f: framer, _s: stitcher }
    }
    #[expect(clippy::too_many_arguments, reason = "stub")]
    pub fn on_data(
        &mut self,
        _d: Direction,
        _pos: u64,
        _ts: u64,
        _bytes: &[u8],
        _len: u32,
        _out: &mut Vec<Record>,
        _stats: &mut ParseStats,
    ) {
    }
    pub fn expire(&mut self, _deadline_ns: u64, _out: &mut Vec<Record>, _stats: &mut ParseStats) {}
    pub fn buffered_bytes(&self) -> usize {
        0
    }
}
