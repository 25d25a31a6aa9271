//! The one call a SQL protocol makes for a statement seen on the wire.

use std::borrow::Cow;

use super::summary::{summary_of, tokens, use_schema};
use super::{Dialect, sanitize_truncated};

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
    let toks = tokens(&text, dialect, truncated);
    Statement {
        text: sanitize_truncated(&text, dialect, max_text_bytes, truncated),
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
