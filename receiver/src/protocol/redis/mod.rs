//! Redis serialization protocol, RESP2 and RESP3
//! (<https://redis.io/docs/latest/develop/reference/protocol-spec/>), with the semantic
//! conventions for Redis (`docs/db/redis.md`, semconv v1.44.0, Development).
//!
//! **What becomes a span.** Every command that gets a reply: RESP arrays of bulk strings and
//! inline commands (`PING\r\n`, telnet-style). `db.operation.name` and the span name are the
//! command in upper case, two words for container commands (`CLIENT SETINFO`, `CONFIG GET`,
//! `SCRIPT LOAD`); names outside the command vocabulary ([`commands`]) are `_OTHER`, so span
//! names stay bounded whatever clients send. `db.query.text` is the command with every argument
//! replaced by `?` (`SET ? ?`, `HMSET ? ? ? ? ?`), none for `_OTHER`. An error reply (`-ERR …`,
//! RESP3 `!`) sets `db.response.status_code` and `error.type` to its prefix (`ERR`,
//! `WRONGTYPE`, `NOAUTH`; `_OTHER` when the message has no upper-case prefix), never its text.
//!
//! **Pipelining.** Any number of commands per write; replies are paired in order (RESP has
//! no ids). Replies that are not answers — RESP3 pushes, published messages on a RESP2
//! connection in subscribe mode, `MONITOR` output — are recognised and dropped (see
//! `stitch.rs`); commands silenced by `CLIENT REPLY OFF|SKIP` get no span.
//!
//! **Transactions.** `MULTI` … `EXEC` is one span from `MULTI`'s first byte to the last byte of
//! `EXEC`'s reply, named `MULTI <command>` when every queued command is the same one, else
//! `MULTI` (the conventions' naming for transactions), with `db.operation.batch.size` and the
//! queued commands' texts joined by `; `. Queued commands are not spans of their own: their
//! `QUEUED` acknowledgement is not their execution. `EXECABORT`, or an error among `EXEC`'s
//! results, makes the span an error with that prefix. `MULTI` … `DISCARD` is one span named
//! `DISCARD`. An `EXEC` whose `MULTI` was not seen (attached mid-transaction) is a span named
//! `EXEC`.
//!
//! **Pub/sub.** `SUBSCRIBE a b` is one span ending at the last confirmation; `UNSUBSCRIBE`
//! without arguments ends when the confirmations' count says nothing of its kind is left.
//! Published messages are never spans.
//!
//! **`db.namespace`** is the database index: `"0"` on a connection seen from its start, then
//! whatever a successful `SELECT` (or `RESET`, or a `SELECT` inside a transaction that ran
//! without error) set. A connection that predates the receiver has none until its first
//! `SELECT`; so has one where commands or replies were lost and a `SELECT` may have been among
//! them. The span of `SELECT` itself carries the index it was sent on.
//!
//! **Secrets.** Only a command's name is read, plus the second element for container commands,
//! `SELECT` and `HELLO` (its protocol version) and the third for `CLIENT REPLY`. `AUTH`'s and
//! `HELLO … AUTH`'s credentials, `CONFIG SET requirepass`'s value, `MIGRATE … AUTH` and every
//! key and value are counted and stepped over, never copied. Replies are classified by a few
//! fixed words; their values are never kept.
//!
//! **Known limits.**
//! - Mid-stream attach: reply bytes are ignored until the first reply chunk after the
//!   connection's next command, so the first span is that command's. A socket that predates the
//!   receiver is inferred only where its conversation turns (`ebpf_common::turn`), with the role
//!   its listening port gives (TCP; over a Unix socket an array alone may be a reply, so such a
//!   connection is inferred from an inline command or an unambiguous reply: `+OK`, `-ERR …`,
//!   `:1`, `$5`). A connection that only ever receives RESP3 pushes is never traced.
//! - Lost bytes (ring overflow, or an aggregate reply longer than the capture limit in one
//!   syscall): RESP cannot be resynchronised from the bytes, so replies are ignored until a
//!   reply chunk that follows a new command. This is exact for clients that wait for their
//!   replies (including batch pipelines like `redis-benchmark -P`); a client that streams
//!   commands without ever waiting may get one mispaired reply after a loss. The command whose
//!   reply was cut gets a span marked `response_end_lost`.
//! - Large bulk replies are followed by length without their bytes and end at their true last
//!   byte; aggregates are followed to [`REDIS_MAX_DEPTH`] levels.
//! - Streamed RESP3 strings and aggregates (`$?`, `*?`), which Redis never sends, are treated
//!   as garbage. Replication links (a replica's connection to its master) and RESP3 pushes on a
//!   connection seen mid-stream are not followed.
//! - `db.operation.name` is upper-cased (the conventions recommend the client's spelling, but
//!   a closed set needs one spelling); module commands (`JSON.GET`) are `_OTHER`.
//! - Pipelines (`PIPELINE` in the conventions) are a client-library notion: a passive tracer
//!   sees their commands, each its own span.

pub mod commands;
mod frame;
mod stitch;
mod types;

pub use frame::RedisFramer;
pub use stitch::{RedisStitcher, query_text};
pub use types::*;

#[cfg(test)]
mod tests;
