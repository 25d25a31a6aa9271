//! Case-insensitive keyword sets for the lexer and the summary: a word is upper-cased once
//! into one integer and found by binary search, instead of one `eq_ignore_ascii_case` per
//! keyword (the lexer asks for every word of every statement).

/// Longest keyword a set holds: 15 bytes, and the 16th byte of a key is the length (so `AND`
/// and `AND` followed by NULs are different keys).
const MAX_BYTES: usize = 15;

/// A set of ASCII keywords of at most 15 bytes, built at compile time.
pub(super) struct Keywords<const N: usize> {
    /// Packed keys, sorted.
    keys: [u128; N],
}

/// The key of `word` upper-cased (ASCII only; other bytes as they are), to compare with
/// [`kw`] constants or a [`Keywords`] set; `None` when it is empty or longer than any keyword.
pub(super) fn key(word: &str) -> Option<u128> {
    let word = word.as_bytes();
    if word.is_empty() || word.len() > MAX_BYTES {
        return None;
    }
    let mut buf = [0u8; 16];
    buf.get_mut(..word.len())?.copy_from_slice(word);
    buf.make_ascii_uppercase();
    *buf.last_mut()? = word.len() as u8;
    Some(u128::from_le_bytes(buf))
}

/// [`key`] at compile time, for a keyword (already upper case, checked by the tests): the
/// sets' members and the summary's `match` arms.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an index out of bounds fails the build"
)]
pub(super) const fn kw(word: &str) -> u128 {
    let b = word.as_bytes();
    assert!(!b.is_empty() && b.len() <= MAX_BYTES, "keyword length");
    let mut key = (b.len() as u128) << 120;
    let mut i = 0;
    while i < b.len() {
        key |= (b[i].to_ascii_uppercase() as u128) << (8 * i);
        i += 1;
    }
    key
}

impl<const N: usize> Keywords<N> {
    /// The set of `words` (any order; duplicates allowed).
    #[allow(
        clippy::indexing_slicing,
        reason = "evaluated at compile time: an index out of bounds fails the build"
    )]
    pub(super) const fn new(words: [&str; N]) -> Keywords<N> {
        let mut keys = [0u128; N];
        let mut i = 0;
        while i < N {
            // Insertion sort: the sets are small and this runs in the compiler.
            let k = kw(words[i]);
            let mut j = i;
            while j > 0 && keys[j - 1] > k {
                keys[j] = keys[j - 1];
                j -= 1;
            }
            keys[j] = k;
            i += 1;
        }
        Keywords { keys }
    }

    /// Whether `word` is one of the keywords, ASCII case ignored.
    pub(super) fn contains(&self, word: &str) -> bool {
        key(word).is_some_and(|k| self.contains_key(k))
    }

    /// Whether a word whose [`key`] is `k` is one of the keywords.
    pub(super) fn contains_key(&self, k: u128) -> bool {
        self.keys.binary_search(&k).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: [&str; 6] = ["SELECT", "AND", "OR", "STRAIGHT_JOIN", "IN", "LOW_PRIORITY"];
    const SET: Keywords<6> = Keywords::new(WORDS);

    #[test]
    fn members_match_in_any_case_and_nothing_else_does() {
        for w in WORDS {
            assert!(SET.contains(w), "{w}");
            assert!(SET.contains(&w.to_lowercase()), "{w}");
            assert_eq!(kw(w), key(w).unwrap());
        }
        assert!(SET.contains("Select"));
        for w in [
            "",
            "SELEC",
            "SELECTS",
            "AN",
            "ANDD",
            "AND\0",
            "\0AND",
            "IN ",
            "ÅND",
            "ORDER",
            "STRAIGHT_JOIN_",
            "a_very_long_identifier_name",
        ] {
            assert!(!SET.contains(w), "{w:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn contains_agrees_with_eq_ignore_ascii_case(w in "[a-zA-Z_\\x00é]{0,16}") {
            let expected = WORDS.iter().any(|k| k.eq_ignore_ascii_case(&w));
            proptest::prop_assert_eq!(SET.contains(&w), expected);
        }
    }
}
