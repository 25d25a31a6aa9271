//! `PgStitcher`: pairs requests with the backend messages that answer them, and cuts them into
//! exchanges (one record each).
//!
//! **Answers.** The backend answers every request message in order
//! (<https://www.postgresql.org/docs/current/protocol-flow.html>): Parse → ParseComplete, Bind
//! → BindComplete, Describe statement → ParameterDescription + RowDescription/NoData, Describe
//! portal → RowDescription/NoData, Execute → CommandComplete/EmptyQueryResponse/
//! PortalSuspended, Close → CloseComplete, Sync → ReadyForQuery; a simple Query and a
//! FunctionCall are answered by everything up to their ReadyForQuery; the startup by
//! everything up to the first ReadyForQuery. An ErrorResponse answers the message that failed;
//! in the extended protocol the backend then discards every message up to the next Sync, which
//! it answers with ReadyForQuery as usual. So each request message becomes a pending *op*, and
//! each answer completes the oldest op that accepts it. Requests up to one awaiting a
//! ReadyForQuery (Sync, Query, FunctionCall, startup) form a *group*.
//!
//! **Exchanges.** A simple Query (however many statements it holds) is one exchange ending at
//! its ReadyForQuery. Extended-protocol messages are cut into exchanges at each Execute: the
//! messages since the previous exchange, up to and including the Execute (and the Sync right
//! after it, if any), are one execution, ending at the last byte of the Execute's completion or
//! of that Sync's ReadyForQuery. A pipelined batch `P B D E, B D E, …, S` is thus one exchange
//! per Execute, each ending at its own answer. Messages up to a Sync with a Parse but no
//! Execute are one *prepare-only* exchange (`prepare_only`, named `PREPARE …`); a second Parse
//! before any Execute starts a new exchange. A round trip with neither (a lone Sync, a Close)
//! records nothing. When every message of an unfinished exchange has been answered, it is over:
//! later messages start a new one.
//!
//! **Texts.** A statement's text is remembered per connection when its ParseComplete arrives
//! (bounded, by name); a BindComplete ties a portal to its statement; an Execute's exchange
//! carries the text of its portal's statement. An unknown statement (prepared before we
//! attached, or forgotten) gives no text and `db.operation.name = EXECUTE`, never a guess.
//! Names are forgotten on Close, on a failed or unanswered Parse/Bind, when a simple Query runs
//! (the unnamed statement and portal), on `DEALLOCATE`/`PREPARE`/`DISCARD` in a Query, when the
//! transaction ends (portals), and after bytes were lost in the request stream (all).
//!
//! **Loss and pipelining.** Answers carry no request id, so after lost bytes (a capture gap)
//! an answer may belong to a later request than the oldest pending one. A connection is
//! *pipelined* once a response arrived while two groups were outstanding with no loss in
//! between. On a connection never seen pipelining at most one group can be outstanding, so an
//! answer that arrives after a newer group was sent belongs to the newest one, and older groups
//! lost their answers (counted, no record). On a pipelined connection that is ambiguous: the
//! stitcher goes *blind* (records nothing) until the connection has been idle for the request
//! timeout. Going over the op bound, or expiring a request on a pipelined connection, also goes
//! blind, but knowing exactly how many ReadyForQuery messages are still owed, it sees again as
//! soon as they have arrived.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::model::Protocol;
use crate::protocol::postgres::types::*;
use crate::protocol::sql;
use crate::protocol::{ParseStats, ParserLimits, Stitcher, Timed};
use crate::record::{DbExchange, DbOutcome, Exchange, Incomplete, Record};

/// Most prepared statements remembered per connection (psycopg prepares up to 100).
const MAX_STATEMENTS: usize = 128;
/// Most portals remembered per connection.
const MAX_PORTALS: usize = 64;
/// Most names a Query's `DEALLOCATE`/`PREPARE` forgets one by one (beyond: all).
const MAX_FORGET: usize = 8;

/// A statement's text as a record carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Stmt {
    text: Option<String>,
    summary: Option<String>,
}

/// Names a simple Query's SQL drops from the server's prepared statements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Forget {
    #[default]
    Nothing,
    Names(Vec<PgName>),
    All,
}

/// A request message waiting for its answer.
#[derive(Debug)]
enum Op {
    Login,
    Query(Forget),
    Function,
    Parse {
        name: Option<PgName>,
        stmt: Arc<Stmt>,
    },
    Bind {
        portal: Option<PgName>,
        statement: Option<PgName>,
    },
    DescribeParams,
    DescribeResult,
    Execute {
        portal: Option<PgName>,
    },
    Close(PgTarget),
    Sync,
}

impl Op {
    fn awaits_ready(&self) -> bool {
        matches!(self, Op::Login | Op::Query(_) | Op::Function | Op::Sync)
    }

    /// Whether the backend skips this op after an ErrorResponse in its group.
    fn skipped_after_error(&self) -> bool {
        !self.awaits_ready()
    }

    fn accepts(&self, f: &PgFrame) -> Accept {
        use PgFrame as F;
        match (self, f) {
            (_, F::Error(e)) if e.fatal => Accept::Complete,
            (Op::Login | Op::Query(_) | Op::Function | Op::Sync, F::Ready(_)) => Accept::Complete,
            (Op::Login | Op::Query(_) | Op::Function | Op::Sync, F::Error(_)) => Accept::Continue,
            (Op::Query(_), F::RowDescription | F::CommandComplete(_) | F::EmptyQuery) => {
                Accept::Continue
            }
            (Op::Function, F::FunctionResult) => Accept::Continue,
            (_, F::Error(_)) => Accept::Complete,
            (Op::Parse { .. }, F::ParseComplete)
            | (Op::Bind { .. }, F::BindComplete)
            | (Op::DescribeParams, F::ParameterDescription)
            | (Op::DescribeResult, F::RowDescription | F::NoData)
            | (Op::Execute { .. }, F::CommandComplete(_) | F::EmptyQuery | F::PortalSuspended)
            | (Op::Close(_), F::CloseComplete) => Accept::Complete,
            _ => Accept::No,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accept {
    No,
    /// Part of the answer; the op waits for more.
    Continue,
    /// The op's last answer.
    Complete,
}

#[derive(Debug)]
struct PendingOp {
    op: Op,
    /// `Unit::seq` of the exchange it belongs to.
    unit: u64,
}

/// Requests up to one awaiting a ReadyForQuery (or still open at the back).
#[derive(Debug)]
struct Group {
    /// Pending ops of the group (at the front of `ops` for the head group).
    ops: usize,
    /// Time of the group's first request byte.
    first_start_ns: u64,
    /// Loss epoch when the group was sent.
    epoch: u64,
    /// Ends with an op awaiting ReadyForQuery.
    closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UnitKind {
    Login,
    Query,
    Function,
    Extended,
}

/// One exchange under construction.
#[derive(Debug)]
struct Unit {
    seq: u64,
    kind: UnitKind,
    start_ns: u64,
    end_ns: u64,
    ops_left: u32,
    /// Still takes new ops (the back unit of an extended batch).
    open: bool,
    /// Login: the database named at startup.
    database: Option<String>,
    /// The statement of a Query, of the unit's Parse, then of the executed portal.
    stmt: Option<Arc<Stmt>>,
    has_parse: bool,
    executes: bool,
    error: Option<PgError>,
    returned: Option<u64>,
    affected: Option<u64>,
    /// An answer before the last was lost: counts are unreliable.
    damaged: bool,
    /// The last op got its answer (else it was lost or skipped).
    answered: bool,
    /// The backend skipped the whole exchange after an error in an earlier one.
    skipped: bool,
    /// The last answer's end was never seen.
    end_lost: bool,
}

/// Not recording: how the stitcher sees again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Blind {
    /// ReadyForQuery messages still owed to dropped requests (when `exact`).
    owed: u64,
    /// Dropped requests after the last dropped one awaiting ReadyForQuery.
    tail: bool,
    /// `owed` is exact; otherwise only an idle connection ends the blindness.
    exact: bool,
}

/// Per-connection stitcher.
#[derive(Debug)]
pub struct PgStitcher {
    limits: ParserLimits,
    /// The database named at startup (`db.namespace`), once the login succeeded.
    namespace: Option<Arc<str>>,
    statements: HashMap<PgName, Arc<Stmt>>,
    /// Portal → its statement (`None`: a statement we do not know).
    portals: HashMap<PgName, Option<Arc<Stmt>>>,
    ops: VecDeque<PendingOp>,
    groups: VecDeque<Group>,
    units: VecDeque<Unit>,
    next_seq: u64,
    /// Bumped whenever the pipeline reports lost or invalid bytes.
    epoch: u64,
    loss_mark: u64,
    pipelined: bool,
    blind: Option<Blind>,
    /// Time of the newest frame seen (ends blindness after an idle period).
    last_ns: u64,
    discarding: bool,
    /// An extended-protocol error before the group's Sync was sent: the backend ignores every
    /// message up to that Sync.
    skip_until_sync: bool,
}

impl PgStitcher {
    /// The database named at startup (`db.namespace`).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn max_ops(&self) -> usize {
        self.limits.max_queued_frames.max(16).saturating_mul(4)
    }

    /// Notices lost or invalid bytes reported by the pipeline since the last call.
    fn note_loss(&mut self, stats: &ParseStats) {
        let mark = stats
            .bytes_lost
            .wrapping_add(stats.invalid)
            .wrapping_add(stats.resyncs)
            .wrapping_add(stats.buffer_overflow_bytes);
        if mark != 0 && mark != self.loss_mark {
            self.epoch += 1;
        }
        self.loss_mark = mark;
    }

    fn statement(&self, text: &PgText) -> Arc<Stmt> {
        if text.sql.is_empty() && text.truncated {
            return Arc::new(Stmt::default());
        }
        let st = sql::statement(
            &text.sql,
            text.truncated,
            sql::Dialect::Postgres,
            self.limits.max_query_text_bytes,
        );
        Arc::new(Stmt {
            text: st.text,
            summary: st.summary,
        })
    }

    fn new_unit(&mut self, kind: UnitKind, start_ns: u64, end_ns: u64) {
        self.close_back();
        self.units.push_back(Unit {
            seq: self.next_seq,
            kind,
            start_ns,
            end_ns,
            ops_left: 0,
            open: kind == UnitKind::Extended,
            database: None,
            stmt: None,
            has_parse: false,
            executes: false,
            error: None,
            returned: None,
            affected: None,
            damaged: false,
            answered: false,
            skipped: false,
            end_lost: false,
        });
        self.next_seq += 1;
    }

    /// The back unit takes no more ops.
    fn close_back(&mut self) {
        if let Some(u) = self.units.back_mut() {
            u.open = false;
        }
    }

    /// The open extended unit at the back, created if there is none.
    fn extended_unit(&mut self, start_ns: u64, end_ns: u64) -> Option<&mut Unit> {
        if !self.units.back().is_some_and(|u| u.open) {
            self.new_unit(UnitKind::Extended, start_ns, end_ns);
        }
        self.units.back_mut()
    }

    fn push_op(&mut self, op: Op, start_ns: u64, end_ns: u64) {
        let awaits = op.awaits_ready();
        let Some(unit) = self.units.back_mut() else {
            return;
        };
        unit.ops_left += 1;
        unit.end_ns = unit.end_ns.max(end_ns);
        let seq = unit.seq;
        self.ops.push_back(PendingOp { op, unit: seq });
        match self.groups.back_mut() {
            Some(g) if !g.closed => {
                g.ops += 1;
                g.closed = awaits;
            }
            _ => self.groups.push_back(Group {
                ops: 1,
                first_start_ns: start_ns,
                epoch: self.epoch,
                closed: awaits,
            }),
        }
    }

    /// Turns one request frame into pending ops.
    fn absorb(&mut self, req: Timed<PgFrame>, stats: &mut ParseStats) {
        let Timed {
            start_ns,
            end_ns,
            frame,
            ..
        } = req;
        self.last_ns = self.last_ns.max(end_ns);
        self.discarding = false;
        let frame = match frame {
            PgFrame::AfterLoss(inner) => {
                // Statements or portals may have been defined or dropped in the lost bytes.
                self.statements.clear();
                self.portals.clear();
                *inner
            }
            f => f,
        };
        if self.blind.is_none() && self.ops.len() >= self.max_ops() {
            self.go_blind(true, stats);
        }
        if let Some(b) = self.blind.as_mut() {
            if frame.awaits_ready() {
                b.owed += 1;
                b.tail = false;
            } else {
                b.tail = true;
            }
            if matches!(
                frame,
                PgFrame::Query(_) | PgFrame::Execute { .. } | PgFrame::FunctionCall
            ) {
                stats.unmatched_requests += 1;
            }
            return;
        }
        if self.skip_until_sync {
            match frame {
                PgFrame::Parse { .. }
                | PgFrame::Bind { .. }
                | PgFrame::Describe { .. }
                | PgFrame::Execute { .. }
                | PgFrame::Close(_) => return,
                _ => self.skip_until_sync = false,
            }
        }
        match frame {
            PgFrame::Startup { database } => {
                self.new_unit(UnitKind::Login, start_ns, end_ns);
                if let Some(u) = self.units.back_mut() {
                    u.database = database;
                }
                self.push_op(Op::Login, start_ns, end_ns);
            }
            PgFrame::Query(text) => {
                let stmt = self.statement(&text);
                let forget = sql_forgets(&text);
                self.new_unit(UnitKind::Query, start_ns, end_ns);
                if let Some(u) = self.units.back_mut() {
                    u.stmt = Some(stmt);
                }
                self.push_op(Op::Query(forget), start_ns, end_ns);
            }
            PgFrame::FunctionCall => {
                self.new_unit(UnitKind::Function, start_ns, end_ns);
                self.push_op(Op::Function, start_ns, end_ns);
            }
            PgFrame::Parse { statement, text } => {
                // A second Parse before any Execute, or a Parse after one, starts an exchange.
                if self
                    .units
                    .back()
                    .is_some_and(|u| u.open && (u.has_parse || u.executes))
                {
                    self.close_back();
                }
                let stmt = self.statement(&text);
                if let Some(u) = self.extended_unit(start_ns, end_ns) {
                    u.has_parse = true;
                    u.stmt = Some(stmt.clone());
                }
                self.push_op(
                    Op::Parse {
                        name: statement,
                        stmt,
                    },
                    start_ns,
                    end_ns,
                );
            }
            PgFrame::Bind { portal, statement } => {
                self.after_execute_closes();
                self.extended_unit(start_ns, end_ns);
                self.push_op(Op::Bind { portal, statement }, start_ns, end_ns);
            }
            PgFrame::Describe { statement } => {
                self.after_execute_closes();
                self.extended_unit(start_ns, end_ns);
                if statement {
                    self.push_op(Op::DescribeParams, start_ns, end_ns);
                }
                self.push_op(Op::DescribeResult, start_ns, end_ns);
            }
            PgFrame::Execute { portal } => {
                self.after_execute_closes();
                if let Some(u) = self.extended_unit(start_ns, end_ns) {
                    u.executes = true;
                }
                self.push_op(Op::Execute { portal }, start_ns, end_ns);
            }
            PgFrame::Close(target) => {
                self.after_execute_closes();
                self.extended_unit(start_ns, end_ns);
                self.push_op(Op::Close(target), start_ns, end_ns);
            }
            PgFrame::Sync => {
                self.extended_unit(start_ns, end_ns);
                self.push_op(Op::Sync, start_ns, end_ns);
                self.close_back();
            }
            // Responses never reach the request queue.
            _ => {}
        }
    }

    /// An exchange that executed takes only the Sync right after its Execute.
    fn after_execute_closes(&mut self) {
        if self.units.back().is_some_and(|u| u.open && u.executes) {
            self.close_back();
        }
    }

    /// Matches one backend message to the op it answers.
    fn on_response(&mut self, r: Timed<PgFrame>, out: &mut Vec<Record>, stats: &mut ParseStats) {
        self.last_ns = self.last_ns.max(r.end_ns);
        if let Some(b) = self.blind.as_mut() {
            if matches!(r.frame, PgFrame::Ready(_)) {
                b.owed = b.owed.saturating_sub(1);
                if b.exact && b.owed == 0 && !b.tail {
                    self.blind = None;
                }
            }
            return;
        }
        // Two groups sent before this answer: pipelining, or an earlier answer was lost.
        if self
            .groups
            .get(1)
            .is_some_and(|g| g.first_start_ns <= r.start_ns)
        {
            let loss = self.groups.front().is_some_and(|g| g.epoch != self.epoch);
            if !loss {
                self.pipelined = true;
            } else if !self.pipelined {
                // At most one group is ever outstanding here: the newest one sent before this
                // answer is the one it answers; the older ones lost theirs.
                let newest = self
                    .groups
                    .iter()
                    .rposition(|g| g.first_start_ns <= r.start_ns)
                    .unwrap_or(0);
                for _ in 0..newest {
                    self.cancel_group(out, stats);
                }
            } else {
                self.go_blind(false, stats);
                return;
            }
        }
        let head_ops = self.groups.front().map_or(0, |g| g.ops);
        let found = self
            .ops
            .iter()
            .take(head_ops)
            .position(|p| p.op.accepts(&r.frame) != Accept::No);
        let Some(k) = found else {
            if !self.discarding {
                stats.unmatched_responses += 1;
            }
            self.discarding = true;
            return;
        };
        self.discarding = false;
        // The answers of the ops before it were lost.
        for _ in 0..k {
            self.drop_head_op(Lost::Answer, out, stats);
        }
        self.apply(r, out, stats);
    }

    /// Applies the head op's answer `r`.
    fn apply(&mut self, r: Timed<PgFrame>, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let Some(head) = self.ops.front() else {
            return;
        };
        let accept = head.op.accepts(&r.frame);
        let unit_seq = head.unit;
        let Some(ui) = self.unit_index(unit_seq) else {
            return;
        };
        if let Some(u) = self.units.get_mut(ui) {
            u.end_ns = u.end_ns.max(r.end_ns);
            u.end_lost = !r.complete;
            match &r.frame {
                PgFrame::Error(e) => u.error = Some(*e),
                PgFrame::CommandComplete(PgTag::Returned(n)) => {
                    u.returned = Some(u.returned.unwrap_or(0).saturating_add(*n));
                }
                PgFrame::CommandComplete(PgTag::Affected(n)) => {
                    u.affected = Some(u.affected.unwrap_or(0).saturating_add(*n));
                }
                _ => {}
            }
        }
        if let PgFrame::Ready(status) = r.frame
            && status == b'I'
        {
            // Out of any transaction: every portal is gone.
            self.portals.clear();
        }
        if accept != Accept::Complete {
            return;
        }
        // Ops of the head group after this one.
        let rest_of_group = self.groups.front().map_or(0, |g| g.ops.saturating_sub(1));
        let group_open = self.groups.front().is_some_and(|g| !g.closed);
        let Some(p) = self.pop_op() else {
            return;
        };
        let error = match &r.frame {
            PgFrame::Error(e) => Some(*e),
            _ => None,
        };
        self.effects(&p.op, ui, error.is_none(), true);
        if let Some(u) = self.units.get_mut(ui) {
            u.ops_left = u.ops_left.saturating_sub(1);
            u.answered = true;
        }
        match error {
            Some(e) if e.fatal => {
                // The backend closes the connection: nothing else will be answered.
                self.finish_front(out, stats);
                while !self.ops.is_empty() {
                    self.drop_head_op(Lost::Answer, out, stats);
                }
            }
            Some(_) if p.op.skipped_after_error() => {
                // The backend discards every message up to the next Sync, including those
                // not sent yet.
                let mut left = rest_of_group;
                while left > 0 && self.ops.front().is_some_and(|n| n.op.skipped_after_error()) {
                    self.drop_head_op(Lost::Skipped, out, stats);
                    left -= 1;
                }
                self.skip_until_sync = left == 0 && group_open;
            }
            _ => {}
        }
        self.finish_front(out, stats);
    }

    /// Index in `units` of the unit with sequence number `seq`.
    fn unit_index(&self, seq: u64) -> Option<usize> {
        let first = self.units.front()?.seq;
        usize::try_from(seq.checked_sub(first)?).ok()
    }

    /// Pops the head op, keeping the group counts in step.
    fn pop_op(&mut self) -> Option<PendingOp> {
        let p = self.ops.pop_front()?;
        if let Some(g) = self.groups.front_mut() {
            g.ops = g.ops.saturating_sub(1);
            if g.ops == 0 {
                self.groups.pop_front();
            }
        }
        Some(p)
    }

    /// Drops the head op without an answer.
    fn drop_head_op(&mut self, why: Lost, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let Some(p) = self.pop_op() else {
            return;
        };
        if let Some(ui) = self.unit_index(p.unit) {
            self.effects(&p.op, ui, false, false);
            if let Some(u) = self.units.get_mut(ui) {
                u.ops_left = u.ops_left.saturating_sub(1);
                u.answered = false;
                match why {
                    Lost::Answer => u.damaged = true,
                    // An exchange whose first op was skipped never ran; the one that failed
                    // keeps its error (its own later ops are skipped too).
                    Lost::Skipped => u.skipped |= u.error.is_none(),
                }
            }
        }
        self.finish_front(out, stats);
    }

    /// Drops the head group (its answers were lost).
    fn cancel_group(&mut self, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let n = self.groups.front().map_or(0, |g| g.ops);
        for _ in 0..n {
            self.drop_head_op(Lost::Answer, out, stats);
        }
    }

    /// What an op's outcome does to the remembered statements and portals. `ok`: answered
    /// without error; `answered`: an answer arrived at all.
    fn effects(&mut self, op: &Op, ui: usize, ok: bool, answered: bool) {
        match op {
            Op::Parse {
                name: Some(name),
                stmt,
            } => {
                if ok {
                    insert_bounded(&mut self.statements, *name, stmt.clone(), MAX_STATEMENTS);
                } else {
                    // Failed (the unnamed statement is dropped first) or unknown outcome.
                    self.statements.remove(name);
                }
            }
            Op::Bind { portal, statement } => {
                let stmt = statement.and_then(|s| self.statements.get(&s).cloned());
                if let Some(u) = self.units.get_mut(ui)
                    && !u.has_parse
                {
                    u.stmt = stmt.clone();
                }
                if let Some(portal) = portal {
                    if ok {
                        insert_bounded(&mut self.portals, *portal, stmt, MAX_PORTALS);
                    } else {
                        self.portals.remove(portal);
                    }
                }
            }
            Op::Execute { portal } if answered => {
                let stmt = portal.and_then(|p| self.portals.get(&p).cloned().flatten());
                if let Some(u) = self.units.get_mut(ui) {
                    u.stmt = stmt;
                }
            }
            Op::Close(PgTarget::Statement(name)) => match name {
                Some(n) => {
                    self.statements.remove(n);
                }
                None => self.statements.clear(),
            },
            Op::Close(PgTarget::Portal(name)) => match name {
                Some(n) => {
                    self.portals.remove(n);
                }
                None => self.portals.clear(),
            },
            Op::Query(forget) => {
                // A simple Query destroys the unnamed statement and portal (a lookup only when
                // something is remembered: a client of the simple protocol never hashes).
                if !self.statements.is_empty() {
                    self.statements.remove(&PgName::UNNAMED);
                }
                if !self.portals.is_empty() {
                    self.portals.remove(&PgName::UNNAMED);
                }
                match forget {
                    Forget::Nothing => {}
                    Forget::Names(names) => {
                        for n in names {
                            self.statements.remove(n);
                        }
                    }
                    Forget::All => self.statements.clear(),
                }
            }
            Op::Login => {
                self.statements.clear();
                self.portals.clear();
            }
            _ => {}
        }
    }

    /// Finishes the units at the front whose ops are all settled.
    fn finish_front(&mut self, out: &mut Vec<Record>, stats: &mut ParseStats) {
        while let Some(u) = self.units.front_mut() {
            if u.ops_left > 0 {
                return;
            }
            // Every op answered: later requests start a new exchange.
            u.open = false;
            let Some(u) = self.units.pop_front() else {
                return;
            };
            self.finish(u, out, stats);
        }
    }

    /// Turns a settled unit into a record (or not).
    fn finish(&mut self, u: Unit, out: &mut Vec<Record>, stats: &mut ParseStats) {
        let settled = u.answered || u.error.is_some();
        if u.kind == UnitKind::Login {
            if settled && u.error.is_none() && u.database.is_some() {
                self.namespace = u.database.map(Arc::from);
            }
            return;
        }
        if u.skipped {
            return;
        }
        let (operation, prepare_only) = match u.kind {
            UnitKind::Function => (Some("FUNCTION_CALL"), false),
            UnitKind::Extended if u.executes => (u.stmt.is_none().then_some("EXECUTE"), false),
            UnitKind::Extended if u.has_parse => (None, true),
            UnitKind::Extended => return,
            _ => (None, false),
        };
        if !settled {
            stats.unmatched_requests += 1;
            return;
        }
        let outcome = match u.error.filter(PgError::is_error) {
            Some(e) => DbOutcome::Error {
                code: e.code().unwrap_or_default(),
                detail: None,
            },
            None => DbOutcome::Success,
        };
        let counts = !u.damaged && !prepare_only;
        // A simple Query's statement is held by this unit alone: its strings move into the
        // record. A prepared statement's is shared with `statements`, so it is copied.
        let (query_text, query_summary) = u
            .stmt
            .map(|s| {
                let s = Arc::unwrap_or_clone(s);
                (s.text, s.summary)
            })
            .unwrap_or_default();
        stats.records += 1;
        out.push(Record {
            protocol: Protocol::Postgres,
            start_ns: u.start_ns,
            end_ns: u.end_ns.max(u.start_ns),
            incomplete: u.end_lost.then_some(Incomplete::EndLost),
            peer: None,
            exchange: Exchange::Db(DbExchange {
                namespace: self.namespace.clone(),
                query_text,
                query_summary,
                operation: operation.map(str::to_owned),
                prepare_only,
                batch_size: None,
                outcome,
                returned_rows: u.returned.filter(|_| counts),
                affected_rows: u.affected.filter(|_| counts),
            }),
        });
    }

    /// Drops everything pending and stops recording (see the module documentation).
    fn go_blind(&mut self, exact: bool, stats: &mut ParseStats) {
        let owed = self.ops.iter().filter(|p| p.op.awaits_ready()).count() as u64;
        let tail = self.groups.back().is_some_and(|g| !g.closed);
        self.drop_all(stats);
        self.blind = Some(Blind { owed, tail, exact });
    }

    /// Forgets every pending op and exchange, counting the exchanges that would have been
    /// recorded.
    fn drop_all(&mut self, stats: &mut ParseStats) {
        for u in self.units.drain(..) {
            let records = match u.kind {
                UnitKind::Login => false,
                UnitKind::Extended => (u.executes || u.has_parse) && !u.skipped,
                UnitKind::Query | UnitKind::Function => true,
            };
            if records {
                stats.unmatched_requests += 1;
            }
        }
        self.ops.clear();
        self.groups.clear();
    }
}

/// Why an op ends without its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lost {
    /// Its answer was lost (capture gap), or never came.
    Answer,
    /// The backend skipped it after an error earlier in its group.
    Skipped,
}

fn insert_bounded<V>(map: &mut HashMap<PgName, V>, key: PgName, value: V, max: usize) {
    if map.len() >= max
        && !map.contains_key(&key)
        && let Some(&evict) = map.keys().next()
    {
        map.remove(&evict);
    }
    map.insert(key, value);
}

/// Which prepared statements a simple Query's SQL drops (`DEALLOCATE [PREPARE] name|ALL`,
/// `PREPARE name`, which replaces nothing but makes the name ours to forget, `DISCARD`). Read
/// word by word without a SQL parser: a word inside a literal can only make us forget more.
fn sql_forgets(text: &PgText) -> Forget {
    if text.truncated {
        // The cut may hide one.
        return Forget::All;
    }
    let words = Words { s: &text.sql };
    let mut names = Vec::new();
    let mut expect_name = false;
    for (word, quoted) in words {
        if expect_name {
            expect_name = false;
            if !quoted && word.eq_ignore_ascii_case(b"PREPARE") {
                expect_name = true;
                continue;
            }
            if !quoted && word.eq_ignore_ascii_case(b"ALL") {
                return Forget::All;
            }
            // Unquoted names are folded to lower case by the server.
            let name = if quoted {
                word.to_vec()
            } else {
                word.to_ascii_lowercase()
            };
            match PgName::new(&name) {
                Some(n) if names.len() < MAX_FORGET => names.push(n),
                _ => return Forget::All,
            }
            continue;
        }
        if quoted {
            continue;
        }
        if word.eq_ignore_ascii_case(b"DISCARD") {
            return Forget::All;
        }
        if word.eq_ignore_ascii_case(b"DEALLOCATE") || word.eq_ignore_ascii_case(b"PREPARE") {
            expect_name = true;
        }
    }
    if expect_name {
        return Forget::All;
    }
    if names.is_empty() {
        Forget::Nothing
    } else {
        Forget::Names(names)
    }
}

/// [`WORD_CLASS`] values: not part of a word, a word byte, a double quote.
const OTHER: u8 = 0;
const WORD: u8 = 1;
const QUOTE: u8 = 2;

/// The class of every byte, so [`Words`] tests a byte with one load (it reads every simple
/// Query's SQL).
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build"
)]
const WORD_CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 {
            WORD
        } else if b == b'"' {
            QUOTE
        } else {
            OTHER
        };
        i += 1;
    }
    t
};

/// The [`WORD_CLASS`] of `b` (every byte has one).
fn class(b: u8) -> u8 {
    WORD_CLASS.get(usize::from(b)).copied().unwrap_or(OTHER)
}

/// SQL words: identifiers/keywords (`[A-Za-z0-9_$]+`, bytes ≥ 0x80 included) and `"quoted"`
/// identifiers (`""` inside stays doubled; such a name is simply not found).
struct Words<'a> {
    s: &'a [u8],
}

impl<'a> Iterator for Words<'a> {
    type Item = (&'a [u8], bool);

    fn next(&mut self) -> Option<(&'a [u8], bool)> {
        let word = |b: u8| class(b) == WORD;
        let start = self.s.iter().position(|&b| class(b) != OTHER)?;
        let rest = self.s.get(start..)?;
        if rest.first() == Some(&b'"') {
            let body = rest.get(1..)?;
            let end = body.iter().position(|&b| b == b'"').unwrap_or(body.len());
            self.s = body.get(end + 1..).unwrap_or_default();
            return Some((body.get(..end)?, true));
        }
        let end = rest.iter().position(|&b| !word(b)).unwrap_or(rest.len());
        self.s = rest.get(end..).unwrap_or_default();
        Some((rest.get(..end)?, false))
    }
}

impl Stitcher for PgStitcher {
    type Frame = PgFrame;
    type State = ();

    fn new(limits: ParserLimits) -> PgStitcher {
        PgStitcher {
            limits,
            namespace: None,
            statements: HashMap::new(),
            portals: HashMap::new(),
            ops: VecDeque::new(),
            groups: VecDeque::new(),
            units: VecDeque::new(),
            next_seq: 0,
            epoch: 0,
            loss_mark: 0,
            pipelined: false,
            blind: None,
            last_ns: 0,
            discarding: false,
            skip_until_sync: false,
        }
    }

    fn stitch(
        &mut self,
        reqs: &mut VecDeque<Timed<PgFrame>>,
        resps: &mut VecDeque<Timed<PgFrame>>,
        _state: &mut (),
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        self.note_loss(stats);
        loop {
            // Requests sent before the next answer (all of them when none is queued): an
            // answer never belongs to a request sent after it.
            while let Some(req) = reqs.front() {
                if resps.front().is_some_and(|r| req.start_ns > r.start_ns) {
                    break;
                }
                if let Some(req) = reqs.pop_front() {
                    self.absorb(req, stats);
                }
            }
            let Some(r) = resps.pop_front() else {
                return;
            };
            self.on_response(r, out, stats);
        }
    }

    fn expire(
        &mut self,
        reqs: &mut VecDeque<Timed<PgFrame>>,
        resps: &mut VecDeque<Timed<PgFrame>>,
        deadline_ns: u64,
        out: &mut Vec<Record>,
        stats: &mut ParseStats,
    ) {
        self.stitch(reqs, resps, &mut (), out, stats);
        if deadline_ns == u64::MAX {
            // The connection is gone.
            self.drop_all(stats);
            self.blind = None;
            return;
        }
        if self.blind.is_some() && self.last_ns < deadline_ns {
            // Idle for a whole request timeout: every answer owed has come or never will.
            self.blind = None;
        }
        if self
            .groups
            .front()
            .is_none_or(|g| g.first_start_ns >= deadline_ns)
        {
            return;
        }
        if self.pipelined {
            // Answers may still come for the expired requests, ahead of later ones.
            self.go_blind(true, stats);
            return;
        }
        while self
            .groups
            .front()
            .is_some_and(|g| g.first_start_ns < deadline_ns)
        {
            self.cancel_group(out, stats);
        }
    }
}

/// [`sql_forgets`] as text, for the tests.
#[cfg(test)]
pub(super) fn forgets_for_tests(text: &PgText) -> String {
    match sql_forgets(text) {
        Forget::Nothing => "nothing".into(),
        Forget::All => "all".into(),
        Forget::Names(names) => format!("{names:?}"),
    }
}
