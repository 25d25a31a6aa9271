//! The schema every span we export obeys, checked on the decoded OTLP span: the oracle of the
//! hostile-input tests (`receiver/tests/hostile_bytes.rs`), the fuzz targets
//! (`protocol::chaos`) and anyone who wants to hold a span to what the README promises.
//!
//! - **Time:** the record ends at or after its start (checked on the [`ConnRecord`], before the
//!   encoder's clamp could hide a negative duration) and so does the span.
//! - **Identity:** a 16-byte non-zero trace id, an 8-byte non-zero span id, no parent, kind
//!   `CLIENT` or `SERVER`.
//! - **Name from a bounded set:** HTTP: a known method or `HTTP`; DNS: `DNS {type}` with a type
//!   mnemonic or `TYPE{n}`; Redis: a name of the command vocabulary, `_OTHER`, `MULTI [name]`,
//!   `DISCARD`; SQL: `PREPARE [summary]`, the summary (whose first word is an operation
//!   keyword), a protocol command `[namespace]`, the namespace or the system name.
//! - **Keys:** only the semantic-convention attributes the README lists for the family, each
//!   at most once.
//! - **Values within their caps:** every string attribute within the cap the README documents
//!   (`spans.max_query_text_bytes` for `db.query.text`, 255 for `dns.question.name` and
//!   `db.query.summary`, 512 for `url.path`/`url.query`, …), enumerated attributes within their
//!   enumeration, integers within their range, at most 16 `dns.answers`; the status message
//!   empty or a SQLSTATE.
//!
//! The caps are read from the constants the protocols cut with, so a cap that grows without the
//! README changing still fails here only if a protocol exceeds its own constant.

use std::net::IpAddr;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::protocol::dns::types::{DNS_MAX_ANSWERS, DNS_MAX_NAME_TEXT, qtype_name, rcode_error};
use crate::protocol::http1::types::{
    HTTP_KNOWN_METHODS, HTTP_MAX_HOST_BYTES, HTTP_MAX_METHOD_BYTES, HTTP_MAX_PATH_BYTES,
    HTTP_MAX_QUERY_BYTES, HTTP_MAX_USER_AGENT_BYTES,
};
use crate::protocol::mysql::types::{MYSQL_MAX_SCHEMA_BYTES, command_name};
use crate::protocol::postgres::types::PG_MAX_DATABASE;
use crate::protocol::redis::REDIS_MAX_ERROR_CODE_BYTES;
use crate::protocol::redis::commands::{self, MAX_NAME_BYTES as REDIS_MAX_NAME_BYTES};
use crate::protocol::sql::MAX_SUMMARY_BYTES;
use crate::record::ConnRecord;
use crate::span::SpanBuf;

/// The configured caps a span is checked against (the rest are constants).
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// `spans.max_query_text_bytes`.
    pub max_query_text_bytes: usize,
}

/// Most attributes on one span (the reference's budget is 64; we never come close).
pub const MAX_ATTRIBUTES: usize = 32;
/// Longest socket address text: a Unix socket path (`sun_path` is 108 bytes) or an IP.
const MAX_SOCKET_ADDRESS_BYTES: usize = 108;
/// `error.type` values every family may carry: a response whose end was not seen.
const INCOMPLETE_ERRORS: &[&str] = &["connection_closed", "response_end_lost"];

/// The operations `db.query.summary` starts with (`sql/summary.rs`).
const SUMMARY_OPERATIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "REPLACE",
    "UPDATE",
    "DELETE",
    "CALL",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "RENAME",
    "USE",
    "COPY",
    "MERGE",
    "GRANT",
    "REVOKE",
    "SHOW",
    "START",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET",
    "SAVEPOINT",
    "RELEASE",
    "LOCK",
    "UNLOCK",
    "EXPLAIN",
    "DESCRIBE",
    "DESC",
    "ANALYZE",
    "OPTIMIZE",
    "REPAIR",
    "CHECK",
    "FLUSH",
    "KILL",
    "DO",
    "HANDLER",
    "LOAD",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "XA",
    "CHECKSUM",
    "VALUES",
    "TABLE",
    "VACUUM",
    "REINDEX",
    "CLUSTER",
    "LISTEN",
    "NOTIFY",
    "UNLISTEN",
    "DISCARD",
    "RESET",
    "DECLARE",
    "FETCH",
    "MOVE",
    "CLOSE",
    "ABORT",
    "END",
    "CHECKPOINT",
    "COMMENT",
    "REFRESH",
];

/// PostgreSQL `db.operation.name` values (a statement without text).
const PG_OPERATIONS: &[&str] = &["EXECUTE", "FUNCTION_CALL"];

/// Keys every family may carry.
const NETWORK_KEYS: &[&str] = &[
    "server.address",
    "server.port",
    "network.peer.address",
    "network.peer.port",
    "network.transport",
    "error.type",
];
const DB_KEYS: &[&str] = &[
    "db.system.name",
    "db.namespace",
    "db.query.text",
    "db.query.summary",
    "db.operation.name",
    "db.operation.batch.size",
    "db.response.status_code",
];
const HTTP_KEYS: &[&str] = &[
    "http.request.method",
    "http.request.method_original",
    "http.response.status_code",
    "url.scheme",
    "url.path",
    "url.query",
    "url.full",
    "network.protocol.version",
    "user_agent.original",
    "http.request.body.size",
    "http.response.body.size",
];
const DNS_KEYS: &[&str] = &["dns.question.name", "dns.answers"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Sql,
    Redis,
    Http,
    Dns,
}

/// Encodes `rec` with the exporter's own encoder ([`crate::span::encode_span`]), decodes the
/// bytes as a Collector would, and checks the result; returns the span.
pub fn check_record(rec: &ConnRecord, caps: &Caps) -> Result<Span, String> {
    use prost::Message as _;
    if rec.end_unix_ns < rec.start_unix_ns {
        return Err(format!(
            "record ends before it starts: {} < {}",
            rec.end_unix_ns, rec.start_unix_ns
        ));
    }
    let mut out = Vec::new();
    crate::span::encode_span(rec, &mut SpanBuf::default(), &mut out);
    let mut ss = opentelemetry_proto::tonic::trace::v1::ScopeSpans::decode(out.as_slice())
        .map_err(|e| format!("the encoded span does not decode: {e}"))?;
    let span = ss.spans.pop().ok_or("no span encoded")?;
    if !ss.spans.is_empty() {
        return Err("more than one span encoded for one record".into());
    }
    check(&span, caps).map_err(|e| format!("{e}\nspan: {span:?}"))?;
    Ok(span)
}

/// Checks one decoded span against the schema above.
pub fn check(span: &Span, caps: &Caps) -> Result<(), String> {
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err("negative duration".into());
    }
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|&b| b == 0) {
        return Err(format!("bad trace id {:?}", span.trace_id));
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|&b| b == 0) {
        return Err(format!("bad span id {:?}", span.span_id));
    }
    if !span.parent_span_id.is_empty() {
        return Err("a root span with a parent".into());
    }
    if span.kind != SpanKind::Client as i32 && span.kind != SpanKind::Server as i32 {
        return Err(format!("kind {}", span.kind));
    }
    if span.attributes.len() > MAX_ATTRIBUTES {
        return Err(format!("{} attributes", span.attributes.len()));
    }
    for (i, kv) in span.attributes.iter().enumerate() {
        if span
            .attributes
            .get(..i)
            .is_some_and(|before| before.iter().any(|b| b.key == kv.key))
        {
            return Err(format!("`{}` twice", kv.key));
        }
    }
    let attrs = Attrs(&span.attributes);
    let family = match attrs.str("db.system.name")? {
        Some("mysql" | "postgresql") => Family::Sql,
        Some("redis") => Family::Redis,
        Some(other) => return Err(format!("db.system.name {other:?}")),
        None if attrs.has("http.request.method") => Family::Http,
        None if attrs.has("dns.question.name") => Family::Dns,
        None => {
            return Err(
                "no family: neither db.system.name, http.request.method nor dns.question.name"
                    .into(),
            );
        }
    };
    let family_keys = match family {
        Family::Sql | Family::Redis => DB_KEYS,
        Family::Http => HTTP_KEYS,
        Family::Dns => DNS_KEYS,
    };
    for kv in &span.attributes {
        if !NETWORK_KEYS.contains(&kv.key.as_str()) && !family_keys.contains(&kv.key.as_str()) {
            return Err(format!("`{}` is not an attribute of this family", kv.key));
        }
    }
    check_network(&attrs)?;
    match family {
        Family::Sql | Family::Redis => check_db(span, &attrs, family, caps)?,
        Family::Http => check_http(span, &attrs)?,
        Family::Dns => check_dns(span, &attrs)?,
    }
    check_status(span, &attrs, family)
}

/// The attributes of one span, by key.
struct Attrs<'a>(&'a [KeyValue]);

impl<'a> Attrs<'a> {
    fn value(&self, key: &str) -> Option<&'a any_value::Value> {
        self.0
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v: &AnyValue| v.value.as_ref())
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|kv| kv.key == key)
    }

    /// The string value of `key`; an error when it has another type.
    fn str(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.value(key) {
            None if self.has(key) => Err(format!("`{key}` has no value")),
            None => Ok(None),
            Some(any_value::Value::StringValue(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("`{key}` is not a string: {other:?}")),
        }
    }

    /// The string value of `key`, at most `cap` bytes (free text may be empty: `GET /?`
    /// has an empty `url.query`).
    fn capped(&self, key: &str, cap: usize) -> Result<Option<&'a str>, String> {
        let v = self.str(key)?;
        if let Some(s) = v
            && s.len() > cap
        {
            return Err(format!(
                "`{key}` is {} bytes, over its cap of {cap}",
                s.len()
            ));
        }
        Ok(v)
    }

    /// Like [`Attrs::capped`], and the text is a token: printable ASCII, no space, not empty.
    fn token(&self, key: &str, cap: usize) -> Result<Option<&'a str>, String> {
        let v = self.capped(key, cap)?;
        if let Some(s) = v
            && (s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(format!("`{key}` = {s:?} is not a token"));
        }
        Ok(v)
    }

    /// Printable ASCII words separated by single spaces, at most `cap` bytes.
    fn token_or_words(&self, key: &str, cap: usize) -> Result<Option<&'a str>, String> {
        let v = self.capped(key, cap)?;
        if let Some(s) = v
            && !s
                .split(' ')
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(format!("`{key}` = {s:?} is not words"));
        }
        Ok(v)
    }

    /// The integer value of `key`, within `range`.
    fn int(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, String> {
        match self.value(key) {
            None if self.has(key) => Err(format!("`{key}` has no value")),
            None => Ok(None),
            Some(any_value::Value::IntValue(i)) if range.contains(i) => Ok(Some(*i)),
            Some(other) => Err(format!("`{key}` = {other:?}, not an integer in {range:?}")),
        }
    }

    /// `key` is one of `allowed`, when present.
    fn one_of(&self, key: &str, allowed: &[&str]) -> Result<Option<&'a str>, String> {
        let v = self.str(key)?;
        if let Some(s) = v
            && !allowed.contains(&s)
        {
            return Err(format!("`{key}` = {s:?}, not one of {allowed:?}"));
        }
        Ok(v)
    }
}

/// No NUL: no identifier, method, command or type name may hold one (control characters
/// other than NUL are legal in quoted SQL identifiers, so a namespace may carry them).
fn no_nul(what: &str, s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!("{what} {s:?} holds NUL"));
    }
    Ok(())
}

fn check_network(attrs: &Attrs<'_>) -> Result<(), String> {
    // `server.address` is a host (HTTP `Host`, capped), an IP or a socket path.
    attrs.capped(
        "server.address",
        HTTP_MAX_HOST_BYTES.max(MAX_SOCKET_ADDRESS_BYTES),
    )?;
    attrs.capped("network.peer.address", MAX_SOCKET_ADDRESS_BYTES)?;
    attrs.int("server.port", 0..=65535)?;
    attrs.int("network.peer.port", 0..=65535)?;
    attrs.one_of("network.transport", &["tcp", "udp", "unix"])?;
    Ok(())
}

/// The first word of `s` and the rest.
fn first_word(s: &str) -> (&str, Option<&str>) {
    match s.split_once(' ') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// A `db.query.summary`: an operation keyword first, at most [`MAX_SUMMARY_BYTES`].
fn check_summary(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_SUMMARY_BYTES {
        return Err(format!(
            "{what} {s:?}: {} bytes (1..={MAX_SUMMARY_BYTES})",
            s.len()
        ));
    }
    no_nul(what, s)?;
    let (op, _) = first_word(s);
    if !SUMMARY_OPERATIONS.contains(&op) {
        return Err(format!("{what} {s:?} does not start with an operation"));
    }
    Ok(())
}

/// A Redis operation name: the vocabulary, `_OTHER`, `MULTI [name]`, `DISCARD`.
fn check_redis_operation(op: &str) -> Result<(), String> {
    let known = |name: &str| {
        let (first, rest) = first_word(name);
        match (commands::command(first.as_bytes()), rest) {
            (Some(c), None) => c == first,
            (Some(c), Some(sub)) => {
                commands::is_container(c) && commands::subcommand(c, sub.as_bytes()) == Some(name)
            }
            (None, _) => false,
        }
    };
    let ok = match op.strip_prefix("MULTI") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(' ')
            .is_some_and(|n| known(n) || n == "_OTHER"),
        None => op == "_OTHER" || op == "DISCARD" || known(op),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("Redis operation {op:?} is outside the vocabulary"))
    }
}

fn check_db(span: &Span, attrs: &Attrs<'_>, family: Family, caps: &Caps) -> Result<(), String> {
    let namespace = attrs.capped("db.namespace", MYSQL_MAX_SCHEMA_BYTES.max(PG_MAX_DATABASE))?;
    if let Some(n) = namespace {
        no_nul("db.namespace", n)?;
        if n.is_empty() {
            return Err("empty db.namespace".into());
        }
    }
    attrs.capped("db.query.text", caps.max_query_text_bytes)?;
    let summary = attrs.capped("db.query.summary", MAX_SUMMARY_BYTES)?;
    if let Some(s) = summary {
        check_summary("db.query.summary", s)?;
    }
    // `MULTI CLIENT SETINFO`: "MULTI", a space and a two-word name.
    let operation = attrs.token_or_words("db.operation.name", 6 + 2 * REDIS_MAX_NAME_BYTES + 1)?;
    attrs.int("db.operation.batch.size", 2..=i64::MAX)?;
    attrs.token("db.response.status_code", REDIS_MAX_ERROR_CODE_BYTES)?;
    let name = span.name.as_str();
    no_nul("span name", name)?;
    match family {
        Family::Redis => {
            if namespace.is_some_and(|n| !n.bytes().all(|b| b.is_ascii_digit())) {
                return Err(format!("Redis db.namespace {namespace:?} is not an index"));
            }
            let op = operation.ok_or("a Redis span without db.operation.name")?;
            check_redis_operation(op)?;
            if name != op {
                return Err(format!("Redis span named {name:?}, operation {op:?}"));
            }
        }
        _ => {
            let system = attrs.str("db.system.name")?.unwrap_or_default();
            let sql_op = |op: &str| {
                op == "PREPARE"
                    || PG_OPERATIONS.contains(&op)
                    || (1..=255u8).any(|c| command_name(c) == op && op != "UNKNOWN")
            };
            if let Some(op) = operation
                && !sql_op(op)
            {
                return Err(format!(
                    "SQL db.operation.name {op:?} is not a protocol command"
                ));
            }
            let ok = if operation == Some("PREPARE") && summary.is_none() {
                match name.strip_prefix("PREPARE") {
                    Some("") => true,
                    Some(rest) => rest
                        .strip_prefix(' ')
                        .is_some_and(|s| check_summary("name", s).is_ok()),
                    None => false,
                }
            } else if let Some(s) = summary {
                name == s
            } else if let Some(op) = operation {
                match name.strip_prefix(op) {
                    Some("") => true,
                    Some(rest) => rest.strip_prefix(' ') == namespace,
                    None => false,
                }
            } else {
                Some(name) == namespace || name == system
            };
            if !ok {
                return Err(format!(
                    "SQL span name {name:?} from none of PREPARE/summary/operation/namespace/system"
                ));
            }
        }
    }
    if let Some(e) = attrs.token("error.type", REDIS_MAX_ERROR_CODE_BYTES)?
        && attrs.str("db.response.status_code")? != Some(e)
        && !INCOMPLETE_ERRORS.contains(&e)
    {
        return Err(format!(
            "error.type {e:?} is neither the status code nor an incomplete end"
        ));
    }
    Ok(())
}

fn check_http(span: &Span, attrs: &Attrs<'_>) -> Result<(), String> {
    let mut methods: Vec<&str> = HTTP_KNOWN_METHODS.to_vec();
    methods.push("_OTHER");
    let method = attrs
        .one_of("http.request.method", &methods)?
        .unwrap_or_default();
    let want_name = if method == "_OTHER" { "HTTP" } else { method };
    if span.name != want_name {
        return Err(format!(
            "HTTP span named {:?}, method {method:?}",
            span.name
        ));
    }
    if attrs
        .token("http.request.method_original", HTTP_MAX_METHOD_BYTES)?
        .is_some()
        && method != "_OTHER"
    {
        return Err("http.request.method_original with a known method".into());
    }
    attrs.int("http.response.status_code", 100..=999)?;
    attrs.one_of("url.scheme", &["http"])?;
    let path = attrs.capped("url.path", HTTP_MAX_PATH_BYTES)?;
    let query = attrs.capped("url.query", HTTP_MAX_QUERY_BYTES)?;
    // `http://` `[host]` `:65535` path `?` query.
    let full_cap = 7 + 2 + HTTP_MAX_HOST_BYTES + 6 + HTTP_MAX_PATH_BYTES + 1 + HTTP_MAX_QUERY_BYTES;
    if let Some(full) = attrs.capped("url.full", full_cap)? {
        if !full.starts_with("http://") {
            return Err(format!("url.full {full:?}"));
        }
        if path.is_some_and(|p| !full.contains(p)) || query.is_some_and(|q| !full.contains(q)) {
            return Err(format!(
                "url.full {full:?} is not built from url.path and url.query"
            ));
        }
    }
    attrs.one_of("network.protocol.version", &["1.0", "1.1"])?;
    attrs.capped("user_agent.original", HTTP_MAX_USER_AGENT_BYTES)?;
    attrs.int("http.request.body.size", 0..=i64::MAX)?;
    attrs.int("http.response.body.size", 0..=i64::MAX)?;
    if let Some(e) = attrs.str("error.type")? {
        let status = attrs.int("http.response.status_code", 100..=999)?;
        let is_status = status.is_some_and(|s| s >= 400 && e == s.to_string());
        if !is_status && !INCOMPLETE_ERRORS.contains(&e) {
            return Err(format!(
                "HTTP error.type {e:?} is neither the status code nor an incomplete end"
            ));
        }
    }
    Ok(())
}

fn check_dns(span: &Span, attrs: &Attrs<'_>) -> Result<(), String> {
    let qtype = span
        .name
        .strip_prefix("DNS ")
        .ok_or_else(|| format!("DNS span named {:?}", span.name))?;
    let known = match qtype.strip_prefix("TYPE") {
        // `TYPE65280`: exactly how `qtype_name` writes a type without a mnemonic.
        Some(n) => n.parse::<u16>().is_ok_and(|n| qtype_name(n) == qtype),
        // Every mnemonic is of a type below 300.
        None => (0..300).any(|n| qtype_name(n) == qtype),
    };
    if !known {
        return Err(format!("DNS span named {:?}: not a query type", span.name));
    }
    // Escaped presentation form: printable ASCII only (the root name is the empty string).
    if let Some(n) = attrs.capped("dns.question.name", DNS_MAX_NAME_TEXT)?
        && !n.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!("dns.question.name {n:?} is not escaped"));
    }
    if !attrs.has("dns.question.name") {
        return Err("a DNS span without dns.question.name".into());
    }
    if let Some(v) = attrs.value("dns.answers") {
        let any_value::Value::ArrayValue(arr) = v else {
            return Err(format!("dns.answers is not an array: {v:?}"));
        };
        if arr.values.is_empty() || arr.values.len() > DNS_MAX_ANSWERS {
            return Err(format!("{} dns.answers", arr.values.len()));
        }
        for a in &arr.values {
            match &a.value {
                Some(any_value::Value::StringValue(s)) if s.parse::<IpAddr>().is_ok() => {}
                other => return Err(format!("dns.answers entry {other:?}")),
            }
        }
    }
    if let Some(e) = attrs.str("error.type")?
        && !INCOMPLETE_ERRORS.contains(&e)
        && !(1..=0xfff).any(|r| rcode_error(r) == Some(e))
    {
        return Err(format!("DNS error.type {e:?} is not an RCODE name"));
    }
    Ok(())
}

/// Status: `Error` exactly when `error.type` is set; its message empty or a SQLSTATE.
fn check_status(span: &Span, attrs: &Attrs<'_>, family: Family) -> Result<(), String> {
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    let (code, message) = span
        .status
        .as_ref()
        .map_or((StatusCode::Unset as i32, ""), |s| {
            (s.code, s.message.as_str())
        });
    let error = code == StatusCode::Error as i32;
    if code != StatusCode::Unset as i32 && !error {
        return Err(format!("status code {code}"));
    }
    if error != attrs.has("error.type") {
        return Err(format!(
            "status error = {error} but error.type present = {}",
            attrs.has("error.type")
        ));
    }
    let sqlstate = message.len() == 5 && message.bytes().all(|b| b.is_ascii_alphanumeric());
    let allowed = message.is_empty() || (family == Family::Sql && sqlstate);
    if !allowed {
        return Err(format!("status message {message:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnMeta, ProcessMeta, Protocol, Role, Transport};
    use crate::record::{DbExchange, DbOutcome, DnsExchange, Exchange, HttpExchange, Incomplete};
    use std::sync::Arc;

    const CAPS: Caps = Caps {
        max_query_text_bytes: 64,
    };

    fn conn() -> ConnMeta {
        ConnMeta {
            role: Some(Role::Client),
            transport: Some(Transport::Tcp),
            local: Some("127.0.0.1:40000".parse().unwrap()),
            peer: Some("127.0.0.1:3306".parse().unwrap()),
            unix_path: None,
            process: Arc::new(ProcessMeta::default()),
        }
    }

    fn rec(protocol: Protocol, exchange: Exchange) -> ConnRecord {
        ConnRecord {
            conn: conn(),
            protocol,
            start_unix_ns: 1_000,
            end_unix_ns: 2_000,
            incomplete: None,
            exchange,
        }
    }

    fn db(protocol: Protocol, f: impl FnOnce(&mut DbExchange)) -> ConnRecord {
        let mut d = DbExchange::default();
        f(&mut d);
        rec(protocol, Exchange::Db(d))
    }

    fn http(f: impl FnOnce(&mut HttpExchange)) -> ConnRecord {
        let mut h = HttpExchange {
            method: "GET",
            status_code: Some(200),
            path: Some("/a".into()),
            protocol_version: Some("1.1"),
            ..HttpExchange::default()
        };
        f(&mut h);
        rec(Protocol::Http1, Exchange::Http(h))
    }

    fn dns(f: impl FnOnce(&mut DnsExchange)) -> ConnRecord {
        let mut d = DnsExchange {
            question_name: "a.example".into(),
            question_type: qtype_name(1),
            error: None,
            answers: vec!["10.0.0.1".parse().unwrap()],
            truncated: false,
            transport: Transport::Udp,
        };
        f(&mut d);
        rec(Protocol::Dns, Exchange::Dns(d))
    }

    #[test]
    fn spans_the_mappings_produce_pass() {
        let good = [
            db(Protocol::Mysql, |d| {
                d.query_text = Some("SELECT * FROM t WHERE a = ?".into());
                d.query_summary = Some("SELECT t".into());
                d.namespace = Some("shop".into());
            }),
            db(Protocol::Mysql, |d| d.operation = Some("PING".into())),
            db(Protocol::Mysql, |d| {
                d.operation = Some("INIT_DB".into());
                d.namespace = Some("shop".into());
                d.outcome = DbOutcome::Error {
                    code: "1049".into(),
                    detail: Some("42000".into()),
                };
            }),
            db(Protocol::Postgres, |d| {
                d.prepare_only = true;
                d.query_summary = Some("SELECT users".into());
            }),
            db(Protocol::Postgres, |d| d.operation = Some("EXECUTE".into())),
            db(Protocol::Redis, |d| {
                d.operation = Some("CLIENT SETINFO".into());
                d.namespace = Some("0".into());
            }),
            db(Protocol::Redis, |d| {
                d.operation = Some("MULTI SET".into());
                d.batch_size = Some(3);
            }),
            http(|_| {}),
            http(|h| {
                h.method = "_OTHER";
                h.method_original = Some("FOO".into());
                h.status_code = Some(503);
                h.query = Some("a=1".into());
            }),
            dns(|_| {}),
            dns(|d| {
                d.question_type = qtype_name(65280);
                d.error = rcode_error(3);
                d.answers.clear();
            }),
        ];
        for r in &good {
            check_record(r, &CAPS).unwrap();
        }
        let mut r = http(|_| {});
        r.incomplete = Some(Incomplete::EndLost);
        check_record(&r, &CAPS).unwrap();
    }

    #[test]
    fn violations_are_found() {
        let bad = [
            (
                db(Protocol::Mysql, |d| d.query_text = Some("x".repeat(65))),
                "over its cap",
            ),
            (
                db(Protocol::Mysql, |d| d.query_summary = Some("users".into())),
                "operation",
            ),
            (
                db(Protocol::Mysql, |d| {
                    d.namespace = Some("n".repeat(300).into())
                }),
                "over its cap",
            ),
            (
                db(Protocol::Redis, |d| {
                    d.operation = Some("NOTACOMMAND".into())
                }),
                "vocabulary",
            ),
            (http(|h| h.path = Some("/".repeat(513))), "over its cap"),
            (http(|h| h.method = "FOO"), "not one of"),
            (dns(|d| d.question_name = "a".repeat(256)), "over its cap"),
            (
                dns(|d| d.answers = vec!["10.0.0.1".parse().unwrap(); 17]),
                "dns.answers",
            ),
        ];
        for (r, want) in &bad {
            let e = check_record(r, &CAPS).expect_err(want);
            assert!(e.contains(want), "{want:?} not in {e}");
        }
        let mut r = http(|_| {});
        r.end_unix_ns = 999;
        assert!(
            check_record(&r, &CAPS)
                .unwrap_err()
                .contains("before it starts")
        );
    }
}
