//! QUIC Initial secrets (RFC 9001 5.2, RFC 9369 3.3): HKDF-SHA256 from the client's first
//! Destination Connection ID with the version's salt, AES-128-GCM packet protection and AES
//! header protection — all from `ring`, nothing hand-written.

use ring::aead::quic::{AES_128, HeaderProtectionKey};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Prk, Salt};

use crate::error::DecodeError;

pub const VERSION_1: u32 = 0x0000_0001;
pub const VERSION_2: u32 = 0x6b33_43cf;

const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// draft-ietf-quic-tls-29 .. -34.
const SALT_D29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0,
    0x43, 0x90, 0xa8, 0x99,
];
/// draft-ietf-quic-tls-23 .. -28.
const SALT_D23: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65,
    0xbe, 0xf9, 0xf5, 0x02,
];

/// Per-version constants of Initial protection and the long-header type bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionParams {
    pub version: u32,
    salt: &'static [u8; 20],
    v2_labels: bool,
    /// Long-header packet type value that means Initial.
    pub initial_type: u8,
    /// Long-header packet type value that means Retry (has no Length field).
    pub retry_type: u8,
}

/// The versions whose Initials can be decrypted: v1, v2, drafts 23–34.
pub fn version_params(version: u32) -> Option<VersionParams> {
    let (salt, v2) = match version {
        VERSION_1 => (&SALT_V1, false),
        VERSION_2 => (&SALT_V2, true),
        0xff00_001d..=0xff00_0022 => (&SALT_D29, false),
        0xff00_0017..=0xff00_001c => (&SALT_D23, false),
        _ => return None,
    };
    Some(VersionParams {
        version,
        salt,
        v2_labels: v2,
        initial_type: if v2 { 1 } else { 0 },
        retry_type: if v2 { 0 } else { 3 },
    })
}

/// The client's Initial packet-protection keys.
pub struct InitialKeys {
    pub version: u32,
    aead: LessSafeKey,
    iv: [u8; 12],
    hp: HeaderProtectionKey,
}

struct Len(usize);
impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
fn expand_label(prk: &Prk, label: &[u8], out: &mut [u8]) -> Result<(), ring::error::Unspecified> {
    let len = u16::try_from(out.len()).map_err(|_| ring::error::Unspecified)?;
    let full_len = u8::try_from(6 + label.len()).map_err(|_| ring::error::Unspecified)?;
    let len_bytes = len.to_be_bytes();
    let info: [&[u8]; 5] = [&len_bytes, &[full_len], b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len()))?.fill(out)
}

impl InitialKeys {
    /// Derive the client Initial keys for `dcid` (the client's first Destination CID).
    pub fn client(params: &VersionParams, dcid: &[u8]) -> Result<Self, DecodeError> {
        Self::derive(params, dcid).map_err(|_| DecodeError::QuicCrypto {
            version: params.version,
            step: "key derivation",
        })
    }

    fn derive(params: &VersionParams, dcid: &[u8]) -> Result<Self, ring::error::Unspecified> {
        let initial = Salt::new(HKDF_SHA256, params.salt).extract(dcid);
        let mut client_secret = [0u8; 32];
        expand_label(&initial, b"client in", &mut client_secret)?;
        let secret = Prk::new_less_safe(HKDF_SHA256, &client_secret);
        let (lk, liv, lhp): (&[u8], &[u8], &[u8]) = if params.v2_labels {
            (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
        } else {
            (b"quic key", b"quic iv", b"quic hp")
        };
        let mut key = [0u8; 16];
        let mut iv = [0u8; 12];
        let mut hp = [0u8; 16];
        expand_label(&secret, lk, &mut key)?;
        expand_label(&secret, liv, &mut iv)?;
        expand_label(&secret, lhp, &mut hp)?;
        Ok(InitialKeys {
            version: params.version,
            aead: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key)?),
            iv,
            hp: HeaderProtectionKey::new(&AES_128, &hp)?,
        })
    }

    /// The 5-byte header-protection mask for a 16-byte ciphertext sample.
    pub fn mask(&self, sample: &[u8]) -> Result<[u8; 5], DecodeError> {
        self.hp
            .new_mask(sample)
            .map_err(|_| DecodeError::QuicCrypto {
                version: self.version,
                step: "header protection",
            })
    }

    /// Encrypt `payload` in place and append the tag (the sending side; used to build test
    /// packets, fuzzing inputs and benchmark traffic).
    pub fn seal(&self, pn: u64, header: &[u8], payload: &mut Vec<u8>) -> Result<(), DecodeError> {
        self.aead
            .seal_in_place_append_tag(self.nonce(pn), Aad::from(header), payload)
            .map_err(|_| DecodeError::QuicCrypto {
                version: self.version,
                step: "AEAD encryption",
            })
    }

    fn nonce(&self, pn: u64) -> Nonce {
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        Nonce::assume_unique_for_key(nonce)
    }

    /// Decrypt `payload` (ciphertext + 16-byte tag) in place; returns the plaintext length.
    pub fn open(&self, pn: u64, header: &[u8], payload: &mut [u8]) -> Result<usize, DecodeError> {
        self.aead
            .open_in_place(self.nonce(pn), Aad::from(header), payload)
            .map(|plain| plain.len())
            .map_err(|_| DecodeError::QuicCrypto {
                version: self.version,
                step: "AEAD decryption",
            })
    }
}
