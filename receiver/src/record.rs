//! One request/response exchange, ready to become one span.
//!
//! Records are per *family* (database, and HTTP, DNS, …), not per protocol, so `span/` maps each
//! family to one semantic-convention document and never imports a protocol module; every record
//! carries the [`Protocol`] that produced it. Error codes are strings owned by the family (an
//! SQLSTATE, a MySQL error number, a Redis error prefix), never protocol constants. The tracker
//! attaches the connection's [`ConnMeta`] and converts kernel time to wall clock before a record
//! leaves it.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::model::{ConnMeta, Protocol, Transport};

/// One exchange: the request's first byte to the response's last byte.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub protocol: Protocol,
    /// Kernel boot-time nanoseconds of the request's first byte.
    pub start_ns: u64,
    /// Kernel boot-time nanoseconds of the response's last byte; when [`Record::incomplete`]
    /// says the end was not seen, of the last byte that was.
    pub end_ns: u64,
    /// Set when the response's end was never seen: the span says so with `error.type`.
    pub incomplete: Option<Incomplete>,
    /// The peer of this one exchange when the connection has none (unconnected UDP).
    pub peer: Option<SocketAddr>,
    pub exchange: Exchange,
}

/// Why a record's response has no true end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incomplete {
    /// The connection closed in the middle of the response.
    ConnectionClosed,
    /// The bytes holding the response's end were lost (kernel ring full, capture gap).
    EndLost,
}

impl Incomplete {
    /// The `error.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Incomplete::ConnectionClosed => "connection_closed",
            Incomplete::EndLost => "response_end_lost",
        }
    }
}

/// The protocol family of an exchange.
#[derive(Clone, Debug, PartialEq)]
pub enum Exchange {
    Db(DbExchange),
    Http(HttpExchange),
    Dns(DnsExchange),
}

/// A database call (`docs/db/database-spans.md`): SQL databases and key-value stores.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DbExchange {
    /// `db.namespace`: the current database (MySQL), `{database}` (PostgreSQL), the database
    /// index (Redis), when known.
    /// Shared with the connection's parser, which holds it until the database changes.
    pub namespace: Option<Arc<str>>,
    /// Query text with every literal replaced by `?`, the parameterised text of a prepared
    /// statement, or a command with its arguments replaced (Redis). `None` when it could not be
    /// sanitised (fail closed).
    pub query_text: Option<String>,
    /// Low-cardinality summary such as `SELECT users` (`db.query.summary`, the span name).
    pub query_summary: Option<String>,
    /// `db.operation.name`: set only where the conventions want it (a Redis command) or where
    /// the exchange has no query text (a protocol-level `PING`, `PREPARE`).
    pub operation: Option<String>,
    /// The round trip only prepared a statement (MySQL `COM_STMT_PREPARE`, PostgreSQL Parse
    /// without Execute): named `PREPARE …` so span metrics never count it as the execution.
    pub prepare_only: bool,
    /// Statements in one request (a pipeline or batch), when more than one.
    pub batch_size: Option<u64>,
    pub outcome: DbOutcome,
    /// Rows in the result set(s), when the response carried any.
    pub returned_rows: Option<u64>,
    /// Rows affected (MySQL OK packet, PostgreSQL CommandComplete).
    pub affected_rows: Option<u64>,
}

/// How a database call ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum DbOutcome {
    /// OK, a complete result set, a reply that is not an error.
    #[default]
    Success,
    /// An error response. `code` is `db.response.status_code` (MySQL error number, SQLSTATE,
    /// Redis error prefix); `detail` a low-cardinality, literal-free addition for the span
    /// status message (the MySQL SQLSTATE), never server text.
    Error {
        code: String,
        detail: Option<String>,
    },
}

/// A DNS lookup: one query and its response (registry attributes `dns.*`; no span
/// convention exists, see `span/dns.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct DnsExchange {
    /// `dns.question.name` as it appears in the query (presentation form, escaped, capped).
    pub question_name: String,
    /// Mnemonic of the query type (`A`, `AAAA`, `TYPE65280`); the span is named `DNS {type}`.
    pub question_type: Cow<'static, str>,
    /// `None` for NOERROR; otherwise the RCODE name (`NXDOMAIN`, `SERVFAIL`, … or `_OTHER`),
    /// the `error.type`.
    pub error: Option<&'static str>,
    /// Addresses of the A/AAAA answers (`dns.answers`), bounded.
    pub answers: Vec<IpAddr>,
    /// The response had TC set (too long for UDP; the client is expected to retry over TCP).
    pub truncated: bool,
    /// UDP or TCP, from how the messages were framed.
    pub transport: Transport,
}

/// An HTTP request and its response (`docs/http/http-spans.md`). Every string is capped and
/// secret-free by construction: the query has the values of sensitive keys replaced, and no
/// header other than `Host` and `User-Agent` is ever read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpExchange {
    /// `http.request.method`: a method the conventions know (`GET`, …) or `_OTHER`.
    pub method: &'static str,
    /// `http.request.method_original`: the method as sent, when `method` is `_OTHER`.
    pub method_original: Option<String>,
    /// `http.response.status_code` of the final response (interim 1xx responses are not it).
    pub status_code: Option<u16>,
    /// `url.path`.
    pub path: Option<String>,
    /// `url.query`, with the values of sensitive keys replaced by `REDACTED`.
    pub query: Option<String>,
    /// `server.address` / `server.port` from the request (`Host`, or an absolute-form target).
    pub server_address: Option<String>,
    pub server_port: Option<u16>,
    /// `user_agent.original`.
    pub user_agent: Option<String>,
    /// `network.protocol.version`: `1.0` or `1.1`.
    pub protocol_version: Option<&'static str>,
    /// `http.request.body.size` / `http.response.body.size`: from Content-Length, or the sum of
    /// the chunk sizes of a chunked body.
    pub request_body_size: Option<u64>,
    pub response_body_size: Option<u64>,
}

/// A record together with the connection it came from, in wall-clock time.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnRecord {
    pub conn: ConnMeta,
    pub protocol: Protocol,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub incomplete: Option<Incomplete>,
    pub exchange: Exchange,
}
