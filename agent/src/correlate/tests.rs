//! The naming rules through the whole correlator: a local caching resolver in front of a
//! client, an nss-resolve client that sends no DNS packet, a connect to the resolver, and a
//! shared address named per process.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::net::SocketAddr;

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use shadowai_decode::{Direction, Hint, PacketIn};
use shadowai_rules::catalogue::LocalResolver;

use super::dns_cache::NameScope;
use super::{Clock, Correlator};
use crate::event::{Event, EventKind, NameSource, Signal};
use crate::sensor::records::{Connect, Exec, Owner};

const S: u64 = 1_000_000_000;
const NETNS: u64 = 4026531999;
// Above the kernel's pid_max: /proc never knows them, so the exec record decides.
const DNSMASQ: u32 = 4_000_001;
const CURL: u32 = 4_000_002;
const NSS_CLIENT: u32 = 4_000_003;
const BYSTANDER: u32 = 4_000_004;
const FAKE_DNSMASQ: u32 = 4_000_005;

fn correlator() -> Correlator {
    let mut c = Correlator::new(Clock::identity());
    c.set_local_resolvers(&[LocalResolver {
        name: "dnsmasq".into(),
        exe: vec!["/usr/sbin/dnsmasq".into()],
        comm: vec!["dnsmasq".into()],
        source: "test".into(),
    }]);
    for (pid, exe) in [
        (DNSMASQ, "/usr/sbin/dnsmasq"),
        (CURL, "/usr/bin/curl"),
        (NSS_CLIENT, "/usr/bin/python3"),
        (BYSTANDER, "/usr/bin/wget"),
        (FAKE_DNSMASQ, "/tmp/dnsmasq"),
    ] {
        c.on_exec(&Exec {
            ts_ns: 0,
            pid,
            uid: 1000,
            gid: 1000,
            cgroup_id: 1,
            comm: exe.rsplit('/').next().unwrap().into(),
            filename: exe.into(),
            args: vec![exe.into()],
        });
    }
    c
}

fn owner(pid: u32) -> Owner {
    Owner {
        pid,
        uid: 1000,
        gid: 1000,
        cgroup_id: 1,
        netns: NETNS,
        comm: String::new(),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn dns(id: u16, name: &str, answer: Option<&str>) -> Vec<u8> {
    let n = Name::from_ascii(format!("{name}.")).unwrap();
    let mut m = Message::new();
    m.set_id(id);
    m.add_query(Query::query(n.clone(), RecordType::A));
    if let Some(ip) = answer {
        m.set_message_type(MessageType::Response);
        m.add_answer(Record::from_rdata(n, 300, RData::A(A(ip.parse().unwrap()))));
    }
    m.to_vec().unwrap()
}

/// Feeds one DNS packet from `src` to `dst` seen on `who`'s socket.
fn packet(c: &mut Correlator, who: u32, ts: u64, src: &str, dst: &str, wire: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    let pkt = PacketIn {
        ts_ns: ts,
        flow: (u64::from(who) << 16) | (ts % 65536),
        direction: Direction::Egress,
        hint: Hint::DnsUdp,
        tcp_seq: None,
        src: sa(src),
        dst: sa(dst),
        wire_len: wire.len() as u32,
        payload: wire,
    };
    c.on_packet(&pkt, Some(&owner(who)), &mut out);
    out
}

fn connect(c: &mut Correlator, who: u32, ts: u64, dst: &str) -> Event {
    c.on_connect(&Connect {
        ts_ns: ts,
        blocked: false,
        hook: 0,
        protocol: 6,
        cookie: (u64::from(who) << 8) | (ts % 256),
        owner: owner(who),
        dst: sa(dst),
    })
}

fn resolver_marked(events: &[Event]) -> bool {
    !events.is_empty()
        && events
            .iter()
            .all(|e| e.signals.contains(&Signal::LocalResolver))
}

/// curl asks dnsmasq on 127.0.0.1 for api.openai.com; dnsmasq asks upstream; the answer
/// comes back both ways. Every packet as the kernel reports it, on its own socket.
fn dnsmasq_round(c: &mut Correlator, t: u64, name: &str, ip: &str) -> Vec<Vec<Event>> {
    let q = dns(1, name, None);
    let r = dns(1, name, Some(ip));
    vec![
        packet(c, CURL, t, "127.0.0.1:40000", "127.0.0.1:53", &q),
        packet(c, DNSMASQ, t + 1, "127.0.0.1:40000", "127.0.0.1:53", &q),
        packet(c, DNSMASQ, t + 2, "10.9.0.2:33333", "10.9.0.1:53", &q),
        packet(c, DNSMASQ, t + 3, "10.9.0.1:53", "10.9.0.2:33333", &r),
        packet(c, DNSMASQ, t + 4, "127.0.0.1:53", "127.0.0.1:40000", &r),
        packet(c, CURL, t + 5, "127.0.0.1:53", "127.0.0.1:40000", &r),
    ]
}

#[test]
fn a_local_resolver_is_never_the_user_and_its_client_is_named_by_its_own_answer() {
    let mut c = correlator();
    let rounds = dnsmasq_round(&mut c, S, "api.openai.com", "104.18.6.192");
    for (i, evs) in rounds.iter().enumerate() {
        let by_resolver = matches!(i, 1..=4);
        assert_eq!(resolver_marked(evs), by_resolver, "packet {i}: {evs:?}");
        assert_eq!(evs.len(), 1);
    }
    assert_eq!(rounds[0][0].kind, EventKind::DnsQuery);
    assert_eq!(
        rounds[0][0].process.as_ref().unwrap().pid,
        CURL,
        "the client's lookup is the client's"
    );
    let conn = connect(&mut c, CURL, 2 * S, "104.18.6.192:443");
    assert_eq!(conn.hostname.as_deref(), Some("api.openai.com"));
    assert_eq!(
        conn.name_source,
        Some(NameSource::DnsCache(NameScope::Process))
    );
    // The upstream answer was the client's: it did not become a resolver-scope answer that
    // would name another process's connection with medium confidence.
    let other = connect(&mut c, BYSTANDER, 2 * S, "104.18.6.192:443");
    assert_eq!(
        other.name_source,
        Some(NameSource::DnsCache(NameScope::Namespace))
    );
    assert_eq!(
        other.name_source.unwrap().naming().confidence,
        shadowai_api::Confidence::Low
    );
}

#[test]
fn an_nss_resolve_client_is_named_from_the_resolver_answer_with_medium_confidence() {
    let mut c = correlator();
    // No loopback query: the client asked over varlink. Only the upstream lookup is seen.
    let q = dns(2, "api.anthropic.com", None);
    let r = dns(2, "api.anthropic.com", Some("160.79.104.10"));
    assert!(resolver_marked(&packet(
        &mut c,
        DNSMASQ,
        S,
        "10.9.0.2:1",
        "10.9.0.1:53",
        &q
    )));
    assert!(resolver_marked(&packet(
        &mut c,
        DNSMASQ,
        S + 1,
        "10.9.0.1:53",
        "10.9.0.2:1",
        &r
    )));
    let conn = connect(&mut c, NSS_CLIENT, 2 * S, "160.79.104.10:443");
    assert_eq!(conn.hostname.as_deref(), Some("api.anthropic.com"));
    let naming = conn.name_source.unwrap().naming();
    assert_eq!(naming.source, shadowai_api::NameSource::ResolverAnswer);
    assert_eq!(naming.confidence, shadowai_api::Confidence::Medium);
    assert!(!conn.signals.contains(&Signal::NeverResolved));
}

#[test]
fn a_process_merely_named_like_a_resolver_is_not_one() {
    let mut c = correlator();
    let q = dns(3, "api.openai.com", None);
    let evs = packet(&mut c, FAKE_DNSMASQ, S, "10.9.0.2:1", "10.9.0.1:53", &q);
    assert_eq!(evs.len(), 1);
    assert!(!evs[0].signals.contains(&Signal::LocalResolver));
}

#[test]
fn a_connect_to_the_resolver_is_not_named_even_when_its_address_served_an_ai_name() {
    let mut c = correlator();
    // The resolver's own address answers for an AI name (the demo topology).
    let r = dns(4, "api.openai.com", Some("10.9.0.1"));
    packet(&mut c, CURL, S, "10.9.0.1:53", "10.9.0.2:5000", &r);
    let to_dns = connect(&mut c, BYSTANDER, 2 * S, "10.9.0.1:53");
    assert_eq!(to_dns.hostname, None);
    assert!(!to_dns.signals.contains(&Signal::NeverResolved));
    let own = connect(&mut c, CURL, 2 * S, "10.9.0.1:53");
    assert_eq!(own.hostname, None, "not even from the process's own answer");
    let tls = connect(&mut c, CURL, 2 * S, "10.9.0.1:443");
    assert_eq!(tls.hostname.as_deref(), Some("api.openai.com"));
}

#[test]
fn cross_process_cache_names_are_low_confidence_and_the_own_answer_wins() {
    let mut c = correlator();
    let shared = "203.0.113.80";
    packet(
        &mut c,
        CURL,
        S,
        "10.9.0.1:53",
        "10.9.0.2:5000",
        &dns(5, "api.openai.com", Some(shared)),
    );
    packet(
        &mut c,
        BYSTANDER,
        S,
        "10.9.0.1:53",
        "10.9.0.2:5001",
        &dns(6, "benign.example", Some(shared)),
    );
    let a = connect(&mut c, CURL, 2 * S, &format!("{shared}:443"));
    let b = connect(&mut c, BYSTANDER, 2 * S, &format!("{shared}:443"));
    assert_eq!(a.hostname.as_deref(), Some("api.openai.com"));
    assert_eq!(b.hostname.as_deref(), Some("benign.example"));
    assert_eq!(
        b.name_source.unwrap().naming().confidence,
        shadowai_api::Confidence::High
    );
    let n = connect(&mut c, NSS_CLIENT, 2 * S, &format!("{shared}:443"));
    assert_eq!(
        n.name_source.unwrap().naming().confidence,
        shadowai_api::Confidence::Low
    );
}
