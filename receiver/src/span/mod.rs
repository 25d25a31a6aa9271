//! Record → OTLP span per the OpenTelemetry semantic conventions (v1.44.0); the only producer of
//! OTLP types in the crate.
//!
//! One [`ConnRecord`] becomes one root span with fresh random ids: a passive tracer sees no
//! propagated context, so every exchange starts its own trace. Family mappings live in one file
//! each ([`db`] for `docs/db/database-spans.md`, [`dns`] for DNS lookups); [`resource`] builds
//! one `Resource` per traced process.
//!
//! Choices the conventions leave to us:
//! - **Kind.** `Role::Client` → `CLIENT`, `Role::Server` → `SERVER`. An unknown role (`None`) is
//!   exported as `CLIENT`: the database conventions define only client spans, so a span whose
//!   side is unknown reads correctly to every consumer (spanmetrics, service graphs) that assumes
//!   them; its `server.address` is then the socket peer, as for a client.
//! - **Ids.** A per-thread SplitMix64 generator seeded from the wall clock, the pid and a process
//!   counter. Ids are unique, not secret, so a cryptographic generator would only cost time.
//! - **Flags.** `0x101`: W3C `sampled` (the span is recorded and exported) and "is_remote known"
//!   (a root span has no remote parent).
//! - **Times.** `end_time_unix_nano` is clamped to `start_time_unix_nano`, so a span never ends
//!   before it starts even if the tracker's clock mapping stepped between the two.

pub mod db;
pub mod dns;
pub mod http;
pub mod resource;
pub mod schema;
pub mod wire;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::model::{ConnMeta, Role, Transport};
use crate::record::{ConnRecord, Exchange};

pub use resource::{EncodedResource, build_resource, encode_resource};
pub use wire::SpanBuf;

/// `InstrumentationScope.name` of every span we produce.
pub const SCOPE_NAME: &str = "ebpf-receiver";
/// `InstrumentationScope.version`, and `telemetry.distro.version`.
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Semantic-conventions version the attributes follow (`ResourceSpans`/`ScopeSpans.schema_url`).
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";

/// W3C trace flag `sampled`.
const FLAG_SAMPLED: u32 = 0x01;
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`: the is-remote bit (0, no remote parent) is known.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;

/// Encodes the span of one exchange and appends it to `out` as one `ScopeSpans.spans` field
/// (see [`wire`]). `sb` is scratch space reused from span to span.
pub fn encode_span(rec: &ConnRecord, sb: &mut SpanBuf, out: &mut Vec<u8>) {
    let (trace_id, span_id) = new_ids();
    let kind = match rec.conn.role {
        Some(Role::Server) => SpanKind::Server,
        Some(Role::Client) | None => SpanKind::Client,
    };
    wire::begin(sb);
    match &rec.exchange {
        Exchange::Db(db) => db::fill(sb, &rec.conn, rec.protocol, db),
        Exchange::Http(h) => http::fill(sb, &rec.conn, h),
        Exchange::Dns(dns) => dns::fill(sb, &rec.conn, dns),
    }
    // A response whose end was never seen: an error saying so, unless the protocol already
    // reported one of its own.
    if let Some(incomplete) = rec.incomplete
        && !sb.has_status()
    {
        sb.str("error.type", incomplete.as_str());
        sb.error("");
    }
    let head = wire::SpanHead {
        trace_id,
        span_id,
        kind: kind as i32,
        start_unix_ns: rec.start_unix_ns,
        end_unix_ns: rec.end_unix_ns.max(rec.start_unix_ns),
        flags: FLAG_SAMPLED | FLAG_HAS_IS_REMOTE,
    };
    wire::finish(sb, &head, out);
}

/// The span of one exchange as prost's `Span` (decoded from [`encode_span`]'s bytes): for
/// tests and tools, never the export path.
pub fn build_span(rec: &ConnRecord) -> Span {
    use prost::Message as _;
    let mut out = Vec::new();
    encode_span(rec, &mut SpanBuf::default(), &mut out);
    // The bytes are one `ScopeSpans.spans` field: decode them as a ScopeSpans.
    opentelemetry_proto::tonic::trace::v1::ScopeSpans::decode(out.as_slice())
        .ok()
        .and_then(|mut ss| ss.spans.pop())
        .unwrap_or_default()
}

// ---- network attributes, shared by every family ----------------------------------------------

fn non_empty<S: AsRef<str>>(s: &Option<S>) -> Option<&str> {
    s.as_ref().map(AsRef::as_ref).filter(|s| !s.is_empty())
}

/// `server.*`, `network.peer.*` and `network.transport` from the socket; `server.port` only
/// when it differs from `default_port` (`None`: always).
pub(crate) fn network(sb: &mut SpanBuf, conn: &ConnMeta, default_port: Option<u16>) {
    server_from_socket(sb, conn, default_port);
    peer(sb, conn);
}

/// The server side of a socket, as `server.address` / `server.port` name it.
pub(crate) enum ServerAddress<'a> {
    Path(&'a str),
    Ip(std::net::IpAddr),
}

/// `server.address` / `server.port` from the socket: the peer for a client, the local address
/// for a server, the socket path for Unix sockets. `server.port` is `None` when it equals
/// `default_port` (`None`: always kept).
pub(crate) fn socket_server(
    conn: &ConnMeta,
    default_port: Option<u16>,
) -> (Option<ServerAddress<'_>>, Option<u16>) {
    if is_unix(conn) {
        return (non_empty(&conn.unix_path).map(ServerAddress::Path), None);
    }
    let server = if conn.role == Some(Role::Server) {
        conn.local
    } else {
        conn.peer
    };
    match server {
        // `::ffff:a.b.c.d` (dual-stack sockets) is reported as the IPv4 address it is; a
        // wildcard (a listener's `0.0.0.0`, known when the accepted socket was already gone)
        // names no server, so only the port is kept.
        Some(addr) => {
            let ip = addr.ip().to_canonical();
            let port = Some(addr.port()).filter(|p| Some(*p) != default_port);
            (
                (!ip.is_unspecified()).then_some(ServerAddress::Ip(ip)),
                port,
            )
        }
        None => (None, None),
    }
}

/// Writes `server.address` and `server.port`.
pub(crate) fn write_server(
    sb: &mut SpanBuf,
    address: Option<&ServerAddress<'_>>,
    port: Option<u16>,
) {
    match address {
        Some(ServerAddress::Path(p)) => sb.str("server.address", p),
        Some(ServerAddress::Ip(ip)) => sb.ip("server.address", *ip),
        None => {}
    }
    if let Some(port) = port {
        sb.int("server.port", i64::from(port));
    }
}

/// `server.address` / `server.port` from the socket (see [`socket_server`]).
pub(crate) fn server_from_socket(sb: &mut SpanBuf, conn: &ConnMeta, default_port: Option<u16>) {
    let (address, port) = socket_server(conn, default_port);
    write_server(sb, address.as_ref(), port);
}

/// `network.peer.*` and `network.transport`.
pub(crate) fn peer(sb: &mut SpanBuf, conn: &ConnMeta) {
    if is_unix(conn) {
        // A client's peer is the named server socket; a server's peer is usually unnamed.
        if conn.role != Some(Role::Server)
            && let Some(path) = non_empty(&conn.unix_path)
        {
            sb.str("network.peer.address", path);
        }
        sb.str("network.transport", Transport::Unix.as_str());
        return;
    }
    if let Some(peer) = conn.peer {
        sb.ip("network.peer.address", peer.ip());
        sb.int("network.peer.port", i64::from(peer.port()));
    }
    if let Some(t) = conn.transport {
        sb.str("network.transport", t.as_str());
    }
}

fn is_unix(conn: &ConnMeta) -> bool {
    match conn.transport {
        Some(Transport::Unix) => true,
        Some(_) => false,
        None => conn.unix_path.is_some(),
    }
}

// ---- attribute helpers (prost types: resources, tests) --------------------------------------

pub(crate) fn kv_str(key: &str, v: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub(crate) fn kv_int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

// ---- ids ----------------------------------------------------------------------------------------

/// Distinguishes the generators of threads seeded in the same nanosecond.
static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let pid = u64::from(std::process::id());
    let n = SEED_COUNTER.fetch_add(1, Ordering::Relaxed);
    // Stack address: differs between threads and (with ASLR) between runs.
    let local = 0u8;
    let addr = std::ptr::addr_of!(local) as u64;
    now ^ pid.rotate_left(32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ addr.rotate_left(17)
}

/// SplitMix64 (Steele, Lea, Flood 2014): passes BigCrush, one add and three xor-shift-multiplies.
fn next_u64() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A random `u64` from this thread's generator (ids, retry jitter). Not for secrets.
pub(crate) fn random_u64() -> u64 {
    next_u64()
}

/// A fresh, non-zero trace id (16 bytes) and span id (8 bytes); all-zero ids are invalid.
fn new_ids() -> ([u8; 16], [u8; 8]) {
    let mut hi = next_u64();
    let lo = next_u64();
    if hi == 0 && lo == 0 {
        hi = 1;
    }
    let mut trace = [0u8; 16];
    trace[..8].copy_from_slice(&hi.to_be_bytes());
    trace[8..].copy_from_slice(&lo.to_be_bytes());
    let mut s = next_u64();
    if s == 0 {
        s = 1;
    }
    (trace, s.to_be_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use std::collections::HashSet;

    /// The string or int value of `key`, rendered as text; `None` when absent.
    pub(crate) fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
        let hits: Vec<&KeyValue> = attrs.iter().filter(|kv| kv.key == key).collect();
        assert!(
            hits.len() <= 1,
            "attribute `{key}` appears {} times",
            hits.len()
        );
        hits.first()
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                any_value::Value::IntValue(i) => Some(format!("int:{i}")),
                other => Some(format!("{other:?}")),
            })
    }

    #[test]
    fn ids_are_non_zero_and_unique() {
        let mut traces = HashSet::new();
        let mut spans = HashSet::new();
        for _ in 0..10_000 {
            let (t, s) = new_ids();
            assert_ne!(t, [0u8; 16]);
            assert_ne!(s, [0u8; 8]);
            assert!(traces.insert(t));
            assert!(spans.insert(s));
        }
    }

    #[test]
    fn ids_differ_across_threads() {
        let a: Vec<_> = (0..4).map(|_| std::thread::spawn(new_ids)).collect();
        let ids: HashSet<_> = a.into_iter().map(|h| h.join().unwrap().0).collect();
        assert_eq!(ids.len(), 4);
    }

    #[test]
    fn status_code_values_match_the_proto() {
        assert_eq!(StatusCode::Error as i32, 2);
        assert_eq!(SpanKind::Client as i32, 3);
        assert_eq!(SpanKind::Server as i32, 2);
    }
}
