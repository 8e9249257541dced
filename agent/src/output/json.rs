//! A small JSON writer for the per-event hot path: object fields written straight to an
//! `io::Write`, keys as the static bytes they are, strings escaped exactly as serde_json
//! escapes them (`"`, `\`, control characters; everything else, UTF-8 included, as is) with a
//! fast path that copies strings needing no escape in one write, integers without `fmt`.
//! Everything is `#[inline]`: at each call site a key is a constant, so its copy into the
//! output buffer can compile to a few moves instead of a `memcpy` call per key.

use std::io::{self, Write};
use std::net::IpAddr;

/// One JSON object being written; `close` writes the `}`.
pub struct Obj<'w, W: Write> {
    w: &'w mut W,
    first: bool,
}

impl<'w, W: Write> Obj<'w, W> {
    #[inline(always)]
    pub fn open(w: &'w mut W) -> io::Result<Self> {
        w.write_all(b"{")?;
        Ok(Self { w, first: true })
    }

    #[inline(always)]
    pub fn close(self) -> io::Result<()> {
        self.w.write_all(b"}")
    }

    /// One or more whole `"key":value` pairs known in advance (a constant run of the
    /// object), with the separating comma: one copy instead of a write per key and value.
    #[inline(always)]
    pub fn fields(&mut self, pairs: &'static str) -> io::Result<()> {
        if !self.first {
            self.w.write_all(b",")?;
        }
        self.first = false;
        self.w.write_all(pairs.as_bytes())
    }

    /// `"key":` (with the separating comma); `key` must need no escaping.
    #[inline(always)]
    pub fn key(&mut self, key: &str) -> io::Result<&mut W> {
        if !self.first {
            self.w.write_all(b",")?;
        }
        self.first = false;
        self.w.write_all(b"\"")?;
        self.w.write_all(key.as_bytes())?;
        self.w.write_all(b"\":")?;
        Ok(&mut *self.w)
    }

    #[inline(always)]
    pub fn str(&mut self, key: &str, v: &str) -> io::Result<()> {
        let w = self.key(key)?;
        string(w, v)
    }

    #[inline]
    pub fn opt_str(&mut self, key: &str, v: Option<&str>) -> io::Result<()> {
        match v {
            Some(v) => self.str(key, v),
            None => self.key(key)?.write_all(b"null"),
        }
    }

    #[inline(always)]
    pub fn uint(&mut self, key: &str, v: u64) -> io::Result<()> {
        let w = self.key(key)?;
        uint(w, v)
    }

    #[inline]
    pub fn int(&mut self, key: &str, v: i64) -> io::Result<()> {
        let w = self.key(key)?;
        if v < 0 {
            w.write_all(b"-")?;
        }
        uint(w, v.unsigned_abs())
    }

    #[inline]
    pub fn bool(&mut self, key: &str, v: bool) -> io::Result<()> {
        let w = self.key(key)?;
        w.write_all(if v { b"true" } else { b"false" })
    }

    /// An address as a JSON string.
    #[inline]
    pub fn ip(&mut self, key: &str, ip: IpAddr) -> io::Result<()> {
        let w = self.key(key)?;
        w.write_all(b"\"")?;
        match ip {
            IpAddr::V4(a) => {
                // Built on the stack and written once: "255.255.255.255" is 15 bytes.
                let mut buf = [0u8; 15];
                let mut n = 0;
                for (i, o) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        buf[n] = b'.';
                        n += 1;
                    }
                    if o >= 100 {
                        buf[n] = b'0' + o / 100;
                        n += 1;
                    }
                    if o >= 10 {
                        buf[n] = b'0' + o / 10 % 10;
                        n += 1;
                    }
                    buf[n] = b'0' + o % 10;
                    n += 1;
                }
                w.write_all(&buf[..n])?;
            }
            // IPv6 text forms (compression, embedded IPv4) are std's.
            IpAddr::V6(a) => write!(w, "{a}")?,
        }
        w.write_all(b"\"")
    }

    /// A nested object under `key`, written by `f`.
    #[inline(always)]
    pub fn obj(
        &mut self,
        key: &str,
        f: impl FnOnce(&mut Obj<'_, W>) -> io::Result<()>,
    ) -> io::Result<()> {
        let w = self.key(key)?;
        let mut o = Obj::open(w)?;
        f(&mut o)?;
        o.close()
    }

    /// An array under `key`: `f` writes each element with [`Arr`].
    #[inline]
    pub fn arr(
        &mut self,
        key: &str,
        f: impl FnOnce(&mut Arr<'_, W>) -> io::Result<()>,
    ) -> io::Result<()> {
        let w = self.key(key)?;
        w.write_all(b"[")?;
        let mut a = Arr { w, first: true };
        f(&mut a)?;
        a.w.write_all(b"]")
    }
}

/// One JSON array being written (closed by [`Obj::arr`]).
pub struct Arr<'w, W: Write> {
    w: &'w mut W,
    first: bool,
}

impl<W: Write> Arr<'_, W> {
    #[inline(always)]
    fn sep(&mut self) -> io::Result<()> {
        if !self.first {
            self.w.write_all(b",")?;
        }
        self.first = false;
        Ok(())
    }

    #[inline]
    pub fn str(&mut self, v: &str) -> io::Result<()> {
        self.sep()?;
        string(self.w, v)
    }

    #[inline]
    pub fn obj(&mut self, f: impl FnOnce(&mut Obj<'_, W>) -> io::Result<()>) -> io::Result<()> {
        self.sep()?;
        let mut o = Obj::open(&mut *self.w)?;
        f(&mut o)?;
        o.close()
    }
}

/// Decimal digits of `v`.
#[inline]
pub fn uint(w: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    w.write_all(&buf[i..])
}

/// `v` as a JSON string, escaped as serde_json escapes it.
#[inline]
pub fn string(w: &mut impl Write, v: &str) -> io::Result<()> {
    w.write_all(b"\"")?;
    let bytes = v.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        w.write_all(&bytes[start..i])?;
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            w.write_all(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ])?;
        } else {
            w.write_all(esc)?;
        }
        start = i + 1;
    }
    w.write_all(&bytes[start..])?;
    w.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]

    use proptest::prelude::*;

    use super::{Obj, string, uint};

    fn s(v: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_like_serde_json() {
        for v in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "\n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}\u{7f}",
            "é中😀",
        ] {
            assert_eq!(s(v), serde_json::to_string(v).unwrap(), "{v:?}");
        }
    }

    #[test]
    fn integers_and_objects() {
        let mut out = Vec::new();
        for v in [0u64, 7, 10, 1234567890, u64::MAX] {
            out.clear();
            uint(&mut out, v).unwrap();
            assert_eq!(String::from_utf8(out.clone()).unwrap(), v.to_string());
        }
        out.clear();
        let mut o = Obj::open(&mut out).unwrap();
        o.int("a", -5).unwrap();
        o.ip("b", "10.0.0.255".parse().unwrap()).unwrap();
        o.ip("c", "2001:db8::1".parse().unwrap()).unwrap();
        o.arr("d", |a| {
            a.str("x")?;
            a.obj(|o| o.bool("y", true))
        })
        .unwrap();
        o.opt_str("e", None).unwrap();
        o.close().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":-5,"b":"10.0.0.255","c":"2001:db8::1","d":["x",{"y":true}],"e":null}"#
        );
    }

    proptest! {
        #[test]
        fn any_ipv4_address_is_written_as_std_writes_it(a in any::<[u8; 4]>()) {
            let ip = std::net::IpAddr::from(a);
            let mut out = Vec::new();
            let mut o = Obj::open(&mut out).unwrap();
            o.ip("ip", ip).unwrap();
            o.close().unwrap();
            prop_assert_eq!(String::from_utf8(out).unwrap(), format!(r#"{{"ip":"{ip}"}}"#));
        }

        #[test]
        fn any_string_is_escaped_like_serde_json(v in any::<String>()) {
            prop_assert_eq!(s(&v), serde_json::to_string(&v).unwrap());
        }
    }
}
