//! Connection tracking. (Being written.)
