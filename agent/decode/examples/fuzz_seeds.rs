//! Write fuzzing seed corpora from the test fixtures:
//! `cargo run --example fuzz_seeds -- OUT_DIR` (creates OUT_DIR/{tls,quic,dns,pcap}).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::path::{Path, PathBuf};

use shadowai_decode::replay::Replay;
use shadowai_decode::{Hint, Parsed, quic};

fn write(dir: &Path, name: String, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds OUT_DIR"));
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures.join("ndpi")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".out") || !name.contains(".pcap") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        write(&out.join("pcap"), name.clone(), &data);
        for p in Replay::new(&data[..]).unwrap().flatten() {
            n += 1;
            match p.hint {
                Hint::Tls => write(
                    &out.join("tls"),
                    format!("{name}-{n}"),
                    &[&[200, 40][..], &p.payload].concat(),
                ),
                Hint::Quic => {
                    write(
                        &out.join("quic"),
                        format!("{name}-{n}"),
                        &[&[0][..], &p.payload].concat(),
                    );
                    if let Ok(Parsed::Found(d)) = quic::decrypt_datagram(&p.payload, None) {
                        let mut plain = Vec::new();
                        for c in &d.chunks {
                            plain.extend_from_slice(&quic::crypto_frame(c.offset, &c.data));
                        }
                        write(
                            &out.join("quic"),
                            format!("{name}-{n}-plain"),
                            &[&[0x21][..], &plain].concat(),
                        );
                    }
                }
                Hint::DnsUdp | Hint::DnsTcp => write(
                    &out.join("dns"),
                    format!("{name}-{n}"),
                    &[&[20][..], &p.payload].concat(),
                ),
            }
        }
    }
    for f in [
        "rfc9001-a2-client-initial.bin",
        "rfc9369-a2-client-initial.bin",
    ] {
        let data = std::fs::read(fixtures.join("rfc").join(f)).unwrap();
        write(
            &out.join("quic"),
            f.to_string(),
            &[&[0][..], &data].concat(),
        );
    }
    let frame = std::fs::read(fixtures.join("rfc/rfc9001-a2-crypto-frame.bin")).unwrap();
    write(
        &out.join("quic"),
        "rfc-plain".into(),
        &[&[0x41][..], &frame].concat(),
    );
    println!("seeds written to {}", out.display());
}
