//! `db.query.text`: every literal becomes `?`, comments go, whitespace collapses.

use super::Dialect;
use super::lexer::{Lexer, Tok};

/// Replaces every literal in `text` with `?`; `None` when that cannot be done safely.
pub fn sanitize(text: &str, dialect: Dialect, max_bytes: usize) -> Option<String> {
    sanitize_truncated(text, dialect, max_bytes, false)
}

/// [`sanitize`] for text that may have been cut by a capture cap (`input_truncated`): then a
/// line comment running to the end fails closed and a last token that touches the cut, which
/// may be partial, is dropped.
pub fn sanitize_truncated(
    text: &str,
    dialect: Dialect,
    max_bytes: usize,
    input_truncated: bool,
) -> Option<String> {
    #[derive(Clone, Copy)]
    enum InList {
        No,
        SawIn,
        /// Output offset of `(`, items so far, whether an item is expected next.
        Open(usize, u32, bool),
    }
    let mut lx = Lexer::new(text, dialect);
    let mut out = String::with_capacity(text.len().min(max_bytes));
    let mut full = false;
    let mut in_list = InList::No;
    // Output offset where the last kept token (with its space) starts, and whether that token
    // ends where the text ends.
    let mut last_start = 0usize;
    let mut last_at_end = false;
    // Lexing goes on past the output cap: a literal left open further on still fails closed.
    while let Some(tok) = lx.next_token().ok()? {
        let piece = match tok {
            Tok::Word(w) | Tok::Quoted(w) | Tok::Punct(w) | Tok::Param(w) => w,
            Tok::Literal => "?",
        };
        if full {
            continue;
        }
        let space = lx.spaced() && !out.is_empty();
        if out.len() + usize::from(space) + piece.len() > max_bytes {
            full = true;
            continue;
        }
        last_start = out.len();
        last_at_end = lx.at_end();
        if space {
            out.push(' ');
        }
        let at = out.len();
        out.push_str(piece);
        // `?` markers collapse with literals; `$1` parameters are kept as written.
        let item = matches!(tok, Tok::Literal | Tok::Param("?"));
        in_list = match (in_list, tok) {
            (_, Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => InList::SawIn,
            (InList::SawIn, Tok::Punct("(")) => InList::Open(at, 0, true),
            (InList::Open(m, n, true), _) if item => InList::Open(m, n + 1, false),
            (InList::Open(m, n, false), Tok::Punct(",")) => InList::Open(m, n, true),
            (InList::Open(m, n, false), Tok::Punct(")")) if n > 1 => {
                out.truncate(m);
                out.push_str("(?)");
                // The collapsed list is one unit for the partial-token rule below.
                last_start = m;
                InList::No
            }
            _ => InList::No,
        };
    }
    if input_truncated && lx.comment_at_end() {
        return None;
    }
    if input_truncated && last_at_end && out.is_char_boundary(last_start) {
        out.truncate(last_start);
    }
    out.truncate(out.trim_end().len());
    (!out.is_empty()).then_some(out)
}
