//! `DnsStitcher`: pairs each response with its query.
//!
//! A response answers the oldest pending query that has the same transaction id **and** the
//! same question (name case-insensitively, type, class), that started before the response
//! ended, and, when both datagrams name their peer (an unconnected UDP socket), the same peer.
//! Order is never trusted: UDP answers come back in any order (glibc sends A and AAAA
//! together on one socket and reads whichever comes first), a server socket interleaves many
//! clients, and TCP servers may answer pipelined queries out of order (RFC 7766 §6.2.1.1).
//!
//! A response with no matching query stays queued (events of two threads can reach user space
//! in the other order) until a query shows up or it expires. A query without a response (a
//! timeout, a retransmission answered once, a client that stopped reading after a truncated
//! answer) never becomes a span: it is counted as unmatched when it expires or the socket
//! closes.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::model::Protocol;
use crate::protocol::dns::types::{DnsFrame, qtype_name, rcode_error};
use crate::protocol::{ParseStats, ParserLimits, Stitcher, Timed};
use crate::record::{DnsExchange, Exchange, Incomplete, Record};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct DnsStitcher;

impl Stitcher for DnsStitcher {
    type Frame = DnsFrame;
    type State = ();

    fn new(_: ParserLimits) -> Self {
        DnsStitcher
    }

    fn stitch(
        &mut self,
        reqs: &mut VecDeque<Timed<DnsFrame>>,
        resps: &mut VecDeque<Timed<DnsFrame>>,
        _: &mut (),
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        let mut i = 0;
        while let Some(resp) = resps.get(i) {
            let Some(j) = reqs.iter().position(|q| answers(resp, q)) else {
                i += 1;
                continue;
            };
            if let (Some(req), Some(resp)) = (reqs.remove(j), resps.remove(i)) {
                out.push(record(req, resp));
                stats.records += 1;
            }
        }
    }

    fn expire(
        &mut self,
        reqs: &mut VecDeque<Timed<DnsFrame>>,
        resps: &mut VecDeque<Timed<DnsFrame>>,
        deadline_ns: u64,
        _: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        reqs.retain(|q| {
            let keep = q.start_ns >= deadline_ns;
            stats.unmatched_requests += u64::from(!keep);
            keep
        });
        resps.retain(|r| {
            let keep = r.end_ns >= deadline_ns;
            stats.unmatched_responses += u64::from(!keep);
            keep
        });
    }
}

/// Whether `resp` answers `query`.
fn answers(resp: &Timed<DnsFrame>, query: &Timed<DnsFrame>) -> bool {
    resp.frame.id == query.frame.id
        && resp.frame.question.same(&query.frame.question)
        && query.start_ns <= resp.end_ns
        && same_peer(resp.peer, query.peer)
}

/// Two datagrams that both name their peer must name the same one (a server socket talks to
/// many clients; an answer from another address is not an answer, RFC 5452 §9.1).
fn same_peer(a: Option<SocketAddr>, b: Option<SocketAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
        }
        _ => true,
    }
}

fn record(req: Timed<DnsFrame>, resp: Timed<DnsFrame>) -> Record {
    let truncated = resp.frame.truncated();
    let q = req.frame.question;
    Record {
        protocol: Protocol::Dns,
        start_ns: req.start_ns,
        end_ns: resp.end_ns.max(req.start_ns),
        incomplete: (!resp.complete).then_some(Incomplete::EndLost),
        // The query's peer is the server a client asked, or the client a server answers.
        peer: req.peer.or(resp.peer),
        exchange: Exchange::Dns(DnsExchange {
            question_name: q.name,
            question_type: qtype_name(q.qtype),
            error: rcode_error(resp.frame.rcode),
            answers: resp.frame.answers,
            truncated,
            transport: req.frame.transport,
        }),
    }
}
