//! Byte stream of one direction with positions and gaps. (Being written.)
pub struct ByteStream;
