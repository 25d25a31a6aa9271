//! MySQL frames, framing state and wire helpers.

pub use crate::protocol::Cursor;

/// Payload length of a packet that continues in the next one (16 MiB - 1).
pub const MYSQL_MAX_PACKET: u32 = 0x00FF_FFFF;
/// Bytes of a response payload kept in a frame: enough for OK (header + 2 length-encoded ints +
/// status), ERR (code + SQLSTATE), EOF, COM_STMT_PREPARE_OK and a column count.
pub const MYSQL_HEAD_BYTES: usize = 24;
/// Most bytes of a schema name kept (`COM_INIT_DB`, handshake database).
pub const MYSQL_MAX_SCHEMA_BYTES: usize = 256;
/// Most bytes of a HandshakeResponse41 we read to reach the database name.
pub const MYSQL_MAX_HANDSHAKE_BYTES: usize = 8 * 1024;

// Capability flags (https://dev.mysql.com/doc/dev/mysql-server/latest/group__group__cs__capabilities__flags.html).
pub const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
pub const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
pub const CLIENT_SSL: u32 = 0x0000_0800;
pub const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;
pub const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
pub const CLIENT_OPTIONAL_RESULTSET_METADATA: u32 = 0x0200_0000;
pub const CLIENT_QUERY_ATTRIBUTES: u32 = 0x0800_0000;

// Server status flags carried by OK and EOF packets.
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;

// Command bytes (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html).
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_REFRESH: u8 = 0x07;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_INFO: u8 = 0x0a;
pub const COM_PROCESS_KILL: u8 = 0x0c;
pub const COM_DEBUG: u8 = 0x0d;
pub const COM_PING: u8 = 0x0e;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1a;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_RESET_CONNECTION: u8 = 0x1f;
/// MariaDB `COM_STMT_BULK_EXECUTE` (statement id like `COM_STMT_EXECUTE`).
pub const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

/// What the framer cut off the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MysqlFrame {
    /// A command packet (sequence id 0) from the client.
    Command(MysqlCommand),
    /// The end of the client's HandshakeResponse41: negotiated capabilities and the database
    /// named at connect. The auth response is never kept.
    Login(MysqlLogin),
    /// A server packet in the command phase (or the OK/ERR that ends authentication).
    Packet(MysqlPacket),
    /// A packet continuing a 16 MiB one (server side; only its sequence id matters).
    Continuation { seq: u8 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MysqlCommand {
    pub code: u8,
    pub arg: MysqlArg,
    /// The command packet was 16 MiB - 1 long and continues (the answer's first sequence id
    /// is then not 1).
    pub continued: bool,
}

/// The part of a command a span needs. Statement parameters and auth data are never kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MysqlArg {
    None,
    /// SQL text of `COM_QUERY` / `COM_STMT_PREPARE`, capped; `truncated` when the packet held
    /// more. `None` bytes when the text could not be located (query attributes with values).
    Text {
        sql: Option<Vec<u8>>,
        truncated: bool,
    },
    /// Statement id of `COM_STMT_EXECUTE`, `_CLOSE`, `_RESET`, `_FETCH`, `_SEND_LONG_DATA`.
    Statement(u32),
    /// Schema of `COM_INIT_DB`, or the database of `COM_CHANGE_USER` when found.
    Schema(Option<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MysqlLogin {
    /// Client capabilities, intersected with the server's when the greeting was seen.
    pub capabilities: u32,
    pub database: Option<String>,
}

/// One server packet: sequence id, payload length and the first bytes of the payload.
#[derive(Clone, PartialEq, Eq)]
pub struct MysqlPacket {
    pub seq: u8,
    pub len: u32,
    head: [u8; MYSQL_HEAD_BYTES],
    head_len: u8,
}

impl MysqlPacket {
    pub fn new(seq: u8, len: u32, payload_prefix: &[u8]) -> MysqlPacket {
        let mut head = [0u8; MYSQL_HEAD_BYTES];
        let n = payload_prefix.len().min(MYSQL_HEAD_BYTES);
        if let (Some(dst), Some(src)) = (head.get_mut(..n), payload_prefix.get(..n)) {
            dst.copy_from_slice(src);
        }
        MysqlPacket {
            seq,
            len,
            head,
            head_len: n as u8,
        }
    }

    /// The kept prefix of the payload.
    pub fn head(&self) -> &[u8] {
        self.head
            .get(..usize::from(self.head_len))
            .unwrap_or_default()
    }

    /// First payload byte (the packet "header": 0x00 OK, 0xFF ERR, 0xFE EOF, …).
    pub fn first(&self) -> Option<u8> {
        self.head().first().copied()
    }

    /// EOF_Packet or OK_Packet with a 0xFE header, told from a row that starts with a
    /// length-encoded string ≥ 16 MiB (which needs a 0xFFFFFF packet).
    pub fn is_eof_or_ok_fe(&self) -> bool {
        self.first() == Some(0xfe) && self.len < MYSQL_MAX_PACKET
    }

    /// The short (pre-DEPRECATE_EOF) EOF_Packet: header, warnings, status (length 5; < 9).
    pub fn is_short_eof(&self) -> bool {
        self.first() == Some(0xfe) && self.len < 7
    }

    /// Status flags of an OK (0x00 or 0xFE header) or EOF packet.
    pub fn status(&self) -> Option<u16> {
        let mut c = Cursor::new(self.head());
        let first = c.u8()?;
        if first == 0xfe && self.len < 7 {
            c.skip(2)?; // warnings
            return c.u16_le();
        }
        lenenc(&mut c)?; // affected rows
        lenenc(&mut c)?; // last insert id
        c.u16_le()
    }

    /// Affected rows of an OK packet.
    pub fn affected_rows(&self) -> Option<u64> {
        let mut c = Cursor::new(self.head());
        c.u8()?;
        lenenc(&mut c)
    }

    /// (error code, SQLSTATE) of an ERR packet.
    pub fn error(&self) -> Option<(u16, Option<String>)> {
        let mut c = Cursor::new(self.head());
        if c.u8()? != 0xff {
            return None;
        }
        let code = c.u16_le()?;
        let state = match (c.u8(), c.take(5)) {
            (Some(b'#'), Some(s)) if s.iter().all(u8::is_ascii_alphanumeric) => {
                Some(String::from_utf8_lossy(s).into_owned())
            }
            _ => None,
        };
        Some((code, state))
    }
}

impl std::fmt::Debug for MysqlPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlPacket")
            .field("seq", &self.seq)
            .field("len", &self.len)
            .field("head", &self.head())
            .finish()
    }
}

/// Where the connection is in its life (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_lifecycle.html).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MysqlPhase {
    /// Nothing seen yet: a greeting may come, or we attached mid-connection and commands come.
    #[default]
    Start,
    /// Server greeting seen; the client's HandshakeResponse (or SSLRequest) comes next.
    Greeted,
    /// Authentication exchange: every packet is skipped (secrets) until the server's OK/ERR.
    Auth,
    /// Command phase.
    Command,
}

/// Per-connection framing state, shared by both directions.
#[derive(Clone, Debug, Default)]
pub struct MysqlFramingState {
    pub phase: MysqlPhase,
    /// Capabilities from the server greeting.
    pub server_capabilities: Option<u32>,
    /// Negotiated capabilities (after the HandshakeResponse41).
    pub capabilities: Option<u32>,
    /// The last request / response packet had length 0xFFFFFF: the next one continues it.
    pub request_continues: bool,
    pub response_continues: bool,
    /// Whether authentication entered from `COM_CHANGE_USER` (its OK/ERR ends that command).
    pub auth_from_change_user: bool,
}

/// Length-encoded integer (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_integers.html).
pub fn lenenc(c: &mut Cursor<'_>) -> Option<u64> {
    match c.u8()? {
        n @ 0..=0xfa => Some(u64::from(n)),
        0xfc => c.u16_le().map(u64::from),
        0xfd => c.u24_le().map(u64::from),
        0xfe => c.u64_le(),
        _ => None,
    }
}

/// A schema name as text of at most [`MYSQL_MAX_SCHEMA_BYTES`], or `None` when empty or
/// holding NUL, which no MySQL identifier may contain (Schema Object Names: "ASCII NUL
/// (U+0000) … not permitted in quoted or unquoted identifiers"): such bytes are not a schema.
pub fn schema_name(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || bytes.contains(&0) {
        return None;
    }
    Some(crate::protocol::text_within(bytes, MYSQL_MAX_SCHEMA_BYTES))
}

/// Name of a command (`db.operation.name` of commands without SQL text).
pub fn command_name(code: u8) -> &'static str {
    match code {
        COM_QUIT => "QUIT",
        COM_INIT_DB => "INIT_DB",
        COM_QUERY => "QUERY",
        COM_FIELD_LIST => "FIELD_LIST",
        COM_REFRESH => "REFRESH",
        COM_STATISTICS => "STATISTICS",
        COM_PROCESS_INFO => "PROCESS_INFO",
        COM_PROCESS_KILL => "PROCESS_KILL",
        COM_DEBUG => "DEBUG",
        COM_PING => "PING",
        COM_CHANGE_USER => "CHANGE_USER",
        COM_STMT_PREPARE => "STMT_PREPARE",
        COM_STMT_EXECUTE => "STMT_EXECUTE",
        COM_STMT_SEND_LONG_DATA => "STMT_SEND_LONG_DATA",
        COM_STMT_CLOSE => "STMT_CLOSE",
        COM_STMT_RESET => "STMT_RESET",
        COM_SET_OPTION => "SET_OPTION",
        COM_STMT_FETCH => "STMT_FETCH",
        COM_RESET_CONNECTION => "RESET_CONNECTION",
        COM_STMT_BULK_EXECUTE => "STMT_BULK_EXECUTE",
        _ => "UNKNOWN",
    }
}

/// Commands we recognise; any other first byte of a sequence-0 client packet is not MySQL.
pub fn is_known_command(code: u8) -> bool {
    command_name(code) != "UNKNOWN"
}
