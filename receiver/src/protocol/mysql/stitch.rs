//! `MysqlStitcher`: pairs each command with the server packets that answer it.
//!
//! MySQL is strictly request/response per connection: a command (seq 0) is answered by packets
//! numbered from 1, and the client sends the next command only after the whole answer. The
//! commands without an answer, `COM_STMT_CLOSE`, `COM_QUIT`, `COM_STMT_SEND_LONG_DATA`, are not
//! exchanges: they only change state (a closed statement is forgotten) and produce no record. The shape of an answer depends on the command
//! (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html):
//!
//! - `COM_QUERY`, `COM_STMT_EXECUTE`: OK_Packet, ERR_Packet, or a result set: column count,
//!   column definitions, [EOF], rows, EOF/OK; SERVER_MORE_RESULTS_EXISTS in the terminating
//!   status means another result (multi-statements, `CALL`) follows in the same answer;
//! - `COM_STMT_PREPARE`: COM_STMT_PREPARE_OK (statement id) with parameter and column
//!   definitions, each block ended by EOF unless CLIENT_DEPRECATE_EOF, or ERR;
//! - `COM_STMT_FETCH`, `COM_FIELD_LIST`: rows or definitions up to EOF, or ERR;
//! - everything else: one packet (OK, ERR, EOF or a string).
//!
//! When the handshake was not seen, CLIENT_DEPRECATE_EOF is unknown and both forms are
//! accepted: a 0xFE packet shorter than 7 bytes is an EOF_Packet, a longer one (< 16 MiB) an
//! OK_Packet ending the rows; after the last block of a prepare answer an optional EOF is taken
//! if it comes with the next sequence id, and the exchange is closed by the next command
//! otherwise.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::model::Protocol;
use crate::protocol::mysql::types::*;
use crate::protocol::sql;
use crate::protocol::{ParseStats, ParserLimits, Stitcher, Timed};
use crate::record::{DbExchange, DbOutcome, Exchange, Incomplete, Record};

/// Most prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 256;

/// Per-connection stitcher: the current exchange, the namespace and prepared statements.
#[derive(Debug)]
pub struct MysqlStitcher {
    limits: ParserLimits,
    namespace: Option<Arc<str>>,
    /// CLIENT_DEPRECATE_EOF as negotiated, `None` when the handshake was not seen.
    deprecate_eof: Option<bool>,
    optional_metadata: bool,
    statements: HashMap<u32, Prepared>,
    current: Option<Pending>,
    /// Discarding server packets that answer no request we saw.
    discarding: bool,
}

#[derive(Clone, Debug)]
struct Prepared {
    text: Option<String>,
    summary: Option<String>,
}

/// How a command is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// No answer is defined.
    NoResponse,
    /// One packet.
    Single,
    /// OK, ERR or result sets.
    Query,
    /// COM_STMT_PREPARE_OK and its definitions, or ERR.
    Prepare,
    /// Rows up to EOF/OK, or ERR.
    Rows,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    First,
    Columns { left: u64 },
    AfterColumns,
    Rows,
    PrepParams { left: u16, cols: u16 },
    PrepParamsEof { cols: u16 },
    PrepCols { left: u16 },
    PrepColsEof,
    Done,
}

/// What a pending exchange is, beyond its command code.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Login(Option<String>),
    Command(u8),
}

#[derive(Debug)]
struct Pending {
    kind: Kind,
    mode: Mode,
    phase: Phase,
    start_ns: u64,
    end_ns: u64,
    namespace: Option<Arc<str>>,
    text: Option<String>,
    summary: Option<String>,
    /// Schema a successful answer switches to (`COM_INIT_DB`, `USE`, `COM_CHANGE_USER`).
    switch_to: Option<Arc<str>>,
    /// The request spanned several packets, so the answer's first sequence id is not 1.
    request_continued: bool,
    last_seq: Option<u8>,
    rows: u64,
    has_rows: bool,
    affected: Option<u64>,
    error: Option<(u16, Option<String>)>,
    prepared_id: Option<u32>,
    /// Packets were lost inside the answer: counts are unreliable.
    damaged: bool,
    /// The last packet's end was never seen (lost, or the connection closed in it).
    end_lost: bool,
}

impl MysqlStitcher {
    /// The current database (`db.namespace`).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Starts the exchange of one request frame; records commands without an answer at once.
    fn begin(&mut self, req: Timed<MysqlFrame>) {
        let mut p = Pending {
            kind: Kind::Command(0),
            mode: Mode::Single,
            phase: Phase::First,
            start_ns: req.start_ns,
            end_ns: req.end_ns,
            namespace: self.namespace.clone(),
            text: None,
            summary: None,
            switch_to: None,
            request_continued: false,
            last_seq: None,
            rows: 0,
            has_rows: false,
            affected: None,
            error: None,
            prepared_id: None,
            damaged: false,
            end_lost: false,
        };
        match req.frame {
            MysqlFrame::Login(login) => {
                self.deprecate_eof = Some(login.capabilities & CLIENT_DEPRECATE_EOF != 0);
                self.optional_metadata =
                    login.capabilities & CLIENT_OPTIONAL_RESULTSET_METADATA != 0;
                p.kind = Kind::Login(login.database);
                p.request_continued = true; // auth packets precede the OK: any sequence id
            }
            MysqlFrame::Command(cmd) => {
                p.kind = Kind::Command(cmd.code);
                p.request_continued = cmd.continued;
                p.mode = match cmd.code {
                    COM_QUIT | COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA => Mode::NoResponse,
                    COM_QUERY | COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE | COM_PROCESS_INFO => {
                        Mode::Query
                    }
                    COM_STMT_PREPARE => Mode::Prepare,
                    COM_STMT_FETCH | COM_FIELD_LIST => Mode::Rows,
                    _ => Mode::Single,
                };
                if p.mode == Mode::Rows {
                    p.phase = Phase::Rows;
                }
                if cmd.code == COM_CHANGE_USER {
                    p.request_continued = true; // auth switch packets precede the OK
                }
                match cmd.arg {
                    MysqlArg::Text { sql, truncated } => {
                        let st = sql.as_deref().map_or_else(sql::Statement::default, |raw| {
                            let cap = self.limits.max_query_text_bytes;
                            sql::statement(raw, truncated, sql::Dialect::Mysql, cap)
                        });
                        p.text = st.text;
                        p.summary = st.summary;
                        if cmd.code == COM_QUERY {
                            // `USE` names a schema like COM_INIT_DB: capped alike.
                            p.switch_to = st
                                .use_schema
                                .and_then(|s| schema_name(s.as_bytes()))
                                .map(Arc::from);
                        }
                    }
                    MysqlArg::Statement(id) => {
                        // Only an execution runs the statement; a reset, fetch or close is
                        // named by its command so it never passes for one.
                        let runs = matches!(cmd.code, COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE);
                        if let Some(s) = self.statements.get(&id).filter(|_| runs) {
                            p.text = s.text.clone();
                            p.summary = s.summary.clone();
                        }
                        if cmd.code == COM_STMT_CLOSE {
                            self.statements.remove(&id);
                        }
                    }
                    MysqlArg::Schema(schema) => p.switch_to = schema.map(Arc::from),
                    MysqlArg::None => {}
                }
                if cmd.code == COM_STMT_SEND_LONG_DATA {
                    // Carries a parameter value only: nothing to record, nothing to answer.
                    return;
                }
            }
            MysqlFrame::Packet(_) | MysqlFrame::Continuation { .. } => return,
        }
        // Not an exchange: the state change above is all (no span for a close or a quit).
        if p.mode == Mode::NoResponse {
            return;
        }
        self.current = Some(p);
    }

    /// Turns a finished exchange into a record and applies its effects on the connection.
    fn finish(&mut self, p: Pending, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let ok = p.error.is_none() && !p.damaged;
        if ok {
            if let Some(id) = p.prepared_id {
                if self.statements.len() >= MAX_STATEMENTS
                    && !self.statements.contains_key(&id)
                    && let Some(&evict) = self.statements.keys().next()
                {
                    self.statements.remove(&evict);
                }
                self.statements.insert(
                    id,
                    Prepared {
                        text: p.text.clone(),
                        summary: p.summary.clone(),
                    },
                );
            }
            match &p.kind {
                Kind::Login(db) => {
                    if db.is_some() {
                        self.namespace = db.as_deref().map(Arc::from);
                    }
                }
                Kind::Command(COM_CHANGE_USER) => {
                    self.namespace = p.switch_to.clone();
                    self.statements.clear();
                }
                Kind::Command(COM_RESET_CONNECTION) => self.statements.clear(),
                // The server switched to the schema it was sent: the one we read, or one we
                // could not (not a name), which leaves the namespace unknown, never the old one.
                Kind::Command(COM_INIT_DB) => self.namespace = p.switch_to.clone(),
                Kind::Command(_) => {
                    if p.switch_to.is_some() {
                        self.namespace = p.switch_to.clone();
                    }
                }
            }
        }
        if matches!(p.kind, Kind::Login(_)) {
            return;
        }
        let outcome = match &p.error {
            Some((code, sqlstate)) => DbOutcome::Error {
                code: code.to_string(),
                detail: sqlstate.clone(),
            },
            None => DbOutcome::Success,
        };
        self.emit(p, outcome, out, stats);
    }

    fn emit(&self, p: Pending, outcome: DbOutcome, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let Kind::Command(code) = p.kind else {
            return;
        };
        stats.records += 1;
        // Commands whose operation lives in their SQL text are named by it; the others by
        // the command (`PING`, `INIT_DB`).
        let carries_sql = matches!(
            code,
            COM_QUERY | COM_STMT_PREPARE | COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE
        );
        out.push(Record {
            protocol: Protocol::Mysql,
            start_ns: p.start_ns,
            end_ns: p.end_ns.max(p.start_ns),
            incomplete: p.end_lost.then_some(Incomplete::EndLost),
            peer: None,
            exchange: Exchange::Db(DbExchange {
                namespace: p.namespace,
                query_text: p.text,
                query_summary: p.summary,
                operation: (!carries_sql).then(|| command_name(code).to_owned()),
                prepare_only: code == COM_STMT_PREPARE,
                batch_size: None,
                outcome,
                returned_rows: (p.has_rows && !p.damaged).then_some(p.rows),
                affected_rows: if p.damaged { None } else { p.affected },
            }),
        });
    }

    /// Drops server packets that answer nothing we saw, counting each apparent answer once.
    fn discard(&mut self, frame: &MysqlFrame, stats: &mut ParseStats) {
        let starts_answer = matches!(frame, MysqlFrame::Packet(p) if p.seq == 1);
        if !self.discarding || starts_answer {
            stats.unmatched_responses += 1;
        }
        self.discarding = true;
    }
}

impl Pending {
    fn awaits_optional_final_eof(&self) -> bool {
        matches!(
            self.phase,
            Phase::PrepParamsEof { cols: 0 } | Phase::PrepColsEof
        )
    }

    /// Feeds one server packet; `false` when the packet is not part of this answer (an
    /// optional EOF that did not come).
    fn feed(
        &mut self,
        pkt: &MysqlPacket,
        (end_ns, complete): (u64, bool),
        deprecate_eof: Option<bool>,
        optional_metadata: bool,
    ) -> bool {
        // Up to a few phase changes without consuming, then the packet is taken.
        for _ in 0..4 {
            match self.step(pkt, deprecate_eof, optional_metadata) {
                Step::Consumed => {
                    if self.last_seq.is_some_and(|s| s.wrapping_add(1) != pkt.seq) {
                        self.damaged = true;
                    }
                    self.last_seq = Some(pkt.seq);
                    self.end_ns = end_ns;
                    self.end_lost = !complete;
                    return true;
                }
                Step::Again => continue,
                Step::NotMine => return false,
            }
        }
        false
    }

    fn step(&mut self, pkt: &MysqlPacket, deprecate_eof: Option<bool>, optional_md: bool) -> Step {
        let first = pkt.first().unwrap_or(0);
        match self.phase {
            Phase::Done => Step::NotMine,
            Phase::First => {
                match (self.mode, first) {
                    (_, 0xff) => {
                        self.error = pkt.error();
                        self.phase = Phase::Done;
                    }
                    (Mode::Prepare, 0x00) => {
                        let mut c = Cursor::new(pkt.head());
                        c.u8();
                        let (id, cols, params) = (c.u32_le(), c.u16_le(), c.u16_le());
                        self.prepared_id = id;
                        let (cols, params) = (cols.unwrap_or(0), params.unwrap_or(0));
                        self.phase = if params > 0 {
                            Phase::PrepParams { left: params, cols }
                        } else if cols > 0 {
                            Phase::PrepCols { left: cols }
                        } else {
                            Phase::Done
                        };
                    }
                    (Mode::Query, 0x00) | (Mode::Query, 0xfe) => {
                        if first == 0x00 {
                            let n = pkt.affected_rows().unwrap_or(0);
                            self.affected = Some(self.affected.unwrap_or(0) + n);
                        }
                        self.end_of_result(pkt);
                    }
                    // LOCAL INFILE request: the client sends the file, then the server OK/ERR.
                    (Mode::Query, 0xfb) => {}
                    (Mode::Query, _) => {
                        let mut c = Cursor::new(pkt.head());
                        let columns = lenenc(&mut c).unwrap_or(0);
                        let metadata = !optional_md || c.u8().is_none_or(|m| m != 0);
                        self.has_rows = true;
                        self.phase = if metadata && columns > 0 {
                            Phase::Columns { left: columns }
                        } else {
                            Phase::AfterColumns
                        };
                    }
                    _ => self.phase = Phase::Done,
                }
                Step::Consumed
            }
            Phase::Columns { left } => {
                self.phase = if left > 1 {
                    Phase::Columns { left: left - 1 }
                } else {
                    Phase::AfterColumns
                };
                Step::Consumed
            }
            Phase::AfterColumns => {
                if deprecate_eof == Some(true) || !pkt.is_short_eof() {
                    self.phase = Phase::Rows;
                    return Step::Again;
                }
                // EOF after the column definitions. With a cursor (COM_STMT_EXECUTE with a
                // cursor type) no rows follow: COM_STMT_FETCH asks for them.
                let status = pkt.status().unwrap_or(0);
                if status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                    self.end_of_result(pkt);
                } else {
                    self.phase = Phase::Rows;
                }
                Step::Consumed
            }
            Phase::Rows => {
                if pkt.is_eof_or_ok_fe() {
                    self.end_of_result(pkt);
                } else if first == 0xff {
                    self.error = pkt.error();
                    self.phase = Phase::Done;
                } else {
                    self.rows += 1;
                    self.has_rows |= self.mode == Mode::Rows;
                }
                Step::Consumed
            }
            Phase::PrepParams { left, cols } => {
                self.phase = if left > 1 {
                    Phase::PrepParams {
                        left: left - 1,
                        cols,
                    }
                } else if deprecate_eof == Some(true) {
                    prep_after_params(cols)
                } else {
                    Phase::PrepParamsEof { cols }
                };
                Step::Consumed
            }
            Phase::PrepParamsEof { cols } => {
                self.phase = prep_after_params(cols);
                if pkt.is_short_eof() {
                    Step::Consumed
                } else if cols > 0 {
                    Step::Again
                } else {
                    Step::NotMine
                }
            }
            Phase::PrepCols { left } => {
                self.phase = if left > 1 {
                    Phase::PrepCols { left: left - 1 }
                } else if deprecate_eof == Some(true) {
                    Phase::Done
                } else {
                    Phase::PrepColsEof
                };
                Step::Consumed
            }
            Phase::PrepColsEof => {
                self.phase = Phase::Done;
                if pkt.is_short_eof() {
                    Step::Consumed
                } else {
                    Step::NotMine
                }
            }
        }
    }

    /// An OK/EOF ends a result (or a plain OK answer): another follows when the status says
    /// SERVER_MORE_RESULTS_EXISTS.
    fn end_of_result(&mut self, pkt: &MysqlPacket) {
        let status = pkt.status().unwrap_or(0);
        self.phase = if self.mode == Mode::Query && status & SERVER_MORE_RESULTS_EXISTS != 0 {
            Phase::First
        } else {
            Phase::Done
        };
    }
}

fn prep_after_params(cols: u16) -> Phase {
    if cols > 0 {
        Phase::PrepCols { left: cols }
    } else {
        Phase::Done
    }
}

enum Step {
    Consumed,
    Again,
    NotMine,
}

impl Stitcher for MysqlStitcher {
    type Frame = MysqlFrame;
    type State = ();

    fn new(limits: ParserLimits) -> MysqlStitcher {
        MysqlStitcher {
            limits,
            namespace: None,
            deprecate_eof: None,
            optional_metadata: false,
            statements: HashMap::new(),
            current: None,
            discarding: false,
        }
    }

    fn stitch(
        &mut self,
        reqs: &mut VecDeque<Timed<MysqlFrame>>,
        resps: &mut VecDeque<Timed<MysqlFrame>>,
        _state: &mut (),
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        loop {
            let Some(cur) = self.current.as_mut() else {
                // Server packets from before the next request answer nothing we saw.
                let next_start = reqs.front().map(|r| r.start_ns);
                while let Some(p) = resps.front() {
                    if next_start.is_some_and(|t| p.start_ns >= t) {
                        break;
                    }
                    if let Some(p) = resps.pop_front() {
                        self.discard(&p.frame, stats);
                    }
                }
                let Some(req) = reqs.pop_front() else {
                    return;
                };
                self.discarding = false;
                self.begin(req);
                continue;
            };
            while cur.phase != Phase::Done {
                let Some(p) = resps.front() else {
                    break;
                };
                let fresh = cur.last_seq.is_none();
                let pkt = match &p.frame {
                    MysqlFrame::Packet(pkt) => pkt,
                    MysqlFrame::Continuation { seq } => {
                        if !fresh {
                            if cur.last_seq.is_some_and(|s| s.wrapping_add(1) != *seq) {
                                cur.damaged = true;
                            }
                            cur.last_seq = Some(*seq);
                        }
                        resps.pop_front();
                        continue;
                    }
                    _ => {
                        resps.pop_front();
                        continue;
                    }
                };
                if fresh {
                    // A later request was sent before this packet: ours got no answer.
                    if reqs.front().is_some_and(|r| p.start_ns > r.start_ns) {
                        break;
                    }
                    // An answer starts at sequence id 1; anything else is a leftover.
                    if pkt.seq != 1 && !cur.request_continued {
                        stats.unmatched_responses += 1;
                        resps.pop_front();
                        continue;
                    }
                }
                let end = (p.end_ns, p.complete);
                if cur.feed(pkt, end, self.deprecate_eof, self.optional_metadata) {
                    resps.pop_front();
                }
            }
            let done = cur.phase == Phase::Done;
            let superseded = !done && cur.last_seq.is_none() && !reqs.is_empty();
            let settled = !done && cur.awaits_optional_final_eof() && !reqs.is_empty();
            if done || settled {
                if let Some(p) = self.current.take() {
                    self.finish(p, out, stats);
                }
                continue;
            }
            if superseded
                && resps
                    .front()
                    .is_some_and(|p| reqs.front().is_some_and(|r| p.start_ns > r.start_ns))
            {
                stats.unmatched_requests += 1;
                self.current = None;
                continue;
            }
            return;
        }
    }

    fn expire(
        &mut self,
        reqs: &mut VecDeque<Timed<MysqlFrame>>,
        resps: &mut VecDeque<Timed<MysqlFrame>>,
        deadline_ns: u64,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        loop {
            match self.current.take() {
                Some(p) if p.start_ns < deadline_ns => {
                    if p.awaits_optional_final_eof() {
                        self.finish(p, out, stats);
                    } else if !matches!(p.kind, Kind::Login(_)) {
                        stats.unmatched_requests += 1;
                    }
                }
                other => {
                    self.current = other;
                    break;
                }
            }
            self.stitch(reqs, resps, &mut (), out, stats);
        }
        if self.current.is_none() {
            while resps.front().is_some_and(|p| p.start_ns < deadline_ns) {
                if let Some(p) = resps.pop_front() {
                    self.discard(&p.frame, stats);
                }
            }
        }
    }
}
