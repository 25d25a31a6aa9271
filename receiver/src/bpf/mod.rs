//! The only module that touches aya: load and attach the kernel programs, read the two rings,
//! write the connection maps, read the kernel's counters, and check what the host allows.
//!
//! - [`Probes::load`] mounts tracefs if needed, loads the object built by `build.rs`, sets the
//!   runtime knobs (globals) and the filter maps, and attaches every syscall tracepoint.
//! - [`RingReader`] drains the control and data rings into decoded [`KernelEvent`]s.
//! - [`ConnControl`] disables/enables capture per connection and seeds pre-existing sockets.
//! - [`check`] is `ebpf-receiver check`; [`caps::require`] is the capability check at start.
//! - [`RawInference`] infers in user space the connections the kernel forwards uninferred
//!   (`ebpf.kernel_inference: false`), with the kernel's own inference code.
//!
//! Known limits of the kernel side (see `ebpf/probes`): sockets are tracked from connect/accept
//! in the process that made them, and in a child forked after an accept whose socket the parent
//! never used (accept-then-fork servers such as PostgreSQL); any other fd inherited across fork
//! or passed over a unix socket is not tracked unless user space seeds it; UDP sockets are tracked from socket(2) (or connect),
//! so UDP sockets created before the receiver started are seen only if seeded; process exit closes
//! fds without a close syscall, so entries of exited processes stay in `CONNS` until
//! [`ConnControl::purge_exited`] runs.

pub mod caps;
mod check;
pub mod event;
mod infer;
mod load;
mod maps;
mod ring;

pub use check::{CheckItem, check};
pub use event::{CloseEvent, DataEvent, KernelEvent, OpenEvent, SocketFamily};
pub use infer::{Inference, RawInference};
pub use load::{
    BpfSettings, Floor, FloorProbes, KernelStats, Probes, ProgramStats, attach_points,
    probes_object, tracepoints,
};
pub use maps::ConnControl;
pub use ring::RingReader;

/// Whether the connection's socket predates the receiver (user space registered it with a
/// seeded generation): its first bytes were never seen.
pub fn predates_receiver(conn: crate::model::ConnId) -> bool {
    conn.generation & ebpf_common::SEEDED_GENERATION_BIT != 0
}

/// Most payload bytes the kernel can capture from one syscall (`ebpf.max_capture_bytes` cap).
pub const MAX_CAPTURE_BYTES: u32 = ebpf_common::MAX_CAPTURE as u32;

// The capture task and the tracker own these on other tasks/threads.
const _: () = {
    const fn send<T: Send>() {}
    send::<RingReader>();
    send::<ConnControl>();
    send::<Probes>();
};

/// Failures of loading, attaching and talking to the kernel programs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the eBPF object is empty: the receiver was built with `EBPF_RECEIVER_SKIP_PROBES`")]
    NotBuilt,
    #[error("cannot mount tracefs at `{path}`")]
    Tracefs {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the eBPF object")]
    Load {
        #[source]
        source: aya::EbpfError,
    },
    #[error("program `{program}` is missing from the eBPF object")]
    MissingProgram { program: String },
    #[error("cannot load or attach program `{program}`")]
    Program {
        program: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map `{map}` is missing from the eBPF object (or already taken)")]
    MissingMap { map: &'static str },
    #[error("cannot use map `{map}`")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("invalid setting `{setting}`: {reason}")]
    Settings {
        setting: &'static str,
        reason: String,
    },
}
