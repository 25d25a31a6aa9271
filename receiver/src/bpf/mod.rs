//! The only module that touches aya: load, attach, ring readers, maps, stats.
//! (Being written: see issue 3.)

pub mod event;

pub use event::{CloseEvent, ConnId, DataEvent, KernelEvent, OpenEvent, SocketFamily};
