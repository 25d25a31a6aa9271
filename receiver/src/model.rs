//! The shared vocabulary every stage imports: which protocol, which connection, which side,
//! which direction, over what. A leaf: it imports nothing of ours.
//!
//! [`for_each_protocol!`] is THE protocol declaration. Each line names one protocol; every
//! consumer expands the table with a macro of its own, so adding a protocol is one line here:
//! - [`Protocol`] (this file): the enum, names, `ALL`, dense indices;
//! - `protocol/`: parser construction and dispatch (`ConnParser`);
//! - `config`: the `protocols.<name>` switch;
//! - `bpf/`: kernel ids (`ebpf_common::proto::<KERNEL_ID>`) both ways and the enabled bitmask;
//! - `telemetry`: per-protocol metric labels and counters (through `Protocol::ALL`).

use std::net::SocketAddr;
use std::sync::Arc;

/// The protocol declaration. Columns: enum variant, name (the `protocols.<name>` config key and
/// the `protocol="<name>"` metric label), kernel id (a const of `ebpf_common::proto`), framer
/// and stitcher (paths under `crate::protocol`). Calls `$consumer! { <the table> }`.
#[macro_export]
macro_rules! for_each_protocol {
    ($consumer:ident) => {
        $consumer! {
            Mysql mysql MYSQL mysql::MysqlFramer, mysql::MysqlStitcher;
            Http1 http1 HTTP1 http1::Http1Framer, http1::Http1Stitcher;
            Postgres postgresql POSTGRES postgres::PgFramer, postgres::PgStitcher;
            Redis redis REDIS redis::RedisFramer, redis::RedisStitcher;
            Dns dns DNS dns::DnsFramer, dns::DnsStitcher;
        }
    };
}

macro_rules! protocol_enum {
    ($($variant:ident $name:ident $kernel:ident $framer:path, $stitcher:path;)*) => {
        /// The closed set of protocols, one per kernel inference function.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Protocol {
            $($variant,)*
        }

        impl Protocol {
            /// Every protocol, in declaration order ([`Protocol::index`] order).
            pub const ALL: &'static [Protocol] = &[$(Protocol::$variant,)*];

            /// Bounded name: config key, metric label, log field.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Protocol::$variant => stringify!($name),)*
                }
            }
        }
    };
}

for_each_protocol!(protocol_enum);

/// Number of protocols (sizes per-protocol arrays).
pub const PROTOCOL_COUNT: usize = Protocol::ALL.len();

impl Protocol {
    /// Dense index in `0..PROTOCOL_COUNT`, for per-protocol arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A socket of a process, stable across fd reuse thanks to the generation the kernel assigns
/// when it first sees the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub pid: u32,
    pub fd: u32,
    pub generation: u32,
}

/// Direction of bytes relative to the traced process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Written by the traced process.
    Egress,
    /// Read by the traced process.
    Ingress,
}

/// Whether the traced process initiated the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The traced process sent the request (span kind CLIENT).
    Client,
    /// The traced process received the request (span kind SERVER).
    Server,
}

/// Transport of a connection (`network.transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    Unix,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Unix => "unix",
        }
    }
}

/// What the tracker knows about a connection when a record leaves it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnMeta {
    pub role: Option<Role>,
    pub transport: Option<Transport>,
    /// Local address of the traced process's socket (TCP, UDP).
    pub local: Option<SocketAddr>,
    /// Remote address of the socket (TCP, connected UDP); a record of an unconnected UDP
    /// socket carries its own peer instead.
    pub peer: Option<SocketAddr>,
    /// Socket path for Unix-domain sockets.
    pub unix_path: Option<String>,
    /// The process that owns the socket.
    pub process: Arc<ProcessMeta>,
}

/// A traced process; becomes one OTLP resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessMeta {
    pub pid: u32,
    /// Base name of `/proc/<pid>/exe` (or `comm` when unreadable).
    pub executable_name: String,
    /// `/proc/<pid>/cmdline` joined with spaces, capped.
    pub command_line: String,
    /// The process's own `OTEL_SERVICE_NAME`, when its environment sets one.
    pub service_name: Option<String>,
    /// Container id parsed from `/proc/<pid>/cgroup`.
    pub container_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        for (i, p) in Protocol::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        let mut names: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROTOCOL_COUNT);
    }
}
