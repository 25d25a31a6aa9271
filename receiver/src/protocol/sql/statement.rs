//! The one call a SQL protocol makes for a statement seen on the wire.

use std::borrow::Cow;

use super::Dialect;
use super::lexer::Lexer;
use super::sanitize::Sanitizer;
use super::summary::{MAX_TOKENS, summary_of, use_schema};

/// What a statement's text yields for a record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statement {
    /// `db.query.text`: sanitised, at most `max_text_bytes`; `None` when it fails closed.
    pub text: Option<String>,
    /// `db.query.summary`, at most [`super::MAX_SUMMARY_BYTES`].
    pub summary: Option<String>,
    /// The schema a MySQL `USE db` switches to once it succeeds; always `None` for PostgreSQL.
    pub use_schema: Option<String>,
}

/// Sanitises and summarises one statement.
///
/// `raw`: the statement bytes kept from the wire; `truncated`: the wire held more (capture
/// cap). A character cut by the cap is dropped and other invalid UTF-8 is replaced (U+FFFD);
/// a last token that touches the cut is left out of the text, the summary and `use_schema`.
pub fn statement(
    raw: &[u8],
    truncated: bool,
    dialect: Dialect,
    max_text_bytes: usize,
) -> Statement {
    let text = utf8_prefix(raw, truncated);
    // One lexing pass feeds both the sanitiser (every token) and the summary (the first
    // MAX_TOKENS), as `sanitize_truncated` and `summary::tokens` would each on their own.
    let mut lx = Lexer::new(&text, dialect);
    let mut sanitizer = Sanitizer::new(text.len(), max_text_bytes);
    // A token takes at least a byte and usually a separator: one allocation, no regrowth.
    let mut toks = Vec::with_capacity((text.len() / 2 + 1).min(MAX_TOKENS));
    let mut last_at_end = false;
    let mut failed = false;
    loop {
        match lx.next_token() {
            Ok(Some(tok)) => {
                let at_end = lx.at_end();
                sanitizer.push(tok, lx.spaced(), at_end);
                if toks.len() < MAX_TOKENS {
                    toks.push(tok);
                    last_at_end = at_end;
                }
            }
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    // A summary holds no literal, so text that fails closed still summarises up to there.
    if truncated && last_at_end {
        toks.pop();
    }
    let text = if failed {
        None
    } else {
        sanitizer.finish(truncated, lx.comment_at_end())
    };
    Statement {
        text,
        summary: summary_of(&toks, dialect),
        use_schema: use_schema(&toks, dialect),
    }
}

/// Text of the kept bytes; a character cut by the cap is dropped, other invalid UTF-8 is
/// replaced lossily.
fn utf8_prefix(bytes: &[u8], truncated: bool) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(e) if truncated && e.error_len().is_none() => {
            String::from_utf8_lossy(bytes.get(..e.valid_up_to()).unwrap_or_default())
        }
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sql::{sanitize_truncated, summarize_truncated};
    use proptest::prelude::*;

    /// The one-pass `statement` agrees with the sanitiser and the summariser run on their own.
    fn agrees(raw: &[u8], truncated: bool, dialect: Dialect, max: usize) {
        let st = statement(raw, truncated, dialect, max);
        let text = utf8_prefix(raw, truncated);
        assert_eq!(
            st.text,
            sanitize_truncated(&text, dialect, max, truncated),
            "{text:?}"
        );
        assert_eq!(
            st.summary,
            summarize_truncated(&text, dialect, truncated),
            "{text:?}"
        );
    }

    #[test]
    fn one_pass_agrees_on_known_statements() {
        let cases: &[&str] = &[
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "select * from t where a in (1, 2, 3) and b = 'x''y' -- tail",
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
            "UPDATE t SET a = $1 WHERE id = $2",
            "SELECT 'unterminated",
            "/* c */ USE shop; SELECT 1",
            "SELECT `a` FROM `b` WHERE x = 0x1F AND y = 1.5e3",
            "",
        ];
        for d in [Dialect::Mysql, Dialect::Postgres] {
            for c in cases {
                for cut in [c.len(), c.len() / 2, c.len().saturating_sub(3)] {
                    let raw = &c.as_bytes()[..cut];
                    for (truncated, max) in [(false, 2048), (true, 2048), (false, 12)] {
                        agrees(raw, truncated, d, max);
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn one_pass_agrees_on_arbitrary_text(
            text in "[ -~\\n]{0,80}",
            truncated: bool,
            pg: bool,
            max in 1usize..64,
        ) {
            let d = if pg { Dialect::Postgres } else { Dialect::Mysql };
            agrees(text.as_bytes(), truncated, d, max);
        }
    }
}
