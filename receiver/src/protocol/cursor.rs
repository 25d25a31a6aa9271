//! A bounds-checked reader over a byte slice, shared by every framer. Every read returns
//! `None` past the end instead of panicking, so a parser written with `?` cannot index out of
//! bounds whatever the wire says. Integers in both byte orders: MySQL is little-endian,
//! PostgreSQL, DNS and most others are big-endian (network order).

/// See the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, at: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.at..).unwrap_or_default()
    }

    /// Unread byte count.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.at)
    }

    /// The next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.at).copied()
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.buf.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    /// `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    pub fn u16_le(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub fn u16_be(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn u24_le(&mut self) -> Option<u32> {
        let [a, b, c] = self.array()?;
        Some(u32::from_le_bytes([a, b, c, 0]))
    }

    pub fn u32_le(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub fn u32_be(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub fn i32_be(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    pub fn u64_le(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub fn u64_be(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// A NUL-terminated string (without the NUL), consuming the NUL.
    pub fn nul_str(&mut self) -> Option<&'a [u8]> {
        let n = self.rest().iter().position(|&b| b == 0)?;
        let s = self.take(n)?;
        self.skip(1)?;
        Some(s)
    }

    /// Bytes up to (not including) `delim`, consuming the delimiter too.
    pub fn until(&mut self, delim: &[u8]) -> Option<&'a [u8]> {
        let rest = self.rest();
        let n = find(rest, delim)?;
        let s = self.take(n)?;
        self.skip(delim.len())?;
        Some(s)
    }
}

/// Offset of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_byte_orders_and_stops_at_the_end() {
        let mut c = Cursor::new(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(c.u16_le(), Some(0x0201));
        assert_eq!(c.u16_be(), Some(0x0304));
        assert_eq!(c.u24_le(), Some(0x070605));
        assert_eq!(c.u8(), None);
        assert_eq!(c.position(), 7);
        let mut c = Cursor::new(&[0, 0, 0, 9, 0xff]);
        assert_eq!(c.u32_be(), Some(9));
        assert_eq!(c.u32_be(), None, "a failed read consumes nothing");
        assert_eq!(c.remaining(), 1);
    }

    #[test]
    fn strings() {
        let mut c = Cursor::new(b"abc\0GET / HTTP/1.1\r\nrest");
        assert_eq!(c.nul_str(), Some(&b"abc"[..]));
        assert_eq!(c.until(b"\r\n"), Some(&b"GET / HTTP/1.1"[..]));
        assert_eq!(c.rest(), b"rest");
        assert_eq!(c.until(b"\r\n"), None);
        assert_eq!(c.take(usize::MAX), None);
    }
}
