//! MySQL client/server protocol. (Being written.)
use crate::protocol::ParserLimits;
pub struct MysqlFramer;
pub struct MysqlStitcher;
impl MysqlStitcher {
    pub fn new(_l: ParserLimits) -> Self {
        MysqlStitcher
    }
}
