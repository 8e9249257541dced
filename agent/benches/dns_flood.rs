//! A local user floods the host with DNS answers carrying many long-TTL records, to make
//! the agent's address → name cache expensive once it is full (and so blind the agent).
//!
//! `cargo bench -p shadowai-agent --bench dns_flood` replays generated responses (N × 200
//! A records, TTL one day) through the agent's decode → correlate path (what `replay` and
//! the live agent run) and, as the peer in the same run, through the cache the agent had
//! before (a full-scan eviction, kept below verbatim in spirit: every insert past the cap
//! scans for the entry closest to expiry). Prints one line per configuration.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use shadowai_agent::correlate::dns_cache::DnsCache;
use shadowai_agent::correlate::{Clock, Correlator};
use shadowai_decode::{DnsMessage, Hint, PacketIn};

const RECORDS: u32 = 200;

fn responses(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let name = Name::from_ascii(format!("flood{i}.example.")).unwrap_or_default();
            let mut m = Message::new();
            m.set_id(i as u16);
            m.set_message_type(MessageType::Response);
            m.add_query(Query::query(name.clone(), RecordType::A));
            for j in 0..RECORDS {
                let ip = Ipv4Addr::from(0x0a00_0000 + i * RECORDS + j);
                m.add_answer(Record::from_rdata(name.clone(), 86_400, RData::A(A(ip))));
            }
            m.to_vec().unwrap_or_default()
        })
        .collect()
}

/// Through the agent's own path: decoder, correlator, DNS cache (default cap).
fn replay(wire: &[Vec<u8>]) -> (Duration, usize) {
    let mut corr = Correlator::new(Clock::identity());
    let mut out = Vec::new();
    let src = SocketAddr::from(([10, 1, 0, 1], 53));
    let dst = SocketAddr::from(([10, 1, 0, 2], 40000));
    let start = Instant::now();
    for (i, p) in wire.iter().enumerate() {
        let pkt = PacketIn {
            ts_ns: 1_000_000_000 + i as u64,
            flow: i as u64,
            direction: shadowai_decode::Direction::Ingress,
            hint: Hint::DnsUdp,
            tcp_seq: None,
            src,
            dst,
            wire_len: p.len() as u32,
            payload: p,
        };
        corr.on_packet(&pkt, None, &mut out);
        out.clear();
    }
    (start.elapsed(), corr.dns.len())
}

fn decoded(wire: &[Vec<u8>]) -> Vec<DnsMessage> {
    wire.iter()
        .filter_map(|p| shadowai_decode::dns::parse_message(p).ok())
        .collect()
}

fn new_cache(msgs: &[DnsMessage], cap: usize) -> (Duration, usize) {
    let mut c = DnsCache::new(cap);
    let start = Instant::now();
    for (i, m) in msgs.iter().enumerate() {
        c.learn(Some(i as u32), 1, m, 1_000_000_000);
    }
    (start.elapsed(), c.len())
}

/// The previous cache's eviction: an O(n) scan per evicted entry.
struct ScanCache {
    by_proc: HashMap<(u32, IpAddr), u64>,
    by_netns: HashMap<(u64, IpAddr), u64>,
    by_host: HashMap<IpAddr, u64>,
    cap: usize,
}

impl ScanCache {
    fn learn(&mut self, pid: u32, m: &DnsMessage, now: u64) {
        for a in &m.answers {
            if let shadowai_decode::RData::Addr(ip) = a.data {
                let exp = now + u64::from(a.ttl).min(3600) * 1_000_000_000;
                self.by_proc.insert((pid, ip), exp);
                self.by_netns.insert((1, ip), exp);
                self.by_host.insert(ip, exp);
            }
        }
        let len = |s: &Self| s.by_proc.len() + s.by_netns.len() + s.by_host.len();
        if len(self) <= self.cap {
            return;
        }
        self.by_proc.retain(|_, e| *e > now);
        self.by_netns.retain(|_, e| *e > now);
        self.by_host.retain(|_, e| *e > now);
        while len(self) > self.cap {
            if let Some(k) = self
                .by_host
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| *k)
            {
                self.by_host.remove(&k);
                if len(self) <= self.cap {
                    break;
                }
            }
            let p = self
                .by_proc
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, e)| (*k, *e));
            let n = self
                .by_netns
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, e)| (*k, *e));
            match (p, n) {
                (Some((pk, pe)), Some((_, ne))) if pe <= ne => {
                    self.by_proc.remove(&pk);
                }
                (_, Some((nk, _))) => {
                    self.by_netns.remove(&nk);
                }
                (Some((pk, _)), None) => {
                    self.by_proc.remove(&pk);
                }
                (None, None) => break,
            }
        }
    }
}

fn scan_cache(msgs: &[DnsMessage], cap: usize) -> (Duration, usize) {
    let mut c = ScanCache {
        by_proc: HashMap::new(),
        by_netns: HashMap::new(),
        by_host: HashMap::new(),
        cap,
    };
    let start = Instant::now();
    for (i, m) in msgs.iter().enumerate() {
        c.learn(i as u32, m, 1_000_000_000);
    }
    (
        start.elapsed(),
        c.by_proc.len() + c.by_netns.len() + c.by_host.len(),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; a bare run with `--quick` skips the slow peer sizes.
    let quick = std::env::args().any(|a| a == "--quick");
    let wire = responses(750);
    let msgs = decoded(&wire);
    println!(
        "{} responses × {RECORDS} A records (TTL 1 day), {} bytes each",
        wire.len(),
        wire.first().map_or(0, Vec::len)
    );
    let (t, n) = replay(&wire);
    println!("agent replay path (decode + correlate, cap 200,000): {t:>10.3?}  ({n} entries)");
    for (responses, cap) in [(75usize, 20_000usize), (750, 20_000), (750, 200_000)] {
        let (t, n) = new_cache(&msgs[..responses], cap);
        println!(
            "expiry-index cache, {responses:>3} × {RECORDS}, cap {cap:>7}: {t:>10.3?}  ({n} entries)"
        );
        if quick && responses * RECORDS as usize * 3 > 10 * cap {
            continue;
        }
        let (t, n) = scan_cache(&msgs[..responses], cap);
        println!(
            "full-scan cache (peer), {responses:>3} × {RECORDS}, cap {cap:>7}: {t:>10.3?}  ({n} entries)"
        );
    }
}
