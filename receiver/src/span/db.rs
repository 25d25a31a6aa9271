//! Database spans (`docs/db/database-spans.md`, `docs/db/mysql.md`, semconv v1.44.0, Stable).
//!
//! | Attribute | Source |
//! |---|---|
//! | `db.system.name` | [`DbSystem::as_str`] (Required) |
//! | `db.namespace` | current database, when known |
//! | `db.query.text` | sanitised or parameterised text; absent when sanitising failed (fail closed) |
//! | `db.query.summary` | the tracker's summary, also the span name |
//! | `db.operation.name` | the protocol command (`PING`, `INIT_DB`), only when there is no summary |
//! | `db.response.status_code`, `error.type` | server error number on an error packet |
//! | `server.address`, `server.port` | server side of the socket (peer for CLIENT, local for SERVER); the socket path for Unix sockets; the port only when not the system's default |
//! | `network.peer.address`, `network.peer.port` | the socket peer |
//! | `network.transport` | `tcp` / `unix` |
//!
//! Left out on purpose:
//! - `db.response.returned_rows` is Opt-In in the conventions (extra cost for every consumer).
//! - `db.operation.name` / `db.collection.name` are not extracted from query text (the MySQL
//!   document says they SHOULD NOT be); the protocol command is not query text, so it names
//!   command-only exchanges.
//! - The span name fallback is `{db.operation.name} {db.namespace}`, then `{db.namespace}`, then
//!   `{db.system.name}`. The conventions also allow `server.address:server.port` as the target;
//!   we never use it because span names key the Collector's spanmetrics and addresses (often
//!   bare IPs here) multiply their cardinality.
//! - Status is Unset on success and `Error` on an error packet ("All MySQL error codes SHOULD be
//!   considered errors"); its message is the SQLSTATE when known, never the server's error text,
//!   which can echo literals from the query.

use super::{SpanBuf, network, non_empty};
use crate::model::{ConnMeta, Protocol};
use crate::record::{DbExchange, DbOutcome};

/// What the conventions say of one database system.
struct System {
    /// `db.system.name`.
    name: &'static str,
    /// The port it listens on when none is configured: `server.port` is Conditionally
    /// Required only when it differs.
    default_port: u16,
    /// Whether a span without a summary is named `{operation} {db.namespace}` (SQL) or just
    /// `{operation}` (Redis: "SHOULD NOT" put the database index in the name).
    namespace_in_name: bool,
}

/// One line per database protocol.
fn system(protocol: Protocol) -> System {
    let (name, default_port, namespace_in_name) = match protocol {
        Protocol::Mysql => ("mysql", 3306, true),
        Protocol::Postgres => ("postgresql", 5432, true),
        Protocol::Redis => ("redis", 6379, false),
        // Not a database: its records never reach this mapping.
        _ => (protocol.as_str(), 0, true),
    };
    System {
        name,
        default_port,
        namespace_in_name,
    }
}

/// Sets the name, attributes and status of a database span.
pub(super) fn fill(sb: &mut SpanBuf, conn: &ConnMeta, protocol: Protocol, db: &DbExchange) {
    let sys = system(protocol);
    sb.str("db.system.name", sys.name);
    let namespace = non_empty(&db.namespace);
    if let Some(ns) = namespace {
        sb.str("db.namespace", ns);
    }
    if let Some(text) = non_empty(&db.query_text) {
        sb.str("db.query.text", text);
    }
    let summary = non_empty(&db.query_summary);
    let operation = non_empty(&db.operation);
    if db.prepare_only {
        // A round trip that only prepares: named apart from the execution it prepares, and no
        // `db.query.summary`, so span metrics keyed by either never count it as that query.
        sb.str("db.operation.name", "PREPARE");
        let name = sb.name_mut();
        name.push_str("PREPARE");
        if let Some(s) = summary {
            name.push(' ');
            name.push_str(s);
        }
    } else if let Some(s) = summary {
        sb.str("db.query.summary", s);
        if let Some(op) = operation {
            sb.str("db.operation.name", op);
        }
        sb.set_name(s);
    } else if let Some(op) = operation {
        sb.str("db.operation.name", op);
        let name = sb.name_mut();
        name.push_str(op);
        if let Some(ns) = namespace.filter(|_| sys.namespace_in_name) {
            name.push(' ');
            name.push_str(ns);
        }
    } else {
        sb.set_name(
            namespace
                .filter(|_| sys.namespace_in_name)
                .unwrap_or(sys.name),
        );
    }
    if let Some(n) = db.batch_size.filter(|&n| n > 1) {
        sb.int(
            "db.operation.batch.size",
            i64::try_from(n).unwrap_or(i64::MAX),
        );
    }
    if let DbOutcome::Error { code, detail } = &db.outcome {
        // `error.type` must be low-cardinality: the error code is; fall back to `_OTHER`.
        let code = if code.is_empty() {
            "_OTHER"
        } else {
            code.as_str()
        };
        sb.str("db.response.status_code", code);
        sb.str("error.type", code);
        sb.error(detail.as_deref().unwrap_or_default());
    }
    network(sb, conn, Some(sys.default_port));
}

#[cfg(test)]
mod tests {
    use super::super::build_span;
    use super::super::tests::attr;
    use crate::model::*;
    use crate::record::*;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn db(summary: Option<&str>, text: Option<&str>, outcome: DbOutcome) -> DbExchange {
        DbExchange {
            namespace: Some("shop".into()),
            query_text: text.map(Into::into),
            query_summary: summary.map(Into::into),
            outcome,
            returned_rows: Some(3),
            ..DbExchange::default()
        }
    }

    fn rec(conn: ConnMeta, ex: DbExchange) -> ConnRecord {
        ConnRecord {
            conn,
            protocol: Protocol::Mysql,
            start_unix_ns: 1_000,
            end_unix_ns: 5_000,
            incomplete: None,
            exchange: Exchange::Db(ex),
        }
    }

    fn tcp(role: Option<Role>, local: &str, peer: &str) -> ConnMeta {
        ConnMeta {
            role,
            transport: Some(Transport::Tcp),
            local: Some(local.parse::<SocketAddr>().unwrap()),
            peer: Some(peer.parse::<SocketAddr>().unwrap()),
            unix_path: None,
            process: Arc::new(ProcessMeta {
                pid: 42,
                ..Default::default()
            }),
        }
    }

    /// Every attribute of the span as `key=value` lines, sorted, for whole-set comparisons.
    fn render(span: &opentelemetry_proto::tonic::trace::v1::Span) -> Vec<String> {
        let mut v: Vec<String> = span
            .attributes
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    attr(&span.attributes, &kv.key).unwrap_or_default()
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn client_tcp_on_default_port() {
        let r = rec(
            tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:3306"),
            db(
                Some("SELECT users"),
                Some("SELECT * FROM users WHERE id = ?"),
                DbOutcome::Success,
            ),
        );
        let s = build_span(&r);
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(s.name, "SELECT users");
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (1_000, 5_000)
        );
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id.len(), 8);
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.status, None, "success leaves status unset");
        assert_eq!(
            render(&s),
            vec![
                "db.namespace=shop",
                "db.query.summary=SELECT users",
                "db.query.text=SELECT * FROM users WHERE id = ?",
                "db.system.name=mysql",
                "network.peer.address=10.0.0.2",
                "network.peer.port=int:3306",
                "network.transport=tcp",
                "server.address=10.0.0.2",
            ]
        );
    }

    #[test]
    fn client_tcp_on_other_port_sets_server_port_and_canonical_ipv4() {
        let r = rec(
            tcp(
                Some(Role::Client),
                "[::ffff:10.0.0.1]:51000",
                "[::ffff:10.0.0.2]:13306",
            ),
            db(Some("SELECT users"), None, DbOutcome::Success),
        );
        let s = build_span(&r);
        assert_eq!(
            attr(&s.attributes, "server.address").as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(
            attr(&s.attributes, "server.port").as_deref(),
            Some("int:13306")
        );
        assert_eq!(
            attr(&s.attributes, "network.peer.port").as_deref(),
            Some("int:13306")
        );
    }

    #[test]
    fn server_tcp_uses_local_address_as_server() {
        let r = rec(
            tcp(Some(Role::Server), "10.0.0.2:3307", "10.0.0.1:51000"),
            db(
                Some("INSERT orders"),
                Some("INSERT INTO orders VALUES (?, ?)"),
                DbOutcome::Success,
            ),
        );
        let s = build_span(&r);
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(s.name, "INSERT orders");
        assert_eq!(
            render(&s),
            vec![
                "db.namespace=shop",
                "db.query.summary=INSERT orders",
                "db.query.text=INSERT INTO orders VALUES (?, ?)",
                "db.system.name=mysql",
                "network.peer.address=10.0.0.1",
                "network.peer.port=int:51000",
                "network.transport=tcp",
                "server.address=10.0.0.2",
                "server.port=int:3307",
            ]
        );
    }

    #[test]
    fn a_wildcard_listener_address_keeps_only_the_port() {
        let r = rec(
            tcp(Some(Role::Server), "0.0.0.0:3307", "10.0.0.1:51000"),
            db(
                Some("SELECT t"),
                Some("SELECT a FROM t"),
                DbOutcome::Success,
            ),
        );
        let s = build_span(&r);
        assert_eq!(attr(&s.attributes, "server.address"), None);
        assert_eq!(
            attr(&s.attributes, "server.port").as_deref(),
            Some("int:3307")
        );
    }

    #[test]
    fn unknown_role_is_a_client() {
        let r = rec(
            tcp(None, "10.0.0.1:51000", "10.0.0.2:3306"),
            db(None, None, DbOutcome::Success),
        );
        let s = build_span(&r);
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(
            attr(&s.attributes, "server.address").as_deref(),
            Some("10.0.0.2")
        );
    }

    #[test]
    fn unix_socket_client_and_server() {
        let conn = ConnMeta {
            role: Some(Role::Client),
            transport: Some(Transport::Unix),
            local: None,
            peer: None,
            unix_path: Some("/run/mysqld/mysqld.sock".into()),
            process: Arc::new(ProcessMeta::default()),
        };
        let r = rec(
            conn.clone(),
            db(
                Some("SELECT t"),
                Some("SELECT a FROM t"),
                DbOutcome::Success,
            ),
        );
        let s = build_span(&r);
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(
            render(&s),
            vec![
                "db.namespace=shop",
                "db.query.summary=SELECT t",
                "db.query.text=SELECT a FROM t",
                "db.system.name=mysql",
                "network.peer.address=/run/mysqld/mysqld.sock",
                "network.transport=unix",
                "server.address=/run/mysqld/mysqld.sock",
            ]
        );
        let r = rec(
            ConnMeta {
                role: Some(Role::Server),
                ..conn
            },
            db(None, None, DbOutcome::Success),
        );
        let s = build_span(&r);
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(
            attr(&s.attributes, "server.address").as_deref(),
            Some("/run/mysqld/mysqld.sock")
        );
        assert_eq!(attr(&s.attributes, "network.peer.address"), None);
        assert_eq!(attr(&s.attributes, "server.port"), None);
    }

    #[test]
    fn error_sets_code_error_type_and_status_without_server_text() {
        let r = rec(
            tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:3306"),
            db(
                Some("SELECT missing"),
                Some("SELECT * FROM missing"),
                DbOutcome::Error {
                    code: "1146".into(),
                    detail: Some("42S02".into()),
                },
            ),
        );
        let s = build_span(&r);
        assert_eq!(
            attr(&s.attributes, "db.response.status_code").as_deref(),
            Some("1146")
        );
        assert_eq!(attr(&s.attributes, "error.type").as_deref(), Some("1146"));
        let st = s.status.expect("error status");
        assert_eq!(st.code, StatusCode::Error as i32);
        assert_eq!(st.message, "42S02");
        assert_eq!(
            attr(&s.attributes, "db.response.returned_rows"),
            None,
            "opt-in, left out"
        );

        let r = rec(
            tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:3306"),
            db(
                None,
                None,
                DbOutcome::Error {
                    code: "1045".into(),
                    detail: None,
                },
            ),
        );
        let s = build_span(&r);
        assert_eq!(
            s.status.map(|st| (st.code, st.message)),
            Some((2, String::new()))
        );
    }

    #[test]
    fn success_leaves_status_unset() {
        let r = rec(
            tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:3306"),
            DbExchange {
                operation: Some("PING".into()),
                ..db(None, None, DbOutcome::Success)
            },
        );
        let s = build_span(&r);
        assert_eq!(s.status, None);
        assert_eq!(attr(&s.attributes, "error.type"), None);
    }

    #[test]
    fn fail_closed_query_text_is_absent_and_name_falls_back() {
        // Sanitising failed: no text and no summary; the name comes from the command.
        let r = rec(
            tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:3306"),
            db(None, None, DbOutcome::Success),
        );
        let s = build_span(&r);
        assert_eq!(attr(&s.attributes, "db.query.text"), None);
        assert_eq!(attr(&s.attributes, "db.query.summary"), None);
        assert_eq!(s.name, "shop");
        assert_eq!(attr(&s.attributes, "db.operation.name"), None);
    }

    #[test]
    fn name_fallbacks() {
        let conn = tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:3306");
        let base = db(None, None, DbOutcome::Success);
        let name = |ex: DbExchange| build_span(&rec(conn.clone(), ex)).name;
        assert_eq!(
            name(DbExchange {
                operation: Some("PING".into()),
                namespace: None,
                ..base.clone()
            }),
            "PING"
        );
        assert_eq!(
            name(DbExchange {
                operation: None,
                ..base.clone()
            }),
            "shop"
        );
        assert_eq!(
            name(DbExchange {
                operation: None,
                namespace: None,
                ..base.clone()
            }),
            "mysql"
        );
        assert_eq!(
            name(DbExchange {
                query_summary: Some(String::new()),
                operation: Some("PING".into()),
                ..base.clone()
            }),
            "PING shop",
            "an empty summary is no summary"
        );
    }

    #[test]
    fn a_prepare_is_named_apart_from_its_execution() {
        let conn = tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:3306");
        let exec = db(
            Some("SELECT users"),
            Some("SELECT * FROM users WHERE id = ?"),
            DbOutcome::Success,
        );
        let prep = DbExchange {
            prepare_only: true,
            ..exec.clone()
        };
        let e = build_span(&rec(conn.clone(), exec));
        let p = build_span(&rec(conn, prep));
        assert_eq!(e.name, "SELECT users");
        assert_eq!(p.name, "PREPARE SELECT users");
        assert_eq!(
            attr(&p.attributes, "db.operation.name").as_deref(),
            Some("PREPARE")
        );
        assert_eq!(attr(&p.attributes, "db.query.summary"), None);
        assert_eq!(
            attr(&p.attributes, "db.query.text"),
            attr(&e.attributes, "db.query.text")
        );
    }

    #[test]
    fn an_incomplete_response_is_an_error_unless_the_protocol_said_so() {
        let conn = tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:3306");
        let mut r = rec(conn.clone(), db(Some("SELECT t"), None, DbOutcome::Success));
        r.incomplete = Some(Incomplete::ConnectionClosed);
        let s = build_span(&r);
        assert_eq!(
            attr(&s.attributes, "error.type").as_deref(),
            Some("connection_closed")
        );
        assert_eq!(s.status.map(|st| st.code), Some(StatusCode::Error as i32));
        let mut r = rec(
            conn,
            db(
                Some("SELECT t"),
                None,
                DbOutcome::Error {
                    code: "1146".into(),
                    detail: None,
                },
            ),
        );
        r.incomplete = Some(Incomplete::EndLost);
        let s = build_span(&r);
        assert_eq!(attr(&s.attributes, "error.type").as_deref(), Some("1146"));
    }

    #[test]
    fn redis_spans_are_named_by_the_command_without_the_database_index() {
        let mut r = rec(
            tcp(Some(Role::Client), "10.0.0.1:51000", "10.0.0.2:6379"),
            DbExchange {
                namespace: Some("2".into()),
                query_text: Some("HMSET ? ? ? ? ?".into()),
                operation: Some("HMSET".into()),
                ..DbExchange::default()
            },
        );
        r.protocol = Protocol::Redis;
        let s = build_span(&r);
        assert_eq!(s.name, "HMSET");
        assert_eq!(
            render(&s),
            vec![
                "db.namespace=2",
                "db.operation.name=HMSET",
                "db.query.text=HMSET ? ? ? ? ?",
                "db.system.name=redis",
                "network.peer.address=10.0.0.2",
                "network.peer.port=int:6379",
                "network.transport=tcp",
                "server.address=10.0.0.2",
            ]
        );
    }

    #[test]
    fn end_never_before_start() {
        let mut r = rec(
            tcp(Some(Role::Client), "10.0.0.1:1", "10.0.0.2:3306"),
            db(None, None, DbOutcome::Success),
        );
        r.end_unix_ns = 10;
        r.start_unix_ns = 20;
        let s = build_span(&r);
        assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (20, 20));
    }
}
