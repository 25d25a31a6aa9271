//! `PgFramer`: cuts PostgreSQL frontend/backend protocol v3 messages off a byte stream.
//!
//! A typed message is a type byte and a big-endian length that counts itself but not the type
//! byte (<https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS>).
//! The first messages a client sends are untyped: a length, then a code (StartupMessage
//! protocol 3.x, SSLRequest, GSSENCRequest, CancelRequest). A type byte is never 0 and an
//! untyped message always starts with 0 (its length is below 16 MiB), so each request tells
//! which kind it is by its first byte, whether or not the connection start was seen.
//!
//! The framer keeps only a bounded prefix of what a span needs: SQL text up to a cap, statement
//! and portal names, a CommandComplete tag, an ErrorResponse's SQLSTATE and severity. Whatever
//! could hold a secret or a literal is skipped unread: PasswordMessage / SASL / GSS responses
//! (`p`), authentication requests (`R`), BackendKeyData (`K`, the cancel key), CancelRequest,
//! Bind parameter values, FunctionCall arguments, DataRow and COPY data, notices. The rest of a
//! long message is skipped by the pipeline as it arrives, so a wire length never sizes an
//! allocation.

use crate::protocol::postgres::types::*;
use crate::protocol::{Framer, MessageKind, Parse, ParserLimits, UNTIL_CLOSE};

/// Frames PostgreSQL messages. Holds only caps derived from [`ParserLimits`].
#[derive(Clone, Copy, Debug)]
pub struct PgFramer {
    /// Most SQL bytes kept from a Query or Parse.
    text_cap: usize,
    /// Most bytes the framer waits for before cutting a frame (never more than the stream can
    /// buffer).
    room: usize,
}

impl Default for PgFramer {
    fn default() -> PgFramer {
        <PgFramer as Framer>::new(ParserLimits::default())
    }
}

/// Whether a typed message of type `ty` and length `len` is plausible in this direction.
fn plausible(kind: MessageKind, ty: u8, len: u32) -> bool {
    (4..=PG_MAX_MESSAGE).contains(&len) && length_fits(kind, ty, len) == Some(true)
}

/// Whether `ty` is a message type of this direction.
fn known_type(kind: MessageKind, ty: u8) -> bool {
    length_fits(kind, ty, 4).is_some()
}

/// `None` for a type this direction never sends, else whether `len` fits the type's layout.
fn length_fits(kind: MessageKind, ty: u8, len: u32) -> Option<bool> {
    let fits = match kind {
        MessageKind::Request => match ty {
            b'Q' => len >= 5,
            // Parse: name, text, parameter count.
            b'P' => len >= 8,
            // Bind: two names and three counts.
            b'B' => len >= 12,
            // Describe, Close: kind and name.
            b'D' | b'C' => len >= 6,
            // Execute: portal name and a row limit.
            b'E' => len >= 9,
            // Sync, Flush, Terminate, CopyDone.
            b'S' | b'H' | b'X' | b'c' => len == 4,
            // FunctionCall: oid and three counts.
            b'F' => len >= 14,
            // Password / SASL / GSS responses, CopyData, CopyFail.
            b'p' | b'd' | b'f' => true,
            _ => return None,
        },
        MessageKind::Response => match ty {
            b'R' => len >= 8,
            // BackendKeyData: process id and a key of 4 (protocol 3.0) to 256 bytes (3.2).
            b'K' => (12..=264).contains(&len),
            // ParameterStatus: two strings.
            b'S' => len >= 6,
            b'Z' => len == 5,
            // RowDescription, ParameterDescription, DataRow: a 16-bit count first.
            b'T' | b't' | b'D' => len >= 6,
            b'C' | b'E' | b'N' => len >= 5,
            b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c' => len == 4,
            // CopyIn/Out/BothResponse: format and column count.
            b'G' | b'H' | b'W' => len >= 7,
            b'V' => len >= 8,
            // NotificationResponse: pid, channel, payload.
            b'A' => len >= 10,
            // NegotiateProtocolVersion: minor version and option count.
            b'v' => len >= 12,
            b'd' => true,
            _ => return None,
        },
    };
    Some(fits)
}

/// The first `min(want, available)` bytes of `body` when `short` (the tail was not captured),
/// else exactly `want` bytes or `None` (wait for more).
fn prefix(body: &[u8], want: usize, short: bool) -> Option<&[u8]> {
    match body.get(..want) {
        Some(p) => Some(p),
        None if short => Some(body),
        None => None,
    }
}

/// A NUL-terminated string at the head of `p`: `(string, rest)`.
fn cstr(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = p.iter().position(|&b| b == 0)?;
    Some((p.get(..n)?, p.get(n + 1..)?))
}

impl PgFramer {
    fn parse_with(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut PgFramingState,
        short: bool,
    ) -> Parse<PgFrame> {
        if state.encrypted {
            // TLS or GSSAPI after the server said yes: nothing here is PostgreSQL framing.
            return Parse::Skip { len: UNTIL_CLOSE };
        }
        let Some(&ty) = buf.first() else {
            return Parse::Incomplete;
        };
        match kind {
            MessageKind::Request if ty == 0 => self.parse_untyped(buf, state, short),
            MessageKind::Request => {
                let parsed = self.parse_request(ty, buf, short);
                match parsed {
                    Parse::Frame { frame, len } if state.request_resynced.replace(false) => {
                        Parse::Frame {
                            frame: PgFrame::AfterLoss(Box::new(frame)),
                            len,
                        }
                    }
                    other => other,
                }
            }
            MessageKind::Response => {
                if state.awaiting_encryption_answer {
                    state.awaiting_encryption_answer = false;
                    match ty {
                        // SSLRequest / GSSENCRequest refused: plaintext continues.
                        b'N' => return Parse::Skip { len: 1 },
                        b'S' | b'G' => {
                            state.encrypted = true;
                            return Parse::Skip { len: 1 };
                        }
                        // A server that does not know the request answers an ErrorResponse.
                        _ => {}
                    }
                }
                self.parse_response(ty, buf, short)
            }
        }
    }

    /// StartupMessage, SSLRequest, GSSENCRequest, CancelRequest: a length and a code.
    fn parse_untyped(&self, buf: &[u8], state: &mut PgFramingState, short: bool) -> Parse<PgFrame> {
        let mut c = Cursor::new(buf);
        let Some(len) = c.u32_be() else {
            return Parse::Incomplete;
        };
        if !(8..=PG_MAX_STARTUP).contains(&len) {
            return Parse::Invalid;
        }
        let Some(code) = c.u32_be() else {
            return Parse::Incomplete;
        };
        let total = len as usize;
        match code {
            PG_SSL_REQUEST | PG_GSSENC_REQUEST if len == 8 => {
                state.awaiting_encryption_answer = true;
                Parse::Skip { len: 8 }
            }
            // The cancel key is a secret: stepped over, never read.
            PG_CANCEL_REQUEST if (16..=264).contains(&len) => Parse::Skip { len: total },
            v if v >> 16 == PG_PROTOCOL_MAJOR => {
                let want = total.min(self.room);
                let Some(p) = prefix(buf, want, short) else {
                    return Parse::Incomplete;
                };
                Parse::Frame {
                    frame: PgFrame::Startup {
                        database: startup_database(p.get(8..).unwrap_or_default()),
                    },
                    len: total,
                }
            }
            _ => Parse::Invalid,
        }
    }

    fn parse_request(&self, ty: u8, buf: &[u8], short: bool) -> Parse<PgFrame> {
        let mut c = Cursor::new(buf);
        c.skip(1);
        let Some(len) = c.u32_be() else {
            return Parse::Incomplete;
        };
        if !plausible(MessageKind::Request, ty, len) {
            return Parse::Invalid;
        }
        let total = 1 + len as usize;
        let body_len = len as usize - 4;
        let body = c.rest();
        let body = body.get(..body_len).unwrap_or(body);
        let frame = match ty {
            b'Q' => {
                let Some(p) = prefix(body, body_len.min(self.text_cap), short) else {
                    return Parse::Incomplete;
                };
                PgFrame::Query(self.text(p, body_len))
            }
            b'P' => {
                let want = body_len.min(PG_MAX_NAME + 1 + self.text_cap).min(self.room);
                let Some(p) = prefix(body, want, short) else {
                    return Parse::Incomplete;
                };
                match cstr(p) {
                    Some((name, rest)) => {
                        let text_len = body_len.saturating_sub(name.len() + 1);
                        let rest = rest.get(..self.text_cap).unwrap_or(rest);
                        PgFrame::Parse {
                            statement: PgName::new(name),
                            text: self.text(rest, text_len),
                        }
                    }
                    // No terminator in the whole body: not a Parse.
                    None if p.len() >= body_len => return Parse::Invalid,
                    // A name longer than we read: neither it nor the text can be located.
                    None => PgFrame::Parse {
                        statement: None,
                        text: PgText {
                            sql: Vec::new(),
                            truncated: true,
                        },
                    },
                }
            }
            b'B' => {
                // Parameter values follow the names: never read.
                let Some(p) = prefix(body, body_len.min(PG_BIND_SCAN), short) else {
                    return Parse::Incomplete;
                };
                let portal = cstr(p);
                let statement = portal.and_then(|(_, rest)| cstr(rest));
                if statement.is_none() && p.len() >= body_len {
                    return Parse::Invalid;
                }
                PgFrame::Bind {
                    portal: portal.and_then(|(n, _)| PgName::new(n)),
                    statement: statement.and_then(|(n, _)| PgName::new(n)),
                }
            }
            b'D' => match body.first() {
                Some(b'S') => PgFrame::Describe { statement: true },
                Some(b'P') => PgFrame::Describe { statement: false },
                Some(_) => return Parse::Invalid,
                None => return Parse::Incomplete,
            },
            b'E' => {
                let Some(p) = prefix(body, body_len.min(PG_MAX_NAME + 1), short) else {
                    return Parse::Incomplete;
                };
                PgFrame::Execute {
                    portal: cstr(p).and_then(|(n, _)| PgName::new(n)),
                }
            }
            b'C' => {
                let Some(p) = prefix(body, body_len.min(PG_MAX_NAME + 2), short) else {
                    return Parse::Incomplete;
                };
                let name = p.get(1..).and_then(cstr).and_then(|(n, _)| PgName::new(n));
                match p.first() {
                    Some(b'S') => PgFrame::Close(PgTarget::Statement(name)),
                    Some(b'P') => PgFrame::Close(PgTarget::Portal(name)),
                    Some(_) => return Parse::Invalid,
                    None => return Parse::Incomplete,
                }
            }
            b'S' => PgFrame::Sync,
            b'F' => PgFrame::FunctionCall,
            // Flush, Terminate: nothing to answer or record. Password, SASL and GSS responses,
            // CopyData, CopyDone, CopyFail: skipped unread.
            _ => return Parse::Skip { len: total },
        };
        Parse::Frame { frame, len: total }
    }

    /// SQL text from the kept prefix `p` of a string of `len` bytes on the wire (its NUL
    /// included): up to the NUL, else the whole prefix, marked truncated.
    fn text(&self, p: &[u8], len: usize) -> PgText {
        match cstr(p) {
            Some((sql, _)) => PgText {
                sql: sql.to_vec(),
                truncated: false,
            },
            None => {
                let sql = p.get(..self.text_cap).unwrap_or(p);
                PgText {
                    sql: sql.to_vec(),
                    truncated: sql.len() < len,
                }
            }
        }
    }

    fn parse_response(&self, ty: u8, buf: &[u8], short: bool) -> Parse<PgFrame> {
        let mut c = Cursor::new(buf);
        c.skip(1);
        let Some(len) = c.u32_be() else {
            return Parse::Incomplete;
        };
        if !plausible(MessageKind::Response, ty, len) {
            return Parse::Invalid;
        }
        let total = 1 + len as usize;
        let body_len = len as usize - 4;
        let body = c.rest();
        let body = body.get(..body_len).unwrap_or(body);
        let frame = match ty {
            b'Z' => match body.first() {
                Some(&s @ (b'I' | b'T' | b'E')) => PgFrame::Ready(s),
                Some(_) => return Parse::Invalid,
                None => return Parse::Incomplete,
            },
            b'C' => {
                let Some(p) = prefix(body, body_len.min(PG_TAG_SCAN), short) else {
                    return Parse::Incomplete;
                };
                PgFrame::CommandComplete(command_tag(p))
            }
            b'E' => {
                let Some(p) = prefix(body, body_len.min(PG_ERROR_SCAN).min(self.room), short)
                else {
                    return Parse::Incomplete;
                };
                PgFrame::Error(error_fields(p))
            }
            b'1' => PgFrame::ParseComplete,
            b'2' => PgFrame::BindComplete,
            b'3' => PgFrame::CloseComplete,
            b'n' => PgFrame::NoData,
            b't' => PgFrame::ParameterDescription,
            b'T' => PgFrame::RowDescription,
            b'I' => PgFrame::EmptyQuery,
            b's' => PgFrame::PortalSuspended,
            b'V' => PgFrame::FunctionResult,
            // Authentication (SASL data included), BackendKeyData (the cancel key),
            // ParameterStatus, notices, notifications, protocol negotiation, DataRow, COPY:
            // skipped unread.
            _ => return Parse::Skip { len: total },
        };
        Parse::Frame { frame, len: total }
    }
}

/// The database a StartupMessage names: `database`, else `user` (the server's default).
fn startup_database(mut params: &[u8]) -> Option<String> {
    let mut database = None;
    let mut user = None;
    while let Some((key, rest)) = cstr(params) {
        if key.is_empty() {
            break;
        }
        let Some((value, rest)) = cstr(rest) else {
            break;
        };
        match key {
            b"database" => database = Some(value),
            b"user" => user = Some(value),
            _ => {}
        }
        params = rest;
    }
    let name = database.filter(|d| !d.is_empty()).or(user)?;
    if name.is_empty() || name.len() > PG_MAX_DATABASE {
        return None;
    }
    // Invalid UTF-8 grows when made text: cut again within the cap.
    Some(crate::protocol::text_within(name, PG_MAX_DATABASE))
}

/// The row count of a CommandComplete tag (<https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-COMMANDCOMPLETE>).
fn command_tag(p: &[u8]) -> PgTag {
    let tag = cstr(p).map_or(p, |(t, _)| t);
    let mut words = tag.split(|&b| b == b' ');
    let command = words.next().unwrap_or_default();
    let Some(count) = words
        .next_back()
        .and_then(|w| std::str::from_utf8(w).ok())
        .and_then(|w| w.parse::<u64>().ok())
    else {
        return PgTag::Other;
    };
    match command {
        b"SELECT" | b"FETCH" => PgTag::Returned(count),
        b"INSERT" | b"UPDATE" | b"DELETE" | b"MERGE" | b"COPY" | b"MOVE" => PgTag::Affected(count),
        _ => PgTag::Other,
    }
}

/// SQLSTATE (`C`) and severity (`V`, else the localized `S`) of an ErrorResponse; every other
/// field is stepped over.
fn error_fields(mut p: &[u8]) -> PgError {
    let mut err = PgError {
        sqlstate: None,
        fatal: false,
    };
    let mut severity: Option<&[u8]> = None;
    while let Some((&field, rest)) = p.split_first() {
        if field == 0 {
            break;
        }
        let Some((value, rest)) = cstr(rest) else {
            break;
        };
        match field {
            b'C' => {
                if let Ok(code) = <[u8; 5]>::try_from(value)
                    && code.iter().all(u8::is_ascii_alphanumeric)
                {
                    err.sqlstate = Some(code);
                }
            }
            b'V' => severity = Some(value),
            b'S' if severity.is_none() => severity = Some(value),
            _ => {}
        }
        p = rest;
    }
    err.fatal = matches!(severity, Some(b"FATAL" | b"PANIC"));
    err
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    No,
    /// Complete messages that end exactly at the buffer end or run for three.
    Verified,
    /// One small message running past the buffer end, or a partial header.
    Unverified,
}

/// Whether typed messages of `kind` plausibly start at the head of `rest`.
fn chain(kind: MessageKind, rest: &[u8]) -> Chain {
    let mut at = 0usize;
    let mut complete = 0u32;
    loop {
        let Some(here) = rest.get(at..) else {
            return Chain::No;
        };
        let mut c = Cursor::new(here);
        let Some(ty) = c.u8() else {
            return if complete > 0 {
                Chain::Verified
            } else {
                Chain::No
            };
        };
        let Some(len) = c.u32_be() else {
            // A partial header: only its type byte can be checked.
            return match (known_type(kind, ty), complete) {
                (false, _) => Chain::No,
                (true, 0) => Chain::Unverified,
                (true, _) => Chain::Verified,
            };
        };
        if !plausible(kind, ty, len) {
            return Chain::No;
        }
        let next = at.saturating_add(1 + len as usize);
        if next > rest.len() {
            return if complete > 0 {
                Chain::Verified
            } else if len < 0x1_0000 {
                Chain::Unverified
            } else {
                Chain::No
            };
        }
        complete += 1;
        if next == rest.len() || complete >= 3 {
            return Chain::Verified;
        }
        at = next;
    }
}

impl Framer for PgFramer {
    type Frame = PgFrame;
    type State = PgFramingState;

    fn new(limits: ParserLimits) -> PgFramer {
        PgFramer {
            text_cap: limits.raw_text_cap(),
            room: limits.frame_room(),
        }
    }

    fn parse(&self, kind: MessageKind, buf: &[u8], state: &mut PgFramingState) -> Parse<PgFrame> {
        self.parse_with(kind, buf, state, false)
    }

    /// Typed messages only: an untyped startup message never follows a loss.
    fn find_boundary(
        &self,
        kind: MessageKind,
        buf: &[u8],
        from: usize,
        state: &PgFramingState,
    ) -> Option<usize> {
        if kind == MessageKind::Request {
            state.request_resynced.set(true);
        }
        let at = |i: usize| buf.get(i..).unwrap_or_default();
        (from..buf.len())
            .find(|&i| chain(kind, at(i)) == Chain::Verified)
            .or_else(|| (from..buf.len()).find(|&i| chain(kind, at(i)) == Chain::Unverified))
    }

    fn parse_before_gap(
        &self,
        kind: MessageKind,
        buf: &[u8],
        state: &mut PgFramingState,
    ) -> Parse<PgFrame> {
        self.parse_with(kind, buf, state, true)
    }
}
