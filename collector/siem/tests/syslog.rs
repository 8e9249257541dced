//! RFC 5424 syslog over TCP and TLS against a real listener on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::{SyslogReceiver, deframe, finding, pki, wait_for};
use shadowai_api::Verdict;
use shadowai_api::ocsf::finding_to_ocsf;
use shadowai_siem::{
    DeliveryConfig, Facility, Forwarder, ForwarderConfig, SyslogConfig, SyslogTransport, TlsConfig,
};

fn syslog(address: String, transport: SyslogTransport) -> SyslogConfig {
    SyslogConfig {
        name: "rsyslog".into(),
        address,
        transport,
        server_name: None,
        facility: Facility::Local4,
        app_name: "shadowai".into(),
        sd_id: "shadowai@32473".into(),
        utf8_bom: true,
        tls: TlsConfig::default(),
        delivery: DeliveryConfig {
            batch_max_events: 10,
            batch_max_wait_ms: 30,
            queue_capacity: 100,
            max_attempts: 20,
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            timeout_ms: 5_000,
        },
        verdicts: Vec::new(),
    }
}

/// The exact bytes RFC 5424 asks for, written out by hand for the test finding.
fn expected_message(id: &str, verdict: Verdict, pri: u8) -> Vec<u8> {
    let f = finding(id, verdict);
    let v = match verdict {
        Verdict::Unsanctioned => "unsanctioned",
        Verdict::Blocked => "blocked",
        Verdict::Tolerated => "tolerated",
        Verdict::Sanctioned => "sanctioned",
    };
    let action = if verdict == Verdict::Blocked {
        "blocked"
    } else {
        "allowed"
    };
    let mut m = format!(
        "<{pri}>1 2025-11-22T15:36:10.123Z host-a shadowai - FINDING [shadowai@32473 id=\"{id}\" \
         service=\"openai-chatgpt\" category=\"chat\" verdict=\"{v}\" action=\"{action}\" \
         user=\"alice \\\"the admin\\\"\" uid=\"1000\" exe=\"/usr/bin/python3.11\" count=\"3\"] "
    )
    .into_bytes();
    m.extend_from_slice(&[0xEF, 0xBB, 0xBF]);
    m.extend_from_slice(finding_to_ocsf(&f).to_string().as_bytes());
    m
}

#[tokio::test]
async fn tcp_messages_are_rfc5424_with_octet_counting() {
    let rx = SyslogReceiver::start("127.0.0.1:0", None, None).await;
    let fwd = Forwarder::start(&ForwarderConfig::Syslog(syslog(
        rx.addr.to_string(),
        SyslogTransport::Tcp,
    )))
    .unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    fwd.forward(&finding("f-2", Verdict::Blocked));
    wait_for(&fwd, "two messages", |s| s.events_sent == 2).await;
    // local4 = 20: unsanctioned is warning (4) → 164, blocked is notice (5) → 165.
    let mut expected = Vec::new();
    for m in [
        expected_message("f-1", Verdict::Unsanctioned, 164),
        expected_message("f-2", Verdict::Blocked, 165),
    ] {
        expected.extend_from_slice(format!("{} ", m.len()).as_bytes());
        expected.extend_from_slice(&m);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while rx.all_bytes().len() < expected.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let got = rx.all_bytes();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(got, expected);
    assert_eq!(rx.received().len(), 1, "one long-lived connection");
    assert_eq!(deframe(&got).len(), 2);
}

#[tokio::test]
async fn receiver_down_at_first_then_up_is_retried() {
    // Reserve a port, release it, start the forwarder against it, then open the listener.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = syslog(addr.to_string(), SyslogTransport::Tcp);
    cfg.delivery.initial_backoff_ms = 100;
    cfg.delivery.max_backoff_ms = 100;
    let fwd = Forwarder::start(&ForwarderConfig::Syslog(cfg)).unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    let s = wait_for(&fwd, "a refused connection", |s| s.send_failures >= 1).await;
    assert!(s.last_error.unwrap().contains("connect to 127.0.0.1"));
    let rx = SyslogReceiver::start(&addr.to_string(), None, None).await;
    let s = wait_for(&fwd, "delivery once the receiver is up", |s| {
        s.events_sent == 1
    })
    .await;
    assert_eq!(s.batches_failed, 0);
    wait_until(|| deframe(&rx.all_bytes()).len() == 1).await;
}

#[tokio::test]
async fn a_receiver_that_closed_the_connection_gets_a_new_one() {
    // The receiver closes every connection after the first message.
    let rx = SyslogReceiver::start("127.0.0.1:0", None, Some(1)).await;
    let fwd = Forwarder::start(&ForwarderConfig::Syslog(syslog(
        rx.addr.to_string(),
        SyslogTransport::Tcp,
    )))
    .unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    wait_for(&fwd, "first message", |s| s.events_sent == 1).await;
    // Once the receiver has closed its end, send again: the forwarder must notice and reconnect
    // instead of writing into the dead socket.
    wait_until(|| rx.closed.load(std::sync::atomic::Ordering::SeqCst) == 1).await;
    fwd.forward(&finding("f-2", Verdict::Unsanctioned));
    wait_for(&fwd, "second message", |s| s.events_sent == 2).await;
    wait_until(|| rx.received().len() == 2 && deframe(&rx.received()[1]).len() == 1).await;
    let second = &deframe(&rx.received()[1])[0];
    assert!(String::from_utf8_lossy(second).contains("id=\"f-2\""));
}

#[tokio::test]
async fn tls_transport_verifies_and_delivers_the_same_bytes() {
    let pki = pki();
    let rx = SyslogReceiver::start("127.0.0.1:0", Some(pki.server_config.clone()), None).await;
    let mut cfg = syslog(
        format!("localhost:{}", rx.addr.port()),
        SyslogTransport::Tls,
    );
    cfg.tls = TlsConfig {
        ca_file: Some(pki.ca_file.clone()),
        public_roots: false,
    };
    let fwd = Forwarder::start(&ForwarderConfig::Syslog(cfg.clone())).unwrap();
    fwd.forward(&finding("f-1", Verdict::Unsanctioned));
    wait_for(&fwd, "TLS delivery", |s| s.events_sent == 1).await;
    let m = expected_message("f-1", Verdict::Unsanctioned, 164);
    let mut expected = format!("{} ", m.len()).into_bytes();
    expected.extend_from_slice(&m);
    wait_until(|| rx.all_bytes().len() >= expected.len()).await;
    assert_eq!(rx.all_bytes(), expected);

    // A certificate for "localhost" does not match another server name: refused, counted.
    cfg.server_name = Some("siem.invalid".into());
    cfg.delivery.max_attempts = 2;
    let wrong = Forwarder::start(&ForwarderConfig::Syslog(cfg)).unwrap();
    wrong.forward(&finding("f-2", Verdict::Unsanctioned));
    let s = wait_for(&wrong, "TLS name mismatch", |s| s.batches_failed == 1).await;
    assert_eq!((s.send_failures, s.events_failed), (2, 1));
    assert!(s.last_error.unwrap().contains("TLS handshake"));
}

async fn wait_until(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
