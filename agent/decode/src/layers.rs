//! Link, network and transport layers of a captured frame: Ethernet (802.1Q/802.1ad tags,
//! PPPoE sessions, MPLS), Linux SLL/SLL2, raw IPv4/IPv6, BSD loopback (NULL/LOOP) → IPv4
//! (options) / IPv6 (hop-by-hop, routing, destination-options, AH headers) → TCP / UDP.
//! IPv4 and IPv6 fragments come back as [`L3::Fragment`] for [`crate::defrag`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{DecodeError, Proto};

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW_OLD: u32 = 12;
pub const LINKTYPE_RAW_OLD2: u32 = 14;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const MAX_VLAN_TAGS: usize = 4;
const MAX_V6_EXT: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    Tcp { seq: u32, flags: u8 },
    Udp,
}

/// A TCP segment or UDP datagram found in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub kind: L4Kind,
    /// Captured payload bytes.
    pub payload: &'a [u8],
    /// Payload bytes on the wire (from the IP/UDP lengths).
    pub wire_len: u32,
}

/// Identity of the datagram an IP fragment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    /// Transport protocol of the reassembled datagram.
    pub proto: u8,
}

/// One IPv4 fragment, or the fragmentable part of an IPv6 fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub key: FragKey,
    /// Byte offset of `data` in the reassembled IP payload.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    pub data: &'a [u8],
}

/// What a frame holds at the network layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3<'a> {
    Segment(Segment<'a>),
    Fragment(Fragment<'a>),
}

/// Whether the reader understands a link type.
pub fn supported_linktype(linktype: u32) -> bool {
    matches!(
        linktype,
        LINKTYPE_NULL
            | LINKTYPE_ETHERNET
            | LINKTYPE_RAW_OLD
            | LINKTYPE_RAW_OLD2
            | LINKTYPE_RAW
            | LINKTYPE_LOOP
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
            | LINKTYPE_LINUX_SLL2
    )
}

fn err(what: &'static str, offset: usize) -> DecodeError {
    DecodeError::malformed(Proto::Packet, what, offset)
}

/// Parse a frame down to TCP/UDP. `Ok(None)` for frames that are not IP/TCP/UDP (ARP, ICMP,
/// IP fragments …); `Err` for frames that claim to be but are malformed.
pub fn parse_frame(linktype: u32, f: &[u8]) -> Result<Option<Segment<'_>>, DecodeError> {
    Ok(match parse_l3(linktype, f)? {
        Some(L3::Segment(s)) => Some(s),
        _ => None,
    })
}

/// Like [`parse_frame`], but IP fragments come back as [`L3::Fragment`] for reassembly.
pub fn parse_l3(linktype: u32, f: &[u8]) -> Result<Option<L3<'_>>, DecodeError> {
    let (ethertype, off) = match linktype {
        LINKTYPE_ETHERNET => {
            let mut off = 12;
            let mut et = be16(f, off).ok_or_else(|| err("Ethernet header", 0))?;
            let mut tags = 0;
            while matches!(et, 0x8100 | 0x88a8 | 0x9100) {
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(err("VLAN tags", off));
                }
                off += 4;
                et = be16(f, off).ok_or_else(|| err("VLAN tag", off))?;
            }
            let mut off = off + 2;
            match et {
                // PPPoE session: 6-byte header, then the 2-byte PPP protocol.
                0x8864 => {
                    let ppp = be16(f, off + 6).ok_or_else(|| err("PPPoE header", off))?;
                    off += 8;
                    et = match ppp {
                        0x0021 => 0x0800,
                        0x0057 => 0x86dd,
                        _ => return Ok(None),
                    };
                }
                // MPLS: labels until bottom-of-stack, then IP told apart by its version.
                0x8847 | 0x8848 => {
                    let mut labels = 0;
                    loop {
                        let l = f.get(off..off + 4).ok_or_else(|| err("MPLS label", off))?;
                        off += 4;
                        labels += 1;
                        if l[2] & 0x01 != 0 {
                            break;
                        }
                        if labels > MAX_VLAN_TAGS {
                            return Err(err("MPLS label stack", off));
                        }
                    }
                    et = match f.get(off).map(|b| b >> 4) {
                        Some(4) => 0x0800,
                        Some(6) => 0x86dd,
                        _ => return Ok(None),
                    };
                }
                _ => {}
            }
            (et, off)
        }
        LINKTYPE_LINUX_SLL => (be16(f, 14).ok_or_else(|| err("SLL header", 0))?, 16),
        LINKTYPE_LINUX_SLL2 => (be16(f, 0).ok_or_else(|| err("SLL2 header", 0))?, 20),
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let b = f.get(..4).ok_or_else(|| err("loopback header", 0))?;
            let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let be = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let family = if linktype == LINKTYPE_LOOP {
                be
            } else {
                le.min(be)
            };
            match family {
                2 => (0x0800, 4),
                24 | 28 | 30 => (0x86dd, 4),
                _ => return Ok(None),
            }
        }
        LINKTYPE_RAW | LINKTYPE_RAW_OLD | LINKTYPE_RAW_OLD2 => match f.first().map(|b| b >> 4) {
            Some(4) => (0x0800, 0),
            Some(6) => (0x86dd, 0),
            _ => return Ok(None),
        },
        LINKTYPE_IPV4 => (0x0800, 0),
        LINKTYPE_IPV6 => (0x86dd, 0),
        other => return Err(DecodeError::UnsupportedLinkType { linktype: other }),
    };
    if off > f.len() {
        return Err(err("link header", 0));
    }
    match ethertype {
        0x0800 => ipv4(f, off),
        0x86dd => ipv6(f, off),
        _ => Ok(None),
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]))
}

fn ipv4(f: &[u8], off: usize) -> Result<Option<L3<'_>>, DecodeError> {
    let h = f
        .get(off..off + 20)
        .ok_or_else(|| err("IPv4 header", off))?;
    if h[0] >> 4 != 4 {
        return Err(err("IPv4 version", off));
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || total < ihl {
        return Err(err("IPv4 header length", off));
    }
    if f.len() < off + ihl {
        return Err(err("IPv4 options", off + 20));
    }
    let frag_off = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    let more = h[6] & 0x20 != 0;
    let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    if frag_off != 0 || more {
        let end = (off + total).min(f.len());
        return Ok(Some(L3::Fragment(Fragment {
            key: FragKey {
                src,
                dst,
                id: u32::from(u16::from_be_bytes([h[4], h[5]])),
                proto: h[9],
            },
            offset: usize::from(frag_off) * 8,
            more,
            data: f.get(off + ihl..end).unwrap_or(&[]),
        })));
    }
    // Total length 0 happens with TSO captures: trust the capture then.
    let l4_wire = if total == 0 {
        f.len() - off - ihl
    } else {
        total - ihl
    };
    transport(f, off + ihl, l4_wire, h[9], src, dst).map(|s| s.map(L3::Segment))
}

fn ipv6(f: &[u8], off: usize) -> Result<Option<L3<'_>>, DecodeError> {
    let h = f
        .get(off..off + 40)
        .ok_or_else(|| err("IPv6 header", off))?;
    if h[0] >> 4 != 6 {
        return Err(err("IPv6 version", off));
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let mut next = h[6];
    let mut a = [0u8; 16];
    a.copy_from_slice(&h[8..24]);
    let src = IpAddr::V6(Ipv6Addr::from(a));
    a.copy_from_slice(&h[24..40]);
    let dst = IpAddr::V6(Ipv6Addr::from(a));
    let mut pos = off + 40;
    let mut ext_len = 0usize;
    for _ in 0..MAX_V6_EXT {
        match next {
            0 | 43 | 60 | 51 | 44 => {
                let e = f
                    .get(pos..pos + 8)
                    .ok_or_else(|| err("IPv6 extension header", pos))?;
                let len = match next {
                    44 => {
                        let frag = usize::from(u16::from_be_bytes([e[2], e[3]]) >> 3);
                        let end = if payload_len == 0 {
                            f.len()
                        } else {
                            (off + 40 + payload_len).min(f.len())
                        };
                        return Ok(Some(L3::Fragment(Fragment {
                            key: FragKey {
                                src,
                                dst,
                                id: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
                                proto: e[0],
                            },
                            offset: frag * 8,
                            more: e[3] & 0x01 != 0,
                            data: f.get(pos + 8..end).unwrap_or(&[]),
                        })));
                    }
                    51 => (usize::from(e[1]) + 2) * 4,
                    _ => (usize::from(e[1]) + 1) * 8,
                };
                next = e[0];
                pos += len;
                ext_len += len;
            }
            _ => {
                let l4_wire = if payload_len == 0 {
                    f.len().saturating_sub(pos)
                } else {
                    payload_len
                        .checked_sub(ext_len)
                        .ok_or_else(|| err("IPv6 payload length", off + 4))?
                };
                return transport(f, pos, l4_wire, next, src, dst).map(|s| s.map(L3::Segment));
            }
        }
    }
    Err(err("IPv6 extension header chain", pos))
}

fn transport(
    f: &[u8],
    off: usize,
    l4_wire: usize,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
) -> Result<Option<Segment<'_>>, DecodeError> {
    match proto {
        6 => {
            let h = f.get(off..off + 20).ok_or_else(|| err("TCP header", off))?;
            let doff = usize::from(h[12] >> 4) * 4;
            if doff < 20 || doff > l4_wire {
                return Err(err("TCP data offset", off + 12));
            }
            let start = off + doff;
            if start > f.len() {
                return Err(err("TCP options", off + 20));
            }
            let wire = l4_wire - doff;
            let end = (start + wire).min(f.len());
            Ok(Some(Segment {
                src: SocketAddr::new(src, u16::from_be_bytes([h[0], h[1]])),
                dst: SocketAddr::new(dst, u16::from_be_bytes([h[2], h[3]])),
                kind: L4Kind::Tcp {
                    seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    flags: h[13],
                },
                payload: &f[start..end],
                wire_len: u32::try_from(wire).unwrap_or(u32::MAX),
            }))
        }
        17 => {
            let h = f.get(off..off + 8).ok_or_else(|| err("UDP header", off))?;
            let ulen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            // UDP length 0 is legal for IPv6 jumbograms; otherwise it must fit the IP payload.
            let wire = if ulen == 0 { l4_wire } else { ulen };
            if wire < 8 || wire > l4_wire {
                return Err(err("UDP length", off + 4));
            }
            let start = off + 8;
            let end = (off + wire).min(f.len());
            Ok(Some(Segment {
                src: SocketAddr::new(src, u16::from_be_bytes([h[0], h[1]])),
                dst: SocketAddr::new(dst, u16::from_be_bytes([h[2], h[3]])),
                kind: L4Kind::Udp,
                payload: f.get(start..end).unwrap_or(&[]),
                wire_len: u32::try_from(wire - 8).unwrap_or(u32::MAX),
            }))
        }
        _ => Ok(None),
    }
}
