//! Print what the decoder extracts from a capture: `cargo run --example replay -- FILE`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use shadowai_decode::{Decoded, Limits, replay};

fn main() {
    let path = std::env::args().nth(1).expect("usage: replay FILE");
    let out = replay::decode_file(path.as_ref(), Limits::default()).expect("open capture");
    for d in &out.decoded {
        match d {
            Decoded::Dns {
                src,
                dst,
                transport,
                msg,
                ..
            } => println!(
                "DNS {transport:?} {src} -> {dst} id={} resp={} rcode={} q={:?} answers={:?} edns={:?}",
                msg.id, msg.is_response, msg.rcode, msg.questions, msg.answers, msg.edns_udp_size
            ),
            Decoded::ClientHello {
                src,
                dst,
                transport,
                hello,
                ..
            } => println!(
                "HELLO {transport:?} {src} -> {dst} sni={:?} alpn={:?} versions={:x?} ech={:?} ja4={} len={} partial={}",
                hello.sni,
                hello.alpn,
                hello.versions,
                hello.ech,
                hello.ja4,
                hello.hello_len,
                hello.partial
            ),
        }
    }
    println!("decode: {:?}", out.decode_stats);
    println!("replay: {:?}", out.replay_stats);
    if let Some(e) = out.error {
        println!("error: {e}");
    }
}
