//! DNS spans. Semantic conventions v1.44.0 define no DNS span (`docs/dns/` has only the opt-in
//! `dns.lookup.duration` metric); the registry defines `dns.question.name` and `dns.answers`
//! (Development). This mapping follows the registry and the general rules:
//!
//! | Field | Value |
//! |---|---|
//! | name | `DNS {QTYPE}`: `DNS A`, `DNS AAAA`, `DNS TYPE65280` (bounded: a type is 16 bits); never the queried name, which would multiply span-metrics series |
//! | kind | `CLIENT` for the asking process, `SERVER` for a traced DNS server |
//! | `dns.question.name` | as it appears in the query, presentation form without the trailing dot, escaped, capped at 255 bytes |
//! | `dns.answers` | string array of the A/AAAA addresses of the answer, in order, at most 16; absent when there is none |
//! | `error.type`, status `ERROR` | RCODE ≠ NOERROR: the RCODE name (`NXDOMAIN`, `SERVFAIL`, `REFUSED`, …, `_OTHER`) |
//! | `server.address`, `server.port` | the DNS server: the peer of a client (a datagram's own peer on an unconnected socket), the local address of a server |
//! | `network.peer.address`, `network.peer.port` | the other side: the server for a client, the querying client for a server |
//! | `network.transport` | `udp` or `tcp`, from how the messages were framed |
//!
//! Choices:
//! - `server.port` is always set. The database conventions drop a system's default port;
//!   nothing says 53 is one for DNS, and resolvers commonly listen elsewhere (a local cache on
//!   5353 or 127.0.0.53:53, a forwarder on a high port, DoT on 853), so the port is part of
//!   naming the resolver.
//! - A truncated (TC) answer is not an error: it is the protocol's way of asking for TCP, and
//!   the retry is its own span.
//! - No status description: the RCODE is already `error.type`, and the server sends no text.

use super::{SpanBuf, server_from_socket};
use crate::model::ConnMeta;
use crate::record::DnsExchange;

/// Sets the name, attributes and status of a DNS span.
pub(super) fn fill(sb: &mut SpanBuf, conn: &ConnMeta, dns: &DnsExchange) {
    let name = sb.name_mut();
    name.push_str("DNS ");
    name.push_str(&dns.question_type);
    sb.str("dns.question.name", dns.question_name.as_str());
    if !dns.answers.is_empty() {
        sb.ip_array("dns.answers", &dns.answers);
    }
    if let Some(rcode) = dns.error {
        sb.str("error.type", rcode);
        sb.error("");
    }
    server_from_socket(sb, conn, None);
    if let Some(peer) = conn.peer {
        sb.ip("network.peer.address", peer.ip());
        sb.int("network.peer.port", i64::from(peer.port()));
    }
    sb.str("network.transport", dns.transport.as_str());
}

#[cfg(test)]
mod tests {
    use super::super::build_span;
    use super::super::tests::attr;
    use crate::model::*;
    use crate::record::*;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use std::borrow::Cow;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn dns(qtype: &'static str, error: Option<&'static str>, answers: &[&str]) -> DnsExchange {
        DnsExchange {
            question_name: "web.e2e.test".into(),
            question_type: Cow::Borrowed(qtype),
            error,
            answers: answers.iter().map(|a| a.parse().unwrap()).collect(),
            truncated: false,
            transport: Transport::Udp,
        }
    }

    fn conn(role: Role, local: &str, peer: Option<&str>) -> ConnMeta {
        ConnMeta {
            role: Some(role),
            // What resolving the socket said; the exchange's own transport wins.
            transport: Some(Transport::Tcp),
            local: Some(local.parse::<SocketAddr>().unwrap()),
            peer: peer.map(|p| p.parse::<SocketAddr>().unwrap()),
            unix_path: None,
            process: Arc::new(ProcessMeta::default()),
        }
    }

    fn rec(conn: ConnMeta, ex: DnsExchange) -> ConnRecord {
        ConnRecord {
            conn,
            protocol: Protocol::Dns,
            start_unix_ns: 1_000,
            end_unix_ns: 2_000,
            incomplete: None,
            exchange: Exchange::Dns(ex),
        }
    }

    fn answers(span: &opentelemetry_proto::tonic::trace::v1::Span) -> Option<Vec<String>> {
        let kv = span.attributes.iter().find(|kv| kv.key == "dns.answers")?;
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::ArrayValue(a) => Some(
                a.values
                    .iter()
                    .map(|v| match v.value.as_ref() {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        other => panic!("not a string: {other:?}"),
                    })
                    .collect(),
            ),
            other => panic!("dns.answers is not an array: {other:?}"),
        }
    }

    #[test]
    fn client_lookup_with_answers() {
        let s = build_span(&rec(
            conn(Role::Client, "127.0.0.1:40000", Some("127.77.0.1:53")),
            dns("AAAA", None, &["fd00::1:2:3", "::ffff:10.1.2.3"]),
        ));
        assert_eq!(s.name, "DNS AAAA");
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert!(s.status.is_none(), "NOERROR leaves the status unset");
        let a = &s.attributes;
        assert_eq!(
            attr(a, "dns.question.name").as_deref(),
            Some("web.e2e.test")
        );
        assert_eq!(
            answers(&s),
            Some(vec!["fd00::1:2:3".to_string(), "10.1.2.3".to_string()])
        );
        assert_eq!(attr(a, "server.address").as_deref(), Some("127.77.0.1"));
        assert_eq!(
            attr(a, "server.port").as_deref(),
            Some("int:53"),
            "port 53 is kept"
        );
        assert_eq!(
            attr(a, "network.peer.address").as_deref(),
            Some("127.77.0.1")
        );
        assert_eq!(attr(a, "network.peer.port").as_deref(), Some("int:53"));
        assert_eq!(attr(a, "network.transport").as_deref(), Some("udp"));
        assert_eq!(attr(a, "error.type"), None);
        assert_eq!(s.start_time_unix_nano, 1_000);
        assert_eq!(s.end_time_unix_nano, 2_000);
    }

    #[test]
    fn server_side_names_itself_and_the_client() {
        let s = build_span(&rec(
            conn(Role::Server, "127.77.0.1:53", Some("127.0.0.1:41166")),
            dns("A", Some("NXDOMAIN"), &[]),
        ));
        assert_eq!(s.name, "DNS A");
        assert_eq!(s.kind, SpanKind::Server as i32);
        let a = &s.attributes;
        assert_eq!(attr(a, "server.address").as_deref(), Some("127.77.0.1"));
        assert_eq!(attr(a, "server.port").as_deref(), Some("int:53"));
        assert_eq!(
            attr(a, "network.peer.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(attr(a, "network.peer.port").as_deref(), Some("int:41166"));
        assert_eq!(attr(a, "error.type").as_deref(), Some("NXDOMAIN"));
        assert_eq!(answers(&s), None, "no answers, no attribute");
        assert_eq!(
            s.status.as_ref().map(|st| (st.code, st.message.as_str())),
            Some((StatusCode::Error as i32, ""))
        );
    }

    #[test]
    fn unknown_peer_leaves_fields_absent_and_incomplete_is_an_error() {
        let mut r = rec(
            conn(Role::Client, "127.0.0.1:40000", None),
            dns("TYPE65280", None, &[]),
        );
        r.incomplete = Some(Incomplete::EndLost);
        if let Exchange::Dns(d) = &mut r.exchange {
            d.transport = Transport::Tcp;
        }
        let s = build_span(&r);
        assert_eq!(s.name, "DNS TYPE65280");
        let a = &s.attributes;
        assert_eq!(attr(a, "server.address"), None);
        assert_eq!(attr(a, "server.port"), None);
        assert_eq!(attr(a, "network.peer.address"), None);
        assert_eq!(attr(a, "network.transport").as_deref(), Some("tcp"));
        assert_eq!(attr(a, "error.type").as_deref(), Some("response_end_lost"));
    }
}
