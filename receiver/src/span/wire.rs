//! Protocol Buffers wire encoding of OTLP spans, written straight into the export buffer.
//!
//! A span is encoded once, by the capture task, as the bytes of one `ScopeSpans.spans` field;
//! the exporter only copies those bytes into its request (`export/batch.rs`). No `Span` struct,
//! no `String` per attribute key or value, no `encoded_len` walk: every length is known from
//! the lengths of the strings before they are written, except the attributes as a whole, which
//! [`SpanBuf`] collects in a reused buffer first. Field numbers are those of
//! `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto` (OTLP 1.x); the unit
//! tests decode every encoded span with prost's generated types.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Bytes of `v` as a varint.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub(crate) fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
fn key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from(field << 3 | wire));
}

/// The key of a field numbered below 16, which is one byte.
const fn one_byte_key(field: u32, wire: u32) -> u8 {
    assert!(field < 16, "a one-byte key");
    (field << 3 | wire) as u8
}

/// An attribute's field header and its key, for a `KeyValue` of `kv` < 128 bytes: every key
/// and length is one byte, appended as one 4-byte piece instead of four varint pushes.
#[inline]
fn short_key_value_head(b: &mut Vec<u8>, kv: usize, k: &str) {
    b.extend_from_slice(&[
        const { one_byte_key(span_f::ATTRIBUTES, LEN) },
        kv as u8,
        const { one_byte_key(KV_KEY, LEN) },
        k.len() as u8,
    ]);
    b.extend_from_slice(k.as_bytes());
}

#[inline]
fn key_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

/// The header (key and length) of a length-delimited field.
#[inline]
pub(crate) fn len_header(buf: &mut Vec<u8>, field: u32, len: usize) {
    key(buf, field, LEN);
    varint(buf, len as u64);
}

/// Bytes a length-delimited field of `len` payload bytes takes.
#[inline]
pub(crate) fn len_field_size(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

#[inline]
pub(crate) fn bytes_field(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    len_header(buf, field, data.len());
    buf.extend_from_slice(data);
}

// ---- OTLP field numbers ------------------------------------------------------------------

/// `Span`.
mod span_f {
    pub const TRACE_ID: u32 = 1;
    pub const SPAN_ID: u32 = 2;
    pub const NAME: u32 = 5;
    pub const KIND: u32 = 6;
    pub const START: u32 = 7;
    pub const END: u32 = 8;
    pub const ATTRIBUTES: u32 = 9;
    pub const STATUS: u32 = 15;
    pub const FLAGS: u32 = 16;
}
/// `Status`.
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
/// `KeyValue`.
const KV_KEY: u32 = 1;
const KV_VALUE: u32 = 2;
/// `AnyValue` (a oneof) and `ArrayValue`.
const ANY_STRING: u32 = 1;
const ANY_INT: u32 = 3;
const ANY_ARRAY: u32 = 5;
const ARRAY_VALUES: u32 = 1;
/// `ScopeSpans.spans`: the field each encoded span is.
pub(crate) const SCOPE_SPANS_SPANS: u32 = 2;

/// `StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;

/// The parts of a span the family mappings (`db.rs`, `http.rs`, `dns.rs`) fill in: name,
/// attributes, status. One per capture task, reused for every span (no allocation once warm).
#[derive(Debug, Default)]
pub struct SpanBuf {
    /// Encoded `Span.attributes` fields.
    attrs: Vec<u8>,
    name: String,
    /// `Some(message)` once the span is an error.
    status: Option<String>,
    /// Scratch for formatted values.
    scratch: String,
}

impl SpanBuf {
    fn clear(&mut self) {
        self.attrs.clear();
        self.name.clear();
        self.status = None;
    }

    /// The span name, to be written (empty at the start of each span).
    pub(crate) fn name_mut(&mut self) -> &mut String {
        &mut self.name
    }

    pub(crate) fn set_name(&mut self, name: &str) {
        self.name.clear();
        self.name.push_str(name);
    }

    /// Status `ERROR` with `message` (may be empty).
    pub(crate) fn error(&mut self, message: &str) {
        let mut m = self.status.take().unwrap_or_default();
        m.clear();
        m.push_str(message);
        self.status = Some(m);
    }

    pub(crate) fn has_status(&self) -> bool {
        self.status.is_some()
    }

    /// A string attribute.
    pub(crate) fn str(&mut self, k: &str, v: &str) {
        self.str_bytes(k, v.as_bytes());
    }

    /// A string attribute from bytes the caller knows are UTF-8.
    fn str_bytes(&mut self, k: &str, v: &[u8]) {
        let any = len_field_size(ANY_STRING, v.len());
        let kv = len_field_size(KV_KEY, k.len()) + len_field_size(KV_VALUE, any);
        let b = &mut self.attrs;
        // Most attributes are short: see `short_key_value_head`.
        if kv < 0x80 {
            short_key_value_head(b, kv, k);
            b.extend_from_slice(&[
                const { one_byte_key(KV_VALUE, LEN) },
                any as u8,
                const { one_byte_key(ANY_STRING, LEN) },
                v.len() as u8,
            ]);
            b.extend_from_slice(v);
            return;
        }
        len_header(b, span_f::ATTRIBUTES, kv);
        bytes_field(b, KV_KEY, k.as_bytes());
        len_header(b, KV_VALUE, any);
        bytes_field(b, ANY_STRING, v);
    }

    /// An int attribute.
    pub(crate) fn int(&mut self, k: &str, v: i64) {
        let any = key_len(ANY_INT) + varint_len(v as u64);
        let kv = len_field_size(KV_KEY, k.len()) + len_field_size(KV_VALUE, any);
        let b = &mut self.attrs;
        if kv < 0x80 {
            short_key_value_head(b, kv, k);
            b.extend_from_slice(&[
                const { one_byte_key(KV_VALUE, LEN) },
                any as u8,
                const { one_byte_key(ANY_INT, VARINT) },
            ]);
            varint(b, v as u64);
            return;
        }
        len_header(b, span_f::ATTRIBUTES, kv);
        bytes_field(b, KV_KEY, k.as_bytes());
        len_header(b, KV_VALUE, any);
        key(b, ANY_INT, VARINT);
        varint(b, v as u64);
    }

    /// A string attribute holding an address in its canonical text form (`::ffff:a.b.c.d` as
    /// `a.b.c.d`), formatted without allocating.
    pub(crate) fn ip(&mut self, k: &str, ip: IpAddr) {
        if let IpAddr::V4(v4) = ip.to_canonical() {
            let mut buf = [0u8; IPV4_TEXT_MAX];
            self.str_bytes(k, ipv4_text(v4, &mut buf));
            return;
        }
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        push_ip(&mut s, ip);
        self.str(k, &s);
        self.scratch = s;
    }

    /// The scratch string, empty, to build a value in; give it back with
    /// [`SpanBuf::put_scratch`] so its capacity is reused.
    pub(crate) fn take_scratch(&mut self) -> String {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        s
    }

    pub(crate) fn put_scratch(&mut self, s: String) {
        self.scratch = s;
    }

    /// A string attribute formatted from `args`.
    pub(crate) fn fmt(&mut self, k: &str, args: std::fmt::Arguments<'_>) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        let _ = s.write_fmt(args);
        self.str(k, &s);
        self.scratch = s;
    }

    /// A string-array attribute of addresses (canonical text form).
    pub(crate) fn ip_array(&mut self, k: &str, ips: &[IpAddr]) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        // Every address's text, back to back, and where each ends.
        let mut ends = [0usize; 64];
        let n = ips.len().min(ends.len());
        for (i, ip) in ips.iter().take(n).enumerate() {
            push_ip(&mut s, *ip);
            ends[i] = s.len();
        }
        let value_size = |len: usize| len_field_size(ARRAY_VALUES, len_field_size(ANY_STRING, len));
        let mut array = 0;
        let mut start = 0;
        for &end in &ends[..n] {
            array += value_size(end - start);
            start = end;
        }
        let any = len_field_size(ANY_ARRAY, array);
        let kv = len_field_size(KV_KEY, k.len()) + len_field_size(KV_VALUE, any);
        let b = &mut self.attrs;
        len_header(b, span_f::ATTRIBUTES, kv);
        bytes_field(b, KV_KEY, k.as_bytes());
        len_header(b, KV_VALUE, any);
        len_header(b, ANY_ARRAY, array);
        let mut start = 0;
        for &end in &ends[..n] {
            let text = s.as_bytes().get(start..end).unwrap_or_default();
            len_header(b, ARRAY_VALUES, len_field_size(ANY_STRING, text.len()));
            bytes_field(b, ANY_STRING, text);
            start = end;
        }
        self.scratch = s;
    }
}

/// Appends the canonical text form of `ip`; IPv4 without the formatting machinery.
pub(crate) fn push_ip(s: &mut String, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => push_ipv4(s, v4),
        IpAddr::V6(v6) => {
            let _ = write!(s, "{v6}");
        }
    }
}

fn push_ipv4(s: &mut String, ip: Ipv4Addr) {
    let mut buf = [0u8; IPV4_TEXT_MAX];
    // Digits and dots only: always UTF-8.
    s.push_str(std::str::from_utf8(ipv4_text(ip, &mut buf)).unwrap_or_default());
}

/// Longest dotted-quad text: `255.255.255.255`.
const IPV4_TEXT_MAX: usize = 15;

/// The dotted-quad text of `ip` (ASCII), written into `buf` (no per-digit push).
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; IPV4_TEXT_MAX]) -> &[u8] {
    let mut n = 0;
    let mut put = |b: u8| {
        if let Some(slot) = buf.get_mut(n) {
            *slot = b;
            n += 1;
        }
    };
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            put(b'.');
        }
        if o >= 100 {
            put(b'0' + o / 100);
        }
        if o >= 10 {
            put(b'0' + (o / 10) % 10);
        }
        put(b'0' + o % 10);
    }
    buf.get(..n).unwrap_or_default()
}

/// What a span has besides what [`SpanBuf`] collects.
pub(crate) struct SpanHead {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub kind: i32,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub flags: u32,
}

/// Starts a span: clears `sb` for the family mapping to fill.
pub(crate) fn begin(sb: &mut SpanBuf) {
    sb.clear();
}

/// Appends the span as one `ScopeSpans.spans` field (key, length, `Span` message) to `out`.
pub(crate) fn finish(sb: &SpanBuf, head: &SpanHead, out: &mut Vec<u8>) {
    let status_body = sb.status.as_ref().map(|m| {
        let msg = if m.is_empty() {
            0
        } else {
            len_field_size(STATUS_MESSAGE, m.len())
        };
        msg + key_len(STATUS_CODE) + varint_len(STATUS_ERROR)
    });
    let body = len_field_size(span_f::TRACE_ID, 16)
        + len_field_size(span_f::SPAN_ID, 8)
        + if sb.name.is_empty() {
            0
        } else {
            len_field_size(span_f::NAME, sb.name.len())
        }
        + key_len(span_f::KIND)
        + varint_len(head.kind as u64)
        + 2 * (key_len(span_f::START) + 8)
        + sb.attrs.len()
        + status_body.map_or(0, |n| len_field_size(span_f::STATUS, n))
        + key_len(span_f::FLAGS)
        + 4;
    out.reserve(body + 6);
    len_header(out, SCOPE_SPANS_SPANS, body);
    bytes_field(out, span_f::TRACE_ID, &head.trace_id);
    bytes_field(out, span_f::SPAN_ID, &head.span_id);
    if !sb.name.is_empty() {
        bytes_field(out, span_f::NAME, sb.name.as_bytes());
    }
    key(out, span_f::KIND, VARINT);
    varint(out, head.kind as u64);
    key(out, span_f::START, FIXED64);
    out.extend_from_slice(&head.start_unix_ns.to_le_bytes());
    key(out, span_f::END, FIXED64);
    out.extend_from_slice(&head.end_unix_ns.to_le_bytes());
    out.extend_from_slice(&sb.attrs);
    if let (Some(m), Some(n)) = (sb.status.as_ref(), status_body) {
        len_header(out, span_f::STATUS, n);
        if !m.is_empty() {
            bytes_field(out, STATUS_MESSAGE, m.as_bytes());
        }
        key(out, STATUS_CODE, VARINT);
        varint(out, STATUS_ERROR);
    }
    key(out, span_f::FLAGS, FIXED32);
    out.extend_from_slice(&head.flags.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_the_encoding() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            assert_eq!(prost::encoding::encoded_len_varint(v), b.len());
        }
    }

    /// Short attributes take the one-byte-header path, long ones the varint path: both decode.
    #[test]
    fn string_attributes_of_every_length_decode() {
        use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
        use prost::Message;
        for (klen, vlen) in [
            (1, 0),
            (10, 100),
            (20, 100),
            (20, 101),
            (60, 70),
            (3, 300),
            (130, 5),
        ] {
            let k = "k".repeat(klen);
            let v = "v".repeat(vlen);
            let mut sb = SpanBuf::default();
            sb.str(&k, &v);
            let mut rest = sb.attrs.as_slice();
            let tag = prost::encoding::decode_varint(&mut rest).unwrap();
            assert_eq!(tag, u64::from(span_f::ATTRIBUTES << 3 | LEN));
            let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
            assert_eq!(len, rest.len(), "{klen} {vlen}");
            let kv = KeyValue::decode(rest).unwrap();
            assert_eq!(kv.key, k);
            match kv.value.and_then(|a| a.value) {
                Some(any_value::Value::StringValue(s)) => assert_eq!(s, v),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn int_attributes_of_every_size_decode() {
        use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
        use prost::Message;
        for klen in [1, 20, 110, 120, 130] {
            for v in [0i64, 1, 127, 128, 5432, i64::MAX, -1, i64::MIN] {
                let k = "k".repeat(klen);
                let mut sb = SpanBuf::default();
                sb.int(&k, v);
                let mut rest = sb.attrs.as_slice();
                let tag = prost::encoding::decode_varint(&mut rest).unwrap();
                assert_eq!(tag, u64::from(span_f::ATTRIBUTES << 3 | LEN));
                let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
                assert_eq!(len, rest.len(), "{klen} {v}");
                let kv = KeyValue::decode(rest).unwrap();
                assert_eq!(kv.key, k);
                assert_eq!(
                    kv.value.and_then(|a| a.value),
                    Some(any_value::Value::IntValue(v))
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn every_ipv4_text_matches_std(bits: u32) {
            let ip = Ipv4Addr::from(bits);
            let mut buf = [0u8; IPV4_TEXT_MAX];
            let expected = ip.to_string();
            proptest::prop_assert_eq!(ipv4_text(ip, &mut buf), expected.as_bytes());
        }
    }

    #[test]
    fn ipv4_text_matches_std() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.255",
            "127.0.0.1",
            "192.168.10.9",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let mut s = String::new();
        push_ip(&mut s, mapped);
        assert_eq!(s, "10.1.2.3");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        s.clear();
        push_ip(&mut s, v6);
        assert_eq!(s, "2001:db8::1");
    }
}
