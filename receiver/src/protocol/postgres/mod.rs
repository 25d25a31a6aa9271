//! PostgreSQL frontend/backend protocol, version 3 (PostgreSQL 7.4 and later).
//!
//! Spec: message flow <https://www.postgresql.org/docs/current/protocol-flow.html>, message
//! formats <https://www.postgresql.org/docs/current/protocol-message-formats.html>, error fields
//! <https://www.postgresql.org/docs/current/protocol-error-fields.html>, SQLSTATE codes
//! <https://www.postgresql.org/docs/current/errcodes-appendix.html>.
//!
//! [`PgFramer`] cuts one frame per message and keeps only what a span needs (SQL text up to a
//! cap, statement and portal names, a CommandComplete tag, an ErrorResponse's SQLSTATE and
//! severity, the startup's database). [`PgStitcher`] pairs each request message with the
//! backend messages that answer it, in order, and cuts the traffic into exchanges.
//!
//! Supported:
//! - the startup: StartupMessage (3.0 and 3.2; `db.namespace` = its `database` parameter, else
//!   `user`, the server's default), SSLRequest and GSSENCRequest refused with `N` and followed by
//!   a plaintext startup, authentication of any kind (skipped), the login's ReadyForQuery;
//! - simple Query: one exchange per Query message, however many statements it holds, from its
//!   first byte to the last byte of its ReadyForQuery, with row counts summed over its
//!   CommandComplete tags and the first error's SQLSTATE; COPY inside it (data skipped);
//! - extended protocol: Parse, Bind, Describe (statement and portal), Execute (with a row limit
//!   and PortalSuspended), Close, Sync, Flush; named and unnamed statements and portals;
//!   pipelined batches (several Executes before one Sync). **Rule:** each Execute is one
//!   execution exchange covering the messages since the previous exchange and the Sync right
//!   after it; Parse (+ Describe) + Sync without an Execute is one *prepare-only* exchange
//!   (`DbExchange::prepare_only`, which the span layer names `PREPARE {summary}` with
//!   `db.operation.name = PREPARE`); Parse + Bind + Execute + Sync is one execution, not a
//!   prepare and an execution. An execution carries the parameterised text of its portal's
//!   statement, remembered per connection (bounded); a statement we never saw prepared has no
//!   text and `db.operation.name = EXECUTE`;
//! - FunctionCall (`db.operation.name = FUNCTION_CALL`);
//! - errors: `db.response.status_code` = `error.type` = the SQLSTATE, an error only for class
//!   `02` and up (semantic conventions); a FATAL error ends the connection's exchanges.
//!
//! Row counts: `returned_rows` from `SELECT n` / `FETCH n` tags, `affected_rows` from `INSERT`,
//! `UPDATE`, `DELETE`, `MERGE`, `COPY`, `MOVE`; none after a PortalSuspended (no tag) or a loss.
//! DataRows are skipped unread (not even counted).
//!
//! Secrets: PasswordMessage (cleartext or MD5), SASLInitialResponse, SASLResponse and
//! GSSResponse (`p`) are skipped without a byte being read, so are the server's
//! authentication requests (SASL data), BackendKeyData and CancelRequest (the cancel key),
//! Bind parameter values, FunctionCall arguments, DataRow and COPY data, ErrorResponse and
//! NoticeResponse texts (they can echo literals). The only startup parameter read is the
//! database (or the user when it names none). SQL text goes through the sanitiser (literals →
//! `?`, `$1` parameters kept, fail closed).
//!
//! Known limits:
//! - Mid-connection attach (connections that predate the receiver): no `db.namespace` (the
//!   startup was not seen); statements prepared before the attach have no text; a request whose
//!   answer was already under way when we attached gets no record.
//! - TLS and GSSAPI encryption (`S`/`G` answers) are not decrypted: such a connection is
//!   skipped to its end (its bytes still reach user space).
//! - Loss (capture gaps, ring overflow): answers carry no request id. A loss inside an answer
//!   still ends the exchange at the right message, with counts omitted; an exchange whose last
//!   answer was lost gets no record. On a pipelining connection a loss makes pairing ambiguous:
//!   nothing is recorded until the connection has been idle for the request timeout. A loss in
//!   the request stream forgets every remembered statement.
//! - A request pending longer than the request timeout is given up; on a pipelining
//!   connection, records resume once the answers owed to it have arrived.
//! - A Query longer than the text cap is recorded, with its text cut (fail closed inside a
//!   literal); it also forgets every remembered statement (a cut `DEALLOCATE` could hide).
//! - Replication connections (CopyBoth streams) and the COPY sub-protocol inside an extended
//!   query are framed but not interpreted beyond their completion.
//! - `db.namespace` is the database only: the schema part of `{database}|{schema}` lives in the
//!   server's `search_path`, which the wire does not show.

mod frame;
mod stitch;
pub mod types;

#[cfg(test)]
mod tests;

pub use frame::PgFramer;
pub use stitch::PgStitcher;
pub use types::{PgError, PgFrame, PgFramingState, PgName, PgTag, PgTarget, PgText};
