//! SQL sanitiser (`db.query.text`) and summariser (`db.query.summary`), MySQL dialect.
//!
//! One single-pass lexer serves both. Sanitising replaces every literal with `?`: quoted
//! strings (`'…'`, `"…"`, backslash and doubled-quote escapes, charset introducers and
//! `N'…'`), numbers (decimals, exponents, a sign after an operator), hex (`0x…`, `X'…'`) and
//! bit values (`0b…`, `b'…'`), and `TRUE`/`FALSE`; `NULL` is a keyword and stays. Comments
//! (`-- `, `#`, `/* */`, including `/*! */` and `/*+ */`) are removed because they may hold
//! secrets. `IN (?, ?, ?)` collapses to `IN (?)`. Whitespace becomes single spaces.
//!
//! It fails closed (semantic conventions "Sanitization of db.query.text"): text that ends
//! inside a literal, a quoted identifier or a block comment yields `None`, as does a line
//! comment cut by a truncated capture, so a literal cut by the capture cap can never leak. The
//! output is cut to `max_bytes` on a token boundary (tokens are ASCII or whole UTF-8 runs, so
//! this is also a character boundary).
//!
//! The summary follows `db.query.summary`: `{operation} {target}…` such as `SELECT users
//! orders` or `INSERT shipping_details SELECT orders`, identifiers in their original case,
//! at most 255 bytes, never cut inside a token.

/// Most bytes of a `db.query.summary`.
pub const MAX_SUMMARY_BYTES: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    /// Unquoted identifier or keyword, also `@var` / `@@var`.
    Word(&'a str),
    /// Backtick-quoted identifier, with its backticks.
    Quoted(&'a str),
    /// Any literal (never echoed).
    Literal,
    /// `?` parameter marker.
    Placeholder,
    /// Operator or punctuation.
    Punct(&'a str),
}

/// The lexer stopped inside something it cannot close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unterminated;

struct Lexer<'a> {
    src: &'a str,
    at: usize,
    /// Whitespace or a comment came before the token just returned.
    spaced: bool,
    /// The previous token can be the left operand of a binary `-`/`+`.
    prev_operand: bool,
    /// A line comment ran to the end of the text.
    comment_at_end: bool,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Keywords after which `-5` is a negative number rather than a subtraction.
fn is_operator_keyword(w: &str) -> bool {
    const KW: &[&str] = &[
        "SELECT", "WHERE", "AND", "OR", "NOT", "ON", "BY", "SET", "VALUES", "VALUE", "IN", "IS",
        "LIKE", "BETWEEN", "WHEN", "THEN", "ELSE", "CASE", "RETURN", "LIMIT", "OFFSET", "HAVING",
        "INTERVAL", "DIV", "MOD", "XOR", "AS", "DEFAULT", "IF", "REGEXP", "RLIKE", "ESCAPE",
        "DISTINCT", "ALL", "ANY", "SOME",
    ];
    KW.iter().any(|k| k.eq_ignore_ascii_case(w))
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Lexer<'a> {
        Lexer {
            src,
            at: 0,
            spaced: false,
            prev_operand: false,
            comment_at_end: false,
        }
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.src.as_bytes().get(i).copied()
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or_default()
    }

    /// Skips whitespace and comments; `Err` inside an unterminated block comment.
    fn skip_trivia(&mut self) -> Result<(), Unterminated> {
        self.spaced = false;
        loop {
            match (
                self.byte(self.at),
                self.byte(self.at + 1),
                self.byte(self.at + 2),
            ) {
                (Some(b), ..) if b.is_ascii_whitespace() => self.at += 1,
                (Some(b'#'), ..) => self.line_comment(),
                (Some(b'-'), Some(b'-'), c) if c.is_none_or(|c| c.is_ascii_whitespace()) => {
                    self.line_comment()
                }
                (Some(b'/'), Some(b'*'), _) => {
                    let body = self.src.as_bytes().get(self.at + 2..).unwrap_or_default();
                    let end = body
                        .windows(2)
                        .position(|w| w == b"*/")
                        .ok_or(Unterminated)?;
                    self.at += 2 + end + 2;
                }
                _ => return Ok(()),
            }
            self.spaced = true;
        }
    }

    fn line_comment(&mut self) {
        let rest = self.src.as_bytes().get(self.at..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => self.at += n + 1,
            None => {
                self.at = self.src.len();
                self.comment_at_end = true;
            }
        }
    }

    /// Scans a quoted run opened at `self.at` by `q`; backslash escapes apply to strings.
    fn quoted(&mut self, q: u8, backslash: bool) -> Result<(), Unterminated> {
        let mut i = self.at + 1;
        loop {
            match self.byte(i) {
                None => return Err(Unterminated),
                Some(b'\\') if backslash => i += 2,
                Some(b) if b == q => {
                    if self.byte(i + 1) == Some(q) {
                        i += 2;
                    } else {
                        self.at = i + 1;
                        return Ok(());
                    }
                }
                Some(_) => i += 1,
            }
        }
    }

    fn digits(&mut self, pred: fn(u8) -> bool) {
        while self.byte(self.at).is_some_and(pred) {
            self.at += 1;
        }
    }

    /// Scans a number at `self.at` (sign already consumed). Returns `false` when the digits run
    /// into identifier characters (MySQL allows identifiers such as `1abc`).
    fn number(&mut self) -> bool {
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
            self.at += 1;
            self.digits(|b| b.is_ascii_digit());
        }
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
        if self.byte(self.at).is_some_and(is_word_byte) && self.at > start {
            // `1abc`, `2fa_codes`: an identifier that starts with digits.
            self.at = start;
            return false;
        }
        true
    }

    fn next(&mut self) -> Result<Option<Tok<'a>>, Unterminated> {
        self.skip_trivia()?;
        let start = self.at;
        let Some(b) = self.byte(start) else {
            return Ok(None);
        };
        let next = self.byte(start + 1);
        let tok = match b {
            b'\'' | b'"' => {
                self.quoted(b, true)?;
                Tok::Literal
            }
            b'`' => {
                self.quoted(b'`', false)?;
                Tok::Quoted(self.slice(start, self.at))
            }
            b'?' => {
                self.at += 1;
                Tok::Placeholder
            }
            b'0'..=b'9' => self.number_or_word(start),
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) && !self.prev_operand => {
                self.number();
                Tok::Literal
            }
            b'-' | b'+'
                if !self.prev_operand
                    && (next.is_some_and(|c| c.is_ascii_digit())
                        || (next == Some(b'.')
                            && self.byte(start + 2).is_some_and(|c| c.is_ascii_digit()))) =>
            {
                self.at += 1;
                if self.number() {
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
                while self.byte(self.at).is_some_and(is_word_byte) {
                    self.at += 1;
                }
                let word = self.slice(start, self.at);
                let introducer = word.starts_with('_')
                    || ["x", "b", "n"].iter().any(|p| p.eq_ignore_ascii_case(word));
                if introducer && self.byte(self.at) == Some(b'\'') {
                    // X'..', b'..', N'..', _utf8mb4'..'
                    self.quoted(b'\'', true)?;
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
        };
        self.prev_operand = match tok {
            Tok::Word(w) => !is_operator_keyword(w),
            Tok::Punct(p) => p == ")",
            Tok::Quoted(_) | Tok::Literal | Tok::Placeholder => true,
        };
        Ok(Some(tok))
    }

    fn number_or_word(&mut self, start: usize) -> Tok<'a> {
        if self.number() {
            return Tok::Literal;
        }
        self.at = start;
        while self.byte(self.at).is_some_and(is_word_byte) {
            self.at += 1;
        }
        Tok::Word(self.slice(start, self.at))
    }
}

/// Replaces every literal in `text` with `?`; `None` when that cannot be done safely.
pub fn sanitize(text: &str, max_bytes: usize) -> Option<String> {
    sanitize_truncated(text, max_bytes, false)
}

/// [`sanitize`] for text that may have been cut by a capture cap (`input_truncated`): then a
/// line comment running to the end fails closed and the last, possibly partial, token is
/// dropped.
pub fn sanitize_truncated(text: &str, max_bytes: usize, input_truncated: bool) -> Option<String> {
    #[derive(Clone, Copy)]
    enum InList {
        No,
        SawIn,
        /// Output offset of `(`, items so far, whether an item is expected next.
        Open(usize, u32, bool),
    }
    let mut lx = Lexer::new(text);
    let mut out = String::with_capacity(text.len().min(max_bytes));
    let mut full = false;
    let mut in_list = InList::No;
    let mut last_start = 0usize;
    while let Some(tok) = lx.next().ok()? {
        let piece = match tok {
            Tok::Word(w) | Tok::Quoted(w) | Tok::Punct(w) => w,
            Tok::Literal | Tok::Placeholder => "?",
        };
        if full {
            continue;
        }
        let space = lx.spaced && !out.is_empty();
        if out.len() + usize::from(space) + piece.len() > max_bytes {
            full = true;
            continue;
        }
        last_start = out.len();
        if space {
            out.push(' ');
        }
        let at = out.len();
        out.push_str(piece);
        in_list = match (in_list, tok) {
            (_, Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => InList::SawIn,
            (InList::SawIn, Tok::Punct("(")) => InList::Open(at, 0, true),
            (InList::Open(m, n, true), Tok::Literal | Tok::Placeholder) => {
                InList::Open(m, n + 1, false)
            }
            (InList::Open(m, n, false), Tok::Punct(",")) => InList::Open(m, n, true),
            (InList::Open(m, n, false), Tok::Punct(")")) if n > 1 => {
                out.truncate(m);
                out.push_str("(?)");
                InList::No
            }
            _ => InList::No,
        };
    }
    if input_truncated && lx.comment_at_end {
        return None;
    }
    let ends_clean = text.as_bytes().last().is_some_and(u8::is_ascii_whitespace);
    if input_truncated && !ends_clean && !full {
        out.truncate(last_start.min(out.len()));
    }
    (!out.is_empty()).then_some(out)
}

/// A low-cardinality `db.query.summary` such as `SELECT users orders`; `None` when no
/// operation is recognised.
pub fn summarize(text: &str) -> Option<String> {
    let mut lx = Lexer::new(text);
    let mut toks = Vec::new();
    // A summary holds no literal, so text cut inside one still summarises up to the cut.
    while let Ok(Some(t)) = lx.next() {
        toks.push(t);
        if toks.len() >= 4096 {
            break;
        }
    }
    let mut s = Summary::default();
    let mut i = 0usize;
    let mut first = true;
    while let Some(&tok) = toks.get(i) {
        i += 1;
        let Tok::Word(w) = tok else {
            // A new statement in a multi-statement text.
            first = tok == Tok::Punct(";");
            if first {
                s.bare_op = None;
            }
            continue;
        };
        let kw = w.to_ascii_uppercase();
        match kw.as_str() {
            "SELECT" => s.op("SELECT"),
            "INSERT" | "REPLACE" => {
                s.op(if kw == "INSERT" { "INSERT" } else { "REPLACE" });
                i = skip_words(
                    &toks,
                    i,
                    &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"],
                );
                i = table_list(&toks, i, &mut s, false);
            }
            "UPDATE" => {
                s.op("UPDATE");
                i = skip_words(&toks, i, &["LOW_PRIORITY", "IGNORE"]);
                i = table_list(&toks, i, &mut s, true);
            }
            "DELETE" => {
                s.op("DELETE");
                i = skip_words(&toks, i, &["LOW_PRIORITY", "QUICK", "IGNORE"]);
            }
            "FROM" if s.has_op() => i = table_list(&toks, i, &mut s, true),
            "JOIN" | "STRAIGHT_JOIN" if s.has_op() => i = table_list(&toks, i, &mut s, false),
            "CALL" => {
                s.op("CALL");
                i = table_list(&toks, i, &mut s, false);
            }
            "CREATE" | "DROP" | "ALTER" | "TRUNCATE" | "RENAME" if first => {
                i = ddl(&toks, i, &kw, &mut s);
            }
            "USE" if first => {
                s.op("USE");
                i = table_list(&toks, i, &mut s, false);
            }
            "SHOW" if first => match toks.get(i) {
                Some(Tok::Word(next)) => {
                    s.op_owned(format!("SHOW {}", next.to_ascii_uppercase()));
                    i += 1;
                }
                _ => s.op("SHOW"),
            },
            "START" if first => {
                if matches!(toks.get(i), Some(Tok::Word(t)) if t.eq_ignore_ascii_case("TRANSACTION"))
                {
                    s.op("START TRANSACTION");
                    i += 1;
                } else {
                    s.op("START");
                }
            }
            "BEGIN" | "COMMIT" | "ROLLBACK" | "SET" | "SAVEPOINT" | "RELEASE" | "GRANT"
            | "REVOKE" | "LOCK" | "UNLOCK" | "EXPLAIN" | "DESCRIBE" | "DESC" | "ANALYZE"
            | "OPTIMIZE" | "REPAIR" | "CHECK" | "FLUSH" | "KILL" | "DO" | "HANDLER" | "LOAD"
            | "PREPARE" | "EXECUTE" | "DEALLOCATE" | "XA" | "CHECKSUM" | "VALUES" | "TABLE"
                if first =>
            {
                s.op_owned(kw.clone());
            }
            _ => {}
        }
        first = false;
    }
    s.finish()
}

#[derive(Default)]
struct Summary {
    out: String,
    full: bool,
    /// The last part was an operation with no target yet.
    bare_op: Option<String>,
    ops: u32,
}

impl Summary {
    fn push(&mut self, part: &str) -> bool {
        if self.full {
            return false;
        }
        let extra = usize::from(!self.out.is_empty()) + part.len();
        if self.out.len() + extra > MAX_SUMMARY_BYTES {
            self.full = true;
            return false;
        }
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        self.out.push_str(part);
        true
    }

    fn op(&mut self, op: &str) {
        // `SELECT … FROM (SELECT …)`: one SELECT is enough.
        if self.bare_op.as_deref() == Some(op) {
            return;
        }
        if self.push(op) {
            self.bare_op = Some(op.to_owned());
            self.ops += 1;
        }
    }

    fn op_owned(&mut self, op: String) {
        self.op(&op);
    }

    fn target(&mut self, t: &str) {
        if self.push(t) {
            self.bare_op = None;
        }
    }

    fn has_op(&self) -> bool {
        self.ops > 0
    }

    fn finish(self) -> Option<String> {
        (self.ops > 0).then_some(self.out)
    }
}

/// Words that end a table list or cannot be an alias.
fn is_clause_keyword(w: &str) -> bool {
    const KW: &[&str] = &[
        "WHERE",
        "JOIN",
        "LEFT",
        "RIGHT",
        "INNER",
        "OUTER",
        "CROSS",
        "NATURAL",
        "STRAIGHT_JOIN",
        "FULL",
        "ON",
        "USING",
        "GROUP",
        "ORDER",
        "LIMIT",
        "HAVING",
        "SET",
        "UNION",
        "FOR",
        "WINDOW",
        "INTO",
        "VALUES",
        "VALUE",
        "PARTITION",
        "USE",
        "FORCE",
        "IGNORE",
        "LOCK",
        "PROCEDURE",
        "EXCEPT",
        "INTERSECT",
        "RETURNING",
        "WITH",
        "SELECT",
        "AS",
        "DUPLICATE",
        "OFFSET",
        "FROM",
        "TABLE",
        "IF",
        "NOT",
        "EXISTS",
        "LIKE",
        "WHEN",
        "THEN",
        "AND",
        "OR",
        "DEFAULT",
        "CHARACTER",
        "CHARSET",
        "COLLATE",
        "ENGINE",
        "READ",
        "WRITE",
        "LOW_PRIORITY",
    ];
    KW.iter().any(|k| k.eq_ignore_ascii_case(w))
}

fn skip_words(toks: &[Tok<'_>], mut i: usize, words: &[&str]) -> usize {
    while let Some(Tok::Word(w)) = toks.get(i) {
        if !words.iter().any(|k| k.eq_ignore_ascii_case(w)) {
            break;
        }
        i += 1;
    }
    i
}

/// A possibly qualified table name at `i` (`db.t`, `` `my table` ``), unquoted.
fn table_name(toks: &[Tok<'_>], mut i: usize) -> (Option<String>, usize) {
    let mut name = String::new();
    loop {
        let part = match toks.get(i) {
            Some(Tok::Word(w))
                if !w.starts_with('@') && (!name.is_empty() || !is_clause_keyword(w)) =>
            {
                (*w).to_owned()
            }
            Some(Tok::Quoted(q)) => {
                let inner = q.get(1..q.len().saturating_sub(1)).unwrap_or_default();
                inner.replace("``", "`")
            }
            _ => break,
        };
        name.push_str(&part);
        i += 1;
        if toks.get(i) == Some(&Tok::Punct(".")) {
            name.push('.');
            i += 1;
        } else {
            break;
        }
    }
    let name = name.trim_end_matches('.').to_owned();
    ((!name.is_empty()).then_some(name), i)
}

/// Reads `t [AS] alias [, t2 …]` from `i`; `list` allows comma-separated tables.
fn table_list(toks: &[Tok<'_>], mut i: usize, s: &mut Summary, list: bool) -> usize {
    loop {
        let (name, next) = table_name(toks, i);
        let Some(name) = name else {
            return i;
        };
        s.target(&name);
        i = next;
        // Alias.
        if matches!(toks.get(i), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("AS")) {
            i += 1;
        }
        match toks.get(i) {
            Some(Tok::Word(w)) if !is_clause_keyword(w) && !w.starts_with('@') => i += 1,
            Some(Tok::Quoted(_)) => i += 1,
            _ => {}
        }
        if list && toks.get(i) == Some(&Tok::Punct(",")) {
            i += 1;
            continue;
        }
        return i;
    }
}

/// `CREATE [modifiers] TABLE [IF NOT EXISTS] name` and friends.
fn ddl(toks: &[Tok<'_>], mut i: usize, verb: &str, s: &mut Summary) -> usize {
    const OBJECTS: &[&str] = &[
        "TABLE",
        "INDEX",
        "VIEW",
        "DATABASE",
        "SCHEMA",
        "PROCEDURE",
        "FUNCTION",
        "TRIGGER",
        "EVENT",
        "USER",
        "ROLE",
        "SEQUENCE",
        "TABLESPACE",
        "SERVER",
    ];
    const MODIFIERS: &[&str] = &[
        "TEMPORARY",
        "OR",
        "REPLACE",
        "UNIQUE",
        "FULLTEXT",
        "SPATIAL",
        "ONLINE",
        "OFFLINE",
        "IGNORE",
    ];
    i = skip_words(toks, i, MODIFIERS);
    let object = match toks.get(i) {
        Some(Tok::Word(w)) if OBJECTS.iter().any(|o| o.eq_ignore_ascii_case(w)) => {
            i += 1;
            Some(w.to_ascii_uppercase())
        }
        _ => None,
    };
    match &object {
        Some(o) => s.op_owned(format!("{verb} {o}")),
        None => s.op(verb),
    }
    // Account names are literals in MySQL; no target for users and roles.
    if matches!(object.as_deref(), Some("USER" | "ROLE")) {
        return i;
    }
    i = skip_words(toks, i, &["IF", "NOT", "EXISTS"]);
    table_list(toks, i, s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 2048;

    #[test]
    fn sanitize_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("SELECT 1", Some("SELECT ?")),
            (
                "select * from users where id = 42",
                Some("select * from users where id = ?"),
            ),
            (
                "SELECT * FROM t WHERE name = 'bob'",
                Some("SELECT * FROM t WHERE name = ?"),
            ),
            (
                "SELECT * FROM t WHERE name = \"bob\"",
                Some("SELECT * FROM t WHERE name = ?"),
            ),
            ("SELECT 'it''s'", Some("SELECT ?")),
            ("SELECT 'it\\'s', 2", Some("SELECT ?, ?")),
            ("SELECT \"a\"\"b\"", Some("SELECT ?")),
            ("SELECT 'a\\\\' , 'b'", Some("SELECT ? , ?")),
            ("SELECT 3.14, .5, 1e10, 2.5E-3", Some("SELECT ?, ?, ?, ?")),
            ("SELECT 0xDEADBEEF, X'0aff', x'00'", Some("SELECT ?, ?, ?")),
            ("SELECT 0b1010, b'101', B'1'", Some("SELECT ?, ?, ?")),
            ("SELECT N'abc', _utf8mb4'héllo'", Some("SELECT ?, ?")),
            (
                "SELECT * FROM t WHERE a = -5",
                Some("SELECT * FROM t WHERE a = ?"),
            ),
            ("SELECT a - 5 FROM t", Some("SELECT a - ? FROM t")),
            ("SELECT a-5 FROM t", Some("SELECT a-? FROM t")),
            ("SELECT -1", Some("SELECT ?")),
            (
                "SELECT * FROM t WHERE x IN (1, 2, 3)",
                Some("SELECT * FROM t WHERE x IN (?)"),
            ),
            (
                "SELECT * FROM t WHERE x IN ('a','b')",
                Some("SELECT * FROM t WHERE x IN (?)"),
            ),
            (
                "SELECT * FROM t WHERE x NOT IN (?, ?)",
                Some("SELECT * FROM t WHERE x NOT IN (?)"),
            ),
            (
                "SELECT * FROM t WHERE x IN (1)",
                Some("SELECT * FROM t WHERE x IN (?)"),
            ),
            (
                "SELECT * FROM t WHERE x IN (SELECT y FROM u)",
                Some("SELECT * FROM t WHERE x IN (SELECT y FROM u)"),
            ),
            (
                "SELECT * FROM t WHERE x IN (a, b)",
                Some("SELECT * FROM t WHERE x IN (a, b)"),
            ),
            ("SELECT TRUE, FALSE, NULL", Some("SELECT ?, ?, NULL")),
            (
                "SELECT * FROM `my table` WHERE `c``d` = 1",
                Some("SELECT * FROM `my table` WHERE `c``d` = ?"),
            ),
            (
                "SELECT a FROM t -- password 'x'\nWHERE b = 2",
                Some("SELECT a FROM t WHERE b = ?"),
            ),
            (
                "SELECT a FROM t # secret\nWHERE b = 2",
                Some("SELECT a FROM t WHERE b = ?"),
            ),
            ("SELECT /* secret 'x' */ a FROM t", Some("SELECT a FROM t")),
            (
                "SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t",
                Some("SELECT a FROM t"),
            ),
            ("SELECT a/*x*/FROM t", Some("SELECT a FROM t")),
            ("SELECT a--b FROM t", Some("SELECT a--b FROM t")),
            (
                "  SELECT\n\t a ,\r\n b  FROM   t  ",
                Some("SELECT a , b FROM t"),
            ),
            (
                "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')",
                Some("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"),
            ),
            (
                "UPDATE t SET a = 'p@ss' WHERE id = 7",
                Some("UPDATE t SET a = ? WHERE id = ?"),
            ),
            (
                "SELECT * FROM t WHERE a = ? AND b = ?",
                Some("SELECT * FROM t WHERE a = ? AND b = ?"),
            ),
            (
                "SELECT @a := 5, @@session.sql_mode",
                Some("SELECT @a := ?, @@session.sql_mode"),
            ),
            (
                "SELECT * FROM t1 JOIN t2 ON t1.id = t2.id",
                Some("SELECT * FROM t1 JOIN t2 ON t1.id = t2.id"),
            ),
            ("SELECT 1abc FROM t2fa", Some("SELECT 1abc FROM t2fa")),
            (
                "SELECT DATE '2024-01-01', INTERVAL 3 DAY",
                Some("SELECT DATE ?, INTERVAL ? DAY"),
            ),
            ("SELECT 'héllo wörld' AS «x»", Some("SELECT ? AS «x»")),
            ("SELECT * FROM t WHERE a = 'unterminated", None),
            ("SELECT * FROM t WHERE a = \"unterminated", None),
            ("SELECT * FROM t WHERE a = 'ends with backslash\\'", None),
            ("SELECT /* unterminated comment", None),
            ("SELECT * FROM `unterminated", None),
            ("SELECT X'00", None),
            ("", None),
            ("   ", None),
            ("-- only a comment\n", None),
            ("SELECT 1; SELECT 'two'", Some("SELECT ?; SELECT ?")),
            ("CALL p(1, 'a')", Some("CALL p(?, ?)")),
            ("SELECT a+1, b*-2 FROM t", Some("SELECT a+?, b*? FROM t")),
            ("SELECT f(-.5)", Some("SELECT f(?)")),
            (
                "SELECT * FROM t LIMIT 10 OFFSET 20",
                Some("SELECT * FROM t LIMIT ? OFFSET ?"),
            ),
        ];
        assert!(cases.len() >= 40);
        for (input, want) in cases {
            assert_eq!(sanitize(input, CAP).as_deref(), *want, "input: {input:?}");
        }
    }

    #[test]
    fn truncated_input_fails_closed_or_drops_the_partial_token() {
        // Cut inside a literal.
        assert_eq!(
            sanitize_truncated("SELECT * FROM t WHERE p = 'hunt", CAP, true),
            None
        );
        // Cut inside a line comment.
        assert_eq!(sanitize_truncated("SELECT 1 -- token=ab", CAP, true), None);
        // Cut after a number: the partial number is dropped (and was a `?` anyway).
        assert_eq!(
            sanitize_truncated("SELECT * FROM t WHERE id = 12", CAP, true).as_deref(),
            Some("SELECT * FROM t WHERE id =")
        );
        // Cut inside an identifier: the partial identifier is dropped.
        assert_eq!(
            sanitize_truncated("SELECT * FROM use", CAP, true).as_deref(),
            Some("SELECT * FROM")
        );
        assert_eq!(
            sanitize_truncated("SELECT * FROM users ", CAP, true).as_deref(),
            Some("SELECT * FROM users")
        );
    }

    #[test]
    fn output_is_cut_on_a_token_boundary() {
        let q = "SELECT alpha, beta, gamma FROM tbl WHERE x = 'secret'";
        let out = sanitize(q, 20).unwrap();
        assert!(out.len() <= 20, "{out}");
        assert_eq!(out, "SELECT alpha, beta,");
        let out = sanitize("SELECT 'ééé', ñandú FROM t", 14).unwrap();
        assert_eq!(out, "SELECT ?,");
        // A literal past the cut still fails closed.
        assert_eq!(sanitize("SELECT a, b, c, d, 'x", 8), None);
    }

    #[test]
    fn summaries() {
        let cases: &[(&str, Option<&str>)] = &[
            ("SELECT * FROM users WHERE id = 1", Some("SELECT users")),
            (
                "select * from Users u join orders o on u.id = o.uid",
                Some("SELECT Users orders"),
            ),
            ("SELECT * FROM a, b AS bb, c WHERE 1", Some("SELECT a b c")),
            ("SELECT * FROM shop.items", Some("SELECT shop.items")),
            ("SELECT * FROM `my table`", Some("SELECT my table")),
            ("INSERT INTO orders (a) VALUES (1)", Some("INSERT orders")),
            ("INSERT IGNORE INTO orders SET a = 1", Some("INSERT orders")),
            (
                "INSERT INTO shipping_details SELECT * FROM orders",
                Some("INSERT shipping_details SELECT orders"),
            ),
            ("REPLACE INTO t VALUES (1)", Some("REPLACE t")),
            (
                "UPDATE accounts SET balance = 0 WHERE id = 3",
                Some("UPDATE accounts"),
            ),
            (
                "UPDATE a JOIN b ON a.id = b.id SET a.x = 1",
                Some("UPDATE a b"),
            ),
            (
                "DELETE FROM sessions WHERE expired = 1",
                Some("DELETE sessions"),
            ),
            ("CREATE TABLE t (id INT)", Some("CREATE TABLE t")),
            (
                "CREATE TEMPORARY TABLE IF NOT EXISTS tmp (id INT)",
                Some("CREATE TABLE tmp"),
            ),
            ("DROP TABLE IF EXISTS old", Some("DROP TABLE old")),
            ("ALTER TABLE t ADD COLUMN c INT", Some("ALTER TABLE t")),
            ("TRUNCATE TABLE logs", Some("TRUNCATE TABLE logs")),
            (
                "CREATE USER 'bob'@'%' IDENTIFIED BY 'pw'",
                Some("CREATE USER"),
            ),
            ("CALL refresh_stats(1)", Some("CALL refresh_stats")),
            ("USE shop", Some("USE shop")),
            ("USE `shop`", Some("USE shop")),
            ("SELECT 1", Some("SELECT")),
            (
                "SELECT * FROM (SELECT id FROM inner_t) x",
                Some("SELECT inner_t"),
            ),
            ("BEGIN", Some("BEGIN")),
            ("START TRANSACTION", Some("START TRANSACTION")),
            ("COMMIT", Some("COMMIT")),
            ("SET autocommit=1", Some("SET")),
            ("SHOW TABLES", Some("SHOW TABLES")),
            ("/* c */ SELECT a FROM t", Some("SELECT t")),
            ("SELECT * FROM t WHERE s = 'FROM x'", Some("SELECT t")),
            ("hello world", None),
            ("", None),
            ("SELECT * FROM t WHERE a = 'cut", Some("SELECT t")),
        ];
        for (input, want) in cases {
            assert_eq!(summarize(input).as_deref(), *want, "input: {input:?}");
        }
    }

    #[test]
    fn summary_is_bounded_and_never_cuts_a_token() {
        let tables: Vec<String> = (0..100).map(|i| format!("table_number_{i}")).collect();
        let q = format!("SELECT * FROM {}", tables.join(", "));
        let s = summarize(&q).unwrap();
        assert!(s.len() <= MAX_SUMMARY_BYTES);
        for part in s.split(' ').skip(1) {
            assert!(tables.iter().any(|t| t == part), "{part}");
        }
    }

    proptest::proptest! {
        #[test]
        fn sanitize_never_panics_and_never_echoes_a_string(s in ".{0,200}", cap in 0usize..300) {
            if let Some(out) = sanitize(&s, cap) {
                proptest::prop_assert!(out.len() <= cap);
            }
            let _ = summarize(&s);
            let _ = sanitize_truncated(&s, cap, true);
        }

        #[test]
        fn quoted_secrets_never_survive(secret in "[a-zA-Z0-9 ]{1,20}", prefix in "[a-z =,(]{0,10}") {
            let q = format!("SELECT {prefix} 'SECRET{secret}'");
            if let Some(out) = sanitize(&q, 4096) {
                proptest::prop_assert!(!out.contains("SECRET"));
            }
        }
    }
}
