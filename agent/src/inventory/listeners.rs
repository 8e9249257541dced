//! Listening TCP sockets from /proc, per process and per network namespace: a local model
//! runtime's bind address (`0.0.0.0`/`::` = reachable from the network) and any listener on a
//! runtime's default port. Read on a timer off the event path (blocking file reads), never
//! per packet. Each network namespace's tables are read once per scan, through one of its
//! processes (`/proc/PID/net/tcp{,6}`), so listeners inside containers and test namespaces
//! are seen too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use shadowai_api::inventory::Listener;

/// File descriptors looked at per process at most.
const MAX_FDS: usize = 8192;
/// Processes looked at per scan at most.
const MAX_PIDS: usize = 65_536;

/// One LISTEN row of /proc/net/tcp{,6}.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
}

fn parse_v4(hex: &str) -> Option<IpAddr> {
    let n = u32::from_str_radix(hex, 16).ok()?;
    // The kernel prints the address as a native-endian u32.
    Some(IpAddr::V4(Ipv4Addr::from(n.to_ne_bytes())))
}

fn parse_v6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 {
        return None;
    }
    let mut b = [0u8; 16];
    for i in 0..4 {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Some(IpAddr::V6(Ipv6Addr::from(b)))
}

/// LISTEN rows of one /proc/net/tcp or tcp6 text; malformed lines are skipped.
pub fn parse_table(text: &str) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(3) != Some(&"0A") {
                return None;
            }
            let (a, p) = f.get(1)?.split_once(':')?;
            let addr = if a.len() == 8 {
                parse_v4(a)?
            } else {
                parse_v6(a)?
            };
            Some(Row {
                addr,
                port: u16::from_str_radix(p, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The listener a row describes.
pub fn listener(r: &Row) -> Listener {
    Listener {
        addr: r.addr.to_string(),
        port: r.port,
        exposed: r.addr.is_unspecified(),
    }
}

/// LISTEN rows of the namespace `pid` lives in (tcp and tcp6).
fn ns_rows(proc_root: &Path, pid: u32) -> Vec<Row> {
    let dir = proc_root.join(pid.to_string()).join("net");
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .flat_map(|t| parse_table(&t))
        .collect()
}

/// Socket inodes among a process's open files.
fn socket_inodes(proc_root: &Path, pid: u32) -> HashSet<u64> {
    let Ok(rd) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
        return HashSet::new();
    };
    rd.take(MAX_FDS)
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The listeners `pid` itself holds.
pub fn of_pid(proc_root: &Path, pid: u32) -> Vec<Listener> {
    let mine = socket_inodes(proc_root, pid);
    if mine.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<Listener> = ns_rows(proc_root, pid)
        .iter()
        .filter(|r| mine.contains(&r.inode))
        .map(listener)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn pids(proc_root: &Path) -> Vec<u32> {
    std::fs::read_dir(proc_root)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .take(MAX_PIDS)
                .collect()
        })
        .unwrap_or_default()
}

/// Every listener on one of `ports`, in every network namespace, with the pid that holds
/// it: each namespace's table is read once; processes' descriptors only in namespaces that
/// have such a listener.
pub fn on_ports(proc_root: &Path, ports: &[u16]) -> BTreeMap<u32, Vec<Listener>> {
    let mut out: BTreeMap<u32, Vec<Listener>> = BTreeMap::new();
    if ports.is_empty() {
        return out;
    }
    let all = pids(proc_root);
    let mut by_ns: HashMap<String, Vec<u32>> = HashMap::new();
    for pid in &all {
        if let Ok(ns) = std::fs::read_link(proc_root.join(pid.to_string()).join("ns/net")) {
            by_ns
                .entry(ns.to_string_lossy().into_owned())
                .or_default()
                .push(*pid);
        }
    }
    for members in by_ns.values() {
        let Some(first) = members.first() else {
            continue;
        };
        let wanted: HashMap<u64, Row> = ns_rows(proc_root, *first)
            .into_iter()
            .filter(|r| ports.contains(&r.port))
            .map(|r| (r.inode, r))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        for pid in members {
            for ino in socket_inodes(proc_root, *pid) {
                if let Some(r) = wanted.get(&ino) {
                    let v = out.entry(*pid).or_default();
                    let l = listener(r);
                    if !v.contains(&l) {
                        v.push(l);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn parses_listen_rows_of_both_families() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 00000000:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
           1: 0100007F:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0 100 0 0 10 0\n\
           2: 0100007F:9C40 0100007F:2CAA 01 00000000:00000000 00:00000000 00000000     0        0 4244 1\n\
           garbage\n";
        let rows = parse_table(v4);
        assert_eq!(rows.len(), 2, "the established row is not a listener");
        let l: Vec<Listener> = rows.iter().map(listener).collect();
        assert_eq!(l[0].addr, "0.0.0.0");
        assert_eq!(l[0].port, 11434);
        assert!(l[0].exposed);
        assert_eq!(l[1].addr, "127.0.0.1");
        assert!(!l[1].exposed);
        let v6 = "header\n   0: 00000000000000000000000000000000:2CAA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1\n\
           1: 00000000000000000000000001000000:2CAA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 78 1\n";
        let l: Vec<Listener> = parse_table(v6).iter().map(listener).collect();
        assert_eq!((l[0].addr.as_str(), l[0].exposed), ("::", true));
        assert_eq!((l[1].addr.as_str(), l[1].exposed), ("::1", false));
    }

    #[test]
    fn finds_its_own_listener() {
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let me = std::process::id();
        let l = of_pid(Path::new("/proc"), me);
        assert!(l.iter().any(|l| l.port == port && !l.exposed), "{l:?}");
        let by_port = on_ports(Path::new("/proc"), &[port]);
        assert!(
            by_port
                .get(&me)
                .is_some_and(|v| v.iter().any(|l| l.port == port))
        );
    }
}
