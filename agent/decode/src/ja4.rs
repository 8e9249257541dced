//! JA4 TLS client fingerprint (FoxIO, BSD-3 spec): `{q|t}{ver}{d|i}{ciphers:02}{exts:02}{alpn}`
//! `_` sha256(sorted ciphers)[..12] `_` sha256(sorted extensions minus SNI/ALPN `_` sig algs)[..12].
//! GREASE values are ignored everywhere.

use sha2::{Digest, Sha256};

use crate::tls::{EXT_ALPN, EXT_SNI, is_grease};

pub struct Ja4Input<'a> {
    pub quic: bool,
    /// Offered versions (supported_versions, or the legacy version).
    pub versions: &'a [u16],
    pub sni_present: bool,
    pub ciphers: &'a [u16],
    /// Extension types in wire order.
    pub extensions: &'a [u16],
    pub first_alpn: Option<&'a [u8]>,
    /// signature_algorithms in wire order.
    pub sig_algs: &'a [u16],
}

pub fn ja4(i: &Ja4Input<'_>) -> String {
    let version = i
        .versions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .max()
        .map_or("00", version_code);
    let ciphers: Vec<u16> = i
        .ciphers
        .iter()
        .copied()
        .filter(|c| !is_grease(*c))
        .collect();
    let exts: Vec<u16> = i
        .extensions
        .iter()
        .copied()
        .filter(|e| !is_grease(*e))
        .collect();
    let mut a = String::with_capacity(10);
    a.push(if i.quic { 'q' } else { 't' });
    a.push_str(version);
    a.push(if i.sni_present { 'd' } else { 'i' });
    a.push_str(&format!("{:02}", ciphers.len().min(99)));
    a.push_str(&format!("{:02}", exts.len().min(99)));
    a.push_str(&alpn_code(i.first_alpn));

    let mut sorted_ciphers = ciphers;
    sorted_ciphers.sort_unstable();
    let b = hash12(&hex_list(&sorted_ciphers));

    let mut sorted_exts: Vec<u16> = exts
        .into_iter()
        .filter(|e| *e != EXT_SNI && *e != EXT_ALPN)
        .collect();
    sorted_exts.sort_unstable();
    let sigs: Vec<u16> = i
        .sig_algs
        .iter()
        .copied()
        .filter(|s| !is_grease(*s))
        .collect();
    let c = if sorted_exts.is_empty() && sigs.is_empty() {
        "000000000000".to_string()
    } else if sigs.is_empty() {
        hash12(&hex_list(&sorted_exts))
    } else {
        hash12(&format!("{}_{}", hex_list(&sorted_exts), hex_list(&sigs)))
    };
    format!("{a}_{b}_{c}")
}

fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

fn alpn_code(first: Option<&[u8]>) -> String {
    match first {
        Some([]) | None => "00".to_string(),
        Some(p) => {
            let (f, l) = (p[0], p[p.len() - 1]);
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                format!("{}{}", f as char, l as char)
            } else {
                let h = hex::encode([f, l]);
                // first char of the first byte's hex, last char of the last byte's hex
                let hb = h.as_bytes();
                format!("{}{}", hb[0] as char, hb[3] as char)
            }
        }
    }
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_string();
    }
    let d = Sha256::digest(s.as_bytes());
    hex::encode(&d[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the JA4 specification (FoxIO README).
    #[test]
    fn spec_example() {
        let ciphers = [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let exts = [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let sigs = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let s = ja4(&Ja4Input {
            quic: false,
            versions: &[0x0304, 0x0303],
            sni_present: true,
            ciphers: &ciphers,
            extensions: &exts,
            first_alpn: Some(b"h2"),
            sig_algs: &sigs,
        });
        assert_eq!(s, "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn alpn_non_alnum() {
        assert_eq!(alpn_code(Some(&[0xab, 0xcd])), "ad");
        assert_eq!(alpn_code(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_code(None), "00");
    }
}
