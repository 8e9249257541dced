//! Tearing refused sockets down so the client fails fast instead of hanging.
//!
//! Dropping a refused TCP segment in the kernel makes the client retransmit into a
//! timeout; a refused QUIC flow's datagrams fail one by one. What makes the client fail at
//! once is destroying the socket: `SOCK_DESTROY` over `NETLINK_SOCK_DIAG` (the kernel's
//! `tcp_abort`/`udp_abort`: the socket gets `ECONNABORTED`, a TCP peer gets a RST). The
//! request names the socket by its 4-tuple *and* its cookie, so a reused tuple can never
//! hit another socket. Sockets of other network namespaces are destroyed from inside that
//! namespace (`setns` on this worker thread only, checked against the socket's netns
//! cookie before anything is sent).
//!
//! A refused QUIC client is answered instead with a Version Negotiation packet naming
//! only a reserved version (sent from the server's address with `IP_TRANSPARENT`, inside
//! the client's namespace): RFC 9000 makes a client abandon the attempt on it, and
//! browsers fall back to TCP, where the SNI block holds. The kernel holds the server's
//! own answers back while the agent decides, so the handshake cannot finish first.
//!
//! Requests go to one worker thread through a bounded queue: the event loop never waits
//! on netlink. A full queue drops the request (counted); every failure is counted and
//! logged with the socket it concerned.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use super::quic_ids::QuicIds;

/// Requests waiting for the worker at most.
pub const QUEUE: usize = 1024;
/// Failures logged at `warn` before further ones are only counted (and logged at debug).
const LOUD_FAILURES: u64 = 20;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const SO_NETNS_COOKIE: i32 = 71;

/// One socket to destroy (TCP), or QUIC client to turn away (UDP, with its ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub cookie: u64,
    /// `libc::IPPROTO_TCP` or `libc::IPPROTO_UDP`.
    pub protocol: u8,
    /// The socket's local and remote ends.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Network-namespace cookie of the socket (0: unknown, try the agent's own).
    pub netns: u64,
    /// A process that owned the socket (its `/proc/PID/ns/net` leads to the namespace).
    pub pid: u32,
    /// A QUIC client's connection ids: answer with Version Negotiation, do not destroy.
    pub quic: Option<QuicIds>,
}

/// Why a socket could not be destroyed.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("opening a NETLINK_SOCK_DIAG socket")]
    Socket(#[source] io::Error),
    #[error("sending SOCK_DESTROY")]
    Send(#[source] io::Error),
    #[error("reading the SOCK_DESTROY answer")]
    Recv(#[source] io::Error),
    #[error("the kernel refused SOCK_DESTROY")]
    Kernel(#[source] io::Error),
    #[error("entering the network namespace of pid {pid}")]
    Netns {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid} is no longer in the socket's network namespace")]
    NetnsMoved { pid: u32 },
    #[error("local and remote address families differ")]
    Family,
    #[error("sending Version Negotiation from {from} to {to}")]
    Vn {
        from: SocketAddr,
        to: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Outcome counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub destroyed: AtomicU64,
    /// The socket was already gone (closed by its owner first).
    pub gone: AtomicU64,
    pub failed: AtomicU64,
    /// The kernel refused for want of privilege (EPERM/EACCES: entering another network
    /// namespace needs CAP_SYS_ADMIN, `SOCK_DESTROY` CAP_NET_ADMIN; a seccomp filter such
    /// as systemd's `RestrictNamespaces=yes` also refuses `setns`).
    pub denied: AtomicU64,
    /// Requests dropped because the worker's queue was full.
    pub dropped: AtomicU64,
}

impl Stats {
    /// (result, count) pairs for `shadowai_enforce_teardowns_total{result}`.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("destroyed", self.destroyed.load(Ordering::Relaxed)),
            ("gone", self.gone.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
            ("denied", self.denied.load(Ordering::Relaxed)),
            ("queue_full", self.dropped.load(Ordering::Relaxed)),
        ]
    }
}

/// The handle the event loop uses; the worker thread ends when it is dropped.
pub struct Teardown {
    tx: SyncSender<Request>,
    pub stats: Arc<Stats>,
}

impl Teardown {
    /// Starts the worker thread.
    pub fn start() -> io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        std::thread::Builder::new()
            .name("sock-teardown".into())
            .spawn(move || worker(&rx, &s))?;
        Ok(Self { tx, stats })
    }

    /// Queues a socket for destruction; never waits.
    pub fn request(&self, r: Request) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(r)) => {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::warn!(cookie = r.cookie, remote = %r.remote, "teardown queue full: a refused socket is left to time out (counted)");
                }
            }
            Err(TrySendError::Disconnected(r)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(cookie = r.cookie, remote = %r.remote, "the teardown worker has stopped");
            }
        }
    }
}

fn worker(rx: &Receiver<Request>, stats: &Stats) {
    // This thread's own namespace, to return to after destroying in another one.
    let home = std::fs::File::open("/proc/thread-self/ns/net");
    let mut host: Option<(OwnedFd, u64)> = None;
    while let Ok(r) = rx.recv() {
        let result = destroy(&r, &mut host, home.as_ref().ok());
        match result {
            Ok(true) => {
                stats.destroyed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(cookie = r.cookie, local = %r.local, remote = %r.remote, "refused socket destroyed");
            }
            Ok(false) => {
                stats.gone.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.denied() => {
                let n = stats.denied.fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::error!(cookie = r.cookie, pid = r.pid, local = %r.local, remote = %r.remote, error = format!("{:#}", anyhow::Error::from(e)), "refused sockets cannot be destroyed: the agent lacks the privilege (CAP_SYS_ADMIN to enter another network namespace, CAP_NET_ADMIN for SOCK_DESTROY; or a seccomp filter refuses setns). Their packets stay dropped, but clients wait for their own timeouts; counted in shadowai_enforce_teardowns_total{{result=\"denied\"}}, logged once");
                }
            }
            Err(e) => {
                let n = stats.failed.fetch_add(1, Ordering::Relaxed);
                let err = anyhow::Error::from(e);
                if n < LOUD_FAILURES {
                    tracing::warn!(cookie = r.cookie, pid = r.pid, local = %r.local, remote = %r.remote, error = format!("{err:#}"), "could not destroy a refused socket; its packets stay dropped, the client waits for its timeout");
                } else {
                    tracing::debug!(
                        cookie = r.cookie,
                        error = format!("{err:#}"),
                        "could not destroy a refused socket"
                    );
                }
            }
        }
    }
}

impl TeardownError {
    /// Refused for want of privilege (EPERM, EACCES), not a transient failure.
    pub fn denied(&self) -> bool {
        let io = match self {
            Self::Socket(e) | Self::Send(e) | Self::Recv(e) | Self::Kernel(e) => e,
            Self::Netns { source, .. } | Self::Vn { source, .. } => source,
            Self::NetnsMoved { .. } | Self::Family => return false,
        };
        matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
    }
}

/// `Ok(true)` destroyed, `Ok(false)` no such socket any more.
fn destroy(
    r: &Request,
    host: &mut Option<(OwnedFd, u64)>,
    home: Option<&std::fs::File>,
) -> Result<bool, TeardownError> {
    if host.is_none() {
        let fd = diag_socket()?;
        let cookie = netns_cookie(&fd).unwrap_or(0);
        *host = Some((fd, cookie));
    }
    let Some((fd, own)) = host.as_ref() else {
        return Err(TeardownError::Socket(io::Error::other("no socket")));
    };
    if r.netns == *own || (r.netns == 0 && same_netns_as_home(r.pid, home)) {
        return act(fd, r);
    }
    let Some(home) = home else {
        return Err(TeardownError::Netns {
            pid: r.pid,
            source: io::Error::other("/proc/thread-self/ns/net is unreadable"),
        });
    };
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", r.pid))
        .map_err(|source| TeardownError::Netns { pid: r.pid, source })?;
    setns(&ns).map_err(|source| TeardownError::Netns { pid: r.pid, source })?;
    let result = (|| {
        let fd = diag_socket()?;
        if r.netns != 0 && netns_cookie(&fd).is_ok_and(|c| c != r.netns) {
            return Err(TeardownError::NetnsMoved { pid: r.pid });
        }
        act(&fd, r)
    })();
    if let Err(e) = setns(home) {
        // Only this worker thread is affected; later requests in its own namespace would
        // be sent in the wrong one, so say so loudly.
        tracing::error!(error = %e, "could not return the teardown thread to its network namespace");
    }
    result
}

/// Is process `pid` in this thread's home namespace? Unknown (pid 0, no /proc entry)
/// counts as yes: the socket is then looked for here, and its cookie guards the request.
fn same_netns_as_home(pid: u32, home: Option<&std::fs::File>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Some(home), true) = (home, pid != 0) else {
        return true;
    };
    match (
        std::fs::metadata(format!("/proc/{pid}/ns/net")),
        home.metadata(),
    ) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => true,
    }
}

/// In the socket's namespace: destroy it, or answer a QUIC client.
fn act(fd: &OwnedFd, r: &Request) -> Result<bool, TeardownError> {
    match &r.quic {
        Some(ids) => send_vn(r, ids).map(|()| true),
        None => send_destroy(fd, r),
    }
}

/// Sends `ids`' Version Negotiation from the server's address (`r.remote`) to the client
/// (`r.local`): a UDP socket bound to the non-local address with `IP_TRANSPARENT`
/// (CAP_NET_ADMIN), so the datagram takes the path the server's answers take.
fn send_vn(r: &Request, ids: &QuicIds) -> Result<(), TeardownError> {
    let err = |source| TeardownError::Vn {
        from: r.remote,
        to: r.local,
        source,
    };
    let v6 = r.remote.is_ipv6();
    let (domain, level, opt) = if v6 {
        (libc::AF_INET6, libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
    } else {
        (libc::AF_INET, libc::SOL_IP, libc::IP_TRANSPARENT)
    };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for (level, opt) in [(level, opt), (libc::SOL_SOCKET, libc::SO_REUSEADDR)] {
        // SAFETY: valid fd and option buffer.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                std::ptr::from_ref(&one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(err(io::Error::last_os_error()));
        }
    }
    let (from, from_len) = sockaddr(r.remote);
    // SAFETY: valid fd and address.
    if unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&from).cast(), from_len) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    let pkt = ids.version_negotiation();
    let (to, to_len) = sockaddr(r.local);
    // SAFETY: valid fd, buffer and address.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            std::ptr::from_ref(&to).cast(),
            to_len,
        )
    };
    if n < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *std::ptr::from_mut(&mut ss).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *std::ptr::from_mut(&mut ss).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            (
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

fn setns(f: &std::fs::File) -> io::Result<()> {
    // SAFETY: a valid namespace fd; affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn diag_socket() -> Result<OwnedFd, TeardownError> {
    // SAFETY: plain syscall.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(TeardownError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Never wait on the kernel's answer for long.
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: valid fd and option buffer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(TeardownError::Socket(io::Error::last_os_error()));
    }
    Ok(fd)
}

fn netns_cookie(fd: &OwnedFd) -> io::Result<u64> {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd, buffer and length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            std::ptr::from_mut(&mut v).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// The `SOCK_DESTROY` request for `r`: `nlmsghdr` + `inet_diag_req_v2`.
pub fn message(r: &Request, seq: u32) -> Result<Vec<u8>, TeardownError> {
    let family = match (r.local.ip(), r.remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET as u8,
        (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6 as u8,
        _ => return Err(TeardownError::Family),
    };
    let mut m = Vec::with_capacity(72);
    m.extend_from_slice(&72u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&SOCK_DESTROY.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    m.push(family);
    m.push(r.protocol);
    m.push(0); // idiag_ext
    m.push(0); // pad
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // idiag_states: any
    m.extend_from_slice(&r.local.port().to_be_bytes());
    m.extend_from_slice(&r.remote.port().to_be_bytes());
    for ip in [r.local.ip(), r.remote.ip()] {
        let mut a = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => a = v6.octets(),
        }
        m.extend_from_slice(&a);
    }
    m.extend_from_slice(&0u32.to_ne_bytes()); // idiag_if
    m.extend_from_slice(&(r.cookie as u32).to_ne_bytes());
    m.extend_from_slice(&((r.cookie >> 32) as u32).to_ne_bytes());
    debug_assert_eq!(m.len(), 72);
    Ok(m)
}

fn send_destroy(fd: &OwnedFd, r: &Request) -> Result<bool, TeardownError> {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) as u32;
    let msg = message(r, seq)?;
    // SAFETY: zeroed sockaddr_nl is valid (the kernel as destination).
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: valid fd, buffer and address.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            std::ptr::from_ref(&sa).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(TeardownError::Send(io::Error::last_os_error()));
    }
    let mut buf = [0u8; 512];
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        // SAFETY: valid fd and buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(TeardownError::Recv(io::Error::last_os_error()));
        }
        match ack(&buf[..n as usize], seq) {
            Some(0) => return Ok(true),
            Some(e) if e == -libc::ENOENT || e == -libc::ESTALE => return Ok(false),
            Some(e) => return Err(TeardownError::Kernel(io::Error::from_raw_os_error(-e))),
            None => continue, // an answer to an earlier request that timed out
        }
    }
    Err(TeardownError::Recv(io::Error::from(
        io::ErrorKind::TimedOut,
    )))
}

/// The error code of the `NLMSG_ERROR` acknowledging `seq`, if `buf` holds it.
pub fn ack(buf: &[u8], seq: u32) -> Option<i32> {
    let word = |o: usize| -> Option<[u8; 4]> { buf.get(o..o + 4)?.try_into().ok() };
    let ty = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
    let got = u32::from_ne_bytes(word(8)?);
    if ty != NLMSG_ERROR || got != seq {
        return None;
    }
    Some(i32::from_ne_bytes(word(16)?))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn the_request_names_the_tuple_and_the_cookie() {
        let r = Request {
            cookie: 0x1122_3344_5566_7788,
            protocol: 6,
            local: "10.0.0.2:40000".parse().unwrap(),
            remote: "10.0.0.1:443".parse().unwrap(),
            netns: 0,
            pid: 1,
            quic: None,
        };
        let m = message(&r, 7).unwrap();
        assert_eq!(m.len(), 72);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DESTROY);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(m[17], 6);
        assert_eq!(&m[24..26], &40000u16.to_be_bytes());
        assert_eq!(&m[26..28], &443u16.to_be_bytes());
        assert_eq!(&m[28..32], &[10, 0, 0, 2]);
        assert_eq!(&m[44..48], &[10, 0, 0, 1]);
        assert_eq!(
            u32::from_ne_bytes(m[64..68].try_into().unwrap()),
            0x5566_7788
        );
        assert_eq!(
            u32::from_ne_bytes(m[68..72].try_into().unwrap()),
            0x1122_3344
        );
        let mixed = Request {
            remote: "[::1]:443".parse().unwrap(),
            ..r.clone()
        };
        assert!(matches!(message(&mixed, 1), Err(TeardownError::Family)));
    }

    #[test]
    fn acks_are_matched_by_sequence_and_short_input_is_refused() {
        let mut b = vec![0u8; 36];
        b[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b[8..12].copy_from_slice(&9u32.to_ne_bytes());
        b[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(ack(&b, 9), Some(-libc::ENOENT));
        assert_eq!(ack(&b, 8), None);
        for n in 0..20 {
            assert_eq!(ack(&b[..n], 9), None, "cut at {n}");
        }
    }
}
