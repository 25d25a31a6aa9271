//! The one single-pass SQL lexer behind the sanitiser and the summariser.
//!
//! It reads text that may be cut anywhere (a capture cap) and never guesses: whenever the text
//! ends inside a literal, a quoted identifier, a dollar quote or a block comment, or a run of
//! bytes could be read two ways by the server, it stops with [`FailClosed`] and the callers drop
//! what they would have produced from the rest.
//!
//! MySQL rules follow `sql/sql_lex.cc` (`MY_LEX_*` states), PostgreSQL rules follow
//! `src/backend/parser/scan.l` (<https://www.postgresql.org/docs/current/sql-syntax-lexical.html>).

use super::Dialect;
use super::keywords::Keywords;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tok<'a> {
    /// Unquoted identifier or keyword; MySQL `@var` / `@@var`.
    Word(&'a str),
    /// Quoted identifier with its quotes: MySQL `` `x` ``, PostgreSQL `"x"` and `U&"x"`.
    Quoted(&'a str),
    /// Any literal; its text is never kept.
    Literal,
    /// Parameter marker, kept as written: MySQL `?`, PostgreSQL `$1`.
    Param(&'a str),
    /// Operator or punctuation.
    Punct(&'a str),
}

/// The lexer cannot tell where something ends: the text stops inside a literal, a quoted
/// identifier, a dollar quote or a block comment, or reads differently under a server setting
/// it cannot see. Nothing from this point on may be echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FailClosed;

/// How a quoted run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escapes {
    /// Only a doubled quote escapes (identifiers).
    Doubled,
    /// Backslash escapes and doubled quotes: MySQL strings, PostgreSQL `E'…'`.
    Backslash,
    /// PostgreSQL standard strings: a doubled quote only. A quote after an odd run of
    /// backslashes would be escaped with `standard_conforming_strings = off`, so it fails closed.
    Standard,
}

/// The previous token, as far as a sign or a dot after it cares.
#[derive(Clone, Copy)]
enum Prev<'a> {
    Operand,
    NotOperand,
    /// An operand unless it is an operator keyword (`WHERE -5`, `AND -5`).
    Word(&'a str),
}

pub(super) struct Lexer<'a> {
    src: &'a str,
    dialect: Dialect,
    at: usize,
    /// Whitespace or a comment came before the token just returned.
    spaced: bool,
    /// What the previous token says about a following `-`/`+`/`.`: whether it can be a
    /// binary operator's left operand. A word is only looked up when a sign or dot follows it.
    prev: Prev<'a>,
    /// A line comment ran to the end of the text.
    comment_at_end: bool,
}

/// [`CLASS`] bits.
const SPACE: u8 = 1;
/// A byte of an unquoted identifier (after its first byte in PostgreSQL).
const WORD: u8 = 2;
/// PostgreSQL `ident_start`: no digit, no `$`.
const PG_IDENT_START: u8 = 4;
/// PostgreSQL `op_chars`.
const PG_OP: u8 = 8;
/// The `op_chars` that let an operator end in `+` or `-`.
const PG_OP_SPECIAL: u8 = 16;
/// Bytes that may start whitespace or a comment.
const TRIVIA_START: u8 = 32;

/// The classes of every byte, so each test is one load (the lexer asks several per byte).
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build"
)]
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        // Both servers also take a vertical tab as whitespace.
        if b.is_ascii_whitespace() || b == 0x0b {
            c |= SPACE | TRIVIA_START;
        }
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 {
            c |= WORD;
        }
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            c |= PG_IDENT_START;
        }
        t[i] = c;
        i += 1;
    }
    t = mark(t, b"#-/", TRIVIA_START);
    t = mark(t, b"+-*/<>=~!@#%^&|`?", PG_OP);
    mark(t, b"~!@#%^&|`?", PG_OP_SPECIAL)
};

/// `t` with `class` added to each of `bytes` (compile time).
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build"
)]
const fn mark(mut t: [u8; 256], bytes: &[u8], class: u8) -> [u8; 256] {
    let mut j = 0;
    while j < bytes.len() {
        t[bytes[j] as usize] |= class;
        j += 1;
    }
    t
}

fn has(b: u8, class: u8) -> bool {
    CLASS.get(usize::from(b)).is_some_and(|c| c & class != 0)
}

fn is_space(b: u8) -> bool {
    has(b, SPACE)
}

/// MySQL starts a `--` comment only before whitespace or a control character.
fn mysql_dash_follow(b: u8) -> bool {
    b <= b' ' || b == 0x7f
}

/// A byte of an unquoted identifier (after its first byte in PostgreSQL).
fn is_word_byte(b: u8) -> bool {
    has(b, WORD)
}

/// PostgreSQL `ident_start`: no digit, no `$`.
fn is_pg_ident_start(b: u8) -> bool {
    has(b, PG_IDENT_START)
}

/// PostgreSQL `op_chars`.
fn is_pg_op_char(b: u8) -> bool {
    has(b, PG_OP)
}

/// Keywords after which `-5` is a negative number rather than a subtraction.
fn is_operator_keyword(w: &str) -> bool {
    const KW: Keywords<41> = Keywords::new([
        "SELECT", "WHERE", "AND", "OR", "NOT", "ON", "BY", "SET", "VALUES", "VALUE", "IN", "IS",
        "LIKE", "BETWEEN", "WHEN", "THEN", "ELSE", "CASE", "RETURN", "LIMIT", "OFFSET", "HAVING",
        "INTERVAL", "DIV", "MOD", "XOR", "AS", "DEFAULT", "IF", "REGEXP", "RLIKE", "ESCAPE",
        "DISTINCT", "ALL", "ANY", "SOME", "ILIKE", "SIMILAR", "TO", "FETCH", "ARRAY",
    ]);
    KW.contains(w)
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str, dialect: Dialect) -> Lexer<'a> {
        Lexer {
            src,
            dialect,
            at: 0,
            spaced: false,
            prev: Prev::NotOperand,
            comment_at_end: false,
        }
    }

    /// Whitespace or a comment came before the token just returned.
    pub(super) fn spaced(&self) -> bool {
        self.spaced
    }

    /// A line comment ran to the end of the text (a cut capture may have hidden its end).
    pub(super) fn comment_at_end(&self) -> bool {
        self.comment_at_end
    }

    /// The token just returned ends where the text ends, so a cut capture may have split it.
    pub(super) fn at_end(&self) -> bool {
        self.at >= self.src.len()
    }

    /// The previous token can be the left operand of a binary `-`/`+`.
    fn prev_operand(&self) -> bool {
        match self.prev {
            Prev::Operand => true,
            Prev::NotOperand => false,
            Prev::Word(w) => !is_operator_keyword(w),
        }
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.src.as_bytes().get(i).copied()
    }

    fn bytes_from(&self, i: usize) -> &'a [u8] {
        self.src.as_bytes().get(i..).unwrap_or_default()
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or_default()
    }

    /// The next token, `Ok(None)` at the end of the text.
    pub(super) fn next_token(&mut self) -> Result<Option<Tok<'a>>, FailClosed> {
        self.skip_trivia()?;
        let start = self.at;
        let Some(b) = self.byte(start) else {
            return Ok(None);
        };
        let tok = match self.dialect {
            Dialect::Mysql => self.mysql_token(start, b)?,
            Dialect::Postgres => self.pg_token(start, b)?,
        };
        self.prev = match tok {
            Tok::Word(w) => Prev::Word(w),
            Tok::Punct(p) if p == ")" || p == "]" => Prev::Operand,
            Tok::Punct(_) => Prev::NotOperand,
            Tok::Quoted(_) | Tok::Literal | Tok::Param(_) => Prev::Operand,
        };
        Ok(Some(tok))
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), FailClosed> {
        self.spaced = false;
        // Most tokens follow one space or none.
        if !self.byte(self.at).is_some_and(|b| has(b, TRIVIA_START)) {
            return Ok(());
        }
        loop {
            let (b0, b1, b2) = (
                self.byte(self.at),
                self.byte(self.at + 1),
                self.byte(self.at + 2),
            );
            match (b0, b1) {
                (Some(b), _) if is_space(b) => self.at += 1,
                (Some(b'#'), _) if self.dialect == Dialect::Mysql => self.line_comment(),
                // MySQL wants `--` then whitespace or a control character (or the end);
                // PostgreSQL takes any `--` outside a literal.
                (Some(b'-'), Some(b'-'))
                    if self.dialect == Dialect::Postgres || b2.is_none_or(mysql_dash_follow) =>
                {
                    self.line_comment()
                }
                (Some(b'/'), Some(b'*')) => self.block_comment()?,
                _ => return Ok(()),
            }
            self.spaced = true;
        }
    }

    fn line_comment(&mut self) {
        // PostgreSQL's `non_newline` also stops at a carriage return; MySQL reads to `\n`.
        let pg = self.dialect == Dialect::Postgres;
        let rest = self.bytes_from(self.at);
        match rest.iter().position(|&b| b == b'\n' || (pg && b == b'\r')) {
            Some(n) => self.at += n + 1,
            None => {
                self.at = self.src.len();
                self.comment_at_end = true;
            }
        }
    }

    fn block_comment(&mut self) -> Result<(), FailClosed> {
        let start = self.at;
        self.at = match self.dialect {
            Dialect::Postgres => self.pg_comment_end(start)?,
            Dialect::Mysql => {
                let body = self.bytes_from(start + 2);
                let plain = body
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map(|n| start + 2 + n + 2)
                    .ok_or(FailClosed)?;
                // `/*! … */` (and MariaDB's `/*M! … */`) is executed: the server lexes its body
                // as SQL, so a quote or a line comment in it may hide a `*/`. Optimizer hints
                // `/*+ … */` have their own scanner. When reading the body as SQL would end
                // the comment elsewhere, the text reads two ways: fail closed.
                let executable =
                    matches!(body.first(), Some(b'!' | b'+')) || body.starts_with(b"M!");
                if executable && self.mysql_executable_comment_end(start + 2) != Some(plain) {
                    return Err(FailClosed);
                }
                plain
            }
        };
        Ok(())
    }

    /// End of a MySQL executable comment whose body starts at `i`, the body lexed as SQL.
    fn mysql_executable_comment_end(&self, mut i: usize) -> Option<usize> {
        loop {
            let b = self.byte(i)?;
            let next = self.byte(i + 1);
            if b == b'*' && next == Some(b'/') {
                return Some(i + 2);
            }
            if matches!(b, b'\'' | b'"' | b'`') {
                let esc = if b == b'`' {
                    Escapes::Doubled
                } else {
                    Escapes::Backslash
                };
                i = self.quoted_end(i, b, esc).ok()?;
                continue;
            }
            let line = b == b'#'
                || (b == b'-'
                    && next == Some(b'-')
                    && self.byte(i + 2).is_none_or(mysql_dash_follow));
            if line {
                i += self.bytes_from(i).iter().position(|&c| c == b'\n')? + 1;
            } else {
                i += 1;
            }
        }
    }

    /// End of a PostgreSQL block comment at `start`: comments nest (`xcstart` / `xcstop`).
    fn pg_comment_end(&self, start: usize) -> Result<usize, FailClosed> {
        let mut depth = 0usize;
        let mut i = start;
        loop {
            match (self.byte(i).ok_or(FailClosed)?, self.byte(i + 1)) {
                (b'/', Some(b'*')) => {
                    depth += 1;
                    i += 2;
                }
                (b'*', Some(b'/')) => {
                    depth = depth.saturating_sub(1);
                    i += 2;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                _ => i += 1,
            }
        }
    }

    /// Offset just past the quoted run opened by `q` at `open`.
    fn quoted_end(&self, open: usize, q: u8, esc: Escapes) -> Result<usize, FailClosed> {
        let mut i = open + 1;
        let mut backslashes = 0usize;
        loop {
            let b = self.byte(i).ok_or(FailClosed)?;
            if b == b'\\' && esc == Escapes::Backslash {
                i += 2;
                continue;
            }
            if b == q {
                if esc == Escapes::Standard && backslashes % 2 == 1 {
                    return Err(FailClosed);
                }
                if self.byte(i + 1) != Some(q) {
                    return Ok(i + 1);
                }
                i += 2;
                backslashes = 0;
                continue;
            }
            backslashes = if b == b'\\' { backslashes + 1 } else { 0 };
            i += 1;
        }
    }

    /// Scans the quoted run opened at `open` and moves past it.
    fn quoted(&mut self, open: usize, q: u8, esc: Escapes) -> Result<(), FailClosed> {
        self.at = self.quoted_end(open, q, esc)?;
        Ok(())
    }

    fn digits(&mut self, pred: impl Fn(u8) -> bool) {
        let rest = self.bytes_from(self.at);
        self.at += rest.iter().position(|&b| !pred(b)).unwrap_or(rest.len());
    }

    /// `-5`, `+.5` where a sign cannot be a binary operator.
    fn signed_number_ahead(&self, start: usize, b: u8) -> bool {
        let next = self.byte(start + 1);
        matches!(b, b'-' | b'+')
            && !self.prev_operand()
            && (next.is_some_and(|c| c.is_ascii_digit())
                || (next == Some(b'.') && self.byte(start + 2).is_some_and(|c| c.is_ascii_digit())))
    }

    fn exponent(&mut self) {
        if matches!(self.byte(self.at), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.byte(self.at + 1), Some(b'+' | b'-')));
            if self
                .byte(self.at + 1 + sign)
                .is_some_and(|b| b.is_ascii_digit())
            {
                self.at += 1 + sign;
                self.digits(|b| b.is_ascii_digit());
            }
        }
    }

    // ---- MySQL -------------------------------------------------------------------------

    fn mysql_token(&mut self, start: usize, b: u8) -> Result<Tok<'a>, FailClosed> {
        let next = self.byte(start + 1);
        Ok(match b {
            b'\'' | b'"' => {
                // `"…"` is a string unless ANSI_QUOTES is set (then an identifier, over-sanitised).
                self.quoted(start, b, Escapes::Backslash)?;
                Tok::Literal
            }
            b'`' => {
                self.quoted(start, b'`', Escapes::Doubled)?;
                Tok::Quoted(self.slice(start, self.at))
            }
            b'?' => {
                self.at += 1;
                Tok::Param("?")
            }
            b'0'..=b'9' => self.mysql_number_or_word(start),
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) && !self.prev_operand() => {
                self.mysql_number();
                Tok::Literal
            }
            b'-' | b'+' if self.signed_number_ahead(start, b) => {
                self.at += 1;
                if self.mysql_number() {
                    Tok::Literal
                } else {
                    self.at = start + 1;
                    Tok::Punct(self.slice(start, start + 1))
                }
            }
            b'@' => {
                self.at += 1;
                if self.byte(self.at) == Some(b'@') {
                    self.at += 1;
                }
                while self
                    .byte(self.at)
                    .is_some_and(|c| is_word_byte(c) || c == b'.')
                {
                    self.at += 1;
                }
                Tok::Word(self.slice(start, self.at))
            }
            c if is_word_byte(c) => {
                self.digits(is_word_byte);
                let word = self.slice(start, self.at);
                let introducer = word.starts_with('_')
                    || ["x", "b", "n"].iter().any(|p| p.eq_ignore_ascii_case(word));
                if introducer && self.byte(self.at) == Some(b'\'') {
                    // X'…', b'…', N'…', _utf8mb4'…'
                    self.quoted(self.at, b'\'', Escapes::Backslash)?;
                    Tok::Literal
                } else if word.eq_ignore_ascii_case("TRUE") || word.eq_ignore_ascii_case("FALSE") {
                    Tok::Literal
                } else {
                    Tok::Word(word)
                }
            }
            _ => {
                const OPS: &[&str] = &[
                    "<=>", "->>", "<=", ">=", "<>", "!=", ":=", "||", "&&", "->", "<<", ">>",
                ];
                let rest = self.src.get(start..).unwrap_or_default();
                let len = OPS.iter().find(|op| rest.starts_with(*op)).map_or_else(
                    || rest.chars().next().map_or(1, char::len_utf8),
                    |op| op.len(),
                );
                self.at += len;
                Tok::Punct(self.slice(start, self.at))
            }
        })
    }

    /// Scans a MySQL number at `self.at` (sign already consumed). Returns `false` when the
    /// digits run into identifier characters (MySQL allows identifiers such as `1abc`).
    fn mysql_number(&mut self) -> bool {
        let start = self.at;
        if self.byte(self.at) == Some(b'0') {
            let hex = matches!(self.byte(self.at + 1), Some(b'x' | b'X'))
                && self
                    .byte(self.at + 2)
                    .is_some_and(|b| b.is_ascii_hexdigit());
            let bin = matches!(self.byte(self.at + 1), Some(b'b' | b'B'))
                && self
                    .byte(self.at + 2)
                    .is_some_and(|b| b == b'0' || b == b'1');
            if hex || bin {
                self.at += 2;
                self.digits(|b| b.is_ascii_hexdigit());
                return !self.byte(self.at).is_some_and(is_word_byte);
            }
        }
        self.digits(|b| b.is_ascii_digit());
        if self.byte(self.at) == Some(b'.') {
            // `MY_LEX_REAL`: after the point it is a number whatever follows; an exponent
            // marker without digits (a cut `4.25e`) stays with the literal.
            self.at += 1;
            self.digits(|b| b.is_ascii_digit());
            if matches!(self.byte(self.at), Some(b'e' | b'E')) {
                self.at += 1;
                if matches!(self.byte(self.at), Some(b'+' | b'-')) {
                    self.at += 1;
                }
                self.digits(|b| b.is_ascii_digit());
            }
            return true;
        }
        self.exponent();
        if self.byte(self.at).is_some_and(is_word_byte) && self.at > start {
            // `1abc`, `2fa_codes`, `1e` (`MY_LEX_NUMBER_IDENT`): an identifier that starts
            // with digits.
            self.at = start;
            return false;
        }
        true
    }

    fn mysql_number_or_word(&mut self, start: usize) -> Tok<'a> {
        if self.mysql_number() {
            return Tok::Literal;
        }
        self.at = start;
        self.digits(is_word_byte);
        Tok::Word(self.slice(start, self.at))
    }

    // ---- PostgreSQL --------------------------------------------------------------------

    fn pg_token(&mut self, start: usize, b: u8) -> Result<Tok<'a>, FailClosed> {
        let next = self.byte(start + 1);
        Ok(match b {
            b'\'' => {
                self.quoted(start, b'\'', Escapes::Standard)?;
                Tok::Literal
            }
            b'"' => {
                self.quoted(start, b'"', Escapes::Doubled)?;
                Tok::Quoted(self.slice(start, self.at))
            }
            b'$' => self.pg_dollar(start)?,
            b'0'..=b'9' => {
                self.pg_number();
                Tok::Literal
            }
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) && !self.prev_operand() => {
                self.pg_number();
                Tok::Literal
            }
            b'-' | b'+' if self.signed_number_ahead(start, b) => {
                self.at += 1;
                self.pg_number();
                Tok::Literal
            }
            b':' => {
                self.at += if matches!(next, Some(b':' | b'=')) {
                    2
                } else {
                    1
                };
                Tok::Punct(self.slice(start, self.at))
            }
            c if is_pg_ident_start(c) => self.pg_word(start)?,
            c if is_pg_op_char(c) => self.pg_operator(start),
            _ => {
                let rest = self.src.get(start..).unwrap_or_default();
                self.at += rest.chars().next().map_or(1, char::len_utf8);
                Tok::Punct(self.slice(start, self.at))
            }
        })
    }

    /// A word, or a literal with a prefix: `E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`, and the
    /// identifier `U&"…"`.
    fn pg_word(&mut self, start: usize) -> Result<Tok<'a>, FailClosed> {
        self.digits(is_word_byte);
        let word = self.slice(start, self.at);
        let one = |c: &str| word.eq_ignore_ascii_case(c);
        match (self.byte(self.at), self.byte(self.at + 1)) {
            (Some(b'\''), _) if one("e") => {
                self.quoted(self.at, b'\'', Escapes::Backslash)?;
                Ok(Tok::Literal)
            }
            (Some(b'\''), _) if one("b") || one("x") || one("n") => {
                self.quoted(self.at, b'\'', Escapes::Standard)?;
                Ok(Tok::Literal)
            }
            (Some(b'&'), Some(b'\'')) if one("u") => {
                // `U&'…'` exists only with standard_conforming_strings on.
                self.quoted(self.at + 1, b'\'', Escapes::Standard)?;
                Ok(Tok::Literal)
            }
            (Some(b'&'), Some(b'"')) if one("u") => {
                self.quoted(self.at + 1, b'"', Escapes::Doubled)?;
                Ok(Tok::Quoted(self.slice(start, self.at)))
            }
            _ if one("TRUE") || one("FALSE") => Ok(Tok::Literal),
            _ => Ok(Tok::Word(word)),
        }
    }

    /// `$1` parameter, `$$…$$` or `$tag$…$tag$` dollar quote, or a lone `$`.
    fn pg_dollar(&mut self, start: usize) -> Result<Tok<'a>, FailClosed> {
        if self.byte(start + 1).is_some_and(|c| c.is_ascii_digit()) {
            self.at = start + 1;
            self.digits(|c| c.is_ascii_digit());
            return Ok(Tok::Param(self.slice(start, self.at)));
        }
        // `dolq_start` then `dolq_cont`: identifier bytes without `$`.
        let mut i = start + 1;
        if self.byte(i).is_some_and(is_pg_ident_start) {
            i += 1;
            while self.byte(i).is_some_and(|c| c != b'$' && is_word_byte(c)) {
                i += 1;
            }
        }
        match self.byte(i) {
            Some(b'$') => {
                let delim = self
                    .bytes_from(start)
                    .get(..i + 1 - start)
                    .unwrap_or_default();
                let body = self.bytes_from(i + 1);
                // Only a `$` can start the closing delimiter, and a partial match of length k
                // has no `$` in its last k - 1 bytes: linear even for long tags.
                let end = body
                    .iter()
                    .enumerate()
                    .filter(|&(_, &c)| c == b'$')
                    .map(|(n, _)| n)
                    .find(|&n| body.get(n..).is_some_and(|r| r.starts_with(delim)))
                    .ok_or(FailClosed)?;
                self.at = i + 1 + end + delim.len();
                Ok(Tok::Literal)
            }
            // The text ends where a tag may still be running.
            None => Err(FailClosed),
            Some(_) => {
                self.at = start + 1;
                Ok(Tok::Punct("$"))
            }
        }
    }

    /// A PostgreSQL number: decimal with `_` separators, fraction, exponent, or `0x` / `0o` /
    /// `0b` (PostgreSQL 16). Identifier bytes right after it (`123abc`, `0x1g`) are taken with
    /// it: PostgreSQL either rejects them or reads `123 AS abc`, and both are safe as `?`.
    fn pg_number(&mut self) {
        let radix = self.byte(self.at) == Some(b'0')
            && matches!(
                self.byte(self.at + 1),
                Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
            );
        if radix {
            self.at += 2;
        } else {
            self.digits(|b| b.is_ascii_digit() || b == b'_');
            // `1..10` (PL/pgSQL ranges) keeps its `..`.
            if self.byte(self.at) == Some(b'.') && self.byte(self.at + 1) != Some(b'.') {
                self.at += 1;
                self.digits(|b| b.is_ascii_digit() || b == b'_');
            }
            self.exponent();
        }
        self.digits(is_word_byte);
    }

    /// An operator: a run of `op_chars` that stops before `--` or `/*`, and that cannot end in
    /// `+` or `-` unless it holds one of `~ ! @ # % ^ & | \` ?` (so `=-5` is `=` then `-5`).
    fn pg_operator(&mut self, start: usize) -> Tok<'a> {
        let mut i = start;
        while let Some(c) = self.byte(i).filter(|&c| is_pg_op_char(c)) {
            let next = self.byte(i + 1);
            if i > start && ((c == b'-' && next == Some(b'-')) || (c == b'/' && next == Some(b'*')))
            {
                break;
            }
            i += 1;
        }
        let run = self.bytes_from(start).get(..i - start).unwrap_or_default();
        let mut len = run.len();
        if len > 1 && !run.iter().any(|&c| has(c, PG_OP_SPECIAL)) {
            while len > 1 && matches!(run.get(len - 1), Some(b'+' | b'-')) {
                len -= 1;
            }
        }
        self.at = start + len.max(1);
        Tok::Punct(self.slice(start, self.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte's classes are the rules as the servers' lexers state them.
    #[test]
    fn byte_classes_follow_their_definitions() {
        for b in 0..=u8::MAX {
            assert_eq!(is_space(b), b.is_ascii_whitespace() || b == 0x0b, "{b}");
            let word = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
            assert_eq!(is_word_byte(b), word, "{b}");
            let start = b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
            assert_eq!(is_pg_ident_start(b), start, "{b}");
            assert_eq!(is_pg_op_char(b), b"+-*/<>=~!@#%^&|`?".contains(&b), "{b}");
            assert_eq!(has(b, PG_OP_SPECIAL), b"~!@#%^&|`?".contains(&b), "{b}");
            let trivia = is_space(b) || matches!(b, b'#' | b'-' | b'/');
            assert_eq!(has(b, TRIVIA_START), trivia, "{b}");
        }
    }
}
