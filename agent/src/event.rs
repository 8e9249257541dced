//! The agent's observation of one DNS message, ClientHello or connection, attributed to a
//! process. Rendered as OCSF 1.8 (DNS Activity 4003, Network Activity 4001) by
//! [`crate::output`]. Names, addresses and process identity only — never payloads.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use shadowai_api::{Confidence, NameSource as ApiSource, Naming};

use crate::correlate::dns_cache::NameScope;
use crate::enrich::ProcInfo;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DnsQuery,
    DnsResponse,
    /// A TLS ClientHello over TCP.
    TlsClientHello,
    /// A TLS ClientHello inside QUIC Initial packets.
    QuicClientHello,
    /// An outbound connect() (TCP, or UDP connect/sendmsg).
    Connect,
}

/// Where the destination's name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    /// The TLS/QUIC SNI: authoritative for that connection.
    Sni,
    /// The DNS question itself.
    Dns,
    /// A DNS answer this process (or its namespace's local resolver, or namespace, or the
    /// host) received for the address.
    DnsCache(NameScope),
}

impl NameSource {
    /// How the name was obtained and how sure the agent is of it, in the wire vocabulary
    /// (rules in [`crate::correlate::naming`]).
    pub fn naming(self) -> Naming {
        let (source, confidence) = match self {
            NameSource::Sni => (ApiSource::Sni, Confidence::High),
            NameSource::Dns => (ApiSource::DnsQuestion, Confidence::High),
            NameSource::DnsCache(NameScope::Process) => (ApiSource::DnsAnswer, Confidence::High),
            NameSource::DnsCache(NameScope::Resolver) => {
                (ApiSource::ResolverAnswer, Confidence::Medium)
            }
            NameSource::DnsCache(NameScope::Namespace) => (ApiSource::Namespace, Confidence::Low),
            NameSource::DnsCache(NameScope::Host) => (ApiSource::Host, Confidence::Low),
        };
        Naming { source, confidence }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsInfo {
    pub id: u16,
    pub question: String,
    pub qtype: u16,
    pub rcode: u16,
    /// Answer data as text (addresses, CNAME targets, HTTPS targets).
    pub answers: Vec<DnsRecord>,
    pub edns: bool,
    pub transport: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: &'static str,
    pub ttl: u32,
    pub rdata: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// Offered versions, highest first (0x0304 = TLS 1.3).
    pub versions: Vec<u16>,
    pub ja4: String,
    /// ECH offered: the SNI above is the outer (public) name.
    pub ech: bool,
    pub hello_len: usize,
    /// Only a prefix of the hello was available (the rest never arrived in time).
    pub partial: bool,
    /// QUIC wire version when the hello came in QUIC Initials.
    pub quic_version: Option<u32>,
}

/// Attributes that deserve attention on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The destination is a known DNS-over-HTTPS/TLS resolver: names may be hidden.
    EncryptedDns,
    /// The ClientHello offered Encrypted Client Hello.
    Ech,
    /// Connected to an address no DNS answer on this host named.
    NeverResolved,
    /// DNS traffic of a known local resolver (systemd-resolved, dnsmasq, …): lookups it
    /// answers or forwards for clients, never its own use of a service.
    LocalResolver,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Unix milliseconds.
    pub time_ms: i64,
    pub kind: EventKind,
    /// `udp`, `tcp` or `quic`.
    pub protocol: &'static str,
    /// Shared with the process table: events of one process do not copy its identity.
    pub process: Option<Arc<ProcInfo>>,
    pub src: Option<SocketAddr>,
    pub dst: SocketAddr,
    /// The destination's name, and how we know it.
    pub hostname: Option<String>,
    pub name_source: Option<NameSource>,
    pub dns: Option<DnsInfo>,
    pub tls: Option<TlsInfo>,
    pub signals: Vec<Signal>,
    /// Socket cookie (joins events of one socket).
    pub cookie: u64,
    /// The kernel refused this connection or dropped this query (enforce mode).
    pub blocked: bool,
}
