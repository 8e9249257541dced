//! Ring-buffer records → typed kernel events. Every record is length-checked before it is
//! read; a short or unknown record is an error the caller counts, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use shadowai_common::{
    ConnectEvent, ExecEvent, ExitEvent, PacketEvent, PacketMeta, SockOwner, kind,
};

/// A kernel event, copied out of the ring buffer.
#[derive(Clone, Debug)]
pub enum KernelEvent {
    Connect(Connect),
    Packet(Packet),
    Exec(Exec),
    Exit { pid: u32, ts_ns: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub netns: u64,
    pub comm: String,
}

#[derive(Clone, Debug)]
pub struct Connect {
    pub ts_ns: u64,
    /// The kernel refused it (enforce mode).
    pub blocked: bool,
    pub hook: u8,
    pub protocol: u8,
    pub cookie: u64,
    pub owner: Owner,
    pub dst: std::net::SocketAddr,
}

#[derive(Clone, Debug)]
pub struct Packet {
    pub meta: PacketMeta,
    /// `None` when the socket had no recorded owner (e.g. it predates the agent).
    pub owner: Option<Owner>,
    pub src: std::net::SocketAddr,
    pub dst: std::net::SocketAddr,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Exec {
    pub ts_ns: u64,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: String,
    pub filename: String,
    pub args: Vec<String>,
}

/// Why a record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    Short { kind: u32, len: usize },
    UnknownKind(u32),
}

fn read<T: Copy>(buf: &[u8]) -> Option<T> {
    if buf.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is a #[repr(C)] plain-data type from shadowai-common for
    // which every bit pattern is valid; read_unaligned has no alignment requirement.
    Some(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// Text up to the first NUL, lossily decoded.
pub fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn owner(o: &SockOwner) -> Owner {
    Owner {
        pid: o.pid,
        uid: o.uid,
        gid: o.gid,
        cgroup_id: o.cgroup_id,
        netns: o.netns,
        comm: cstr(&o.comm),
    }
}

fn ip(family: u8, raw: &[u8; 16]) -> IpAddr {
    if family == 6 {
        IpAddr::V6(Ipv6Addr::from(*raw))
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

/// Decodes one ring-buffer record.
pub fn parse(buf: &[u8]) -> Result<KernelEvent, RecordError> {
    let tag: u32 = read(buf).ok_or(RecordError::Short {
        kind: 0,
        len: buf.len(),
    })?;
    let short = RecordError::Short {
        kind: tag,
        len: buf.len(),
    };
    match tag {
        kind::CONNECT => {
            let e: ConnectEvent = read(buf).ok_or(short)?;
            Ok(KernelEvent::Connect(Connect {
                ts_ns: e.ts_ns,
                blocked: u32::from(e.flags) & shadowai_common::flags::BLOCKED != 0,
                hook: e.hook,
                protocol: e.protocol,
                cookie: e.cookie,
                owner: owner(&e.owner),
                dst: std::net::SocketAddr::new(ip(e.family, &e.daddr), e.dport),
            }))
        }
        kind::PACKET => {
            let hdr = std::mem::offset_of!(PacketEvent, data);
            let mut meta: PacketMeta = read(buf.get(8..).ok_or(short)?).ok_or(short)?;
            let cap = (meta.cap_len as usize).min(shadowai_common::MAX_PAYLOAD);
            if meta.flags & shadowai_common::flags::BLOCKED_SNI != 0 {
                // The kernel refused the flow on this segment: no later segment of the
                // hello will come, so the decoder must use what this one holds (as for a
                // capture cut short) rather than wait for the rest.
                meta.wire_len = meta.wire_len.max(meta.cap_len.saturating_add(1));
            }
            let data = buf.get(hdr..hdr + cap).ok_or(short)?.to_vec();
            let o = (meta.owner.pid != 0).then(|| owner(&meta.owner));
            Ok(KernelEvent::Packet(Packet {
                src: std::net::SocketAddr::new(ip(meta.family, &meta.saddr), meta.sport),
                dst: std::net::SocketAddr::new(ip(meta.family, &meta.daddr), meta.dport),
                meta,
                owner: o,
                data,
            }))
        }
        kind::EXEC => {
            let e: ExecEvent = read(buf).ok_or(short)?;
            let n = (e.args_len as usize).min(e.args.len());
            let args = e.args[..n]
                .split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Ok(KernelEvent::Exec(Exec {
                ts_ns: e.ts_ns,
                pid: e.pid,
                uid: e.uid,
                gid: e.gid,
                cgroup_id: e.cgroup_id,
                comm: cstr(&e.comm),
                filename: cstr(&e.filename),
                args,
            }))
        }
        kind::EXIT => {
            let e: ExitEvent = read(buf).ok_or(short)?;
            Ok(KernelEvent::Exit {
                pid: e.pid,
                ts_ns: e.ts_ns,
            })
        }
        other => Err(RecordError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert!(matches!(parse(&[]), Err(RecordError::Short { .. })));
        assert!(matches!(parse(&[1, 0, 0]), Err(RecordError::Short { .. })));
        assert_eq!(
            parse(&[9, 0, 0, 0]).unwrap_err(),
            RecordError::UnknownKind(9)
        );
        // A connect tag with a truncated body.
        let mut b = vec![0u8; 20];
        b[0] = kind::CONNECT as u8;
        assert!(matches!(parse(&b), Err(RecordError::Short { kind: 1, .. })));
    }

    #[test]
    fn packet_with_cap_len_beyond_record_is_short() {
        let hdr = std::mem::offset_of!(PacketEvent, data);
        let mut b = vec![0u8; hdr + 10];
        b[0] = kind::PACKET as u8;
        let cap_off = 8 + std::mem::offset_of!(PacketMeta, cap_len);
        b[cap_off..cap_off + 4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(matches!(parse(&b), Err(RecordError::Short { kind: 2, .. })));
        b[cap_off..cap_off + 4].copy_from_slice(&10u32.to_ne_bytes());
        let KernelEvent::Packet(p) = parse(&b).unwrap() else {
            panic!("not a packet")
        };
        assert_eq!(p.data.len(), 10);
        assert!(p.owner.is_none());
    }

    #[test]
    fn exec_args_split_on_nul() {
        let mut e: ExecEvent = unsafe { std::mem::zeroed() };
        e.kind = kind::EXEC;
        e.pid = 42;
        e.filename[..13].copy_from_slice(b"/usr/bin/curl");
        let a = b"curl\0-s\0https://x\0";
        e.args[..a.len()].copy_from_slice(a);
        e.args_len = a.len() as u32;
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&e as *const ExecEvent).cast::<u8>(),
                std::mem::size_of::<ExecEvent>(),
            )
        };
        let KernelEvent::Exec(x) = parse(bytes).unwrap() else {
            panic!("not exec")
        };
        assert_eq!(x.filename, "/usr/bin/curl");
        assert_eq!(x.args, vec!["curl", "-s", "https://x"]);
    }
}
