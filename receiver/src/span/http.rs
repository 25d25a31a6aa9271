//! HTTP spans (`docs/http/http-spans.md`, semconv v1.44.0, Stable).
//!
//! | Attribute | Source |
//! |---|---|
//! | span name | `{http.request.method}`, or `HTTP` for `_OTHER`: a passive tracer knows no route, and the conventions forbid the raw path ("MUST NOT default to using URI path") |
//! | `http.request.method` | a known method, else `_OTHER` with `http.request.method_original` |
//! | `http.response.status_code` | the final response's status |
//! | `url.scheme` | `http` (TLS is never seen in clear) |
//! | `url.path`, `url.query` | the request target; query values of sensitive keys are `REDACTED` |
//! | `url.full` | CLIENT only: `http://{server.address}[:{server.port}]{path}[?{query}]` from the same redacted parts |
//! | `server.address`, `server.port` | `Host` (or the absolute-form target); the socket's server side when there is none (and its port when `Host` names none) |
//! | `network.peer.address`, `network.peer.port`, `network.transport` | the socket |
//! | `network.protocol.version` | `1.0` / `1.1` from the request line |
//! | `user_agent.original` | SERVER only (Opt-In on clients) |
//! | `http.request.body.size`, `http.response.body.size` | Content-Length or the sum of chunk sizes, when known |
//! | `error.type` + status `Error` | the status code as a string: ≥ 400 on CLIENT spans, ≥ 500 on SERVER spans |
//!
//! Left out on purpose: every request and response header other than the ones above (they are
//! Opt-In and `Authorization`/`Cookie` are never even read), `client.address` (it would come from
//! `X-Forwarded-For`, a header we do not read; `network.peer.address` is the socket peer), and
//! `http.route` (unknowable without the application's routing table).

use super::wire::push_ip;
use super::{ServerAddress, SpanBuf, peer, socket_server, write_server};
use crate::model::{ConnMeta, Role};
use crate::record::HttpExchange;

/// The port `http` URLs mean when they name none.
const HTTP_DEFAULT_PORT: u16 = 80;

/// Sets the name, attributes and status of an HTTP span.
pub(super) fn fill(sb: &mut SpanBuf, conn: &ConnMeta, h: &HttpExchange) {
    let server = conn.role == Some(Role::Server);
    let known = !h.method.is_empty() && h.method != "_OTHER";
    sb.set_name(if known { h.method } else { "HTTP" });
    sb.str(
        "http.request.method",
        if known { h.method } else { "_OTHER" },
    );
    if !known && let Some(original) = h.method_original.as_deref() {
        sb.str("http.request.method_original", original);
    }
    if let Some(code) = h.status_code {
        sb.int("http.response.status_code", i64::from(code));
    }
    sb.str("url.scheme", "http");
    if let Some(path) = h.path.as_deref() {
        sb.str("url.path", path);
    }
    if let Some(query) = h.query.as_deref() {
        sb.str("url.query", query);
    }
    let (address, port) = match h.server_address.as_deref().filter(|a| !a.is_empty()) {
        // A `Host` without a port is the default port only when the client followed the
        // rules; proxies often send a bare host to any port (nginx `Host $host`). The socket's
        // server port is a fact; 80 would be a guess.
        Some(host) => (
            Some(ServerAddress::Path(host)),
            h.server_port.or_else(|| socket_server_port(conn)),
        ),
        None => socket_server(conn, None),
    };
    write_server(sb, address.as_ref(), port);
    if !server && let Some(address) = address.as_ref() {
        url_full(sb, address, port, h);
    }
    peer(sb, conn);
    if let Some(v) = h.protocol_version {
        sb.str("network.protocol.version", v);
    }
    if server && let Some(ua) = h.user_agent.as_deref() {
        sb.str("user_agent.original", ua);
    }
    if let Some(n) = h.request_body_size {
        sb.int(
            "http.request.body.size",
            i64::try_from(n).unwrap_or(i64::MAX),
        );
    }
    if let Some(n) = h.response_body_size {
        sb.int(
            "http.response.body.size",
            i64::try_from(n).unwrap_or(i64::MAX),
        );
    }
    // `docs/http/http-spans.md` "Status": 4xx is an error for the client only.
    let threshold = if server { 500 } else { 400 };
    if let Some(code) = h.status_code.filter(|&c| c >= threshold) {
        sb.fmt("error.type", format_args!("{code}"));
        sb.error("");
    }
}

/// The port of the socket's server side: the peer for a client, the local port for a server.
fn socket_server_port(conn: &ConnMeta) -> Option<u16> {
    let addr = if conn.role == Some(Role::Server) {
        conn.local
    } else {
        conn.peer
    };
    addr.map(|a| a.port())
}

/// `url.full` of a client request, from the same parts as `server.address`/`server.port` (so it
/// never carries more than they do): `http://address[:port]path[?query]`, the port left out
/// when it is 80.
fn url_full(sb: &mut SpanBuf, address: &ServerAddress<'_>, port: Option<u16>, h: &HttpExchange) {
    use std::fmt::Write as _;
    let mut full = sb.take_scratch();
    full.push_str("http://");
    match address {
        ServerAddress::Path(a) => {
            // An IPv6 literal goes in brackets (RFC 3986 §3.2.2).
            if a.contains(':') && !a.starts_with('[') {
                full.push('[');
                full.push_str(a);
                full.push(']');
            } else {
                full.push_str(a);
            }
        }
        ServerAddress::Ip(ip) => {
            if ip.is_ipv6() {
                full.push('[');
                push_ip(&mut full, *ip);
                full.push(']');
            } else {
                push_ip(&mut full, *ip);
            }
        }
    }
    if let Some(p) = port.filter(|&p| p != HTTP_DEFAULT_PORT) {
        let _ = write!(full, ":{p}");
    }
    full.push_str(h.path.as_deref().unwrap_or("/"));
    if let Some(q) = h.query.as_deref() {
        full.push('?');
        full.push_str(q);
    }
    sb.str("url.full", &full);
    sb.put_scratch(full);
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

    fn get(status: u16) -> HttpExchange {
        HttpExchange {
            method: "GET",
            status_code: Some(status),
            path: Some("/static/a.txt".into()),
            query: Some("page=2&token=REDACTED".into()),
            server_address: Some("example.test".into()),
            server_port: Some(8080),
            user_agent: Some("curl/8.5.0".into()),
            protocol_version: Some("1.1"),
            response_body_size: Some(1024),
            ..HttpExchange::default()
        }
    }

    fn rec(role: Role, h: HttpExchange, incomplete: Option<Incomplete>) -> ConnRecord {
        ConnRecord {
            conn: ConnMeta {
                role: Some(role),
                transport: Some(Transport::Tcp),
                local: Some("10.0.0.2:8080".parse::<SocketAddr>().unwrap()),
                peer: Some("10.0.0.1:51000".parse::<SocketAddr>().unwrap()),
                unix_path: None,
                process: Arc::new(ProcessMeta::default()),
            },
            protocol: Protocol::Http1,
            start_unix_ns: 1_000,
            end_unix_ns: 5_000,
            incomplete,
            exchange: Exchange::Http(h),
        }
    }

    #[test]
    fn client_span_attributes() {
        let s = build_span(&rec(Role::Client, get(200), None));
        assert_eq!(s.name, "GET");
        assert_eq!(s.kind, SpanKind::Client as i32);
        let a = &s.attributes;
        assert_eq!(attr(a, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(
            attr(a, "http.response.status_code").as_deref(),
            Some("int:200")
        );
        assert_eq!(attr(a, "url.scheme").as_deref(), Some("http"));
        assert_eq!(attr(a, "url.path").as_deref(), Some("/static/a.txt"));
        assert_eq!(
            attr(a, "url.query").as_deref(),
            Some("page=2&token=REDACTED")
        );
        assert_eq!(
            attr(a, "url.full").as_deref(),
            Some("http://example.test:8080/static/a.txt?page=2&token=REDACTED")
        );
        assert_eq!(attr(a, "server.address").as_deref(), Some("example.test"));
        assert_eq!(attr(a, "server.port").as_deref(), Some("int:8080"));
        assert_eq!(attr(a, "network.peer.address").as_deref(), Some("10.0.0.1"));
        assert_eq!(attr(a, "network.peer.port").as_deref(), Some("int:51000"));
        assert_eq!(attr(a, "network.protocol.version").as_deref(), Some("1.1"));
        assert_eq!(
            attr(a, "http.response.body.size").as_deref(),
            Some("int:1024")
        );
        assert_eq!(attr(a, "user_agent.original"), None, "Opt-In on clients");
        assert_eq!(attr(a, "error.type"), None);
        assert!(s.status.is_none());
    }

    #[test]
    fn server_span_attributes() {
        let s = build_span(&rec(Role::Server, get(200), None));
        assert_eq!(s.kind, SpanKind::Server as i32);
        let a = &s.attributes;
        assert_eq!(
            attr(a, "user_agent.original").as_deref(),
            Some("curl/8.5.0")
        );
        assert_eq!(attr(a, "url.full"), None);
        assert_eq!(attr(a, "server.address").as_deref(), Some("example.test"));
    }

    #[test]
    fn error_status_per_side() {
        for (role, code, error) in [
            (Role::Client, 404, true),
            (Role::Server, 404, false),
            (Role::Client, 500, true),
            (Role::Server, 503, true),
            (Role::Server, 304, false),
        ] {
            let s = build_span(&rec(role, get(code), None));
            let want = error.then(|| code.to_string());
            assert_eq!(attr(&s.attributes, "error.type"), want, "{role:?} {code}");
            assert_eq!(
                s.status.as_ref().map(|st| st.code),
                error.then_some(StatusCode::Error as i32)
            );
        }
    }

    #[test]
    fn unknown_method_is_other_and_named_http() {
        let h = HttpExchange {
            method: "_OTHER",
            method_original: Some("PURGE".into()),
            ..get(200)
        };
        let s = build_span(&rec(Role::Server, h, None));
        assert_eq!(s.name, "HTTP");
        assert_eq!(
            attr(&s.attributes, "http.request.method").as_deref(),
            Some("_OTHER")
        );
        assert_eq!(
            attr(&s.attributes, "http.request.method_original").as_deref(),
            Some("PURGE")
        );
    }

    #[test]
    fn server_address_falls_back_to_the_socket_and_ipv6_is_bracketed() {
        let h = HttpExchange {
            server_address: None,
            server_port: None,
            ..get(200)
        };
        let mut r = rec(Role::Client, h, None);
        r.conn.peer = Some("[2001:db8::1]:8080".parse().unwrap());
        let s = build_span(&r);
        let a = &s.attributes;
        assert_eq!(attr(a, "server.address").as_deref(), Some("2001:db8::1"));
        assert_eq!(attr(a, "server.port").as_deref(), Some("int:8080"));
        assert_eq!(
            attr(a, "url.full").as_deref(),
            Some("http://[2001:db8::1]:8080/static/a.txt?page=2&token=REDACTED")
        );
        // Host without a port: the socket's port (a proxy's bare `Host` to port 51000).
        let h = HttpExchange {
            server_port: None,
            query: None,
            ..get(200)
        };
        let s = build_span(&rec(Role::Client, h, None));
        assert_eq!(
            attr(&s.attributes, "server.port").as_deref(),
            Some("int:51000")
        );
        assert_eq!(
            attr(&s.attributes, "url.full").as_deref(),
            Some("http://example.test:51000/static/a.txt")
        );
        // Port 80 is left out of url.full.
        let h = HttpExchange {
            server_port: Some(80),
            query: None,
            ..get(200)
        };
        let s = build_span(&rec(Role::Client, h, None));
        assert_eq!(
            attr(&s.attributes, "url.full").as_deref(),
            Some("http://example.test/static/a.txt")
        );
    }

    #[test]
    fn incomplete_response_is_an_error_with_its_own_type() {
        let s = build_span(&rec(Role::Client, get(200), Some(Incomplete::EndLost)));
        assert_eq!(
            attr(&s.attributes, "error.type").as_deref(),
            Some("response_end_lost")
        );
        // A 5xx already says error: the status code is the error type.
        let s = build_span(&rec(Role::Server, get(502), Some(Incomplete::EndLost)));
        assert_eq!(attr(&s.attributes, "error.type").as_deref(), Some("502"));
    }
}
