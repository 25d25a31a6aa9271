//! DNS over UDP and TCP.
//!
//! Spec: messages <https://www.rfc-editor.org/rfc/rfc1035#section-4> (header §4.1.1,
//! question §4.1.2, resource records §4.1.3, compression §4.1.4, UDP §4.2.1, TCP length prefix
//! §4.2.2), DNS over TCP <https://www.rfc-editor.org/rfc/rfc7766>, EDNS(0) and the extended
//! RCODE <https://www.rfc-editor.org/rfc/rfc6891#section-6.1.3>, RCODE and TYPE registries
//! <https://www.iana.org/assignments/dns-parameters/dns-parameters.xhtml>, unknown types
//! written `TYPEnnn` <https://www.rfc-editor.org/rfc/rfc3597#section-5>.
//!
//! [`DnsFramer`] cuts one frame per message: over UDP a datagram is a message (the kernel
//! reports every message of a `sendmmsg`/`recvmmsg` as its own event, with the peer when the
//! call names it); over TCP each message follows its 2-byte length. A frame keeps the id, the
//! flags, the one question (name in presentation form, type, class), the response code (with
//! the OPT record's extended bits) and at most [`types::DNS_MAX_ANSWERS`] A/AAAA addresses.
//! [`DnsStitcher`] pairs a response with the pending query of the same id **and** question
//! (and peer, for unconnected UDP), never by order.
//!
//! Supported: standard queries (opcode QUERY) with one question, over UDP (connected or not,
//! `sendto`/`recvfrom`/`sendmsg`/`recvmsg`/`sendmmsg`/`recvmmsg`) and TCP (pipelined and
//! out-of-order answers, several messages per write, a message split over several reads);
//! compression pointers; EDNS(0) OPT records; truncated (TC) answers; both sides (CLIENT spans
//! for a resolver's clients, SERVER spans for a traced DNS server).
//!
//! Not supported: NOTIFY, UPDATE, DSO and the obsolete opcodes, and messages without a
//! question, are stepped over without a span (a FORMERR answer that omits the question leaves
//! its query unmatched); messages with several questions are invalid (no server answers them);
//! a zone transfer (many response messages to one AXFR/IXFR query) is one span ending at its
//! first message, the others counted as unmatched responses; DNS over TLS/HTTPS/QUIC is
//! encrypted.
//!
//! Secrets: nothing but the question, the response code and A/AAAA addresses is kept. TXT
//! strings, TSIG/SIG(0) signatures, DNSSEC keys and EDNS options (cookies, padding, client
//! subnet) are stepped over unread. The question name itself can identify a user or tenant:
//! it is exported as `dns.question.name` (as every DNS tracer does), escaped and capped.
//!
//! Known limits:
//! - Mid-stream attach: UDP has no stream, so a socket watched late is exact from its next
//!   datagram; on TCP the framer resyncs on the next plausible length-prefixed header.
//! - A query retransmitted with the same id and question is paired with the first copy (the
//!   span covers the whole wait); the copy that got no answer is counted as unmatched.
//! - A response whose query was never seen (dropped by the kernel, or sent before the socket
//!   was watched) waits until it expires and is counted as unmatched.
//! - Names longer than [`types::DNS_MAX_NAME_TEXT`] bytes once escaped are cut; two such names
//!   with the same first 255 bytes and the same id would pair with each other.
//! - Answers are addresses only: CNAME targets, MX hosts and TXT strings are not exported.

mod frame;
mod stitch;
pub mod types;

#[cfg(test)]
mod tests;

pub use frame::DnsFramer;
pub use stitch::DnsStitcher;
pub use types::{DnsFrame, DnsQuestion};
