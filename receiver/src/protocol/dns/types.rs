//! DNS frames and the names of the codes a span shows.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::model::Transport;

/// RFC 1035 §4.1.1: id, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT.
pub const DNS_HEADER_BYTES: usize = 12;
/// The smallest message with a question: a header, the root name, QTYPE and QCLASS.
pub const DNS_MIN_QUESTION_MESSAGE: usize = DNS_HEADER_BYTES + 5;
/// RFC 1035 §2.3.4: a name is at most 255 bytes on the wire, a label at most 63.
pub const DNS_MAX_NAME_WIRE: usize = 255;
pub const DNS_MAX_LABEL: usize = 63;
/// Most bytes of a question name kept as text (`dns.question.name`). A name of 255 wire
/// bytes fits unless it needs escapes; the text is then cut at an escape boundary.
pub const DNS_MAX_NAME_TEXT: usize = 255;
/// Most addresses kept from the answers of one response (`dns.answers`).
pub const DNS_MAX_ANSWERS: usize = 16;
/// Most resource records walked in one message (answers, authority, additional): a bound on
/// work per message whatever the counts in the header say.
pub const DNS_MAX_RECORDS: usize = 512;
/// Compression pointers followed while reading one name. Pointers must point strictly
/// backwards, so this is a second fence, not the only one.
pub const DNS_MAX_POINTERS: usize = 32;

/// QR bit: the message is a response.
pub const FLAG_QR: u16 = 0x8000;
/// TC bit: the response was truncated to fit the transport (UDP), the client retries over TCP.
pub const FLAG_TC: u16 = 0x0200;

/// Resource record types read from answers and the additional section.
pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

/// One DNS message, reduced to what pairing and the span need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsFrame {
    /// Transaction id (RFC 1035 §4.1.1 ID).
    pub id: u16,
    /// The 16 header flag bits (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).
    pub flags: u16,
    pub question: DnsQuestion,
    /// Response code: the header's 4 bits, extended by the OPT record's 8 upper bits when the
    /// response carries one (RFC 6891 §6.1.3). 0 for queries.
    pub rcode: u16,
    /// Addresses of the A/AAAA answers (class IN), in order, at most [`DNS_MAX_ANSWERS`].
    pub answers: Vec<IpAddr>,
    /// Some answers were not read: capture truncated, more than [`DNS_MAX_ANSWERS`], or a
    /// malformed record ended the walk.
    pub answers_partial: bool,
    /// UDP or TCP, decided by how the message was framed (a datagram, or a message with the
    /// RFC 1035 §4.2.2 length prefix on a stream), not by what the socket was resolved as.
    pub transport: Transport,
}

impl DnsFrame {
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }

    /// TC: the answer did not fit (RFC 1035 §4.1.1; RFC 7766 for the retry over TCP).
    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }
}

/// The (single) question of a message (RFC 1035 §4.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuestion {
    /// The name in presentation form as it appears in the query, without the trailing dot
    /// (`.` for the root): `.` and `\` inside a label and bytes outside printable ASCII are
    /// escaped (`\.`, `\\`, `\DDD`, RFC 1035 §5.1), at most [`DNS_MAX_NAME_TEXT`] bytes.
    pub name: String,
    /// Set when `name` was cut at [`DNS_MAX_NAME_TEXT`].
    pub name_cut: bool,
    pub qtype: u16,
    pub qclass: u16,
}

impl DnsQuestion {
    /// Whether `other` asks the same thing. Names compare case-insensitively: resolvers may
    /// randomise the case of a query (the "0x20" defence), and the answer repeats the question
    /// as the server saw it.
    pub fn same(&self, other: &DnsQuestion) -> bool {
        self.qtype == other.qtype
            && self.qclass == other.qclass
            && self.name.eq_ignore_ascii_case(&other.name)
    }
}

/// Mnemonic of a query type (IANA "Resource Record (RR) TYPEs"); `TYPE{n}` for the others, as
/// RFC 3597 §5 writes unknown types.
pub fn qtype_name(qtype: u16) -> Cow<'static, str> {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        24 => "SIG",
        25 => "KEY",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        39 => "DNAME",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        108 => "EUI48",
        109 => "EUI64",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return Cow::Owned(format!("TYPE{qtype}")),
    };
    Cow::Borrowed(name)
}

/// Name of a response code (IANA "DNS RCODEs", RFC 6895 §2.3), `None` for NOERROR; `_OTHER`
/// for unassigned values so `error.type` stays low-cardinality. 16 is BADVERS: in a message
/// the extended RCODE comes from an OPT record (BADSIG is the same number inside TSIG only).
pub fn rcode_error(rcode: u16) -> Option<&'static str> {
    Some(match rcode {
        0 => return None,
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => "_OTHER",
    })
}
