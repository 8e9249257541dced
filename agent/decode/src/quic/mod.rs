//! QUIC client Initials: long-header parsing (v1, v2, drafts 23–34), header-protection
//! removal and AEAD decryption with keys from the Destination Connection ID, frame parsing,
//! and the CRYPTO stream's ClientHello. A datagram may coalesce several long-header packets;
//! Handshake/0-RTT packets are stepped over, every Initial in it is decrypted.

pub mod frames;
pub mod keys;

pub use frames::CryptoChunk;
pub use keys::{InitialKeys, VERSION_1, VERSION_2, version_params};

use crate::error::{DecodeError, Parsed, Proto};
use crate::reasm::Reassembly;
use crate::tls::{self, ClientHelloInfo};
use frames::varint;

const MAX_CID: usize = 20;
const TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;

/// The Initial packets of one datagram, decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialDatagram {
    pub version: u32,
    /// DCID of the first Initial in the datagram.
    pub dcid: Vec<u8>,
    /// CRYPTO frames of all its Initials.
    pub chunks: Vec<CryptoChunk>,
    /// Initial packets decrypted.
    pub packets: usize,
}

/// Parsed long header of one packet (before protection removal).
struct LongHeader<'a> {
    version: u32,
    ptype: u8,
    dcid: &'a [u8],
    /// Offset of the packet-number field.
    pn_offset: usize,
    /// End of this packet in the datagram.
    end: usize,
}

/// Whether a datagram starts like a QUIC long-header packet of a known version.
pub fn looks_like_initial(b: &[u8]) -> bool {
    b.len() >= 7
        && b[0] & 0x80 != 0
        && version_params(u32::from_be_bytes([b[1], b[2], b[3], b[4]]))
            .is_some_and(|p| (b[0] >> 4) & 0x03 == p.initial_type)
}

/// Parse the long header at `start`. `Ok(None)` when it is not a long header of a known
/// version (end of the coalesced packets).
fn long_header(b: &[u8], start: usize) -> Result<Option<LongHeader<'_>>, DecodeError> {
    let p = &b[start..];
    if p.len() < 7 || p[0] & 0x80 == 0 {
        return Ok(None);
    }
    let version = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
    let Some(params) = version_params(version) else {
        return Ok(None);
    };
    let ptype = (p[0] >> 4) & 0x03;
    let err = |what, at: usize| DecodeError::malformed(Proto::Quic, what, start + at);
    let dcid_len = usize::from(p[5]);
    if dcid_len > MAX_CID {
        return Err(err("DCID length", 5));
    }
    let mut pos = 6 + dcid_len;
    let dcid = p.get(6..pos).ok_or_else(|| err("DCID", 6))?;
    let scid_len = usize::from(*p.get(pos).ok_or_else(|| err("SCID length", pos))?);
    if scid_len > MAX_CID {
        return Err(err("SCID length", pos));
    }
    pos += 1 + scid_len;
    if pos > p.len() {
        return Err(err("SCID", pos));
    }
    if ptype == params.retry_type {
        // Retry has no Length: it runs to the end of the datagram; nothing to decrypt.
        return Ok(Some(LongHeader {
            version,
            ptype,
            dcid,
            pn_offset: p.len(),
            end: b.len(),
        }));
    }
    if ptype == params.initial_type {
        let token_len = varint(p, &mut pos).map_err(|_| err("token length", pos))?;
        let token_len = usize::try_from(token_len).map_err(|_| err("token length", pos))?;
        pos = pos
            .checked_add(token_len)
            .filter(|&e| e <= p.len())
            .ok_or_else(|| err("token", pos))?;
    }
    let at = pos;
    let length = varint(p, &mut pos).map_err(|_| err("packet length", at))?;
    let length = usize::try_from(length).map_err(|_| err("packet length", at))?;
    let end = pos
        .checked_add(length)
        .filter(|&e| e <= p.len())
        .ok_or_else(|| err("packet length", at))?;
    Ok(Some(LongHeader {
        version,
        ptype,
        dcid,
        pn_offset: start + pos,
        end: start + end,
    }))
}

/// Decrypt every Initial in a datagram. `fallback_dcid` is the flow's first DCID: a client's
/// later Initials may carry the server's CID but are still protected with the keys of the
/// first one. `NotThis` when the datagram does not start with a known long-header packet.
pub fn decrypt_datagram(
    datagram: &[u8],
    fallback_dcid: Option<&[u8]>,
) -> Result<Parsed<InitialDatagram>, DecodeError> {
    let mut start = 0usize;
    let mut result: Option<InitialDatagram> = None;
    while start < datagram.len() {
        let h = match long_header(datagram, start) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            // A broken packet coalesced after good Initials ends the datagram; what was
            // decrypted stands.
            Err(_) if result.is_some() => break,
            Err(e) => return Err(e),
        };
        let Some(params) = version_params(h.version) else {
            break;
        };
        if h.ptype == params.initial_type {
            let mut chunks = Vec::new();
            let dcid = h.dcid.to_vec();
            let first_try = decrypt_packet(datagram, start, &h, &params, &dcid, &mut chunks);
            match (first_try, fallback_dcid) {
                (Ok(()), _) => {}
                (Err(e), Some(fb)) if fb != dcid.as_slice() => {
                    decrypt_packet(datagram, start, &h, &params, fb, &mut chunks).map_err(|_| e)?;
                }
                (Err(_), _) if result.is_some() => break,
                (Err(e), _) => return Err(e),
            }
            let entry = result.get_or_insert_with(|| InitialDatagram {
                version: h.version,
                dcid,
                chunks: Vec::new(),
                packets: 0,
            });
            entry.chunks.append(&mut chunks);
            entry.packets += 1;
        } else if start == 0 {
            // A datagram starting with Handshake/0-RTT/Retry is not a client's first flight.
            return Ok(Parsed::NotThis);
        }
        if h.end <= start {
            break;
        }
        start = h.end;
    }
    Ok(match result {
        Some(r) => Parsed::Found(r),
        None => Parsed::NotThis,
    })
}

fn decrypt_packet(
    datagram: &[u8],
    start: usize,
    h: &LongHeader<'_>,
    params: &keys::VersionParams,
    dcid: &[u8],
    out: &mut Vec<CryptoChunk>,
) -> Result<(), DecodeError> {
    let keys = InitialKeys::client(params, dcid)?;
    let sample_at = h.pn_offset + 4;
    let sample = datagram
        .get(sample_at..sample_at + SAMPLE_LEN)
        .filter(|_| sample_at + SAMPLE_LEN <= h.end)
        .ok_or(DecodeError::Truncated {
            proto: Proto::Quic,
            what: "header-protection sample",
            needed: sample_at + SAMPLE_LEN,
            captured: datagram.len().min(h.end),
        })?;
    let mask = keys.mask(sample)?;
    let mut packet = datagram[start..h.end].to_vec();
    let pn_off = h.pn_offset - start;
    packet[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(packet[0] & 0x03) + 1;
    let mut pn = 0u64;
    for i in 0..pn_len {
        packet[pn_off + i] ^= mask[1 + i];
        pn = (pn << 8) | u64::from(packet[pn_off + i]);
    }
    let payload_at = pn_off + pn_len;
    if packet.len() < payload_at + TAG_LEN {
        return Err(DecodeError::malformed(
            Proto::Quic,
            "packet length",
            h.pn_offset,
        ));
    }
    let (header, payload) = packet.split_at_mut(payload_at);
    let plain_len = keys.open(pn, header, payload)?;
    frames::crypto_chunks(&payload[..plain_len], start + payload_at, out)
}

/// Reassemble CRYPTO chunks and decode the ClientHello once the message is complete.
pub fn client_hello_from_crypto(
    stream: &Reassembly,
) -> Result<Parsed<ClientHelloInfo>, DecodeError> {
    let b = stream.contiguous();
    if b.len() < 4 {
        return Ok(Parsed::Incomplete { needed: Some(4) });
    }
    if b[0] != 0x01 {
        return Err(DecodeError::malformed(
            Proto::Quic,
            "CRYPTO stream: not a ClientHello",
            0,
        ));
    }
    let len = 4 + ((usize::from(b[1]) << 16) | (usize::from(b[2]) << 8) | usize::from(b[3]));
    if b.len() < len {
        return Ok(Parsed::Incomplete { needed: Some(len) });
    }
    tls::parse_handshake(&b[..len], true, true).map(Parsed::Found)
}

/// One-shot: decode a ClientHello from one datagram (all of its CRYPTO data inside it).
pub fn client_hello_from_datagram(
    datagram: &[u8],
    max_len: usize,
) -> Result<Parsed<ClientHelloInfo>, DecodeError> {
    let d = match decrypt_datagram(datagram, None)? {
        Parsed::Found(d) => d,
        Parsed::NotThis => return Ok(Parsed::NotThis),
        Parsed::Incomplete { needed } => return Ok(Parsed::Incomplete { needed }),
    };
    let mut r = Reassembly::new(max_len);
    for c in &d.chunks {
        r.insert(c.offset, &c.data)
            .map_err(|_| DecodeError::TooLarge {
                proto: Proto::Quic,
                what: "CRYPTO stream",
                announced: usize::try_from(c.offset).unwrap_or(usize::MAX),
                limit: max_len,
            })?;
    }
    client_hello_from_crypto(&r)
}

/// Build a protected client Initial packet (the sending side of RFC 9001 5): long header with
/// `dcid`/`scid`, a 4-byte packet number, `plain` frames padded with PADDING to `pad_to`
/// payload bytes. For tests, fuzzing seeds and benchmarks; the agent never sends anything.
pub fn seal_initial(
    version: u32,
    dcid: &[u8],
    scid: &[u8],
    key_dcid: &[u8],
    pn: u32,
    plain: &[u8],
    pad_to: usize,
) -> Result<Vec<u8>, DecodeError> {
    let params = version_params(version).ok_or(DecodeError::QuicCrypto {
        version,
        step: "unknown version",
    })?;
    if dcid.len() > MAX_CID || scid.len() > MAX_CID {
        return Err(DecodeError::malformed(
            Proto::Quic,
            "connection ID length",
            5,
        ));
    }
    let keys = InitialKeys::client(&params, key_dcid)?;
    let mut payload = plain.to_vec();
    if payload.len() < pad_to {
        payload.resize(pad_to, 0);
    }
    let length = 4 + payload.len() + TAG_LEN;
    if length >= 1 << 14 {
        return Err(DecodeError::malformed(Proto::Quic, "packet length", 0));
    }
    // 0xc0 | type << 4 | reserved 0 | pn_len - 1 (= 3)
    let mut pkt = vec![0xc0 | (params.initial_type << 4) | 0x03];
    pkt.extend_from_slice(&version.to_be_bytes());
    pkt.push(dcid.len() as u8);
    pkt.extend_from_slice(dcid);
    pkt.push(scid.len() as u8);
    pkt.extend_from_slice(scid);
    pkt.push(0); // no token
    pkt.extend_from_slice(&(0x4000u16 | length as u16).to_be_bytes());
    let pn_offset = pkt.len();
    pkt.extend_from_slice(&pn.to_be_bytes());
    keys.seal(u64::from(pn), &pkt, &mut payload)?;
    pkt.extend_from_slice(&payload);
    let sample = &pkt[pn_offset + 4..pn_offset + 4 + SAMPLE_LEN];
    let mask = keys.mask(sample)?;
    pkt[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        pkt[pn_offset + i] ^= mask[1 + i];
    }
    Ok(pkt)
}

/// Encode a CRYPTO frame (type 0x06, offset, length as 4-byte varints... or shorter).
pub fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    put_varint(&mut f, offset);
    put_varint(&mut f, data.len() as u64);
    f.extend_from_slice(data);
    f
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&(0x4000 | v as u16).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&(0x8000_0000 | v as u32).to_be_bytes());
    } else {
        out.extend_from_slice(&(0xc000_0000_0000_0000 | (v & ((1 << 62) - 1))).to_be_bytes());
    }
}
