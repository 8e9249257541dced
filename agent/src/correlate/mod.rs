//! Joins what the kernel saw into attributed events: packets and connections to processes
//! (the owner recorded under the socket cookie), addresses to names by the rules in
//! [`naming`] (SNI first, then the DNS answers the process received, then — with a stated
//! lower confidence — its local resolver's, namespace's or host's), plus signals. Local
//! resolvers' own DNS traffic is marked, never a use ([`resolvers`]).
//!
//! The same [`Correlator`] serves the live agent and `replay` (which has no processes).

pub mod dns_cache;
pub mod hold;
pub mod naming;
pub mod resolvers;
#[cfg(test)]
mod tests;

use shadowai_decode::{
    DecodeStats, Decoded, Decoder, Direction, Hint, Limits, PacketIn, RData, Transport,
};

use crate::enrich::ProcTable;
use crate::event::{DnsInfo, DnsRecord, Event, EventKind, NameSource, Signal, TlsInfo};
use crate::output::ocsf::qtype_name;
use crate::sensor::records::{Connect, Exec, Owner, Packet};
use dns_cache::DnsCache;
use resolvers::{LocalResolvers, PendingLookups};

/// Converts kernel monotonic timestamps to Unix milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// realtime - monotonic, in ns.
    offset_ns: i128,
}

impl Clock {
    /// Measures the offset between CLOCK_REALTIME and CLOCK_MONOTONIC now.
    pub fn system() -> Self {
        let read = |id| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid pointer to a timespec.
            unsafe { libc::clock_gettime(id, &mut ts) };
            i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
        };
        Self {
            offset_ns: read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC),
        }
    }

    /// Timestamps that are already Unix nanoseconds (replay).
    pub fn identity() -> Self {
        Self { offset_ns: 0 }
    }

    pub fn to_unix_ms(self, ts_ns: u64) -> i64 {
        i64::try_from((i128::from(ts_ns) + self.offset_ns) / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// Monotonic "now" in ns, as the kernel's bpf_ktime_get_ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

pub struct Correlator {
    pub procs: ProcTable,
    pub dns: DnsCache,
    decoder: Decoder,
    clock: Clock,
    decoded: Vec<Decoded>,
    resolvers: LocalResolvers,
    pending: PendingLookups,
}

impl Correlator {
    pub fn new(clock: Clock) -> Self {
        Self {
            procs: ProcTable::default(),
            dns: DnsCache::new(200_000),
            decoder: Decoder::new(Limits::default()),
            clock,
            decoded: Vec::new(),
            resolvers: LocalResolvers::default(),
            pending: PendingLookups::default(),
        }
    }

    /// The local resolvers to recognise (the catalogue's `_local-resolvers.toml`).
    pub fn set_local_resolvers(&mut self, list: &[shadowai_rules::catalogue::LocalResolver]) {
        self.resolvers = LocalResolvers::new(list);
    }

    /// Loopback client lookups waiting for a resolver's upstream lookup, and how many the
    /// bound pushed out early.
    pub fn pending_lookups(&self) -> (usize, u64) {
        (self.pending.len(), self.pending.evicted)
    }

    pub fn decode_stats(&self) -> &DecodeStats {
        self.decoder.stats()
    }

    pub fn on_exec(&mut self, e: &Exec) {
        self.procs.on_exec(e);
    }

    pub fn on_exit(&mut self, pid: u32, ts_ns: u64) {
        self.procs.on_exit(pid, ts_ns);
    }

    /// Periodic housekeeping: expire caches and partial flows.
    pub fn tick(&mut self, now_ns: u64) {
        self.procs.expire(now_ns);
        self.dns.expire(now_ns);
        self.pending.expire(now_ns);
        self.decoder.expire(now_ns);
    }

    /// An outbound connection: named from the DNS cache.
    pub fn on_connect(&mut self, c: &Connect) -> Event {
        let process = self.procs.resolve(&c.owner);
        let protocol = match c.protocol {
            17 => "udp",
            _ => "tcp",
        };
        let mut signals = Vec::new();
        let (pid, netns) = (c.owner.pid, c.owner.netns);
        let (hostname, name_source) =
            match naming::cached_name(&self.dns, pid, netns, c.dst, c.ts_ns) {
                Some(r) => (Some(r.name), Some(NameSource::DnsCache(r.scope))),
                None => (None, None),
            };
        if naming::never_resolved(&self.dns, pid, netns, c.dst, c.ts_ns) {
            signals.push(Signal::NeverResolved);
        }
        if shadowai_decode::signals::encrypted_dns_endpoint(
            hostname.as_deref(),
            Some(c.dst.ip()),
            c.dst.port(),
        )
        .is_some()
        {
            signals.push(Signal::EncryptedDns);
        }
        Event {
            time_ms: self.clock.to_unix_ms(c.ts_ns),
            kind: EventKind::Connect,
            protocol,
            process: Some(process),
            src: None,
            dst: c.dst,
            hostname,
            name_source,
            dns: None,
            tls: None,
            signals,
            cookie: c.cookie,
            blocked: c.blocked,
        }
    }

    /// A captured packet from the kernel.
    pub fn on_kernel_packet(&mut self, p: &Packet, out: &mut Vec<Event>) {
        use shadowai_common::{dir, payload};
        let hint = match p.meta.payload {
            payload::DNS_UDP => Hint::DnsUdp,
            payload::DNS_TCP => Hint::DnsTcp,
            payload::TLS => Hint::Tls,
            _ => Hint::Quic,
        };
        let pkt = PacketIn {
            ts_ns: p.meta.ts_ns,
            flow: p.meta.cookie,
            direction: if p.meta.direction == dir::INGRESS {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            hint,
            tcp_seq: (p.meta.protocol == 6).then_some(p.meta.tcp_seq),
            src: p.src,
            dst: p.dst,
            wire_len: p.meta.wire_len,
            payload: &p.data,
        };
        let first = out.len();
        self.on_packet(&pkt, p.owner.as_ref(), out);
        if p.meta.flags & shadowai_common::flags::BLOCKED != 0 {
            for e in &mut out[first..] {
                e.blocked = true;
            }
        }
    }

    /// A packet from any source (kernel or capture file) with its owner, if known.
    pub fn on_packet(&mut self, pkt: &PacketIn<'_>, owner: Option<&Owner>, out: &mut Vec<Event>) {
        self.decoded.clear();
        self.decoder.push(pkt, &mut self.decoded);
        let decoded = std::mem::take(&mut self.decoded);
        for d in &decoded {
            if let Some(e) = self.event_for(d, owner) {
                out.push(e);
            }
        }
        self.decoded = decoded;
    }

    /// What a DNS message teaches. A client's loopback query is remembered until its
    /// resolver's upstream lookup; a local resolver's upstream answer for a remembered query
    /// is a duplicate of the answer the client itself receives, and one for no seen client
    /// (nss-resolve) teaches the namespace's resolver scope; a resolver's loopback answers
    /// teach nothing the client's own copy does not. Everyone else's answers teach their
    /// process, namespace and host scopes.
    fn learn_dns(
        &mut self,
        owner: Option<&Owner>,
        resolver: bool,
        server: std::net::SocketAddr,
        msg: &shadowai_decode::DnsMessage,
        ts_ns: u64,
    ) {
        let netns = owner.map_or(0, |o| o.netns);
        match (resolver, msg.is_response) {
            (false, false) => {
                if let (Some(o), true) = (owner, server.ip().is_loopback()) {
                    for q in &msg.questions {
                        self.pending.asked(netns, &q.name, o.pid, ts_ns);
                    }
                }
            }
            (false, true) => self.dns.learn(owner.map(|o| o.pid), netns, msg, ts_ns),
            (true, false) => {}
            (true, true) => {
                if server.ip().is_loopback() {
                    return;
                }
                let for_client = msg
                    .questions
                    .iter()
                    .any(|q| self.pending.asker(netns, &q.name, ts_ns).is_some());
                if !for_client {
                    self.dns.learn_resolver(netns, msg, ts_ns);
                }
            }
        }
    }

    fn event_for(&mut self, d: &Decoded, owner: Option<&Owner>) -> Option<Event> {
        let process = owner.map(|o| self.procs.resolve(o));
        match d {
            Decoded::Dns {
                flow,
                ts_ns,
                src,
                dst,
                transport,
                msg,
            } => {
                // A response travels server → client: report the server as the destination.
                let (client, server) = if msg.is_response {
                    (*dst, *src)
                } else {
                    (*src, *dst)
                };
                let resolver = process
                    .as_ref()
                    .is_some_and(|p| self.resolvers.contains(&p.exe));
                self.learn_dns(owner, resolver, server, msg, *ts_ns);
                let q = msg.questions.first();
                let answers = msg
                    .answers
                    .iter()
                    .map(|a| DnsRecord {
                        name: a.name.clone(),
                        rtype: match &a.data {
                            RData::Addr(ip) if ip.is_ipv4() => "A",
                            RData::Addr(_) => "AAAA",
                            RData::Cname(_) => "CNAME",
                            RData::Svcb(s) if s.https => "HTTPS",
                            RData::Svcb(_) => "SVCB",
                            RData::Other(t) => qtype_name(*t),
                        },
                        ttl: a.ttl,
                        rdata: match &a.data {
                            RData::Addr(ip) => ip.to_string(),
                            RData::Cname(t) => t.clone(),
                            RData::Svcb(s) => format!(
                                "{} {}{}",
                                s.priority,
                                if s.target.is_empty() { "." } else { &s.target },
                                if s.ech { " ech" } else { "" }
                            ),
                            RData::Other(t) => format!("type{t}"),
                        },
                    })
                    .collect();
                let mut signals = Vec::new();
                if resolver {
                    signals.push(Signal::LocalResolver);
                }
                if msg
                    .answers
                    .iter()
                    .any(|a| matches!(&a.data, RData::Svcb(s) if s.ech))
                {
                    signals.push(Signal::Ech);
                }
                signals.sort();
                Some(Event {
                    time_ms: self.clock.to_unix_ms(*ts_ns),
                    kind: if msg.is_response {
                        EventKind::DnsResponse
                    } else {
                        EventKind::DnsQuery
                    },
                    protocol: if *transport == Transport::Tcp {
                        "tcp"
                    } else {
                        "udp"
                    },
                    process,
                    src: Some(client),
                    dst: server,
                    hostname: q.map(|q| q.name.clone()),
                    name_source: q.map(|_| NameSource::Dns),
                    dns: Some(DnsInfo {
                        id: msg.id,
                        question: q.map(|q| q.name.clone()).unwrap_or_default(),
                        qtype: q.map_or(0, |q| q.qtype),
                        rcode: msg.rcode,
                        answers,
                        edns: msg.edns(),
                        transport: if *transport == Transport::Tcp {
                            "tcp"
                        } else {
                            "udp"
                        },
                    }),
                    tls: None,
                    signals,
                    cookie: *flow,
                    blocked: false,
                })
            }
            Decoded::ClientHello {
                flow,
                ts_ns,
                src,
                dst,
                transport,
                hello,
            } => {
                let (kind, protocol, quic_version) = match transport {
                    Transport::Quic { version } => {
                        (EventKind::QuicClientHello, "quic", Some(*version))
                    }
                    _ => (EventKind::TlsClientHello, "tcp", None),
                };
                let mut signals = Vec::new();
                if hello.ech.is_some() {
                    signals.push(Signal::Ech);
                }
                let pid = owner.map_or(0, |o| o.pid);
                let netns = owner.map_or(0, |o| o.netns);
                let resolved = naming::cached_name(&self.dns, pid, netns, *dst, *ts_ns);
                if naming::never_resolved(&self.dns, pid, netns, *dst, *ts_ns) {
                    signals.push(Signal::NeverResolved);
                }
                let (hostname, name_source) = match (&hello.sni, resolved) {
                    (Some(s), _) => (Some(s.clone()), Some(NameSource::Sni)),
                    (None, Some(r)) => (Some(r.name), Some(NameSource::DnsCache(r.scope))),
                    (None, None) => (None, None),
                };
                if shadowai_decode::signals::encrypted_dns_endpoint(
                    hostname.as_deref(),
                    Some(dst.ip()),
                    dst.port(),
                )
                .is_some()
                {
                    signals.push(Signal::EncryptedDns);
                }
                signals.sort();
                Some(Event {
                    time_ms: self.clock.to_unix_ms(*ts_ns),
                    kind,
                    protocol,
                    process,
                    src: Some(*src),
                    dst: *dst,
                    hostname,
                    name_source,
                    dns: None,
                    tls: Some(TlsInfo {
                        sni: hello.sni.clone(),
                        alpn: hello.alpn.clone(),
                        versions: hello.versions.clone(),
                        ja4: hello.ja4.clone(),
                        ech: hello.ech.is_some(),
                        hello_len: hello.hello_len,
                        partial: hello.partial,
                        quic_version,
                    }),
                    signals,
                    cookie: *flow,
                    blocked: false,
                })
            }
        }
    }
}
