//! `MysqlFramer`: cuts MySQL packets off a byte stream.
//!
//! Every packet is a 3-byte little-endian payload length and a sequence id
//! (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html). The
//! framer emits one frame per packet and keeps only a bounded prefix of the payload: the SQL
//! text of `COM_QUERY`/`COM_STMT_PREPARE` up to a cap, a statement id, a schema name, or the
//! first [`MYSQL_HEAD_BYTES`] of a server packet. The rest of a packet is skipped by the
//! pipeline as it arrives, so a wire length never sizes an allocation.
//!
//! The framer also follows the connection phase: the server greeting (Protocol::HandshakeV10)
//! gives the server's capabilities, HandshakeResponse41 gives the client's and the database;
//! everything after it until the server's OK/ERR is authentication and is skipped unread.

use crate::protocol::mysql::types::*;
use crate::protocol::{Framer, MessageKind, Parse, ParserLimits};

/// Frames MySQL packets. Holds only the caps derived from [`ParserLimits`].
#[derive(Clone, Copy, Debug)]
pub struct MysqlFramer {
    /// Most SQL bytes kept from one command (before sanitising).
    text_cap: usize,
    /// Most bytes of a handshake / `COM_CHANGE_USER` packet read.
    handshake_cap: usize,
}

impl Default for MysqlFramer {
    fn default() -> Self {
        <MysqlFramer as Framer>::new(ParserLimits::default())
    }
}

impl MysqlFramer {
    fn parse_request(
        &self,
        plen: u32,
        seq: u8,
        payload: &[u8],
        state: &mut MysqlFramingState,
        prefix: Prefix,
    ) -> Parse<MysqlFrame> {
        let total = 4 + plen as usize;
        if state.request_continues {
            state.request_continues = plen == MYSQL_MAX_PACKET;
            return Parse::Skip { len: total };
        }
        if plen == 0 {
            return Parse::Invalid;
        }
        match state.phase {
            MysqlPhase::Greeted if seq != 0 => {
                let Some(p) = prefix.get(payload, plen, self.handshake_cap) else {
                    return Parse::Incomplete;
                };
                match handshake_response(p, plen, state) {
                    Some(login) => {
                        state.request_continues = plen == MYSQL_MAX_PACKET;
                        Parse::Frame {
                            frame: MysqlFrame::Login(login),
                            len: total,
                        }
                    }
                    // SSLRequest: the real HandshakeResponse follows (over TLS).
                    None => Parse::Skip { len: total },
                }
            }
            // Auth-response continuation, AuthSwitchResponse, caching_sha2 data: secrets.
            MysqlPhase::Auth if seq != 0 => Parse::Skip { len: total },
            _ if seq != 0 => Parse::Invalid,
            _ => self.parse_command(plen, payload, state, prefix),
        }
    }

    fn parse_command(
        &self,
        plen: u32,
        payload: &[u8],
        state: &mut MysqlFramingState,
        prefix: Prefix,
    ) -> Parse<MysqlFrame> {
        let total = 4 + plen as usize;
        let Some(&code) = payload.first() else {
            return Parse::Incomplete;
        };
        if !is_known_command(code) {
            return Parse::Invalid;
        }
        let arg = match code {
            COM_QUERY | COM_STMT_PREPARE => {
                let Some(p) = prefix.get(payload, plen, self.text_cap.saturating_add(1)) else {
                    return Parse::Incomplete;
                };
                let body = p.get(1..).unwrap_or_default();
                let sql = if code == COM_QUERY {
                    query_text(body, state.capabilities)
                } else {
                    Some(body)
                };
                MysqlArg::Text {
                    sql: sql.map(<[u8]>::to_vec),
                    truncated: (plen as usize) > p.len(),
                }
            }
            COM_INIT_DB => {
                let Some(p) = prefix.get(payload, plen, MYSQL_MAX_SCHEMA_BYTES + 1) else {
                    return Parse::Incomplete;
                };
                MysqlArg::Schema(schema_name(p.get(1..).unwrap_or_default()))
            }
            COM_STMT_EXECUTE
            | COM_STMT_CLOSE
            | COM_STMT_RESET
            | COM_STMT_FETCH
            | COM_STMT_SEND_LONG_DATA
            | COM_STMT_BULK_EXECUTE => {
                if plen < 5 {
                    return Parse::Invalid;
                }
                let Some(p) = payload.get(..5) else {
                    return Parse::Incomplete;
                };
                // Parameter values after the id are never read.
                match Cursor::new(p.get(1..).unwrap_or_default()).u32_le() {
                    Some(id) => MysqlArg::Statement(id),
                    None => return Parse::Invalid,
                }
            }
            COM_CHANGE_USER => {
                let Some(p) = prefix.get(payload, plen, self.handshake_cap) else {
                    return Parse::Incomplete;
                };
                state.phase = MysqlPhase::Auth;
                state.auth_from_change_user = true;
                MysqlArg::Schema(change_user_schema(p.get(1..).unwrap_or_default(), state))
            }
            _ => MysqlArg::None,
        };
        if state.phase != MysqlPhase::Auth {
            state.phase = MysqlPhase::Command;
        }
        state.request_continues = plen == MYSQL_MAX_PACKET;
        Parse::Frame {
            frame: MysqlFrame::Command(MysqlCommand {
                code,
                arg,
                continued: plen == MYSQL_MAX_PACKET,
            }),
            len: total,
        }
    }

    fn parse_response(
        &self,
        plen: u32,
        seq: u8,
        payload: &[u8],
        state: &mut MysqlFramingState,
        prefix: Prefix,
    ) -> Parse<MysqlFrame> {
        let total = 4 + plen as usize;
        if state.response_continues {
            state.response_continues = plen == MYSQL_MAX_PACKET;
            return Parse::Frame {
                frame: MysqlFrame::Continuation { seq },
                len: total,
            };
        }
        if plen == 0 {
            return Parse::Invalid;
        }
        let Some(&first) = payload.first() else {
            return Parse::Incomplete;
        };
        match state.phase {
            MysqlPhase::Start if seq == 0 && first == 0x0a && (32..=1024).contains(&plen) => {
                let Some(p) = prefix.get(payload, plen, 1024) else {
                    return Parse::Incomplete;
                };
                if let Some(caps) = greeting_capabilities(p) {
                    state.server_capabilities = Some(caps);
                    state.phase = MysqlPhase::Greeted;
                    return Parse::Skip { len: total };
                }
            }
            // Greeting-time ERR (e.g. too many connections) or anything before the client
            // answers the greeting.
            MysqlPhase::Start if seq == 0 && first == 0xff => return Parse::Skip { len: total },
            MysqlPhase::Greeted => return Parse::Skip { len: total },
            // AuthSwitchRequest (0xFE), AuthMoreData (0x01: caching_sha2 fast/full auth, RSA
            // key) are skipped; OK/ERR ends the connection phase and answers the Login frame.
            // Outside COM_CHANGE_USER, authentication packets from the server have seq >= 2.
            MysqlPhase::Auth if seq != 1 || state.auth_from_change_user => {
                if first != 0x00 && first != 0xff {
                    return Parse::Skip { len: total };
                }
                state.phase = MysqlPhase::Command;
                state.auth_from_change_user = false;
            }
            _ => {}
        }
        let Some(p) = prefix.get(payload, plen, MYSQL_HEAD_BYTES) else {
            return Parse::Incomplete;
        };
        if state.phase == MysqlPhase::Auth {
            // seq 1 from the server can only answer a command: authentication is over.
            state.phase = MysqlPhase::Command;
        }
        state.response_continues = plen == MYSQL_MAX_PACKET;
        Parse::Frame {
            frame: MysqlFrame::Packet(MysqlPacket::new(seq, plen, p)),
            len: total,
        }
    }
}

impl Framer for MysqlFramer {
    type Frame = MysqlFrame;
    type State = MysqlFramingState;

    fn new(limits: ParserLimits) -> MysqlFramer {
        MysqlFramer {
            text_cap: limits.raw_text_cap(),
            handshake_cap: MYSQL_MAX_HANDSHAKE_BYTES.min(limits.frame_room()),
        }
    }

    fn parse(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut MysqlFramingState,
    ) -> Parse<MysqlFrame> {
        self.parse_with(kind, buf, state, false)
    }

    fn find_boundary(
        &self,
        kind: MessageKind,
        buf: &[u8],
        from: usize,
        _state: &MysqlFramingState,
    ) -> Option<usize> {
        let at = |i: usize| buf.get(i..).unwrap_or_default();
        match kind {
            MessageKind::Request => (from..buf.len()).find(|&i| {
                let rest = at(i);
                rest.len() < 4 || plausible_request(rest)
            }),
            // Prefer a verified chain of server packets; else the first unverifiable candidate.
            MessageKind::Response => (from..buf.len())
                .find(|&i| plausible_response(at(i)) == Chain::Verified)
                .or_else(|| {
                    (from..buf.len()).find(|&i| {
                        let rest = at(i);
                        rest.len() < 4 || plausible_response(rest) == Chain::Unverified
                    })
                }),
        }
    }

    fn parse_before_gap(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut MysqlFramingState,
    ) -> Parse<MysqlFrame> {
        self.parse_with(kind, buf, state, true)
    }
}

impl MysqlFramer {
    /// `short`: the bytes after `buf` were not captured, so cut a frame from what is there.
    fn parse_with(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut MysqlFramingState,
        short: bool,
    ) -> Parse<MysqlFrame> {
        let mut c = Cursor::new(buf);
        let (Some(plen), Some(seq)) = (c.u24_le(), c.u8()) else {
            return Parse::Incomplete;
        };
        let payload = c.rest();
        let payload = payload.get(..plen as usize).unwrap_or(payload);
        let prefix = Prefix { short };
        match kind {
            MessageKind::Request => self.parse_request(plen, seq, payload, state, prefix),
            MessageKind::Response => self.parse_response(plen, seq, payload, state, prefix),
        }
    }
}

/// How much of a payload the framer may use.
#[derive(Clone, Copy)]
struct Prefix {
    /// The payload's tail was not captured: use what there is.
    short: bool,
}

impl Prefix {
    /// The first `min(plen, want)` payload bytes, or `None` if they are not all buffered yet
    /// (when not `short`).
    fn get(self, payload: &[u8], plen: u32, want: usize) -> Option<&[u8]> {
        let n = (plen as usize).min(want);
        match payload.get(..n) {
            Some(p) => Some(p),
            None if self.short => Some(payload),
            None => None,
        }
    }
}

/// Locates the SQL in a `COM_QUERY` payload (after the command byte). With
/// CLIENT_QUERY_ATTRIBUTES the text follows `parameter_count` and `parameter_set_count`;
/// attribute values are never read, and text after them is not located (`None`).
fn query_text(body: &[u8], capabilities: Option<u32>) -> Option<&[u8]> {
    match capabilities {
        Some(caps) if caps & CLIENT_QUERY_ATTRIBUTES != 0 => {
            let mut c = Cursor::new(body);
            let params = lenenc(&mut c)?;
            lenenc(&mut c)?;
            (params == 0).then(|| c.rest())
        }
        Some(_) => Some(body),
        // Unknown capabilities (attached mid-connection): SQL never starts with a NUL byte, so
        // `00 01` is an empty attribute block.
        None => match body {
            [0x00, 0x01, rest @ ..] => Some(rest),
            [0x00, ..] => None,
            _ => Some(body),
        },
    }
}

/// Capability flags of a Protocol::HandshakeV10 payload.
fn greeting_capabilities(p: &[u8]) -> Option<u32> {
    let mut c = Cursor::new(p);
    if c.u8()? != 0x0a {
        return None;
    }
    let version = c.nul_str()?;
    if version.is_empty() || !version.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    c.skip(4 + 8 + 1)?; // thread id, auth-plugin-data part 1 (never kept), filler
    let low = u32::from(c.u16_le()?);
    let high = match (c.u8(), c.u16_le(), c.u16_le()) {
        (Some(_charset), Some(_status), Some(high)) => u32::from(high),
        _ => 0,
    };
    Some(low | (high << 16))
}

/// Parses a HandshakeResponse41 for capabilities and database; the username and the auth
/// response are stepped over, never copied. `None` for an SSLRequest.
fn handshake_response(p: &[u8], plen: u32, state: &mut MysqlFramingState) -> Option<MysqlLogin> {
    let mut c = Cursor::new(p);
    let client = match c.u32_le() {
        Some(v) => v,
        None => u32::from(Cursor::new(p).u16_le().unwrap_or(0)),
    };
    if plen == 32 && client & CLIENT_SSL != 0 {
        return None;
    }
    let capabilities = client & state.server_capabilities.unwrap_or(u32::MAX);
    state.capabilities = Some(capabilities);
    state.phase = MysqlPhase::Auth;
    state.auth_from_change_user = false;
    let database = if client & CLIENT_PROTOCOL_41 != 0 && client & CLIENT_CONNECT_WITH_DB != 0 {
        handshake_database(&mut c, client)
    } else {
        None
    };
    Some(MysqlLogin {
        capabilities,
        database,
    })
}

fn handshake_database(c: &mut Cursor<'_>, client: u32) -> Option<String> {
    c.skip(4 + 1 + 23)?; // max packet size, character set, filler
    c.nul_str()?; // username
    skip_auth_response(c, client)?;
    schema_name(c.nul_str()?)
}

/// Steps over an auth response without reading it.
fn skip_auth_response(c: &mut Cursor<'_>, client: u32) -> Option<()> {
    if client & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        let n = lenenc(c)?;
        c.skip(usize::try_from(n).ok()?)
    } else if client & CLIENT_SECURE_CONNECTION != 0 {
        let n = c.u8()?;
        c.skip(usize::from(n))
    } else {
        c.nul_str().map(|_| ())
    }
}

/// Database of a `COM_CHANGE_USER` (user, auth response, database).
fn change_user_schema(body: &[u8], state: &MysqlFramingState) -> Option<String> {
    let caps = state.capabilities.unwrap_or(CLIENT_SECURE_CONNECTION);
    let mut c = Cursor::new(body);
    c.nul_str()?;
    if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = c.u8()?;
        c.skip(usize::from(n))?;
    } else {
        c.nul_str()?;
    }
    schema_name(c.nul_str()?)
}

/// Whether a client command plausibly starts at the head of `rest` (≥ 4 bytes).
fn plausible_request(rest: &[u8]) -> bool {
    let mut c = Cursor::new(rest);
    let (Some(plen), Some(seq)) = (c.u24_le(), c.u8()) else {
        return true;
    };
    if seq != 0 || plen == 0 {
        return false;
    }
    let Some(code) = c.u8() else {
        return true;
    };
    if !is_known_command(code) {
        return false;
    }
    let shape_ok = match code {
        COM_QUERY | COM_STMT_PREPARE => c
            .u8()
            .is_none_or(|b| b == 0 || b >= 0x80 || b.is_ascii_graphic() || b.is_ascii_whitespace()),
        COM_STMT_EXECUTE
        | COM_STMT_CLOSE
        | COM_STMT_RESET
        | COM_STMT_FETCH
        | COM_STMT_SEND_LONG_DATA
        | COM_STMT_BULK_EXECUTE => plen >= 5,
        COM_QUIT | COM_PING | COM_STATISTICS | COM_DEBUG | COM_PROCESS_INFO
        | COM_RESET_CONNECTION => plen == 1,
        _ => true,
    };
    if !shape_ok {
        return false;
    }
    // A complete command is followed by the end of the buffer or another command.
    match rest.get(4 + plen as usize..) {
        Some(next) if plen < MYSQL_MAX_PACKET && next.len() >= 5 => {
            next.get(3) == Some(&0) && next.get(4).is_some_and(|&b| is_known_command(b))
        }
        _ => true,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    No,
    /// A chain of server packets with consecutive sequence ids that ends exactly at the buffer
    /// end or runs for 3 packets.
    Verified,
    /// One small packet that runs past the buffer end.
    Unverified,
}

/// Whether server packets plausibly start at the head of `rest`.
fn plausible_response(rest: &[u8]) -> Chain {
    let mut at = 0usize;
    let mut prev: Option<u8> = None;
    let mut complete = 0u32;
    loop {
        let Some(h) = rest.get(at..at + 4) else {
            return if complete > 0 {
                Chain::Verified
            } else {
                Chain::No
            };
        };
        let mut c = Cursor::new(h);
        let (Some(plen), Some(seq)) = (c.u24_le(), c.u8()) else {
            return Chain::No;
        };
        if plen == 0 || prev.is_some_and(|p| p.wrapping_add(1) != seq) {
            return Chain::No;
        }
        let next = at + 4 + plen as usize;
        if next > rest.len() {
            return if complete > 0 {
                Chain::Verified
            } else if plen < 0x1_0000 {
                Chain::Unverified
            } else {
                Chain::No
            };
        }
        if next == rest.len() {
            return Chain::Verified;
        }
        complete += 1;
        if complete >= 3 {
            return Chain::Verified;
        }
        prev = Some(seq);
        at = next;
    }
}
