//! `Http1Stitcher`: pairs each request with its final response, in order.
//!
//! HTTP/1.1 answers requests in the order they were sent, pipelined or not (RFC 9112 §9.3.2),
//! so pairing is a FIFO: the oldest request takes the next final response. Interim responses
//! (1xx other than 101) are not answers. A record runs from the request's first byte to the
//! response's last byte: the response frame's end for a Content-Length or bodiless response
//! (the pipeline stamps it with the chunk holding the true last byte), the `BodyEnd` frame's
//! end for a chunked one, the close for a body that ends at the close.
//!
//! What keeps pairing honest when bytes are missing:
//! - a response that starts before the oldest pending request answers something we never saw:
//!   dropped (counted);
//! - a response may be framed before its request (an early answer to an upload whose body is
//!   still arriving, `Expect: 100-continue`): it waits for the request;
//! - a response framed right after lost bytes (`after_gap`) may follow lost responses: it is
//!   paired only when exactly one request could be its own; otherwise it and the candidates are
//!   dropped (counted), never paired by guess;
//! - a request framed right after lost bytes may follow lost requests, whose responses come
//!   first in an unknown number: the connection is desynchronised, and every request and
//!   response is dropped (counted) until a request arrives after all responses seen so far
//!   ended (see `desync_step`);
//! - a chunked response whose end was lost (the next head arrives first) becomes a record
//!   marked incomplete, ending at the last byte whose time is known;
//! - requests without an answer are dropped (counted) at the request timeout or the close,
//!   except while a response is still arriving (a long download answers the oldest request).

use std::collections::VecDeque;

use crate::model::Protocol;
use crate::protocol::http1::types::*;
use crate::protocol::{ParseStats, ParserLimits, Stitcher, Timed};
use crate::record::{Exchange, HttpExchange, Incomplete, Record};

/// Per-connection stitcher: the chunked response in progress, if any, and the state of a
/// connection desynchronised by lost requests.
#[derive(Debug, Default)]
pub struct Http1Stitcher {
    open: Option<Open>,
    /// Requests were lost (a request head framed after a gap): how many responses belong to
    /// them is unknown, so nothing is paired until the connection is quiet again.
    desync: bool,
    /// While desynchronised: requests dropped whose responses have not been seen yet.
    owed: u64,
    /// While desynchronised: start and end of the last response seen.
    last_resp_start: u64,
    last_resp_end: u64,
    /// While desynchronised: start of the last request dropped.
    last_dropped_start: u64,
}

/// What a desynchronised connection does with its queues.
enum Desync {
    /// Dropped a frame; look again.
    Dropped,
    /// Synchronised again: pair normally.
    Resynced,
    /// Nothing to decide until more frames arrive.
    Wait,
}

/// A response head paired with its request, waiting for the end of its chunked body.
#[derive(Debug)]
struct Open {
    start_ns: u64,
    /// Time of the response head's last byte: the last byte whose time is known.
    head_end_ns: u64,
    exchange: HttpExchange,
}

impl Http1Stitcher {
    fn emit(
        start_ns: u64,
        end_ns: u64,
        incomplete: Option<Incomplete>,
        exchange: HttpExchange,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        stats.records += 1;
        out.push(Record {
            protocol: Protocol::Http1,
            start_ns,
            end_ns: end_ns.max(start_ns),
            incomplete,
            peer: None,
            exchange: Exchange::Http(exchange),
        });
    }

    /// One step of a desynchronised connection. HTTP/1.1 answers in order, but after requests
    /// were lost the next responses may answer them (a pipelining client, or a request whose
    /// head was lost and whose tail began the chunk that holds the next head), and how many do
    /// is unknown. So every request and response is dropped (counted) until a request arrives
    /// after every response seen so far has ended, and either no response is owed to a dropped
    /// request or the last dropped request was answered (a response began after it; owed
    /// answers may have been lost too): the client waited for its answers, so the next
    /// response is this request's. A client that waits for its answers resynchronises within
    /// one request.
    fn desync_step(
        &mut self,
        reqs: &mut VecDeque<Timed<Http1Frame>>,
        resps: &mut VecDeque<Timed<Http1Frame>>,
        stats: &mut ParseStats,
    ) -> Desync {
        self.desync = true;
        // In time order: a response that began before the oldest request answers an earlier
        // (dropped or lost) one.
        let response_first = match (resps.front(), reqs.front()) {
            (Some(f), Some(r)) => f.start_ns < r.start_ns,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if response_first && let Some(f) = resps.pop_front() {
            self.last_resp_start = self.last_resp_start.max(f.start_ns);
            self.last_resp_end = self.last_resp_end.max(f.end_ns);
            if let Http1Frame::Response(r) = &f.frame
                && !r.is_interim()
            {
                // Responses were lost before this one (a gap): how many of the owed ones they
                // were is unknown; count them all as answered, or a connection that keeps
                // losing responses would never resynchronise (the time condition still holds).
                self.owed = if r.after_gap {
                    0
                } else {
                    self.owed.saturating_sub(1)
                };
                stats.unmatched_responses += 1;
            }
            return Desync::Dropped;
        }
        match reqs.front() {
            None => Desync::Wait,
            Some(
                r @ Timed {
                    frame: Http1Frame::Request(req),
                    ..
                },
            ) if !req.after_gap
                && r.start_ns > self.last_resp_end
                && (self.owed == 0 || self.last_resp_start > self.last_dropped_start) =>
            {
                self.desync = false;
                (self.owed, self.last_resp_start, self.last_resp_end) = (0, 0, 0);
                self.last_dropped_start = 0;
                Desync::Resynced
            }
            Some(r) => {
                self.last_dropped_start = self.last_dropped_start.max(r.start_ns);
                drop_request(reqs);
                self.owed += 1;
                stats.unmatched_requests += 1;
                Desync::Dropped
            }
        }
    }

    /// Finishes the open chunked response with the next response frame; `false` when there
    /// is none yet.
    fn settle_open(
        &mut self,
        resps: &mut VecDeque<Timed<Http1Frame>>,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) -> bool {
        let Some(mut open) = self.open.take() else {
            return true;
        };
        match resps.front().map(|f| &f.frame) {
            None => {
                self.open = Some(open);
                false
            }
            Some(Http1Frame::BodyEnd { size }) => {
                open.exchange.response_body_size = Some(*size);
                if let Some(end) = resps.pop_front() {
                    let incomplete = (!end.complete).then_some(Incomplete::EndLost);
                    Http1Stitcher::emit(
                        open.start_ns,
                        end.end_ns,
                        incomplete,
                        open.exchange,
                        out,
                        stats,
                    );
                }
                true
            }
            // Another head before the last chunk: the end of this body was lost.
            Some(_) => {
                Http1Stitcher::emit(
                    open.start_ns,
                    open.head_end_ns,
                    Some(Incomplete::EndLost),
                    open.exchange,
                    out,
                    stats,
                );
                true
            }
        }
    }
}

/// Whether a queued request-side frame is a request head.
fn is_head(f: &Timed<Http1Frame>) -> bool {
    matches!(f.frame, Http1Frame::Request(_))
}

/// Drops the request head at the front of `reqs` and the end of its chunked body.
fn drop_request(reqs: &mut VecDeque<Timed<Http1Frame>>) {
    reqs.pop_front();
    while reqs.front().is_some_and(|r| !is_head(r)) {
        reqs.pop_front();
    }
}

/// The exchange of a request and its final response.
fn exchange(req: Http1Request, resp: &Http1Response, request_body: Option<u64>) -> HttpExchange {
    let (method, method_original) = match req.method {
        Http1Method::Known(m) => (m, None),
        Http1Method::Other(o) => ("_OTHER", o),
    };
    HttpExchange {
        method,
        method_original,
        status_code: Some(resp.status),
        path: req.path,
        query: req.query,
        server_address: req.host,
        server_port: req.port,
        user_agent: req.user_agent,
        protocol_version: Some(if req.minor == 0 { "1.0" } else { "1.1" }),
        request_body_size: request_body,
        response_body_size: resp.body.size(),
    }
}

impl Stitcher for Http1Stitcher {
    type Frame = Http1Frame;
    type State = ();

    fn new(_limits: ParserLimits) -> Http1Stitcher {
        Http1Stitcher::default()
    }

    fn stitch(
        &mut self,
        reqs: &mut VecDeque<Timed<Http1Frame>>,
        resps: &mut VecDeque<Timed<Http1Frame>>,
        _state: &mut (),
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        loop {
            if !self.settle_open(resps, out, stats) {
                return;
            }
            // Ends of chunked request bodies whose head was paired (or lost) already.
            while reqs.front().is_some_and(|r| !is_head(r)) {
                reqs.pop_front();
            }
            let lost_requests = reqs
                .front()
                .is_some_and(|r| matches!(&r.frame, Http1Frame::Request(req) if req.after_gap));
            if self.desync || lost_requests {
                match self.desync_step(reqs, resps, stats) {
                    Desync::Dropped => continue,
                    Desync::Wait => return,
                    Desync::Resynced => {}
                }
            }
            let Some(f) = resps.front() else {
                return;
            };
            let (f_start, after_gap) = match &f.frame {
                Http1Frame::Response(r) if r.is_interim() => {
                    resps.pop_front();
                    continue;
                }
                Http1Frame::Response(r) => (f.start_ns, r.after_gap),
                // The end of a body whose head was dropped.
                Http1Frame::BodyEnd { .. } | Http1Frame::Request(_) => {
                    resps.pop_front();
                    continue;
                }
            };
            if after_gap {
                let candidates = reqs
                    .iter()
                    .filter(|r| is_head(r) && r.start_ns <= f_start)
                    .count();
                if candidates > 1 {
                    // Responses were lost before this one: which request it answers cannot
                    // be known, so none of them is paired.
                    for _ in 0..candidates {
                        drop_request(reqs);
                    }
                    stats.unmatched_requests += candidates as u64;
                    resps.pop_front();
                    stats.unmatched_responses += 1;
                    continue;
                }
            }
            let Some(r) = reqs.front() else {
                // Its request may still be arriving (an upload answered early).
                return;
            };
            if r.start_ns > f_start {
                // Answers a request we never saw.
                resps.pop_front();
                stats.unmatched_responses += 1;
                continue;
            }
            let (Some(req), Some(resp)) = (reqs.pop_front(), resps.pop_front()) else {
                return;
            };
            let (Http1Frame::Request(request), Http1Frame::Response(response)) =
                (req.frame, resp.frame)
            else {
                continue;
            };
            let request_body = match request.body {
                Http1Body::Chunked => match reqs.front().map(|f| &f.frame) {
                    Some(Http1Frame::BodyEnd { size }) => {
                        let size = *size;
                        reqs.pop_front();
                        Some(size)
                    }
                    _ => None,
                },
                body => body.size(),
            };
            let ex = exchange(request, &response, request_body);
            if response.body == Http1Body::Chunked {
                self.open = Some(Open {
                    start_ns: req.start_ns,
                    head_end_ns: resp.end_ns,
                    exchange: ex,
                });
                continue;
            }
            let incomplete = (!resp.complete).then_some(Incomplete::EndLost);
            Http1Stitcher::emit(req.start_ns, resp.end_ns, incomplete, ex, out, stats);
        }
    }

    fn expire(
        &mut self,
        reqs: &mut VecDeque<Timed<Http1Frame>>,
        resps: &mut VecDeque<Timed<Http1Frame>>,
        deadline_ns: u64,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        self.stitch(reqs, resps, &mut (), out, stats);
        if self.open.is_some() {
            if deadline_ns != u64::MAX {
                // A chunked response is still arriving: the requests behind it wait for it.
                return;
            }
            // The connection closed inside a chunked body.
            if let Some(open) = self.open.take() {
                Http1Stitcher::emit(
                    open.start_ns,
                    open.head_end_ns,
                    Some(Incomplete::ConnectionClosed),
                    open.exchange,
                    out,
                    stats,
                );
            }
        }
        while reqs
            .front()
            .is_some_and(|r| !is_head(r) || r.start_ns < deadline_ns)
        {
            if reqs.front().is_some_and(is_head) {
                stats.unmatched_requests += 1;
            }
            reqs.pop_front();
        }
        while resps.front().is_some_and(|f| f.start_ns < deadline_ns) {
            if let Some(f) = resps.pop_front()
                && matches!(&f.frame, Http1Frame::Response(r) if !r.is_interim())
            {
                stats.unmatched_responses += 1;
            }
        }
    }
}
