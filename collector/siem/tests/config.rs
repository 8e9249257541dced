//! The forwarder configuration as an operator writes it (TOML), and its validation errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use shadowai_api::Verdict;
use shadowai_siem::{Facility, ForwarderConfig, SiemConfig, SiemError, SyslogTransport};

const FULL: &str = r#"
[[forwarder]]
kind = "webhook"
name = "soc"
url = "https://siem.example/ingest"
headers = { Authorization = "Bearer abc" }
verdicts = ["unsanctioned", "blocked"]

[[forwarder]]
kind = "syslog"
name = "rsyslog"
address = "[::1]:6514"
transport = "tls"
facility = "auth"
tls = { ca_file = "/etc/shadowai/siem-ca.pem", public_roots = false }
delivery = { batch_max_events = 10, max_attempts = 8 }

[[forwarder]]
kind = "splunk_hec"
name = "splunk"
url = "https://splunk.example:8088"
token = "0000-1111"
index = "sec"
"#;

#[test]
fn parses_all_three_kinds_with_defaults() {
    let c = SiemConfig::from_toml(FULL, "siem.toml").unwrap();
    assert_eq!(c.forwarders.len(), 3);
    match &c.forwarders[0] {
        ForwarderConfig::Webhook(w) => {
            assert_eq!(w.verdicts, [Verdict::Unsanctioned, Verdict::Blocked]);
            assert_eq!(w.delivery.batch_max_events, 100);
        }
        other => panic!("{other:?}"),
    }
    match &c.forwarders[1] {
        ForwarderConfig::Syslog(s) => {
            assert_eq!(s.transport, SyslogTransport::Tls);
            assert_eq!(s.facility, Facility::Auth);
            assert_eq!(s.app_name, "shadowai");
            assert_eq!(s.sd_id, "shadowai@32473");
            assert!(s.utf8_bom);
            assert_eq!(s.delivery.max_attempts, 8);
            assert_eq!(
                s.delivery.batch_max_wait_ms, 1_000,
                "unset delivery fields keep defaults"
            );
            assert!(!s.tls.public_roots);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.forwarders[2].kind(), "splunk_hec");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = SiemConfig::from_toml(FULL, "siem.toml").unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("0000-1111") && !debug.contains("Bearer abc"),
        "{debug}"
    );
    assert!(debug.contains("<redacted>"));
}

fn err(text: &str) -> String {
    let e = SiemConfig::from_toml(text, "siem.toml").unwrap_err();
    e.to_string()
}

#[test]
fn unknown_fields_and_kinds_are_refused_with_the_file_name() {
    let e =
        err("[[forwarder]]\nkind = \"webhook\"\nname = \"a\"\nurl = \"http://x/\"\nurll = \"y\"\n");
    assert!(e.contains("siem.toml") && e.contains("urll"), "{e}");
    let e = err("[[forwarder]]\nkind = \"kafka\"\nname = \"a\"\n");
    assert!(e.contains("kafka"), "{e}");
    let e = err(
        "[[forwarder]]\nkind = \"syslog\"\nname = \"a\"\naddress = \"h:1\"\ndelivery = { retries = 3 }\n",
    );
    assert!(e.contains("retries"), "{e}");
    let e = err("[[forwarders]]\n");
    assert!(e.contains("forwarders"), "{e}");
}

#[test]
fn validation_names_the_forwarder_and_field() {
    let cases = [
        (
            "kind = \"webhook\"\nname = \"w\"\nurl = \"ftp://x/\"",
            "\"w\": url scheme must be http or https",
        ),
        (
            "kind = \"webhook\"\nname = \"w\"\nurl = \"not a url\"",
            "\"w\": url not a URL",
        ),
        (
            "kind = \"syslog\"\nname = \"s\"\naddress = \"host-without-port\"",
            "\"s\": address must be host:port",
        ),
        (
            "kind = \"syslog\"\nname = \"s\"\naddress = \"h:514\"\nsd_id = \"has space\"",
            "\"s\": sd_id",
        ),
        (
            "kind = \"syslog\"\nname = \"s\"\naddress = \"h:514\"\napp_name = \"\"",
            "\"s\": app_name",
        ),
        (
            "kind = \"splunk_hec\"\nname = \"h\"\nurl = \"https://s/\"\ntoken = \"\"",
            "\"h\": token",
        ),
        (
            "kind = \"splunk_hec\"\nname = \"h\"\nurl = \"https://s/\"\ntoken = \"t\"\ndelivery = { max_attempts = 0 }",
            "\"h\": delivery.max_attempts must be 1 to 100",
        ),
        (
            "kind = \"splunk_hec\"\nname = \"h\"\nurl = \"https://s/\"\ntoken = \"t\"\ndelivery = { batch_max_events = 50, queue_capacity = 10 }",
            "\"h\": delivery.queue_capacity",
        ),
    ];
    for (body, expected) in cases {
        let e = err(&format!("[[forwarder]]\n{body}\n"));
        assert!(e.contains(expected), "{body}\n→ {e}\nexpected {expected}");
    }
    let dup = "[[forwarder]]\nkind = \"webhook\"\nname = \"a\"\nurl = \"http://x/\"\n".repeat(2);
    assert!(err(&dup).contains("used by two forwarders"));
}

#[test]
fn a_missing_ca_file_fails_at_start_not_at_send() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let text = "[[forwarder]]\nkind = \"webhook\"\nname = \"w\"\nurl = \"https://x/\"\ntls = { ca_file = \"/nonexistent/ca.pem\" }\n";
        let c = SiemConfig::from_toml(text, "siem.toml").unwrap();
        let e = shadowai_siem::Siem::start(&c).err().unwrap();
        assert!(matches!(e, SiemError::CaFile { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    });
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let c = SiemConfig::from_toml(
        "[[forwarder]]\nkind = \"webhook\"\nname = \"w\"\nurl = \"http://x/\"\n",
        "t",
    )
    .unwrap();
    assert!(matches!(
        shadowai_siem::Siem::start(&c).err().unwrap(),
        SiemError::NoRuntime
    ));
}
