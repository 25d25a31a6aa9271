//! `db.query.summary`: `{operation} {target}…` such as `SELECT users orders` or `INSERT
//! shipping_details SELECT orders`, identifiers as written, at most [`MAX_SUMMARY_BYTES`],
//! never cut inside a part. Also the schema a MySQL `USE` switches to.

use std::borrow::Cow;

use super::keywords::{Keywords, key, kw};
use super::lexer::{Lexer, Tok};
use super::{Dialect, MAX_SUMMARY_BYTES};

/// Most tokens a summary looks at.
pub(super) const MAX_TOKENS: usize = 4096;

/// A low-cardinality `db.query.summary` such as `SELECT users orders`; `None` when no
/// operation is recognised.
pub fn summarize(text: &str, dialect: Dialect) -> Option<String> {
    summarize_truncated(text, dialect, false)
}

/// [`summarize`] for text that may have been cut by a capture cap: a last token that touches
/// the cut may be a partial table name and is left out.
pub fn summarize_truncated(text: &str, dialect: Dialect, input_truncated: bool) -> Option<String> {
    summary_of(&tokens(text, dialect, input_truncated), dialect)
}

/// The tokens of `text` up to the first place it fails closed. A summary holds no literal, so
/// text cut inside one still summarises up to the cut.
pub(super) fn tokens(text: &str, dialect: Dialect, input_truncated: bool) -> Vec<Tok<'_>> {
    let mut lx = Lexer::new(text, dialect);
    let mut toks = Vec::new();
    let mut last_at_end = false;
    while let Ok(Some(t)) = lx.next_token() {
        toks.push(t);
        last_at_end = lx.at_end();
        if toks.len() >= MAX_TOKENS {
            break;
        }
    }
    if input_truncated && last_at_end {
        toks.pop();
    }
    toks
}

/// The schema the last `USE db` statement of a MySQL text switches to. PostgreSQL has no `USE`.
pub(super) fn use_schema(toks: &[Tok<'_>], dialect: Dialect) -> Option<String> {
    if dialect != Dialect::Mysql {
        return None;
    }
    let mut schema = None;
    for stmt in toks.split(|t| *t == Tok::Punct(";")) {
        if let [Tok::Word(verb), name] = stmt
            && verb.eq_ignore_ascii_case("USE")
        {
            match name {
                Tok::Word(w) if !w.starts_with('@') => schema = Some((*w).to_owned()),
                Tok::Quoted(q) => schema = Some(unquote_backticks(q)),
                _ => {}
            }
        }
    }
    schema
}

fn unquote_backticks(q: &str) -> String {
    let inner = q
        .strip_prefix('`')
        .and_then(|q| q.strip_suffix('`'))
        .unwrap_or(q);
    inner.replace("``", "`")
}

fn word_is(t: Option<&Tok<'_>>, words: &[&str]) -> bool {
    matches!(t, Some(Tok::Word(w)) if words.iter().any(|k| k.eq_ignore_ascii_case(w)))
}

/// Longest keyword the summary matches (`STRAIGHT_JOIN`, `HIGH_PRIORITY`), with room to spare.
const KEYWORD_MAX: usize = 24;

/// `w` in upper case, in `buf` (no allocation per word); "" for a word longer than any keyword.
fn keyword<'b>(w: &str, buf: &'b mut [u8; KEYWORD_MAX]) -> &'b str {
    let Some(dst) = buf.get_mut(..w.len()) else {
        return "";
    };
    dst.copy_from_slice(w.as_bytes());
    dst.make_ascii_uppercase();
    // ASCII case mapping keeps UTF-8 valid.
    std::str::from_utf8(dst).unwrap_or("")
}

/// Keys of the words [`summary_of`] dispatches on.
mod k {
    use super::kw;
    pub(super) const SELECT: u128 = kw("SELECT");
    pub(super) const INSERT: u128 = kw("INSERT");
    pub(super) const REPLACE: u128 = kw("REPLACE");
    pub(super) const UPDATE: u128 = kw("UPDATE");
    pub(super) const DELETE: u128 = kw("DELETE");
    pub(super) const FROM: u128 = kw("FROM");
    pub(super) const JOIN: u128 = kw("JOIN");
    pub(super) const STRAIGHT_JOIN: u128 = kw("STRAIGHT_JOIN");
    pub(super) const CALL: u128 = kw("CALL");
    pub(super) const CREATE: u128 = kw("CREATE");
    pub(super) const DROP: u128 = kw("DROP");
    pub(super) const ALTER: u128 = kw("ALTER");
    pub(super) const TRUNCATE: u128 = kw("TRUNCATE");
    pub(super) const RENAME: u128 = kw("RENAME");
    pub(super) const USE: u128 = kw("USE");
    pub(super) const COPY: u128 = kw("COPY");
    pub(super) const MERGE: u128 = kw("MERGE");
    pub(super) const GRANT: u128 = kw("GRANT");
    pub(super) const REVOKE: u128 = kw("REVOKE");
    pub(super) const SHOW: u128 = kw("SHOW");
    pub(super) const START: u128 = kw("START");
}

/// Statements a first word names on its own (`BEGIN`, `VACUUM`): the operation is the word.
const BARE_OPS: Keywords<44> = Keywords::new([
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SET",
    "SAVEPOINT",
    "RELEASE",
    "LOCK",
    "UNLOCK",
    "EXPLAIN",
    "DESCRIBE",
    "DESC",
    "ANALYZE",
    "OPTIMIZE",
    "REPAIR",
    "CHECK",
    "FLUSH",
    "KILL",
    "DO",
    "HANDLER",
    "LOAD",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "XA",
    "CHECKSUM",
    "VALUES",
    "TABLE",
    "VACUUM",
    "REINDEX",
    "CLUSTER",
    "LISTEN",
    "NOTIFY",
    "UNLISTEN",
    "DISCARD",
    "RESET",
    "DECLARE",
    "FETCH",
    "MOVE",
    "CLOSE",
    "ABORT",
    "END",
    "CHECKPOINT",
    "COMMENT",
    "REFRESH",
]);

/// Before these, INSERT / UPDATE / DELETE name a clause, not a statement: `FOR UPDATE`,
/// `FOR NO KEY UPDATE`, `ON DUPLICATE KEY UPDATE`, `ON CONFLICT DO UPDATE`, `ON DELETE
/// CASCADE`, `WHEN MATCHED THEN UPDATE`, `AFTER INSERT OR UPDATE`, `INSTEAD OF INSERT`.
const CLAUSE_BEFORE: Keywords<9> = Keywords::new([
    "FOR", "KEY", "DO", "THEN", "ON", "BEFORE", "AFTER", "OR", "OF",
]);

/// The summary of already lexed tokens.
pub(super) fn summary_of(toks: &[Tok<'_>], dialect: Dialect) -> Option<String> {
    let mut s = Summary {
        // Most summaries (`SELECT pgbench_accounts`) fit: one allocation, no regrowth.
        out: String::with_capacity(64),
        ..Summary::default()
    };
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
        // Asked only by INSERT, UPDATE and DELETE: the word before this one.
        let before = i.checked_sub(2).and_then(|j| toks.get(j)).copied();
        let clause = || matches!(before, Some(Tok::Word(p)) if CLAUSE_BEFORE.contains(p));
        // Only the rare operations named by the word itself need it upper-cased.
        let mut upper = [0u8; KEYWORD_MAX];
        // 0 is no keyword's key.
        match key(w).unwrap_or(0) {
            k::SELECT => s.op("SELECT"),
            k::INSERT if !clause() => {
                s.op("INSERT");
                i = skip_words(
                    toks,
                    i,
                    &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"],
                );
                i = table_list(toks, i, &mut s, false, dialect);
            }
            k::REPLACE if first => {
                s.op("REPLACE");
                i = skip_words(toks, i, &["LOW_PRIORITY", "DELAYED", "INTO"]);
                i = table_list(toks, i, &mut s, false, dialect);
            }
            k::UPDATE if !clause() => {
                s.op("UPDATE");
                i = skip_words(toks, i, &["LOW_PRIORITY", "IGNORE"]);
                i = table_list(toks, i, &mut s, true, dialect);
            }
            k::DELETE if !clause() => {
                s.op("DELETE");
                i = skip_words(toks, i, &["LOW_PRIORITY", "QUICK", "IGNORE"]);
            }
            // `COPY t FROM STDIN`: the source is not a table.
            k::FROM if s.has_op() && !s.in_copy => i = table_list(toks, i, &mut s, true, dialect),
            k::JOIN | k::STRAIGHT_JOIN if s.has_op() => {
                i = table_list(toks, i, &mut s, false, dialect)
            }
            k::CALL => {
                s.op("CALL");
                i = table_list(toks, i, &mut s, false, dialect);
            }
            k::CREATE | k::DROP | k::ALTER | k::TRUNCATE | k::RENAME if first => {
                i = ddl(toks, i, keyword(w, &mut upper), &mut s, dialect);
            }
            k::USE if first && dialect == Dialect::Mysql => {
                s.op("USE");
                i = table_list(toks, i, &mut s, false, dialect);
            }
            k::COPY if first => {
                s.op("COPY");
                s.in_copy = true;
                i = table_list(toks, i, &mut s, false, dialect);
            }
            k::MERGE if first => {
                s.op("MERGE");
                i = skip_words(toks, i, &["INTO"]);
                i = table_list(toks, i, &mut s, false, dialect);
                if word_is(toks.get(i), &["USING"]) {
                    i = table_list(toks, i + 1, &mut s, false, dialect);
                }
            }
            k::GRANT | k::REVOKE if first => {
                // Privileges (`SELECT, INSERT`) are not operations run here.
                s.op(keyword(w, &mut upper));
                while toks.get(i).is_some_and(|t| *t != Tok::Punct(";")) {
                    i += 1;
                }
            }
            k::SHOW if first => match toks.get(i) {
                Some(Tok::Word(next)) => {
                    s.op_owned(format!("SHOW {}", next.to_ascii_uppercase()));
                    i += 1;
                }
                _ => s.op("SHOW"),
            },
            k::START if first => {
                if word_is(toks.get(i), &["TRANSACTION"]) {
                    s.op("START TRANSACTION");
                    i += 1;
                } else {
                    s.op("START");
                }
            }
            key if first && BARE_OPS.contains_key(key) => s.op(keyword(w, &mut upper)),
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
    /// The last part was an operation with no target yet: where it is in `out`.
    bare_op: Option<std::ops::Range<usize>>,
    ops: u32,
    /// The last operation is `COPY`.
    in_copy: bool,
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
        self.in_copy = false;
        // `SELECT … FROM (SELECT …)`: one SELECT is enough.
        if self
            .bare_op
            .as_ref()
            .is_some_and(|r| self.out.get(r.clone()) == Some(op))
        {
            return;
        }
        if self.push(op) {
            self.bare_op = Some(self.out.len() - op.len()..self.out.len());
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
    const KW: Keywords<61> = Keywords::new([
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
        "LATERAL",
        "TABLESAMPLE",
        "FETCH",
        "OVERRIDING",
        "TO",
        "ONLY",
    ]);
    KW.contains(w)
}

fn skip_words(toks: &[Tok<'_>], mut i: usize, words: &[&str]) -> usize {
    while word_is(toks.get(i), words) {
        i += 1;
    }
    i
}

/// A possibly qualified table name at `i` (`db.t`, `` `my table` ``, `public."Users"`):
/// MySQL backticks are removed, PostgreSQL quotes kept (they make the name case-sensitive).
fn table_name<'a>(
    toks: &[Tok<'a>],
    mut i: usize,
    dialect: Dialect,
) -> (Option<Cow<'a, str>>, usize) {
    // Most names are one unquoted word: borrowed as it is.
    if let Some(Tok::Word(w)) = toks.get(i)
        && toks.get(i + 1) != Some(&Tok::Punct("."))
    {
        if w.starts_with('@') || is_clause_keyword(w) {
            return (None, i);
        }
        return (Some(Cow::Borrowed(w)), i + 1);
    }
    let mut name = String::new();
    loop {
        match toks.get(i) {
            Some(Tok::Word(w))
                if !w.starts_with('@') && (!name.is_empty() || !is_clause_keyword(w)) =>
            {
                name.push_str(w)
            }
            // No identifier holds NUL (MySQL forbids it, PostgreSQL's query is a C string):
            // bytes that do are not a name, and a name never carries them into a span name.
            Some(Tok::Quoted(q)) if q.contains('\0') => break,
            Some(Tok::Quoted(q)) if dialect == Dialect::Mysql => {
                name.push_str(&unquote_backticks(q))
            }
            Some(Tok::Quoted(q)) => name.push_str(q),
            _ => break,
        }
        i += 1;
        if toks.get(i) == Some(&Tok::Punct(".")) {
            name.push('.');
            i += 1;
        } else {
            break;
        }
    }
    let name = name.trim_end_matches('.');
    ((!name.is_empty()).then(|| Cow::Owned(name.to_owned())), i)
}

/// Reads `t [AS] alias [, t2 …]` from `i`; `list` allows comma-separated tables.
fn table_list(
    toks: &[Tok<'_>],
    mut i: usize,
    s: &mut Summary,
    list: bool,
    dialect: Dialect,
) -> usize {
    loop {
        if dialect == Dialect::Postgres {
            // `FROM ONLY t`: no descendant tables.
            i = skip_words(toks, i, &["ONLY"]);
        }
        let (name, next) = table_name(toks, i, dialect);
        let Some(name) = name else {
            return i;
        };
        s.target(&name);
        i = next;
        // Alias.
        if word_is(toks.get(i), &["AS"]) {
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
fn ddl(toks: &[Tok<'_>], mut i: usize, verb: &str, s: &mut Summary, dialect: Dialect) -> usize {
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
        "EXTENSION",
        "TYPE",
        "DOMAIN",
    ];
    const MODIFIERS: &[&str] = &[
        "TEMPORARY",
        "TEMP",
        "OR",
        "REPLACE",
        "UNIQUE",
        "FULLTEXT",
        "SPATIAL",
        "ONLINE",
        "OFFLINE",
        "IGNORE",
        "UNLOGGED",
        "MATERIALIZED",
        "GLOBAL",
        "LOCAL",
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
    i = skip_words(toks, i, &["CONCURRENTLY", "IF", "NOT", "EXISTS"]);
    table_list(toks, i, s, false, dialect)
}
