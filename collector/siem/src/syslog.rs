//! RFC 5424 syslog messages with octet-counting framing (RFC 6587 §3.4.1, RFC 5425 §4.3),
//! sent over a long-lived TCP or TLS connection.
//!
//! Message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - FINDING [SD-ID k="v" …] BOM{OCSF JSON}`,
//! framed as `LEN SP MESSAGE`. TCP syslog has no acknowledgement: a write that the kernel
//! accepted counts as delivered. Before each batch the connection is checked for an EOF from
//! the receiver (receivers never send data), so a receiver that restarted is noticed and the
//! batch goes over a fresh connection instead of into a dead socket.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use shadowai_api::{Action, Verdict};

use crate::event::SiemEvent;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{SyslogConfig, SyslogTransport};
use crate::forwarder::SendError;
use crate::{SiemError, time};

/// RFC 5424 severity of a finding: unsanctioned use is a warning (4), a blocked attempt a
/// notice (5), tolerated and sanctioned use informational (6).
pub fn severity(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Unsanctioned => 4,
        Verdict::Blocked => 5,
        Verdict::Tolerated | Verdict::Sanctioned => 6,
    }
}

/// The verdict's wire name (`unsanctioned`).
pub fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Sanctioned => "sanctioned",
        Verdict::Tolerated => "tolerated",
        Verdict::Unsanctioned => "unsanctioned",
        Verdict::Blocked => "blocked",
    }
}

/// The action's wire name (`allowed` / `blocked`).
pub fn action_name(action: Action) -> &'static str {
    action.as_str()
}

/// One RFC 5424 message (without framing).
pub fn format_message<E: SiemEvent>(cfg: &SyslogConfig, f: &E) -> Vec<u8> {
    let pri = u16::from(cfg.facility.code()) * 8 + u16::from(f.syslog_severity());
    let timestamp = time::rfc3339_millis(f.time_ms()).unwrap_or_else(|| "-".to_owned());
    let hostname = header_field(f.hostname(), 255);
    let mut out = format!(
        "<{pri}>1 {timestamp} {hostname} {app} - {msgid} [{sd_id}",
        app = cfg.app_name,
        msgid = f.msgid(),
        sd_id = cfg.sd_id
    );
    for (key, value) in f.sd_params() {
        out.push(' ');
        out.push_str(key);
        out.push_str("=\"");
        push_param_value(&mut out, &value);
        out.push('"');
    }
    out.push_str("] ");
    if cfg.utf8_bom {
        out.push('\u{feff}');
    }
    out.push_str(&f.ocsf().to_string());
    out.into_bytes()
}

/// Octet-counting frame: `LEN SP MSG`.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message);
    out
}

/// A header field (HOSTNAME): printable US-ASCII only, at most `max` bytes, `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if cleaned.is_empty() {
        "-".to_owned()
    } else {
        cleaned
    }
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` get a backslash.
fn push_param_value(out: &mut String, value: &str) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Splits `host:port` / `[v6]:port`; the error says what is wrong.
pub fn split_host_port(address: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or("IPv6 address is missing ']'")?;
        let port = rest.strip_prefix(':').ok_or("missing ':port' after ']'")?;
        (host, port)
    } else {
        address.rsplit_once(':').ok_or("must be host:port")?
    };
    if host.is_empty() {
        return Err("host is empty");
    }
    let port: u16 = port.parse().map_err(|_| "port is not a number 1-65535")?;
    if port == 0 {
        return Err("port is not a number 1-65535");
    }
    Ok((host.to_owned(), port))
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The syslog sink: formats, frames and writes batches, reconnecting as needed.
pub struct SyslogSink {
    cfg: SyslogConfig,
    host: String,
    port: u16,
    connector: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    conn: Option<Conn>,
}

impl SyslogSink {
    pub fn new(cfg: &SyslogConfig) -> Result<Self, SiemError> {
        let (host, port) =
            split_host_port(&cfg.address).map_err(|reason| SiemError::InvalidConfig {
                forwarder: cfg.name.clone(),
                field: "address",
                reason: reason.to_owned(),
            })?;
        let connector = match cfg.transport {
            SyslogTransport::Tcp => None,
            SyslogTransport::Tls => {
                let tls = crate::tls::client_config(&cfg.tls, &cfg.name)?;
                let name = cfg.server_name.clone().unwrap_or_else(|| host.clone());
                let server_name =
                    ServerName::try_from(name.clone()).map_err(|_| SiemError::InvalidConfig {
                        forwarder: cfg.name.clone(),
                        field: "server_name",
                        reason: format!("{name:?} is not a valid DNS name or IP address"),
                    })?;
                Some((TlsConnector::from(Arc::new(tls)), server_name))
            }
        };
        Ok(SyslogSink {
            cfg: cfg.clone(),
            host,
            port,
            connector,
            timeout: Duration::from_millis(cfg.delivery.timeout_ms),
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let target = format!("{}:{}", self.host, self.port);
        let tcp = tokio::time::timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| SendError::retry(format!("connect to {target}: timed out")))?
        .map_err(|e| SendError::retry(format!("connect to {target}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &self.connector {
            None => Ok(Conn::Tcp(tcp)),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(self.timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| {
                        SendError::retry(format!("TLS handshake with {target}: timed out"))
                    })?
                    .map_err(|e| SendError::retry(format!("TLS handshake with {target}: {e}")))?;
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }

    /// Sends one batch as one write. On any error the connection is dropped and the next
    /// attempt reconnects.
    pub async fn send<E: SiemEvent>(&mut self, batch: &[E]) -> Result<(), SendError> {
        let mut bytes = Vec::new();
        for f in batch {
            bytes.extend_from_slice(&frame(&format_message(&self.cfg, f)));
        }
        if let Some(conn) = &mut self.conn
            && peer_closed(conn).await
        {
            tracing::info!(forwarder = %self.cfg.name, "syslog receiver closed the connection; reconnecting");
            self.conn = None;
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let result = tokio::time::timeout(self.timeout, async {
            match &mut conn {
                Conn::Tcp(s) => write_all(s, &bytes).await,
                Conn::Tls(s) => write_all(s.as_mut(), &bytes).await,
            }
        })
        .await;
        match result {
            Ok(Ok(())) => {
                self.conn = Some(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(SendError::retry(format!(
                "write to {}:{}: {e}",
                self.host, self.port
            ))),
            Err(_) => Err(SendError::retry(format!(
                "write to {}:{}: timed out",
                self.host, self.port
            ))),
        }
    }
}

async fn write_all<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// What a non-blocking `MSG_PEEK` on the TCP socket says about the receiver: `Some(true)` it
/// closed (EOF or error), `Some(false)` nothing to read (still open), `None` bytes are waiting
/// (TLS records such as session tickets or a close_notify alert) and only TLS can tell.
/// A syscall, so the answer does not depend on when the runtime last polled epoll.
fn tcp_peer_closed(tcp: &TcpStream) -> Option<bool> {
    let sock = socket2::SockRef::from(tcp);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match sock.peek(&mut buf) {
        Ok(0) => Some(true),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(false),
        Err(_) => Some(true),
    }
}

/// True when the receiver has closed the connection. Syslog receivers never send data, so
/// for TCP a peek decides; for TLS pending records are read through rustls (an alert or EOF
/// means closed) without waiting.
async fn peer_closed(conn: &mut Conn) -> bool {
    match conn {
        Conn::Tcp(s) => tcp_peer_closed(s).unwrap_or(false),
        Conn::Tls(s) => match tcp_peer_closed(s.get_ref().0) {
            Some(closed) => closed,
            None => {
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::ZERO, s.read(&mut buf)).await {
                    Err(_) => false,    // nothing for the application: still open
                    Ok(Ok(0)) => true,  // close_notify / EOF
                    Ok(Ok(_)) => false, // unexpected data from the receiver: ignored
                    Ok(Err(_)) => true, // alert, reset
                }
            }
        },
    }
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
    fn host_port_forms() {
        assert_eq!(
            split_host_port("127.0.0.1:514").unwrap(),
            ("127.0.0.1".into(), 514)
        );
        assert_eq!(split_host_port("[::1]:6514").unwrap(), ("::1".into(), 6514));
        assert_eq!(
            split_host_port("siem.example:6514").unwrap(),
            ("siem.example".into(), 6514)
        );
        assert!(split_host_port("siem.example").is_err());
        assert!(split_host_port("h:0").is_err());
        assert!(split_host_port("h:99999").is_err());
        assert!(split_host_port(":514").is_err());
        assert!(split_host_port("[::1:514").is_err());
    }

    #[test]
    fn param_values_and_hostnames_are_escaped() {
        let mut s = String::new();
        push_param_value(&mut s, r#"a"b\c]d"#);
        assert_eq!(s, r#"a\"b\\c\]d"#);
        assert_eq!(header_field("host a\u{e9}", 255), "host_a_");
        assert_eq!(header_field("", 255), "-");
        assert_eq!(header_field(&"x".repeat(300), 255).len(), 255);
    }

    #[test]
    fn frame_counts_bytes_not_chars() {
        assert_eq!(frame("é".as_bytes()), b"2 \xc3\xa9".to_vec());
    }
}
