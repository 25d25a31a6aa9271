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
    let mut lx = Lexer::new(text, dialect);
    let mut s = Sanitizer::new(text.len(), max_bytes);
    // Lexing goes on past the output cap: a literal left open further on still fails closed.
    while let Some(tok) = lx.next_token().ok()? {
        s.push(tok, lx.spaced(), lx.at_end());
    }
    s.finish(input_truncated, lx.comment_at_end())
}

#[derive(Clone, Copy)]
enum InList {
    No,
    SawIn,
    /// Output offset of `(`, items so far, whether an item is expected next.
    Open(usize, u32, bool),
}

/// The sanitiser fed one token at a time, so one lexing pass serves it and the summary
/// (`statement.rs`).
pub(super) struct Sanitizer {
    out: String,
    max_bytes: usize,
    full: bool,
    in_list: InList,
    /// Output offset where the last kept token (with its space) starts, and whether that token
    /// ends where the text ends.
    last_start: usize,
    last_at_end: bool,
}

impl Sanitizer {
    /// For a text of `text_len` bytes.
    pub(super) fn new(text_len: usize, max_bytes: usize) -> Sanitizer {
        Sanitizer {
            out: String::with_capacity(text_len.min(max_bytes)),
            max_bytes,
            full: false,
            in_list: InList::No,
            last_start: 0,
            last_at_end: false,
        }
    }

    /// The next token; `spaced`: whitespace or a comment came before it; `at_end`: it ends
    /// where the text ends.
    pub(super) fn push(&mut self, tok: Tok<'_>, spaced: bool, at_end: bool) {
        let piece = match tok {
            Tok::Word(w) | Tok::Quoted(w) | Tok::Punct(w) | Tok::Param(w) => w,
            Tok::Literal => "?",
        };
        if self.full {
            return;
        }
        let out = &mut self.out;
        let space = spaced && !out.is_empty();
        if out.len() + usize::from(space) + piece.len() > self.max_bytes {
            self.full = true;
            return;
        }
        self.last_start = out.len();
        self.last_at_end = at_end;
        if space {
            out.push(' ');
        }
        let at = out.len();
        out.push_str(piece);
        // `?` markers collapse with literals; `$1` parameters are kept as written.
        let item = matches!(tok, Tok::Literal | Tok::Param("?"));
        self.in_list = match (self.in_list, tok) {
            (_, Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => InList::SawIn,
            (InList::SawIn, Tok::Punct("(")) => InList::Open(at, 0, true),
            (InList::Open(m, n, true), _) if item => InList::Open(m, n + 1, false),
            (InList::Open(m, n, false), Tok::Punct(",")) => InList::Open(m, n, true),
            (InList::Open(m, n, false), Tok::Punct(")")) if n > 1 => {
                out.truncate(m);
                out.push_str("(?)");
                // The collapsed list is one unit for the partial-token rule below.
                self.last_start = m;
                InList::No
            }
            _ => InList::No,
        };
    }

    /// The text after the last token. `input_truncated`: the text was cut by a capture cap;
    /// `comment_at_end`: the lexer ended inside a line comment.
    pub(super) fn finish(mut self, input_truncated: bool, comment_at_end: bool) -> Option<String> {
        if input_truncated && comment_at_end {
            return None;
        }
        let out = &mut self.out;
        if input_truncated && self.last_at_end && out.is_char_boundary(self.last_start) {
            out.truncate(self.last_start);
        }
        out.truncate(out.trim_end().len());
        (!out.is_empty()).then_some(self.out)
    }
}
