//! PostgreSQL frames, framing state and wire constants
//! (<https://www.postgresql.org/docs/current/protocol-message-formats.html>).

use std::cell::Cell;

pub use crate::protocol::Cursor;

/// The protocol major version of a StartupMessage (3.0 = 196608; 3.2 since PostgreSQL 18).
pub const PG_PROTOCOL_MAJOR: u32 = 3;
/// SSLRequest code (untyped, length 8).
pub const PG_SSL_REQUEST: u32 = 80_877_103;
/// GSSENCRequest code (untyped, length 8).
pub const PG_GSSENC_REQUEST: u32 = 80_877_104;
/// CancelRequest code (untyped; length 16, or up to 264 with 3.2's longer keys).
pub const PG_CANCEL_REQUEST: u32 = 80_877_102;
/// The server's own cap on a startup-phase packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const PG_MAX_STARTUP: u32 = 10_000;
/// Largest typed message length taken as PostgreSQL: the server refuses anything past 1 GiB
/// (`PQ_LARGE_MESSAGE_LIMIT`).
pub const PG_MAX_MESSAGE: u32 = 0x3fff_ffff;
/// Statement and portal names are `NAMEDATALEN - 1` bytes at most; a longer name is truncated
/// by the server, so we never track one (its text stays unknown).
pub const PG_MAX_NAME: usize = 63;
/// Most bytes of a database name kept.
pub const PG_MAX_DATABASE: usize = 256;
/// Bytes of an ErrorResponse read to find its SQLSTATE and severity (the server writes them
/// first: `S`, `V`, `C`, then the message).
pub const PG_ERROR_SCAN: usize = 512;
/// Bytes of a Bind read to find its portal and statement names.
pub const PG_BIND_SCAN: usize = 2 * (PG_MAX_NAME + 1);
/// Bytes of a CommandComplete tag kept (`INSERT 0 4294967295` and friends fit).
pub const PG_TAG_SCAN: usize = 64;

/// A statement or portal name (`""` is the unnamed one), at most [`PG_MAX_NAME`] bytes, kept
/// inline so frames and maps never allocate for it. Bytes past `len` are always zero, so
/// the derived equality is the names' equality, and hashing hashes only the name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PgName {
    len: u8,
    bytes: [u8; PG_MAX_NAME],
}

impl PgName {
    /// The unnamed statement or portal.
    pub const UNNAMED: PgName = PgName {
        len: 0,
        bytes: [0; PG_MAX_NAME],
    };

    /// `None` when longer than [`PG_MAX_NAME`] (the server truncates such names, so two of
    /// them may be one statement: never tracked).
    pub fn new(name: &[u8]) -> Option<PgName> {
        if name.len() > PG_MAX_NAME {
            return None;
        }
        let mut bytes = [0u8; PG_MAX_NAME];
        bytes.get_mut(..name.len())?.copy_from_slice(name);
        Some(PgName {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    pub fn is_unnamed(&self) -> bool {
        self.len == 0
    }
}

impl std::hash::Hash for PgName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl std::fmt::Debug for PgName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// SQL text kept from a Query or Parse: a prefix up to the framer's cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgText {
    pub sql: Vec<u8>,
    /// The message held more text than was kept.
    pub truncated: bool,
}

/// A CommandComplete tag (`SELECT 3`, `INSERT 0 1`, `UPDATE 2`, `CREATE TABLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgTag {
    /// `SELECT n`, `FETCH n`: rows returned.
    Returned(u64),
    /// `INSERT 0 n`, `UPDATE n`, `DELETE n`, `MERGE n`, `COPY n`, `MOVE n`: rows affected.
    Affected(u64),
    /// A tag without a row count (`CREATE TABLE`, `BEGIN`, `SET`).
    Other,
}

/// What an ErrorResponse tells a span: never its message, detail or hint (they can echo
/// literals of the query).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgError {
    /// Field `C`, five alphanumeric characters.
    pub sqlstate: Option<[u8; 5]>,
    /// Severity `FATAL` or `PANIC`: the server closes the connection after it.
    pub fatal: bool,
}

impl PgError {
    /// SQLSTATE class `02` and up is an error; `00` (success) and `01` (warning) are not
    /// (semantic conventions, PostgreSQL). An unknown SQLSTATE is an error.
    pub fn is_error(&self) -> bool {
        !matches!(self.sqlstate, Some([b'0', b'0' | b'1', ..]))
    }

    pub fn code(&self) -> Option<String> {
        self.sqlstate
            .map(|s| String::from_utf8_lossy(&s).into_owned())
    }
}

/// Which kind of object a Describe or Close names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgTarget {
    Statement(Option<PgName>),
    Portal(Option<PgName>),
}

/// What the framer cut off the stream. Startup-phase messages without a use for a span
/// (SSLRequest, GSSENCRequest, CancelRequest), authentication (`R`, `p`), BackendKeyData,
/// ParameterStatus, notices, notifications, DataRow and COPY data are skipped, not framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgFrame {
    // ---- frontend (requests) ----
    /// StartupMessage: only the database it names (the `database` parameter, else `user`,
    /// which is the server's default database).
    Startup {
        database: Option<String>,
    },
    /// Query (simple query protocol): one or more statements.
    Query(PgText),
    /// Parse: a statement name and its (parameterised) text; parameter types are not kept.
    Parse {
        statement: Option<PgName>,
        text: PgText,
    },
    /// Bind: the portal and the statement it binds; parameter values are never read.
    Bind {
        portal: Option<PgName>,
        statement: Option<PgName>,
    },
    /// Describe of a statement (answered `t` then `T`/`n`) or a portal (`T`/`n`).
    Describe {
        statement: bool,
    },
    /// Execute of a portal.
    Execute {
        portal: Option<PgName>,
    },
    /// Close of a statement or portal.
    Close(PgTarget),
    Sync,
    /// FunctionCall (fast-path); its arguments are never read.
    FunctionCall,
    /// The first request frame after bytes were lost in the request stream (a resync):
    /// statements and portals defined in the lost bytes are unknown from here on. Boxed: it
    /// happens only after a loss.
    AfterLoss(Box<PgFrame>),

    // ---- backend (responses) ----
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    ParameterDescription,
    RowDescription,
    CommandComplete(PgTag),
    EmptyQuery,
    PortalSuspended,
    FunctionResult,
    Error(PgError),
    /// ReadyForQuery with the transaction status (`I` idle, `T` in a transaction, `E` failed).
    Ready(u8),
}

impl PgFrame {
    /// Whether this request is answered by a ReadyForQuery (it ends a group of requests).
    pub fn awaits_ready(&self) -> bool {
        match self {
            PgFrame::AfterLoss(f) => f.awaits_ready(),
            f => matches!(
                f,
                PgFrame::Startup { .. } | PgFrame::Query(_) | PgFrame::Sync | PgFrame::FunctionCall
            ),
        }
    }
}

/// Per-connection framing state, shared by both directions.
#[derive(Debug, Default)]
pub struct PgFramingState {
    /// An SSLRequest or GSSENCRequest went out: the server's next byte is its one-byte answer
    /// (`N` no, `S` TLS, `G` GSSAPI).
    pub awaiting_encryption_answer: bool,
    /// The server accepted TLS or GSSAPI encryption: everything after is ciphertext.
    pub encrypted: bool,
    /// Set when the pipeline resynced the request stream (`find_boundary` only sees `&self`):
    /// the next request frame is wrapped in [`PgFrame::AfterLoss`].
    pub request_resynced: Cell<bool>,
}
