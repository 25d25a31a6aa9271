//! One request/response exchange, ready to become one span.
//!
//! Records are per *family* (database, and later HTTP, messaging, DNS), not per protocol, so
//! `span/` maps each family to one semantic-convention document and never imports a protocol
//! module. The tracker attaches the connection's [`ConnMeta`] and converts kernel time to wall
//! clock before a record leaves it.

use std::net::SocketAddr;
use std::sync::Arc;

/// One exchange: the request's first byte to the response's last byte.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Kernel boot-time nanoseconds of the request's first byte.
    pub start_ns: u64,
    /// Kernel boot-time nanoseconds of the response's last byte (== `start_ns` when no response
    /// is expected, e.g. `COM_STMT_CLOSE`).
    pub end_ns: u64,
    pub exchange: Exchange,
}

/// The protocol family of an exchange.
#[derive(Clone, Debug, PartialEq)]
pub enum Exchange {
    Db(DbExchange),
}

/// Database systems we parse (`db.system.name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbSystem {
    Mysql,
}

impl DbSystem {
    /// The semantic-conventions value of `db.system.name`.
    pub fn as_str(self) -> &'static str {
        match self {
            DbSystem::Mysql => "mysql",
        }
    }
}

/// A database call (`docs/db/database-spans.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct DbExchange {
    pub system: DbSystem,
    /// Current database when the request was sent (`db.namespace`).
    pub namespace: Option<String>,
    /// Query text with every literal replaced by `?`, or the parameterised text of a prepared
    /// statement. `None` when it could not be sanitised (fail closed).
    pub query_text: Option<String>,
    /// Low-cardinality summary such as `SELECT users` (`db.query.summary`, the span name).
    pub query_summary: Option<String>,
    /// Protocol-level operation when there is no query text, e.g. `PING`, `INIT_DB`, `QUIT`,
    /// `STMT_CLOSE`; used as the span name fallback.
    pub command: &'static str,
    pub outcome: DbOutcome,
    /// Rows in the result set(s), when the response carried any.
    pub returned_rows: Option<u64>,
    /// Rows affected, from the OK packet.
    pub affected_rows: Option<u64>,
}

/// How a database call ended.
#[derive(Clone, Debug, PartialEq)]
pub enum DbOutcome {
    /// OK, EOF or a complete result set.
    Success,
    /// An error packet: `code` is the server error number, `sqlstate` the 5-character state.
    Error {
        code: String,
        sqlstate: Option<String>,
    },
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
    Unix,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
        }
    }
}

/// What the tracker knows about a connection when a record leaves it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnMeta {
    pub role: Option<Role>,
    pub transport: Option<Transport>,
    /// Local address of the traced process's socket (TCP).
    pub local: Option<SocketAddr>,
    /// Remote address of the socket (TCP).
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

/// A record together with the connection it came from, in wall-clock time.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    pub conn: ConnMeta,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub exchange: Exchange,
}
