//! Real receivers on 127.0.0.1 for the forwarder tests: a raw HTTP/1.1 server (so requests
//! can be asserted byte for byte), a syslog TCP/TLS listener, and test certificates (rcgen).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    reason = "test helpers: a failed unwrap is a failed test; not every test binary uses every helper"
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use shadowai_api::{Action, Evidence, Finding, ProcessRef, Verdict};
use shadowai_siem::{Forwarder, ForwarderStats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub fn finding(id: &str, verdict: Verdict) -> Finding {
    Finding {
        layer: None,
        policy_version: None,
        bytes_out: None,
        bytes_in: None,
        naming: None,
        session: None,
        flags: Vec::new(),
        truncated: false,
        id: id.to_owned(),
        host_id: "h-0001".to_owned(),
        hostname: "host-a".to_owned(),
        window_start_ms: 1_763_825_700_000,
        window_end_ms: 1_763_825_760_000,
        service_id: "openai-chatgpt".to_owned(),
        service_name: "ChatGPT".to_owned(),
        vendor: "OpenAI".to_owned(),
        category: "chat".to_owned(),
        risk_score: 70,
        verdict,
        action: if verdict == Verdict::Blocked {
            Action::Blocked
        } else {
            Action::Allowed
        },
        rule: "catalogue:openai-chatgpt".to_owned(),
        process: ProcessRef {
            exe: "/usr/bin/python3.11".to_owned(),
            name: "python3".to_owned(),
            exe_sha256: None,
            container_id: None,
            systemd_unit: None,
        },
        user: "alice \"the admin\"".to_owned(),
        uid: 1000,
        count: 3,
        first_seen_ms: 1_763_825_701_000,
        last_seen_ms: 1_763_825_770_123,
        evidence: Evidence {
            dns_names: vec!["api.openai.com".to_owned()],
            sni: vec!["api.openai.com".to_owned()],
            ips: vec!["203.0.113.7".to_owned()],
            ports: vec![443],
            protocols: vec!["tls".to_owned()],
        },
    }
}

/// Polls the forwarder's stats until `done` holds (at most 15 s, then fails with the stats).
pub async fn wait_for(
    fwd: &Forwarder,
    what: &str,
    done: impl Fn(&ForwarderStats) -> bool,
) -> ForwarderStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = fwd.stats();
        if done(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; stats: {s:#?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------- certificates ----------

pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
pub fn pki() -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "shadowai test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    TestPki {
        dir,
        ca_file,
        server_config: Arc::new(server_config),
    }
}

// ---------- HTTP receiver ----------

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: std::time::Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Statuses to answer in order, each with an optional `Retry-After` (seconds).
pub type Script = Arc<Mutex<VecDeque<(u16, Option<u64>)>>>;

/// A minimal HTTP/1.1 server: records every request, answers from a script of statuses
/// (then 200 with Splunk's success body), keeps connections alive.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    /// Statuses to answer in order (with an optional `Retry-After` in seconds), then 200.
    pub script: Script,
}

impl HttpReceiver {
    pub async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (reqs, scr) = (requests.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (reqs, scr, tls) = (reqs.clone(), scr.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_http(tcp, reqs, scr).await,
                        Some(cfg) => {
                            if let Ok(s) = TlsAcceptor::from(cfg).accept(tcp).await {
                                serve_http(s, reqs, scr).await;
                            }
                        }
                    }
                });
            }
        });
        HttpReceiver {
            addr,
            requests,
            script,
        }
    }

    pub fn fail_next(&self, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .extend(statuses.iter().map(|s| (*s, None)));
    }

    pub fn fail_next_with_retry_after(&self, status: u16, seconds: u64) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, Some(seconds)));
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    reqs: Arc<Mutex<Vec<Request>>>,
    script: Script,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap().split(' ');
        let method = first.next().unwrap().to_owned();
        let path = first.next().unwrap().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("the forwarder always sends Content-Length");
        buf.drain(..head_end + 4);
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let (status, retry_after) = script.lock().unwrap().pop_front().unwrap_or((200, None));
        let at = std::time::Instant::now();
        reqs.lock().unwrap().push(Request {
            at,
            method,
            path,
            headers,
            body,
        });
        let reply = if status == 200 {
            r#"{"text":"Success","code":0}"#.to_owned()
        } else {
            format!(r#"{{"text":"scripted failure","code":{status}}}"#)
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\r\n{reply}",
            retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default(),
            reply.len()
        );
        if s.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ---------- syslog receiver ----------

/// Bytes received, one buffer per accepted connection.
pub type Connections = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// Accepts syslog connections and records every byte received, per connection.
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    pub connections: Connections,
    /// Connections the receiver has closed (after `close_after` bytes or EOF).
    pub closed: Arc<std::sync::atomic::AtomicUsize>,
    pub task: tokio::task::JoinHandle<()>,
}

impl SyslogReceiver {
    /// `close_after`: close each connection once it has received that many bytes
    /// (a receiver that restarts).
    pub async fn start(
        addr: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        close_after: Option<usize>,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Connections = Arc::new(Mutex::new(Vec::new()));
        let conns = connections.clone();
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let closed_count = closed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let bytes = Arc::new(Mutex::new(Vec::new()));
                conns.lock().unwrap().push(bytes.clone());
                let tls = tls.clone();
                let closed_count = closed_count.clone();
                tokio::spawn(async move {
                    match tls {
                        None => read_into(tcp, bytes, close_after).await,
                        Some(cfg) => {
                            if let Ok(s) = TlsAcceptor::from(cfg).accept(tcp).await {
                                read_into(s, bytes, close_after).await;
                            }
                        }
                    }
                    // read_into owned the stream: it is closed now.
                    closed_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        SyslogReceiver {
            addr,
            connections,
            closed,
            task,
        }
    }

    pub fn received(&self) -> Vec<Vec<u8>> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .collect()
    }

    pub fn all_bytes(&self) -> Vec<u8> {
        self.received().concat()
    }
}

async fn read_into<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    out: Arc<Mutex<Vec<u8>>>,
    close_after: Option<usize>,
) {
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let total = {
                    let mut o = out.lock().unwrap();
                    o.extend_from_slice(&chunk[..n]);
                    o.len()
                };
                if close_after.is_some_and(|limit| total >= limit) {
                    let _ = s.shutdown().await;
                    return;
                }
            }
        }
    }
}

/// Splits an octet-counted stream into messages; fails on a framing error.
pub fn deframe(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let sp = bytes.iter().position(|b| *b == b' ').expect("frame length");
        let len: usize = std::str::from_utf8(&bytes[..sp]).unwrap().parse().unwrap();
        let msg = &bytes[sp + 1..sp + 1 + len];
        out.push(msg.to_vec());
        bytes = &bytes[sp + 1 + len..];
    }
    out
}
