//! SQL sanitiser and summariser. (Being written.)
