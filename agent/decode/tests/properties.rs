//! Model-based properties: however a stream is cut, reordered and duplicated, reassembly gives
//! back exactly the stream, and the decoder names the server exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use proptest::prelude::*;
use shadowai_decode::quic::{VERSION_1, VERSION_2, crypto_frame, seal_initial};
use shadowai_decode::reasm::Reassembly;
use shadowai_decode::{Decoder, Hint, Limits};

/// Cut points (sorted, deduplicated) turning `len` bytes into pieces.
fn pieces(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut c: Vec<usize> = cuts
        .iter()
        .map(|x| x % len.max(1))
        .filter(|x| *x > 0)
        .collect();
    c.push(0);
    c.push(len);
    c.sort_unstable();
    c.dedup();
    c.windows(2).map(|w| (w[0], w[1])).collect()
}

/// A permutation of `n` items with some repeated, driven by `keys`.
fn order(n: usize, keys: &[u32], dups: &[usize]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by_key(|i| keys.get(*i).copied().unwrap_or(0));
    for d in dups {
        idx.push(d % n.max(1));
    }
    idx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn reassembly_returns_the_stream(
        stream in proptest::collection::vec(any::<u8>(), 1..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        keys in proptest::collection::vec(any::<u32>(), 13),
        dups in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let ps = pieces(stream.len(), &cuts);
        let mut r = Reassembly::new(4096);
        for i in order(ps.len(), &keys, &dups) {
            let (a, b) = ps[i];
            r.insert(a as u64, &stream[a..b]).unwrap();
        }
        prop_assert_eq!(r.contiguous(), &stream[..]);
        prop_assert!(!r.has_gap());
    }

    #[test]
    fn tcp_client_hello_any_segmentation(
        pad in 0usize..2500,
        cuts in proptest::collection::vec(any::<usize>(), 0..7),
        keys in proptest::collection::vec(any::<u32>(), 8),
        dups in proptest::collection::vec(any::<usize>(), 0..3),
        isn in any::<u32>(),
    ) {
        let stream = common::records(&common::client_hello(Some("api.openai.com"), &["h2"], pad), 16384);
        let ps = pieces(stream.len(), &cuts);
        let mut dec = Decoder::new(Limits::default());
        let mut out = Vec::new();
        for i in order(ps.len(), &keys, &dups) {
            let (a, b) = ps[i];
            dec.push(&common::pkt(Hint::Tls, Some(isn.wrapping_add(a as u32)), &stream[a..b]), &mut out);
        }
        let hs = common::hellos(&out);
        prop_assert_eq!(hs.len(), 1);
        prop_assert_eq!(hs[0].sni.as_deref(), Some("api.openai.com"));
        prop_assert_eq!(dec.stats().tls.error_total(), 0);
    }

    #[test]
    fn quic_crypto_any_split_across_coalesced_datagrams(
        pad in 0usize..2500,
        cuts in proptest::collection::vec(any::<usize>(), 0..5),
        keys in proptest::collection::vec(any::<u32>(), 6),
        per_datagram in 1usize..4,
        v2 in any::<bool>(),
    ) {
        let hello = common::client_hello(Some("claude.ai"), &["h3"], pad);
        let dcid = [7u8; 8];
        let version = if v2 { VERSION_2 } else { VERSION_1 };
        let ps = pieces(hello.len(), &cuts);
        let packets: Vec<Vec<u8>> = order(ps.len(), &keys, &[])
            .into_iter()
            .enumerate()
            .map(|(pn, i)| {
                let (a, b) = ps[i];
                seal_initial(version, &dcid, &[1], &dcid, pn as u32, &crypto_frame(a as u64, &hello[a..b]), 0).unwrap()
            })
            .collect();
        let mut dec = Decoder::new(Limits::default());
        let mut out = Vec::new();
        for group in packets.chunks(per_datagram) {
            let datagram = group.concat();
            dec.push(&common::pkt(Hint::Quic, None, &datagram), &mut out);
        }
        let hs = common::hellos(&out);
        prop_assert_eq!(hs.len(), 1);
        prop_assert_eq!(hs[0].sni.as_deref(), Some("claude.ai"));
    }
}
