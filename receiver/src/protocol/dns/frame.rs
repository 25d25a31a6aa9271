//! `DnsFramer`: one frame per DNS message.
//!
//! Over UDP a datagram is one message (RFC 1035 §4.2.1); over TCP each message is preceded by
//! its length as two bytes in network order (RFC 1035 §4.2.2, RFC 7766 §8). A message is read
//! once, in place: the header (§4.1.1), the one question (§4.1.2), then the resource records
//! (§4.1.3) only as far as the span needs them: A/AAAA addresses in the answer section and the
//! OPT pseudo-record of the additional section, whose TTL field carries the upper 8 bits of the
//! response code (RFC 6891 §6.1.3). Record data other than an address (TXT strings, keys, TSIG
//! MACs, EDNS options such as cookies) is stepped over unread.
//!
//! Names (§4.1.4): a pointer must point strictly before the segment it is found in and after
//! the header, so a chain of pointers always moves backwards and ends (loops and forward
//! pointers are rejected), and at most [`DNS_MAX_POINTERS`] are followed; labels longer than 63
//! bytes, the reserved 0x40/0x80 label types and names over 255 wire bytes are malformed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::Transport;
use crate::protocol::dns::types::*;
use crate::protocol::{Cursor, Framer, MessageKind, Parse, ParserLimits};

/// Frames DNS messages. Holds only the buffer cap from [`ParserLimits`].
#[derive(Clone, Copy, Debug)]
pub struct DnsFramer {
    /// A TCP message longer than this is cut before it is all buffered (its answers are then
    /// read from the part that is).
    max_buffer: usize,
}

impl Default for DnsFramer {
    fn default() -> Self {
        <DnsFramer as Framer>::new(ParserLimits::default())
    }
}

impl Framer for DnsFramer {
    type Frame = DnsFrame;
    type State = ();

    fn new(limits: ParserLimits) -> Self {
        DnsFramer {
            max_buffer: limits.max_buffer_bytes,
        }
    }

    /// TCP: a length-prefixed message at the head of the stream.
    fn parse(&self, kind: MessageKind, buf: &[u8], _: &mut ()) -> Parse<DnsFrame> {
        let Some(len) = prefix(buf) else {
            return Parse::Incomplete;
        };
        let total = 2 + usize::from(len);
        if usize::from(len) < DNS_MIN_QUESTION_MESSAGE {
            return Parse::Invalid;
        }
        let body = buf.get(2..).unwrap_or_default();
        if let Some(msg) = body.get(..usize::from(len)) {
            return with_len(message(kind, msg, true, Transport::Tcp), total);
        }
        // Refute garbage as soon as its header is in, rather than waiting for `len` bytes.
        if !plausible(kind, body) {
            return Parse::Invalid;
        }
        if total > self.max_buffer {
            // It can never be buffered whole: frame it from what is, the pipeline skips the
            // rest as it arrives and stamps the frame with the time of its last byte.
            return with_len(message(kind, body, false, Transport::Tcp), total);
        }
        Parse::Incomplete
    }

    fn find_boundary(&self, kind: MessageKind, buf: &[u8], from: usize, _: &()) -> Option<usize> {
        (from..buf.len()).find(|&at| {
            let rest = buf.get(at..).unwrap_or_default();
            match prefix(rest) {
                Some(len) if usize::from(len) < DNS_MIN_QUESTION_MESSAGE => false,
                Some(_) => plausible(kind, rest.get(2..).unwrap_or_default()),
                // One byte left: it cannot be refuted yet.
                None => true,
            }
        })
    }

    /// TCP, the rest of the stream not captured: a message whose header and question are in
    /// `buf` is framed (its answers as far as they were captured).
    fn parse_before_gap(&self, kind: MessageKind, buf: &[u8], _: &mut ()) -> Parse<DnsFrame> {
        let Some(len) = prefix(buf) else {
            return Parse::Incomplete;
        };
        let total = 2 + usize::from(len);
        let body = buf.get(2..).unwrap_or_default();
        let (msg, complete) = match body.get(..usize::from(len)) {
            Some(m) => (m, true),
            None => (body, false),
        };
        with_len(message(kind, msg, complete, Transport::Tcp), total)
    }

    /// UDP: the datagram is the message, without a length prefix.
    fn parse_datagram(
        &self,
        kind: MessageKind,
        msg: &[u8],
        truncated: bool,
        _: &mut (),
    ) -> Parse<DnsFrame> {
        match message(kind, msg, !truncated, Transport::Udp) {
            Parse::Frame { frame, .. } => Parse::Frame {
                frame,
                len: msg.len(),
            },
            Parse::Skip { .. } => Parse::Skip { len: msg.len() },
            // A datagram is all there will ever be of its message.
            Parse::Incomplete | Parse::Invalid => Parse::Invalid,
        }
    }
}

/// The TCP length prefix.
fn prefix(buf: &[u8]) -> Option<u16> {
    Cursor::new(buf).u16_be()
}

fn with_len(p: Parse<DnsFrame>, len: usize) -> Parse<DnsFrame> {
    match p {
        Parse::Frame { frame, .. } => Parse::Frame { frame, len },
        Parse::Skip { .. } => Parse::Skip { len },
        other => other,
    }
}

/// Whether `msg` can still be the start of a message of `kind`: the header fields a query or
/// response of opcode QUERY with at most one question always has (the ones the kernel also
/// checks), judged only as far as `msg` goes.
fn plausible(kind: MessageKind, msg: &[u8]) -> bool {
    let mut c = Cursor::new(msg);
    let (Some(_id), Some(flags), Some(qd), Some(an), Some(ns)) =
        (c.u16_be(), c.u16_be(), c.u16_be(), c.u16_be(), c.u16_be())
    else {
        return true;
    };
    let response = flags & FLAG_QR != 0;
    let opcode = (flags >> 11) & 0xf;
    if response != (kind == MessageKind::Response) || opcode != 0 || flags & 0x0040 != 0 || qd > 1 {
        return false;
    }
    if !response && (an != 0 || ns != 0) {
        return false;
    }
    match msg.get(DNS_HEADER_BYTES) {
        Some(&first) if qd == 1 => usize::from(first) <= DNS_MAX_LABEL,
        _ => true,
    }
}

/// Reads one message. `complete`: `msg` is the whole message; otherwise it is a captured
/// prefix, and running out of bytes after the question only cuts the answers short.
fn message(kind: MessageKind, msg: &[u8], complete: bool, transport: Transport) -> Parse<DnsFrame> {
    let short = if complete {
        Parse::Invalid
    } else {
        Parse::Incomplete
    };
    let mut c = Cursor::new(msg);
    let (Some(id), Some(flags), Some(qd), Some(an), Some(ns), Some(ar)) = (
        c.u16_be(),
        c.u16_be(),
        c.u16_be(),
        c.u16_be(),
        c.u16_be(),
        c.u16_be(),
    ) else {
        return short;
    };
    let response = flags & FLAG_QR != 0;
    if response != (kind == MessageKind::Response) {
        return Parse::Invalid;
    }
    // Only one question can be paired with its answer; no server accepts more (RFC 9619).
    // None is valid but unpairable (a FORMERR or NOTIMP answer may omit it, RFC 6891 §7; a
    // query may carry only a cookie, RFC 7873 §5.4): stepped over whole, no resync needed.
    match qd {
        0 => return Parse::Skip { len: msg.len() },
        1 => {}
        _ => return Parse::Invalid,
    }
    // NOTIFY, UPDATE, DSO and the obsolete IQUERY/STATUS are valid DNS but not lookups: stepped
    // over without a span (their one "question" is a zone, not a name looked up).
    let opcode = (flags >> 11) & 0xf;
    let name = match read_name(msg, DNS_HEADER_BYTES) {
        Ok(n) => n,
        Err(NameError::Short) => return short,
        Err(NameError::Malformed) => return Parse::Invalid,
    };
    let mut c = Cursor::new(msg);
    if c.skip(name.end).is_none() {
        return short;
    }
    let (Some(qtype), Some(qclass)) = (c.u16_be(), c.u16_be()) else {
        return short;
    };
    if opcode != 0 {
        return Parse::Skip { len: msg.len() };
    }
    let mut frame = DnsFrame {
        id,
        flags,
        question: DnsQuestion {
            name: name.text,
            name_cut: name.cut,
            qtype,
            qclass,
        },
        rcode: flags & 0x000f,
        answers: Vec::new(),
        answers_partial: false,
        transport,
    };
    if response {
        read_records(msg, c.position(), [an, ns, ar], &mut frame);
    }
    Parse::Frame {
        frame,
        len: msg.len(),
    }
}

/// Walks the answer, authority and additional sections from `at`: addresses of A/AAAA answers,
/// the extended RCODE of an OPT record. Stops (marking the answers partial) at the first record
/// that does not fit, malformed or cut by the capture.
fn read_records(msg: &[u8], at: usize, counts: [u16; 3], frame: &mut DnsFrame) {
    let [an, ns, ar] = counts.map(usize::from);
    let total = an + ns + ar;
    if total > DNS_MAX_RECORDS {
        frame.answers_partial = true;
    }
    let mut at = at;
    for i in 0..total.min(DNS_MAX_RECORDS) {
        let Some(rr) = record(msg, at) else {
            // A broken record, or one cut by the capture, ends the walk; the header and the
            // question stand, only what follows is unknown.
            frame.answers_partial |= i < an;
            return;
        };
        at = rr.next;
        if i < an {
            if rr.class != CLASS_IN {
                continue;
            }
            let ip = match (rr.rtype, rr.data.len()) {
                (TYPE_A, 4) => rr
                    .data
                    .try_into()
                    .ok()
                    .map(|b: [u8; 4]| IpAddr::from(Ipv4Addr::from(b))),
                (TYPE_AAAA, 16) => rr
                    .data
                    .try_into()
                    .ok()
                    .map(|b: [u8; 16]| IpAddr::from(Ipv6Addr::from(b))),
                _ => None,
            };
            if let Some(ip) = ip {
                if frame.answers.len() < DNS_MAX_ANSWERS {
                    frame.answers.push(ip);
                } else {
                    frame.answers_partial = true;
                }
            }
        } else if i >= an + ns && rr.rtype == TYPE_OPT && rr.root_owner {
            // RFC 6891 §6.1.3: TTL = EXTENDED-RCODE (8 bits), VERSION, DO, Z.
            frame.rcode = (((rr.ttl >> 24) as u16) << 4) | (frame.flags & 0x000f);
        }
    }
}

/// One resource record (RFC 1035 §4.1.3), its data borrowed.
struct Record<'a> {
    rtype: u16,
    class: u16,
    ttl: u32,
    data: &'a [u8],
    /// The owner name is the root (an OPT record's must be).
    root_owner: bool,
    /// Offset just past the record.
    next: usize,
}

fn record(msg: &[u8], at: usize) -> Option<Record<'_>> {
    let owner_end = skip_name(msg, at)?;
    let root_owner = msg.get(at) == Some(&0);
    let mut c = Cursor::new(msg);
    c.skip(owner_end)?;
    let rtype = c.u16_be()?;
    let class = c.u16_be()?;
    let ttl = c.u32_be()?;
    let rdlen = c.u16_be()?;
    let data = c.take(usize::from(rdlen))?;
    Some(Record {
        rtype,
        class,
        ttl,
        data,
        root_owner,
        next: c.position(),
    })
}

/// Offset just past the name at `at` without following pointers (a record's owner name is
/// never shown, only stepped over). `None` when malformed or cut.
fn skip_name(msg: &[u8], at: usize) -> Option<usize> {
    let mut at = at;
    let mut wire = 0usize;
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => {
                wire += 1 + usize::from(len);
                if wire >= DNS_MAX_NAME_WIRE {
                    return None;
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                // The pointer ends the name in place; it must at least point past the header.
                let lo = *msg.get(at + 1)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                return (target >= DNS_HEADER_BYTES && target < at).then_some(at + 2);
            }
            _ => return None,
        }
    }
}

/// Why a name could not be read.
#[derive(Debug, PartialEq, Eq)]
enum NameError {
    /// The bytes end inside the name.
    Short,
    /// A loop, a forward pointer, a pointer into the header, a reserved label type, or over
    /// 255 bytes.
    Malformed,
}

/// A name read in presentation form.
#[derive(Debug, PartialEq, Eq)]
struct Name {
    text: String,
    cut: bool,
    /// Offset just past the name where it started (after its first pointer, if any).
    end: usize,
}

/// Reads the name at `start`, following compression pointers (see the module documentation).
fn read_name(msg: &[u8], start: usize) -> Result<Name, NameError> {
    let mut text = String::new();
    let mut cut = false;
    let mut at = start;
    // Where the name continues in the message after the first pointer.
    let mut end = None;
    // Pointers must land strictly before the segment they were read in.
    let mut segment = start;
    let mut pointers = 0;
    let mut wire = 0usize;
    loop {
        let len = *msg.get(at).ok_or(NameError::Short)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                if text.is_empty() && !cut {
                    text.push('.');
                }
                return Ok(Name {
                    text,
                    cut,
                    end: end.unwrap_or(at + 1),
                });
            }
            0x00 => {
                let n = usize::from(len);
                wire += 1 + n;
                if wire >= DNS_MAX_NAME_WIRE {
                    return Err(NameError::Malformed);
                }
                let label = msg.get(at + 1..at + 1 + n).ok_or(NameError::Short)?;
                if !text.is_empty() && !cut {
                    cut = !push_capped(&mut text, ".");
                }
                for &b in label {
                    if cut {
                        break;
                    }
                    cut = !push_escaped(&mut text, b);
                }
                at += 1 + n;
            }
            0xc0 => {
                let lo = *msg.get(at + 1).ok_or(NameError::Short)?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                pointers += 1;
                if target < DNS_HEADER_BYTES || target >= segment || pointers > DNS_MAX_POINTERS {
                    return Err(NameError::Malformed);
                }
                end.get_or_insert(at + 2);
                at = target;
                segment = target;
            }
            _ => return Err(NameError::Malformed),
        }
    }
}

/// Appends `s` if it fits [`DNS_MAX_NAME_TEXT`]; false (nothing appended) when it does not.
fn push_capped(text: &mut String, s: &str) -> bool {
    if text.len() + s.len() > DNS_MAX_NAME_TEXT {
        return false;
    }
    text.push_str(s);
    true
}

/// Appends one label byte in presentation form (RFC 1035 §5.1): `\.` and `\\` for the two
/// bytes that would change the name's meaning, `\DDD` for bytes outside printable ASCII.
fn push_escaped(text: &mut String, b: u8) -> bool {
    match b {
        b'.' | b'\\' => push_capped(text, if b == b'.' { "\\." } else { "\\\\" }),
        0x21..=0x7e => {
            if text.len() < DNS_MAX_NAME_TEXT {
                text.push(char::from(b));
                true
            } else {
                false
            }
        }
        _ => {
            let digits = [b'\\', b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10];
            push_capped(text, std::str::from_utf8(&digits).unwrap_or("\\?"))
        }
    }
}

#[cfg(test)]
pub(super) mod testing {
    //! Name reading exposed to the unit tests.
    pub fn read_name(msg: &[u8], at: usize) -> Result<(String, bool, usize), bool> {
        super::read_name(msg, at)
            .map(|n| (n.text, n.cut, n.end))
            .map_err(|e| e == super::NameError::Malformed)
    }
}
