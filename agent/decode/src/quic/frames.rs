//! Frames allowed in a client Initial (RFC 9000 17.2.2): PADDING, PING, ACK, CRYPTO,
//! CONNECTION_CLOSE. Only CRYPTO carries what we want; the others are walked over.

use crate::error::{DecodeError, Proto};

/// A CRYPTO frame: its stream offset and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoChunk {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Read a variable-length integer (RFC 9000 16) at `*pos`.
pub fn varint(b: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let first = *b
        .get(*pos)
        .ok_or_else(|| DecodeError::malformed(Proto::Quic, "varint", *pos))?;
    let len = 1usize << (first >> 6);
    let bytes = b
        .get(*pos..*pos + len)
        .ok_or_else(|| DecodeError::malformed(Proto::Quic, "varint", *pos))?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    *pos += len;
    Ok(v)
}

fn skip_varints(b: &[u8], pos: &mut usize, n: u64) -> Result<(), DecodeError> {
    for _ in 0..n {
        varint(b, pos)?;
    }
    Ok(())
}

/// Walk the frames of a decrypted Initial payload and collect its CRYPTO chunks.
/// `base` is added to offsets in errors (where the payload sits in the datagram).
pub fn crypto_chunks(
    plain: &[u8],
    base: usize,
    out: &mut Vec<CryptoChunk>,
) -> Result<(), DecodeError> {
    let mut pos = 0usize;
    let err = |what: &'static str, at: usize| DecodeError::malformed(Proto::Quic, what, base + at);
    while pos < plain.len() {
        let at = pos;
        let ty = varint(plain, &mut pos).map_err(|_| err("frame type", at))?;
        match ty {
            // PADDING comes in long runs (Initials are padded to 1200 bytes): skip the run.
            0x00 => pos += plain[pos..].iter().take_while(|&&b| b == 0).count(),
            0x01 => {}
            0x02 | 0x03 => {
                // largest, delay, range count, first range, then count x (gap, len) [+3 ECN]
                varint(plain, &mut pos).map_err(|_| err("ACK frame", at))?;
                varint(plain, &mut pos).map_err(|_| err("ACK frame", at))?;
                let ranges = varint(plain, &mut pos).map_err(|_| err("ACK frame", at))?;
                varint(plain, &mut pos).map_err(|_| err("ACK frame", at))?;
                if ranges > plain.len() as u64 {
                    return Err(err("ACK range count", at));
                }
                skip_varints(plain, &mut pos, ranges * 2).map_err(|_| err("ACK frame", at))?;
                if ty == 0x03 {
                    skip_varints(plain, &mut pos, 3).map_err(|_| err("ACK frame", at))?;
                }
            }
            0x06 => {
                let offset = varint(plain, &mut pos).map_err(|_| err("CRYPTO offset", at))?;
                let len = varint(plain, &mut pos).map_err(|_| err("CRYPTO length", at))?;
                let len = usize::try_from(len).map_err(|_| err("CRYPTO length", at))?;
                let data = plain
                    .get(pos..pos.saturating_add(len))
                    .ok_or_else(|| err("CRYPTO length", at))?;
                if offset.checked_add(len as u64).is_none_or(|e| e > (1 << 62)) {
                    return Err(err("CRYPTO offset", at));
                }
                out.push(CryptoChunk {
                    offset,
                    data: data.to_vec(),
                });
                pos += len;
            }
            0x1c => {
                varint(plain, &mut pos).map_err(|_| err("CONNECTION_CLOSE", at))?;
                varint(plain, &mut pos).map_err(|_| err("CONNECTION_CLOSE", at))?;
                let len = varint(plain, &mut pos).map_err(|_| err("CONNECTION_CLOSE", at))?;
                let len = usize::try_from(len).map_err(|_| err("CONNECTION_CLOSE", at))?;
                if plain.len() - pos < len {
                    return Err(err("CONNECTION_CLOSE reason", at));
                }
                pos += len;
            }
            other => {
                return Err(DecodeError::QuicFrame {
                    frame_type: other,
                    offset: base + at,
                });
            }
        }
    }
    Ok(())
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
    fn varints_of_rfc9000_a1() {
        for (bytes, want) in [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c][..],
                151_288_809_941_952_652u64,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d][..], 494_878_333),
            (&[0x7b, 0xbd][..], 15_293),
            (&[0x25][..], 37),
        ] {
            let mut p = 0;
            assert_eq!(varint(bytes, &mut p).unwrap(), want);
            assert_eq!(p, bytes.len());
        }
        let mut p = 0;
        assert!(varint(&[0x40], &mut p).is_err());
    }

    #[test]
    fn frames() {
        // PADDING, PING, ACK(1 range) , CRYPTO(off 5, "abc"), PADDING
        let plain = [0, 1, 2, 5, 0, 1, 0, 0, 0, 6, 5, 3, b'a', b'b', b'c', 0, 0];
        let mut out = Vec::new();
        crypto_chunks(&plain, 0, &mut out).unwrap();
        assert_eq!(
            out,
            vec![CryptoChunk {
                offset: 5,
                data: b"abc".to_vec()
            }]
        );
        assert!(matches!(
            crypto_chunks(&[0x08, 0], 0, &mut out),
            Err(DecodeError::QuicFrame { frame_type: 8, .. })
        ));
        assert!(crypto_chunks(&[6, 0, 9, 1], 0, &mut out).is_err());
    }
}
