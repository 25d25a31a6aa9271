//! Wiring only. (Being written.)
