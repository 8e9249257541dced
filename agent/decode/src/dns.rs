//! DNS messages (UDP datagrams, TCP length-prefixed messages) parsed with hickory-proto into
//! the evidence the agent needs: questions, answers (A/AAAA, CNAME chains, HTTPS/SVCB with
//! ALPN/ECH/IP hints), EDNS.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::svcb::{SVCB, SvcParamValue};
use hickory_proto::rr::{RData as HRData, Record};

use crate::error::{DecodeError, Parsed, Proto};

const HEADER_LEN: usize = 12;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    pub is_response: bool,
    /// Response code including the EDNS extended bits.
    pub rcode: u16,
    pub questions: Vec<DnsQuestion>,
    pub answers: Vec<DnsAnswer>,
    /// EDNS(0) present: the advertised UDP payload size.
    pub edns_udp_size: Option<u16>,
}

impl DnsMessage {
    pub fn edns(&self) -> bool {
        self.edns_udp_size.is_some()
    }

    /// Follow the CNAME chain from `name` (at most 16 hops) and return every name on it.
    pub fn cname_chain(&self, name: &str) -> Vec<String> {
        let mut chain = vec![name.to_string()];
        let mut cur = name.to_string();
        for _ in 0..16 {
            let next = self.answers.iter().find_map(|a| match &a.data {
                RData::Cname(t) if a.name.eq_ignore_ascii_case(&cur) => Some(t.clone()),
                _ => None,
            });
            match next {
                Some(n) if !chain.contains(&n) => {
                    chain.push(n.clone());
                    cur = n;
                }
                _ => break,
            }
        }
        chain
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuestion {
    /// Lower-cased, without the trailing dot.
    pub name: String,
    pub qtype: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    /// A or AAAA.
    Addr(IpAddr),
    Cname(String),
    /// HTTPS (type 65) or SVCB (type 64).
    Svcb(SvcbInfo),
    /// Any other type (its number).
    Other(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvcbInfo {
    /// True for HTTPS (65), false for SVCB (64).
    pub https: bool,
    pub priority: u16,
    pub target: String,
    pub alpn: Vec<String>,
    /// An ECHConfigList is published: clients will use ECH for this name.
    pub ech: bool,
    pub ipv4hint: Vec<IpAddr>,
    pub ipv6hint: Vec<IpAddr>,
}

/// Parse one DNS message (a UDP payload, or a TCP message without its length prefix).
/// Fewer than 12 bytes is `Truncated`; anything hickory-proto rejects (bad counts, labels,
/// compression loops, record data) is `Dns { source }`.
pub fn parse_message(b: &[u8]) -> Result<DnsMessage, DecodeError> {
    if b.len() < HEADER_LEN {
        return Err(DecodeError::Truncated {
            proto: Proto::Dns,
            what: "DNS header",
            needed: HEADER_LEN,
            captured: b.len(),
        });
    }
    let msg = Message::from_vec(b).map_err(|source| DecodeError::Dns { source })?;
    let edns_udp_size = msg.extensions().as_ref().map(|e| e.max_payload());
    let questions = msg
        .queries()
        .iter()
        .map(|q| DnsQuestion {
            name: name_str(q.name()),
            qtype: u16::from(q.query_type()),
        })
        .collect();
    let answers = msg.answers().iter().map(answer).collect();
    Ok(DnsMessage {
        id: msg.id(),
        is_response: msg.message_type() == MessageType::Response,
        rcode: u16::from(msg.response_code()),
        questions,
        answers,
        edns_udp_size,
    })
}

/// Split DNS-over-TCP stream bytes into messages: `Found((message bytes, consumed))`,
/// `Incomplete` while the message is not all there.
pub fn tcp_frame(stream: &[u8]) -> Parsed<(&[u8], usize)> {
    let Some(len) = stream.get(..2) else {
        return Parsed::Incomplete { needed: Some(2) };
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    match stream.get(2..2 + len) {
        Some(m) => Parsed::Found((m, 2 + len)),
        None => Parsed::Incomplete {
            needed: Some(2 + len),
        },
    }
}

fn name_str(n: &hickory_proto::rr::Name) -> String {
    let mut s = n.to_ascii();
    if s.ends_with('.') && s.len() > 1 {
        s.pop();
    }
    s.make_ascii_lowercase();
    s
}

fn answer(r: &Record) -> DnsAnswer {
    let data = match r.data() {
        HRData::A(a) => RData::Addr(IpAddr::V4(a.0)),
        HRData::AAAA(a) => RData::Addr(IpAddr::V6(a.0)),
        HRData::CNAME(c) => RData::Cname(name_str(&c.0)),
        HRData::HTTPS(h) => RData::Svcb(svcb(&h.0, true)),
        HRData::SVCB(s) => RData::Svcb(svcb(s, false)),
        other => RData::Other(u16::from(other.record_type())),
    };
    DnsAnswer {
        name: name_str(r.name()),
        ttl: r.ttl(),
        data,
    }
}

fn svcb(s: &SVCB, https: bool) -> SvcbInfo {
    let mut info = SvcbInfo {
        https,
        priority: s.svc_priority(),
        target: name_str(s.target_name()),
        alpn: Vec::new(),
        ech: false,
        ipv4hint: Vec::new(),
        ipv6hint: Vec::new(),
    };
    for (_, v) in s.svc_params() {
        match v {
            SvcParamValue::Alpn(a) => info.alpn = a.0.clone(),
            SvcParamValue::EchConfigList(_) => info.ech = true,
            SvcParamValue::Ipv4Hint(h) => {
                info.ipv4hint = h.0.iter().map(|a| IpAddr::V4(a.0)).collect()
            }
            SvcParamValue::Ipv6Hint(h) => {
                info.ipv6hint = h.0.iter().map(|a| IpAddr::V6(a.0)).collect()
            }
            _ => {}
        }
    }
    info
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
    fn tcp_framing() {
        assert_eq!(tcp_frame(&[0]), Parsed::Incomplete { needed: Some(2) });
        assert_eq!(
            tcp_frame(&[0, 3, 1]),
            Parsed::Incomplete { needed: Some(5) }
        );
        assert_eq!(tcp_frame(&[0, 1, 9, 7]), Parsed::Found((&[9u8][..], 3)));
    }

    #[test]
    fn short_is_truncated_error() {
        let e = parse_message(&[0; 5]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Truncated);
    }
}
