//! MySQL client/server protocol (also spoken by MariaDB).
//!
//! Spec: packets <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html>,
//! connection phase <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html>,
//! command phase <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html>,
//! generic responses (OK, ERR, EOF) <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_response_packets.html>,
//! text result sets <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html>,
//! prepared statements <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase_ps.html>.
//!
//! [`MysqlFramer`] cuts one frame per packet and keeps only a bounded prefix: SQL text up to a
//! cap, a statement id, a schema name, or the first bytes of a server packet. It follows the
//! connection phase (Protocol::HandshakeV10 → HandshakeResponse41 → authentication → command
//! phase) for the capability flags and the database named at connect. [`MysqlStitcher`] pairs a
//! command with its answer packets by sequence id and turns the pair into one record.
//!
//! Supported: `COM_QUERY` (text result sets, OK, ERR, multi-statements and `CALL` with
//! SERVER_MORE_RESULTS_EXISTS, LOCAL INFILE answered by OK/ERR), `COM_STMT_PREPARE` (statement
//! id → text), `COM_STMT_EXECUTE` (binary result sets, cursors), `COM_STMT_FETCH`,
//! `COM_STMT_CLOSE` and `COM_QUIT` (no answer: recorded at once), `COM_STMT_RESET`,
//! `COM_INIT_DB` and `USE` (namespace), `COM_PING`, `COM_CHANGE_USER`, `COM_RESET_CONNECTION`
//! and the other single-answer commands; CLIENT_DEPRECATE_EOF on, off or unknown; 16 MiB
//! continuation packets (joined by skipping, never buffered); CLIENT_QUERY_ATTRIBUTES without
//! attribute values.
//!
//! Secrets: the auth response of HandshakeResponse41, AuthSwitchRequest/Response, AuthMoreData
//! and every caching_sha2_password / sha256 exchange are skipped without being copied; the
//! username is stepped over; statement parameter values (`COM_STMT_EXECUTE`,
//! `COM_STMT_SEND_LONG_DATA`) and query attribute values are never read.
//!
//! Known limits:
//! - Mid-connection attach: the namespace is unknown until `COM_INIT_DB` / `USE`; statements
//!   prepared before attach have no text; DEPRECATE_EOF is inferred from packet shapes.
//! - TLS without uprobes: after an SSLRequest the bytes are ciphertext and are resynced away.
//! - LOCAL INFILE: the file content the client sends is not MySQL framing and costs a resync
//!   (counted); the exchange still ends at the server's OK/ERR.
//! - `COM_QUERY` with query attribute values: the text cannot be located and is not exported.
//! - A command over 16 MiB is recorded, but its text is cut at the cap (fail closed if the cut
//!   falls inside a literal).
//! - `COM_BINLOG_DUMP` and replication streams are not parsed.
//! - Pairing trusts capture timestamps: a server packet stamped before a request cannot answer
//!   it, and one stamped after the *next* request means the earlier request got no answer. A
//!   request whose answer is lost stays pending until the next answered request or `expire`.
//! - A loss inside an answer (gap in the stream) still ends the exchange at the next terminator,
//!   but row and affected counts are then omitted (sequence ids show the hole).
//! - The server greeting must be seen for the handshake to be parsed; a parser created after it
//!   treats the connection as attached mid-stream.
//! - MariaDB's extended capabilities, `COM_STMT_BULK_EXECUTE` answers beyond OK/ERR/result sets,
//!   and CLIENT_OPTIONAL_RESULTSET_METADATA are handled only as far as their packet shapes
//!   match the MySQL ones.

mod frame;
mod stitch;
pub mod types;

#[cfg(test)]
mod tests;

pub use frame::MysqlFramer;
pub use stitch::MysqlStitcher;
pub use types::{MysqlArg, MysqlCommand, MysqlFrame, MysqlFramingState, MysqlLogin, MysqlPacket};
