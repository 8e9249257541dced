//! TLS ClientHello decoding: from the client's byte stream (TLS records, TCP) or from a bare
//! handshake message (the QUIC CRYPTO stream). The ClientHello body and the extensions whose
//! content matters are parsed with `tls-parser`; record framing and the extension list are
//! walked here so that one odd extension does not hide the SNI, and so that a capture cut
//! short still yields the extensions it holds.

use std::borrow::Cow;

use tls_parser::{
    TlsExtension, parse_tls_client_hello_extension, parse_tls_handshake_client_hello,
};

use crate::error::{DecodeError, Parsed, Proto};
use crate::ja4;

const RECORD_HEADER: usize = 5;
const HANDSHAKE_HEADER: usize = 4;
const CONTENT_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;
/// Largest TLSPlaintext fragment allowed (RFC 8446 5.1), with room for broken peers.
const MAX_RECORD: usize = 16384 + 2048;

pub const EXT_SNI: u16 = 0x0000;
pub const EXT_ALPN: u16 = 0x0010;
pub const EXT_SIG_ALGS: u16 = 0x000d;
pub const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
pub const EXT_ECH: u16 = 0xfe0d;
pub const EXT_ESNI: u16 = 0xffce;

/// What a ClientHello says about where the client wants to go and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The server name (lower-cased). With ECH this is the *outer* SNI: the provider's
    /// public name (e.g. `cloudflare-ech.com`), not the real destination.
    pub sni: Option<String>,
    /// Offered ALPN protocols in order.
    pub alpn: Vec<String>,
    /// Offered versions (supported_versions without GREASE, else the legacy version).
    pub versions: Vec<u16>,
    /// Cipher suites offered, GREASE excluded.
    pub cipher_count: usize,
    /// Extensions present, GREASE excluded.
    pub extension_count: usize,
    /// Encrypted ClientHello (or the legacy ESNI draft) is offered.
    pub ech: Option<EchInfo>,
    /// JA4 client fingerprint (FoxIO spec), `t…` for TCP, `q…` for QUIC.
    pub ja4: String,
    /// Length of the handshake message (header included), as announced.
    pub hello_len: usize,
    /// The capture ended inside the ClientHello: fields after the cut are missing and the
    /// JA4 covers only what was seen.
    pub partial: bool,
}

/// ECH as seen in the outer ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchInfo {
    /// `encrypted_client_hello` (0xfe0d) or the old ESNI draft (0xffce).
    pub extension: u16,
    /// 0 = outer, 1 = inner (ECH only).
    pub ech_type: Option<u8>,
    pub config_id: Option<u8>,
    /// Bytes of the encrypted payload.
    pub payload_len: usize,
    /// Always true: with ECH the SNI field carries the provider's public name. Note that
    /// GREASE ECH (sent by Chrome on every connection) looks the same on the wire; a preceding
    /// DNS HTTPS answer with an `ech` parameter for the name is what makes ECH real.
    pub outer_sni_is_public_name: bool,
}

/// Decode a ClientHello from the start of a client's TCP byte stream.
///
/// `NotThis` when the stream does not start with a TLS handshake record carrying a
/// ClientHello; `Incomplete` while records are missing; `TooLarge` when the ClientHello
/// announces more than `max_len` bytes.
pub fn client_hello_from_stream(
    stream: &[u8],
    max_len: usize,
) -> Result<Parsed<ClientHelloInfo>, DecodeError> {
    match handshake_from_records(stream, max_len)? {
        Parsed::Found(hs) => parse_handshake(&hs, false, true).map(Parsed::Found),
        Parsed::NotThis => Ok(Parsed::NotThis),
        Parsed::Incomplete { needed } => Ok(Parsed::Incomplete { needed }),
    }
}

/// Decode what a stream prefix holds when no more bytes will come (the capture truncated
/// the segment): the extensions wholly present are used, `partial` is set.
pub fn client_hello_from_stream_prefix(
    stream: &[u8],
    max_len: usize,
) -> Result<Parsed<ClientHelloInfo>, DecodeError> {
    match handshake_prefix_from_records(stream, max_len)? {
        Some(hs) => parse_handshake(&hs, false, false).map(Parsed::Found),
        None => Ok(Parsed::NotThis),
    }
}

/// Whether bytes look like the start of a TLS handshake record (what the kernel keys on).
pub fn looks_like_handshake_record(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == CONTENT_HANDSHAKE && b[1] == 0x03 && b[2] <= 0x04
}

/// Whether a (possibly 1- or 2-byte) first segment can be the start of a handshake record.
pub fn may_start_handshake_record(b: &[u8]) -> bool {
    !b.is_empty() && prefix_ok(b)
}

/// Collect handshake bytes from consecutive handshake records until one whole handshake
/// message is present.
fn handshake_from_records(
    stream: &[u8],
    max_len: usize,
) -> Result<Parsed<Cow<'_, [u8]>>, DecodeError> {
    if !prefix_ok(stream) {
        return Ok(Parsed::NotThis);
    }
    let mut hs: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut pos = 0usize;
    loop {
        let Some(header) = stream.get(pos..pos + RECORD_HEADER) else {
            return Ok(Parsed::Incomplete { needed: None });
        };
        if header[0] != CONTENT_HANDSHAKE || header[1] != 0x03 {
            return Err(DecodeError::malformed(
                Proto::Tls,
                "record type inside the ClientHello",
                pos,
            ));
        }
        let rec_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if rec_len == 0 || rec_len > MAX_RECORD {
            return Err(DecodeError::malformed(Proto::Tls, "record length", pos + 3));
        }
        let body_start = pos + RECORD_HEADER;
        let avail = stream.len().saturating_sub(body_start).min(rec_len);
        let fragment = &stream[body_start..body_start + avail];
        hs = if hs.is_empty() && avail == rec_len {
            Cow::Borrowed(fragment)
        } else {
            let mut v = hs.into_owned();
            v.extend_from_slice(fragment);
            Cow::Owned(v)
        };
        if hs.first().is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO) {
            return Ok(Parsed::NotThis);
        }
        if hs.len() >= HANDSHAKE_HEADER {
            let msg_len = HANDSHAKE_HEADER + u24(&hs[1..4]);
            if msg_len > max_len {
                return Err(DecodeError::TooLarge {
                    proto: Proto::Tls,
                    what: "ClientHello",
                    announced: msg_len,
                    limit: max_len,
                });
            }
            if hs.len() >= msg_len {
                return Ok(Parsed::Found(match hs {
                    Cow::Borrowed(b) => Cow::Borrowed(&b[..msg_len]),
                    Cow::Owned(mut v) => {
                        v.truncate(msg_len);
                        Cow::Owned(v)
                    }
                }));
            }
            if avail < rec_len {
                // Single-record estimate; more records may follow.
                let needed = (RECORD_HEADER + msg_len).max(body_start + rec_len);
                return Ok(Parsed::Incomplete {
                    needed: Some(needed),
                });
            }
        } else if avail < rec_len {
            return Ok(Parsed::Incomplete { needed: None });
        }
        pos = body_start + rec_len;
    }
}

/// Like [`handshake_from_records`] but returns whatever handshake bytes are present.
fn handshake_prefix_from_records(
    stream: &[u8],
    max_len: usize,
) -> Result<Option<Vec<u8>>, DecodeError> {
    if !prefix_ok(stream) {
        return Ok(None);
    }
    let mut hs = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = stream.get(pos..pos + RECORD_HEADER) {
        if header[0] != CONTENT_HANDSHAKE || header[1] != 0x03 {
            break;
        }
        let rec_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let body_start = pos + RECORD_HEADER;
        let avail = stream.len().saturating_sub(body_start).min(rec_len);
        hs.extend_from_slice(&stream[body_start..body_start + avail]);
        if avail < rec_len || hs.len() >= max_len {
            break;
        }
        pos = body_start + rec_len;
    }
    if hs.first().is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO) || hs.len() < HANDSHAKE_HEADER {
        return Ok(None);
    }
    Ok(Some(hs))
}

fn prefix_ok(stream: &[u8]) -> bool {
    match stream {
        [] => true,
        [a] => *a == CONTENT_HANDSHAKE,
        [a, b] => *a == CONTENT_HANDSHAKE && *b == 0x03,
        _ => looks_like_handshake_record(stream),
    }
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// Parse one ClientHello handshake message (type, 24-bit length, body). With `complete`
/// false the message may be cut short and what is present is used.
pub fn parse_handshake(
    msg: &[u8],
    quic: bool,
    complete: bool,
) -> Result<ClientHelloInfo, DecodeError> {
    if msg.len() < HANDSHAKE_HEADER {
        return Err(DecodeError::Truncated {
            proto: Proto::Tls,
            what: "handshake header",
            needed: HANDSHAKE_HEADER,
            captured: msg.len(),
        });
    }
    if msg[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(DecodeError::malformed(Proto::Tls, "handshake type", 0));
    }
    let hello_len = HANDSHAKE_HEADER + u24(&msg[1..4]);
    let end = hello_len.min(msg.len());
    if complete && msg.len() < hello_len {
        return Err(DecodeError::Truncated {
            proto: Proto::Tls,
            what: "ClientHello",
            needed: hello_len,
            captured: msg.len(),
        });
    }
    let body = &msg[HANDSHAKE_HEADER..end];
    let (rest, ch) = match parse_tls_handshake_client_hello(body) {
        Ok(v) => v,
        Err(tls_parser::Err::Incomplete(_)) if !complete => {
            return Err(DecodeError::Truncated {
                proto: Proto::Tls,
                what: "ClientHello fixed fields",
                needed: hello_len,
                captured: msg.len(),
            });
        }
        Err(_) => {
            return Err(DecodeError::malformed(
                Proto::Tls,
                "ClientHello fixed fields",
                HANDSHAKE_HEADER,
            ));
        }
    };
    let ciphers: Vec<u16> = ch.ciphers.iter().map(|c| c.0).collect();
    // The extension block: whole, or (cut capture) whatever follows its length field.
    let (ext_block, partial) = match ch.ext {
        Some(e) => (e, !complete && msg.len() < hello_len),
        None if rest.len() >= 2 => (&rest[2..], true),
        None => (&[][..], !complete && msg.len() < hello_len),
    };
    let exts = walk_extensions(ext_block, complete && !partial)?;
    let mut info = ClientHelloInfo {
        sni: None,
        alpn: Vec::new(),
        versions: Vec::new(),
        cipher_count: ciphers.iter().filter(|c| !is_grease(**c)).count(),
        extension_count: exts.iter().filter(|(t, _)| !is_grease(*t)).count(),
        ech: None,
        ja4: String::new(),
        hello_len,
        partial,
    };
    let mut sig_algs = Vec::new();
    let mut ext_types = Vec::with_capacity(exts.len());
    for (ty, raw) in &exts {
        ext_types.push(*ty);
        match *ty {
            EXT_SNI | EXT_ALPN | EXT_SIG_ALGS | EXT_SUPPORTED_VERSIONS => {
                apply_known(&mut info, &mut sig_algs, raw)?;
            }
            EXT_ECH | EXT_ESNI => info.ech = Some(ech_info(*ty, &raw[4..])),
            _ => {}
        }
    }
    if info.versions.is_empty() {
        info.versions.push(ch.version.0);
    }
    info.ja4 = ja4::ja4(&ja4::Ja4Input {
        quic,
        versions: &info.versions,
        sni_present: ext_types.contains(&EXT_SNI),
        ciphers: &ciphers,
        extensions: &ext_types,
        first_alpn: info.alpn.first().map(String::as_bytes),
        sig_algs: &sig_algs,
    });
    Ok(info)
}

/// Split the extension block into `(type, whole extension bytes)`.
fn walk_extensions(block: &[u8], complete: bool) -> Result<Vec<(u16, &[u8])>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let Some(h) = block.get(pos..pos + 4) else {
            if complete {
                return Err(DecodeError::malformed(Proto::Tls, "extension header", pos));
            }
            break;
        };
        let ty = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let Some(raw) = block.get(pos..pos + 4 + len) else {
            if complete {
                return Err(DecodeError::malformed(
                    Proto::Tls,
                    "extension length",
                    pos + 2,
                ));
            }
            break;
        };
        out.push((ty, raw));
        pos += 4 + len;
    }
    Ok(out)
}

fn apply_known(
    info: &mut ClientHelloInfo,
    sig_algs: &mut Vec<u16>,
    raw: &[u8],
) -> Result<(), DecodeError> {
    let ty = u16::from_be_bytes([raw[0], raw[1]]);
    let ext = match parse_tls_client_hello_extension(raw) {
        Ok((_, ext)) => ext,
        Err(_) => {
            return Err(DecodeError::malformed(
                Proto::Tls,
                match ty {
                    EXT_SNI => "server_name extension",
                    EXT_ALPN => "ALPN extension",
                    EXT_SIG_ALGS => "signature_algorithms extension",
                    _ => "supported_versions extension",
                },
                0,
            ));
        }
    };
    match ext {
        TlsExtension::SNI(names) => {
            if let Some((_, name)) = names.iter().find(|(t, _)| t.0 == 0) {
                info.sni = Some(host_name(name)?);
            }
        }
        TlsExtension::ALPN(protos) => {
            info.alpn = protos.iter().map(|p| printable(p)).collect();
        }
        TlsExtension::SignatureAlgorithms(algs) => *sig_algs = algs,
        TlsExtension::SupportedVersions(vs) => {
            info.versions = vs.iter().map(|v| v.0).filter(|v| !is_grease(*v)).collect();
        }
        _ => {}
    }
    Ok(())
}

/// A server name must be a plausible DNS name: printable ASCII, no spaces, <= 255 bytes.
fn host_name(name: &[u8]) -> Result<String, DecodeError> {
    if name.is_empty() || name.len() > 255 || !name.iter().all(|b| b.is_ascii_graphic()) {
        return Err(DecodeError::malformed(Proto::Tls, "server name", 0));
    }
    Ok(name
        .iter()
        .map(|b| b.to_ascii_lowercase() as char)
        .collect())
}

/// Render bytes as text, escaping anything outside printable ASCII.
pub(crate) fn printable(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() || c == b' ' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

fn ech_info(ty: u16, data: &[u8]) -> EchInfo {
    if ty == EXT_ECH {
        // ECHClientHello: type(1) [outer: kdf(2) aead(2) config_id(1) enc<2> payload<2>]
        let ech_type = data.first().copied();
        let config_id = data.get(5).copied();
        let payload_len = data
            .get(6..8)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .and_then(|enc| data.get(8 + enc..10 + enc))
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .unwrap_or(0);
        EchInfo {
            extension: ty,
            ech_type,
            config_id: if ech_type == Some(0) { config_id } else { None },
            payload_len,
            outer_sni_is_public_name: true,
        }
    } else {
        EchInfo {
            extension: ty,
            ech_type: None,
            config_id: None,
            payload_len: data.len(),
            outer_sni_is_public_name: true,
        }
    }
}

/// GREASE values (RFC 8701): 0x?a?a with both bytes equal.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn grease() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1301));
    }

    #[test]
    fn not_tls() {
        assert_eq!(
            client_hello_from_stream(b"GET / HTTP/1.1\r\n", 1 << 14).unwrap(),
            Parsed::NotThis
        );
        assert_eq!(
            client_hello_from_stream(&[0x16], 1 << 14).unwrap(),
            Parsed::Incomplete { needed: None }
        );
        assert_eq!(
            client_hello_from_stream(&[0x16, 0x02], 1 << 14).unwrap(),
            Parsed::NotThis
        );
    }
}
