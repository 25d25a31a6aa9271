//! SQL sanitiser (`db.query.text`) and summariser (`db.query.summary`) for the MySQL and
//! PostgreSQL dialects, and [`statement`], the one call each SQL protocol makes per statement.
//!
//! One truncation-tolerant single-pass lexer (`lexer.rs`), parameterised by [`Dialect`], serves
//! both. Sanitising replaces every literal with `?`, removes comments (they may hold secrets),
//! collapses `IN (?, ?, ?)` to `IN (?)` and whitespace to single spaces, and cuts the output to
//! a byte cap on a token boundary (tokens are ASCII or whole UTF-8 runs, so this is also a
//! character boundary). Numbers (decimals, exponents, a sign after an operator) and
//! `TRUE`/`FALSE` become `?` in both dialects; `NULL` is a keyword and stays.
//!
//! | | MySQL | PostgreSQL |
//! |---|---|---|
//! | strings → `?` | `'…'` and `"…"` with `\` escapes and doubled quotes; `N'…'`, `_utf8mb4'…'` | `'…'` with doubled quotes only; `E'…'` with `\` escapes; `N'…'`, `U&'…'` |
//! | binary → `?` | `0x…`, `X'…'`, `0b…`, `b'…'` | `B'…'`, `X'…'`, `0x…` / `0o…` / `0b…` (PostgreSQL 16) |
//! | other literals → `?` | | `$$…$$`, `$tag$…$tag$` dollar quotes |
//! | typed literals | `DATE '…'` → `DATE ?` | `DATE '…'`, `INTERVAL '…'` → keyword kept, `::int` casts kept |
//! | kept as written | `` `identifiers` ``, `?` markers, `@var` | `"identifiers"`, `U&"…"`, `$1` parameters |
//! | comments removed | `#`, `-- ` (dash dash whitespace/control), `/* */`, `/*! */`, `/*+ */` | `--` (any), nested `/* /* */ */` |
//!
//! It fails closed (semantic conventions "Sanitization of db.query.text"): text that ends inside
//! a literal, a quoted identifier, a dollar quote or a (nested) block comment yields `None`, as
//! does a line comment cut by a truncated capture, so a literal cut by the capture cap can never
//! leak. So does text that reads two ways: a PostgreSQL `'…'` holding a quote after an odd run
//! of backslashes (`standard_conforming_strings = off` would escape it), and a MySQL `/*! */` or
//! `/*+ */` comment whose end moves when its body is read as SQL (a `*/` inside a quoted string).
//!
//! The summary follows `db.query.summary`: `{operation} {target}…` such as `SELECT users
//! orders` or `INSERT shipping_details SELECT orders`, identifiers in their original case
//! (PostgreSQL quoted names with their quotes, `public."Users"`; MySQL backticks removed), at
//! most [`MAX_SUMMARY_BYTES`], never cut inside a part.
//!
//! Known limits:
//! - The lexer assumes the servers' default settings. MySQL with `NO_BACKSLASH_ESCAPES` reads
//!   `'a\'` as a whole string where this lexer reads on: the text then mostly fails closed at the
//!   next unbalanced quote, but a crafted text can show the server's string content as words.
//!   MySQL `ANSI_QUOTES` makes `"…"` identifiers, which are then replaced by `?` (safe, lossy).
//! - PostgreSQL `'…'` ending in a backslash (`'C:\'`) fails closed (see above).
//! - PostgreSQL numbers followed by identifier bytes (`123abc`) are one literal.
//! - The summary keeps one `SELECT` for `SELECT … FROM (SELECT …)` (the conventions' example
//!   shows `SELECT SELECT`), names a CTE like a table, and looks at the first 4096 tokens.
//! - PostgreSQL `psql` variables (`:name`) are client-side and not expected on the wire.

mod keywords;
mod lexer;
mod sanitize;
mod statement;
mod summary;
#[cfg(test)]
mod tests;

pub use sanitize::{sanitize, sanitize_truncated};
pub use statement::{Statement, statement};
pub use summary::{summarize, summarize_truncated};

/// Most bytes of a `db.query.summary`.
pub const MAX_SUMMARY_BYTES: usize = 255;

/// The lexical rules a text is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// MySQL and MariaDB with default `sql_mode` (backslash escapes on, `ANSI_QUOTES` off).
    Mysql,
    /// PostgreSQL with `standard_conforming_strings = on` (the default since 9.1).
    Postgres,
}
