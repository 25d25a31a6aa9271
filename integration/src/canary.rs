//! Canary secrets and every form a leak of one could take (issue 8, R8).
//!
//! A [`Canary`] is a random alphanumeric value, fresh per run (so nothing left from an earlier
//! run can match), with a label naming where the test put it. A leak is searched for as:
//! - the value itself, case-insensitively (a leak through upper- or lower-casing);
//! - its hex (as `0x…` literals, hex dumps and `{:x?}` debug output print bytes);
//! - its base64, standard and URL-safe, at each of the three alignments it can have inside a
//!   longer encoded string (HTTP Basic credentials, SCRAM messages);
//! - its SHA-1 and SHA-256, in hex and base64 (what a careless "hash it to be safe" emits);
//! - any extra form the test adds (e.g. the base64 of `user:password` that HTTP Basic sends,
//!   the bit string of a `b'…'` literal).
//!
//! [`scan`] searches any number of haystacks for every form of every canary and returns the
//! hits, each naming the canary, the form and the haystack.

use aho_corasick::AhoCorasick;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use sha1::Digest as _;

/// Shortest encoded fragment searched for: below this a match could be chance.
const MIN_FRAGMENT: usize = 10;

/// One secret placed in one location.
#[derive(Clone, Debug)]
pub struct Canary {
    /// Where the test put it, e.g. `mysql password (TCP)`.
    pub label: String,
    pub value: String,
    /// Forms beyond the standard ones: `(name, text)`, searched case-sensitively.
    pub extra: Vec<(String, String)>,
}

/// One form of a canary to search for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Form {
    pub name: String,
    pub text: String,
    /// Compared after lower-casing both sides.
    pub ignore_case: bool,
}

/// A canary form found in a haystack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub canary: String,
    pub form: String,
    pub haystack: String,
    /// Up to 60 bytes of context around the first occurrence.
    pub context: String,
}

/// A fresh random value: `c` + `tag` (letters only, lower-cased) + 16 hex digits.
pub fn fresh_value(tag: &str) -> String {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes);
    let tag: String = tag
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("c{tag}{}", hex(&bytes))
}

fn fill_random(buf: &mut [u8]) {
    // SAFETY: getrandom writes at most `buf.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if usize::try_from(n).ok() != Some(buf.len()) {
        // getrandom on Linux ≥ 3.17 does not fail for 8 bytes; a weak fallback is still unique.
        let t = crate::process::unix_now_ns() ^ u64::from(std::process::id()) << 32;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 8) * 8)) as u8;
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

impl Canary {
    /// A fresh canary for a location; `tag` (a few letters) goes into the value.
    pub fn new(label: &str, tag: &str) -> Canary {
        Canary {
            label: label.to_string(),
            value: fresh_value(tag),
            extra: Vec::new(),
        }
    }

    /// A canary of 19 random digits (a numeric literal), the first not 0.
    pub fn digits(label: &str) -> Canary {
        let mut bytes = [0u8; 19];
        fill_random(&mut bytes);
        let value: String = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| char::from(b'0' + if i == 0 { 1 + b % 9 } else { b % 10 }))
            .collect();
        Canary {
            label: label.to_string(),
            value,
            extra: Vec::new(),
        }
    }

    /// A canary whose secret is a 48-bit string (a `b'…'` / `B'…'` literal): [`Canary::bits`]
    /// is the literal's text and an extra form.
    pub fn bit_string(label: &str, tag: &str) -> Canary {
        let c = Canary::new(label, tag);
        let bits = c.bits();
        c.with_extra("bit string", bits)
    }

    /// 48 bits drawn from the value, as `0`/`1` text.
    pub fn bits(&self) -> String {
        let d = sha2::Sha256::digest(self.value.as_bytes());
        d.iter().take(6).map(|b| format!("{b:08b}")).collect()
    }

    /// Lower-case hex of the value's bytes (a `0x…` / `X'…'` literal).
    pub fn hex(&self) -> String {
        hex(self.value.as_bytes())
    }

    /// Adds a form of its own (searched case-sensitively).
    pub fn with_extra(mut self, name: &str, text: String) -> Canary {
        self.extra.push((name.to_string(), text));
        self
    }

    /// Every form searched for (see the module docs).
    pub fn forms(&self) -> Vec<Form> {
        let v = self.value.as_bytes();
        let mut out = vec![
            Form {
                name: "value".into(),
                text: self.value.clone(),
                ignore_case: true,
            },
            Form {
                name: "hex".into(),
                text: hex(v),
                ignore_case: true,
            },
        ];
        for (i, frag) in base64_fragments(v).into_iter().enumerate() {
            out.push(Form {
                name: format!("base64#{i}"),
                text: frag,
                ignore_case: false,
            });
        }
        let sha1 = sha1::Sha1::digest(v).to_vec();
        let sha256 = sha2::Sha256::digest(v).to_vec();
        for (name, d) in [("sha1", &sha1), ("sha256", &sha256)] {
            out.push(Form {
                name: format!("{name} hex"),
                text: hex(d),
                ignore_case: true,
            });
            for (i, frag) in base64_fragments(d).into_iter().enumerate() {
                out.push(Form {
                    name: format!("{name} base64#{i}"),
                    text: frag,
                    ignore_case: false,
                });
            }
        }
        for (name, text) in &self.extra {
            out.push(Form {
                name: name.clone(),
                text: text.clone(),
                ignore_case: false,
            });
        }
        out.retain(|f| f.text.len() >= MIN_FRAGMENT.min(self.value.len()));
        out.dedup_by(|a, b| a.text == b.text);
        out
    }
}

/// The parts of the base64 of `bytes` that do not depend on what surrounds them, at each of
/// the three offsets (mod 3) `bytes` can start at inside a longer encoded string, in the
/// standard and URL-safe alphabets.
pub fn base64_fragments(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for k in 0..3usize {
        let mut padded = vec![0u8; k];
        padded.extend_from_slice(bytes);
        // Characters entirely determined by `bytes`: from ceil(8k/6) to floor(8(k+len)/6).
        let first = (8 * k).div_ceil(6);
        let last = 8 * (k + bytes.len()) / 6;
        for engine in [&STANDARD, &URL_SAFE] {
            let enc = engine.encode(&padded);
            if let Some(frag) = enc.get(first..last)
                && frag.len() >= MIN_FRAGMENT
                && !out.iter().any(|f| f == frag)
            {
                out.push(frag.to_string());
            }
        }
    }
    out
}

/// One place searched: a name and its bytes.
pub struct Haystack<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// Every hit of every form of every canary in every haystack (the first occurrence of each).
/// One Aho-Corasick pass per haystack and case mode, so a core dump of tens of MB is searched
/// for every form at once.
pub fn scan(canaries: &[Canary], haystacks: &[Haystack<'_>]) -> Vec<Hit> {
    let mut hits = Vec::new();
    let forms: Vec<(&Canary, Form)> = canaries
        .iter()
        .flat_map(|c| c.forms().into_iter().map(move |f| (c, f)))
        .collect();
    for ignore_case in [true, false] {
        let set: Vec<&(&Canary, Form)> = forms
            .iter()
            .filter(|(_, f)| f.ignore_case == ignore_case)
            .collect();
        let Ok(ac) = AhoCorasick::builder()
            .ascii_case_insensitive(ignore_case)
            .build(set.iter().map(|(_, f)| f.text.as_bytes()))
        else {
            continue;
        };
        for h in haystacks {
            let mut seen = vec![false; set.len()];
            for m in ac.find_overlapping_iter(h.bytes) {
                let i = m.pattern().as_usize();
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                let (c, f) = set[i];
                let from = m.start().saturating_sub(30);
                let to = (m.end() + 30).min(h.bytes.len());
                hits.push(Hit {
                    canary: c.label.clone(),
                    form: f.name.clone(),
                    haystack: h.name.to_string(),
                    context: String::from_utf8_lossy(h.bytes.get(from..to).unwrap_or_default())
                        .into_owned(),
                });
            }
        }
    }
    hits
}

/// Searches done by [`scan`]: forms × haystacks.
pub fn searches(canaries: &[Canary], haystacks: usize) -> usize {
    canaries.iter().map(|c| c.forms().len()).sum::<usize>() * haystacks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_fresh_and_tagged() {
        let a = fresh_value("My-Tcp");
        let b = fresh_value("My-Tcp");
        assert_ne!(a, b);
        assert!(a.starts_with("cmytcp") && a.len() == 6 + 16, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn base64_inside_a_longer_string_is_found_at_every_alignment() {
        let c = Canary::new("t", "b64");
        for prefix in ["", "u", "us", "use", "user:"] {
            let encoded = base64(format!("{prefix}{}", c.value).as_bytes());
            let hits = scan(
                std::slice::from_ref(&c),
                &[Haystack {
                    name: "h",
                    bytes: format!("Authorization: Basic {encoded}\r\n").as_bytes(),
                }],
            );
            assert!(
                hits.iter().any(|h| h.form.starts_with("base64")),
                "prefix {prefix:?}: {hits:?}"
            );
        }
    }

    #[test]
    fn every_form_is_found_and_nothing_else() {
        let c = Canary::new("t", "forms").with_extra("bits", "0101100111010101".into());
        let v = c.value.clone();
        let cases = [
            v.to_ascii_uppercase(),
            format!("0x{}", hex(v.as_bytes()).to_ascii_uppercase()),
            hex(&sha1::Sha1::digest(v.as_bytes())),
            hex(&sha2::Sha256::digest(v.as_bytes())),
            base64(&sha2::Sha256::digest(v.as_bytes())),
            "b'0101100111010101'".to_string(),
        ];
        for text in &cases {
            let hits = scan(
                std::slice::from_ref(&c),
                &[Haystack {
                    name: "h",
                    bytes: text.as_bytes(),
                }],
            );
            assert!(!hits.is_empty(), "{text} not found");
        }
        let other = Canary::new("u", "forms");
        let clean = format!("{} {}", other.value, hex(other.value.as_bytes()));
        assert!(
            scan(
                &[c],
                &[Haystack {
                    name: "h",
                    bytes: clean.as_bytes()
                }]
            )
            .is_empty()
        );
    }
}
