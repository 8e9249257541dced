//! The accept loop: a global and a per-client-IP cap on open connections, back-off on accept
//! errors (descriptor exhaustion must not become a busy loop filling the log), TLS handshake
//! and header/idle timeouts, a minimum upload rate for request bodies, and a bound on how
//! long a response may stay unread (`stall`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;

use super::metrics::Metrics;
use super::slowbody::{MinRate, SlowBodyGuard};
use super::stall::WriteStall;
use crate::config::Limits;

/// Open connections per client IP; a slot is given back when its guard drops.
#[derive(Default)]
pub struct PerIp {
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// Holds one connection slot of an IP.
pub struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// Takes a slot for `ip` unless it has `cap` open already. The map holds only IPs with
    /// open connections, so it is bounded by the global connection cap.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr, cap: u32) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }

    pub fn open(&self, ip: IpAddr) -> u32 {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Raises the soft descriptor limit towards the hard one and returns how many connections
/// fit under it (keeping `RESERVED` descriptors for the database, files and logs).
pub fn connection_cap(wanted: usize) -> usize {
    const RESERVED: u64 = 128;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "getrlimit(RLIMIT_NOFILE) failed; keeping the configured connection cap"
        );
        return wanted;
    }
    let need = wanted as u64 + RESERVED;
    if lim.rlim_cur < need {
        let raised = libc::rlimit {
            rlim_cur: need.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    let fits = usize::try_from(lim.rlim_cur.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
    if fits < wanted {
        tracing::warn!(
            wanted,
            fits,
            nofile = lim.rlim_cur,
            "descriptor limit is below limits.max_connections; capping connections (raise LimitNOFILE)"
        );
    }
    wanted.min(fits.max(1))
}

/// Exponential back-off for accept errors. Every failure is counted; the warning is logged
/// at most once per [`AcceptBackoff::LOG_EVERY`] (with the failures since the last one), so
/// a descriptor table that flaps between full and not full cannot fill the log.
struct AcceptBackoff {
    delay: Duration,
    failing: bool,
    /// When the last warning was logged.
    logged_at: Option<std::time::Instant>,
    /// Failures since the last warning.
    unlogged: u64,
    /// A warning was logged and its recovery not yet.
    recovery_due: bool,
}

impl AcceptBackoff {
    const MIN: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(60);

    fn new() -> Self {
        AcceptBackoff {
            delay: Self::MIN,
            failing: false,
            logged_at: None,
            unlogged: 0,
            recovery_due: false,
        }
    }

    async fn failed(&mut self, e: &std::io::Error, metrics: &Metrics) {
        metrics.accept_errors.inc();
        self.failing = true;
        self.unlogged += 1;
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= Self::LOG_EVERY)
        {
            tracing::warn!(error = %e, failures = self.unlogged,
                "accept failed; backing off until accepts succeed again (every failure counted in accept_errors_total; logged at most once a minute)");
            self.logged_at = Some(std::time::Instant::now());
            self.unlogged = 0;
            self.recovery_due = true;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::MAX);
    }

    fn succeeded(&mut self) {
        if self.failing && self.recovery_due {
            tracing::info!("accept works again");
            self.recovery_due = false;
        }
        self.failing = false;
        self.delay = Self::MIN;
    }
}

/// Serves `app` on `listener` (TLS when `tls` is set) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: super::SharedState,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (limits, metrics) = (&state.limits, &state.metrics);
    let cap = connection_cap(limits.max_connections);
    let permits = Arc::new(tokio::sync::Semaphore::new(cap));
    let per_ip = Arc::new(PerIp::default());
    let mut backoff = AcceptBackoff::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(x) => { backoff.succeeded(); x }
                Err(e) => { backoff.failed(&e, metrics).await; continue; }
            },
        };
        let Some(slot) = per_ip.try_take(addr.ip(), limits.connections_per_ip) else {
            metrics.connections_refused.inc();
            tracing::debug!(peer = %addr, "per-IP connection limit reached; closing");
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            tracing::debug!(peer = %addr, "connection limit reached; closing");
            continue;
        };
        let conn = Conn {
            app: app.clone(),
            tls: tls.clone(),
            limits: limits.clone(),
            addr,
        };
        tokio::spawn(async move {
            let _held = (permit, slot);
            conn.run(tcp).await;
        });
    }
}

struct Conn {
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    addr: SocketAddr,
}

impl Conn {
    async fn run(self, tcp: tokio::net::TcpStream) {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use tower::ServiceExt;

        let header_timeout = Duration::from_secs(self.limits.header_timeout_s);
        let rate = MinRate {
            grace: Duration::from_secs(self.limits.body_grace_s),
            bytes_per_sec: self.limits.body_min_bytes_per_sec,
        };
        let (app, addr) = (self.app, self.addr);
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut req = req.map(|b| axum::body::Body::new(SlowBodyGuard::new(b, rate)));
            req.extensions_mut().insert(ConnectInfo(addr));
            app.clone().oneshot(req)
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        // hyper starts this timer whenever it waits for a request head, so it also closes
        // idle keep-alive connections.
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(64 * 1024);
        let res = match self.tls {
            Some(acc) => match tokio::time::timeout(header_timeout, acc.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let io = WriteStall::new(stream, header_timeout);
                    http.serve_connection(TokioIo::new(io), svc).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            },
            None => {
                let io = WriteStall::new(tcp, header_timeout);
                http.serve_connection(TokioIo::new(io), svc).await
            }
        };
        if let Err(e) = res {
            tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_capped_and_given_back() {
        let t = Arc::new(PerIp::default());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = t.try_take(ip, 2).unwrap();
        let _b = t.try_take(ip, 2).unwrap();
        assert!(t.try_take(ip, 2).is_none());
        assert!(t.try_take("192.0.2.8".parse().unwrap(), 2).is_some());
        drop(a);
        assert_eq!(t.open(ip), 1);
        assert!(t.try_take(ip, 2).is_some());
    }

    /// Accept errors (EMFILE under a descriptor flood) double the pause up to 1 s instead
    /// of spinning, each one counted; one success resets it.
    #[tokio::test]
    async fn accept_errors_back_off_exponentially_to_a_cap_and_reset() {
        let m = Metrics::new();
        let mut b = AcceptBackoff::new();
        let emfile = std::io::Error::from_raw_os_error(24);
        let mut pauses = Vec::new();
        for _ in 0..9 {
            pauses.push(b.delay);
            b.failed(&emfile, &m).await;
        }
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert!(b.failing);
        assert_eq!(m.accept_errors.get(), 9);
        assert_eq!(
            (b.unlogged, b.recovery_due),
            (8, true),
            "one warning for 9 failures"
        );
        b.succeeded();
        assert_eq!((b.delay, b.failing), (AcceptBackoff::MIN, false));
        // Flapping (fail, succeed, fail …) within the minute logs nothing more.
        for _ in 0..3 {
            b.failed(&emfile, &m).await;
            b.succeeded();
        }
        assert_eq!((b.unlogged, b.recovery_due), (11, false));
    }
}
