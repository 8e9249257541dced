//! Loopback traffic for the agent benchmarks: a connect()+accept()+close() loop, a DNS query
//! loop against a responder on a loopback address, and paced floods of DNS queries and UDP
//! connects. Everything stays on 127.0.0.0/8.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// SO_LINGER with a zero timeout: close() sends RST instead of entering TIME_WAIT.
fn rst_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket fd and a pointer to a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Connects per second over `secs` (single thread, loopback, RST close).
pub fn connect_rate(secs: f64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        rst_on_close(&c);
        drop(c);
        drop(s);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// A DNS query for `name` (A, recursion desired) with message id `id`.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The answer to `query`: one A record (127.0.0.2, TTL 60) through a name pointer.
fn dns_answer(query: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(query);
    if out.len() < 12 {
        return;
    }
    out[2] = 0x81;
    out[3] = 0x80;
    out[6] = 0;
    out[7] = 1;
    out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 2]);
}

/// A sink for DNS queries on `addr:53` (reads and drops them), stopped on drop.
pub struct DnsSink {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsSink {
    pub fn start(ip: Ipv4Addr) -> Result<Self> {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, 53));
        let sock = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                let _ = sock.recv_from(&mut buf);
            }
        });
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DnsSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Query/answer round trips per second over `secs`, one thread playing both sides: the
/// client sends a query to a socket on `server_ip:53`, the same thread reads it there, sends
/// the answer back and reads it on the client socket. No thread hand-off, so the loop does
/// not measure the scheduler of a loaded machine; every packet still crosses loopback and
/// every hook.
pub fn dns_rate(server_ip: Ipv4Addr, secs: f64) -> Result<f64> {
    let server = UdpSocket::bind(SocketAddrV4::new(server_ip, 53))
        .with_context(|| format!("binding {server_ip}:53"))?;
    let client = UdpSocket::bind("127.0.0.1:0")?;
    server.set_read_timeout(Some(Duration::from_secs(1)))?;
    client.set_read_timeout(Some(Duration::from_secs(1)))?;
    let (mut buf, mut answer) = ([0u8; 512], Vec::with_capacity(600));
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let q = dns_query(n as u16, "api.openai.com");
        client.send_to(&q, server.local_addr()?)?;
        let (len, from) = server.recv_from(&mut buf)?;
        dns_answer(&buf[..len], &mut answer);
        server.send_to(&answer, from)?;
        client.recv_from(&mut buf)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// What a paced flood sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    pub queries: u64,
    pub connects: u64,
    pub secs: f64,
}

/// Sends DNS queries for distinct names to `sink` and UDP connects to distinct loopback destinations (so the
/// kernel's per-(process, destination) de-dup passes each one), `rate` events per second in
/// all, half of each, for `secs`, from two threads. Returns what was sent.
pub fn flood(sink: SocketAddr, rate: f64, secs: f64, salt: u32) -> Result<Sent> {
    let half = rate / 2.0;
    let dns = std::thread::spawn(move || -> Result<u64> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        // A distinct name per query (`q<8 hex digits>.chatgpt.com`, written in place): the
        // kernel's de-dup of repeated messages would otherwise count the repeats without
        // sending them up, and they would measure nothing of the pipeline.
        let mut q = dns_query(0, "q00000000.chatgpt.com");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        paced(half, secs, |i| {
            q[..2].copy_from_slice(&(i as u16).to_be_bytes());
            let tag = (u64::from(salt) << 24) ^ i;
            for (k, b) in q[14..22].iter_mut().enumerate() {
                *b = HEX[((tag >> (28 - 4 * k)) & 0xf) as usize];
            }
            sock.send_to(&q, sink).map(|_| ()).map_err(Into::into)
        })
    });
    let conn = std::thread::spawn(move || -> Result<u64> {
        // One UDP socket re-connected each time: every connect() runs the connect4 hook.
        let s = UdpSocket::bind("127.0.0.1:0")?;
        paced(half, secs, |i| {
            // 127.<salt>.<i> spread over 2^16 addresses × ports: distinct per trial.
            let i = i as u32;
            let ip = Ipv4Addr::new(127, 100 + (salt % 100) as u8, (i >> 8) as u8, i as u8);
            let port = 10_000 + ((i >> 16) % 50_000) as u16;
            s.connect(SocketAddrV4::new(ip, port))?;
            Ok(())
        })
    });
    let start = Instant::now();
    let queries = dns
        .join()
        .map_err(|_| anyhow::anyhow!("DNS flood thread panicked"))??;
    let connects = conn
        .join()
        .map_err(|_| anyhow::anyhow!("connect flood thread panicked"))??;
    Ok(Sent {
        queries,
        connects,
        secs: start.elapsed().as_secs_f64().max(secs),
    })
}

/// Calls `f` `rate` times a second for `secs` (in 1 ms slices; unpaced when `rate` is
/// infinite). Returns how many calls succeeded.
fn paced(rate: f64, secs: f64, mut f: impl FnMut(u64) -> Result<()>) -> Result<u64> {
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        let t = start.elapsed().as_secs_f64();
        if t >= secs {
            return Ok(n);
        }
        let due = if rate.is_finite() {
            (rate * t) as u64
        } else {
            n + 64
        };
        if n >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        while n < due {
            f(n)?;
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{dns_answer, dns_query};

    #[test]
    fn query_and_answer_are_well_formed() {
        let q = dns_query(0x1234, "api.openai.com");
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(q.len(), 12 + 16 + 4);
        let mut a = Vec::new();
        dns_answer(&q, &mut a);
        assert_eq!(a.len(), q.len() + 16);
        assert_eq!(a[7], 1);
    }
}
