//! What one forwarded finding costs to render: the RFC 5424 syslog frame, the Splunk HEC
//! body and the webhook body, for a batch of 100 findings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shadowai_api::{Action, Evidence, Finding, ProcessRef, Verdict};
use shadowai_siem::config::{
    DeliveryConfig, Facility, HecConfig, Secret, SyslogConfig, SyslogTransport, TlsConfig,
};
use shadowai_siem::http::{HecSink, WebhookSink};
use shadowai_siem::syslog::{format_message, frame};

fn finding(i: usize) -> Finding {
    Finding {
        layer: None,
        policy_version: None,
        bytes_out: None,
        bytes_in: None,
        naming: None,
        session: None,
        flags: Vec::new(),
        truncated: false,
        id: format!("h-0001-openai-chatgpt-{i}"),
        host_id: "h-0001".into(),
        hostname: "web-01.prod.example".into(),
        window_start_ms: 1_763_825_700_000,
        window_end_ms: 1_763_825_760_000,
        service_id: "openai-chatgpt".into(),
        service_name: "ChatGPT".into(),
        vendor: "OpenAI".into(),
        category: "chat_assistant".into(),
        risk_score: 70,
        verdict: Verdict::Unsanctioned,
        action: Action::Allowed,
        rule: "catalogue:openai-chatgpt".into(),
        process: ProcessRef {
            exe: "/usr/bin/python3.11".into(),
            name: "python3".into(),
            exe_sha256: Some("ab".repeat(32)),
            container_id: Some("c0ffee0123456789".into()),
            systemd_unit: None,
        },
        user: "alice".into(),
        uid: 1000,
        count: 12,
        first_seen_ms: 1_763_825_701_000,
        last_seen_ms: 1_763_825_770_123,
        evidence: Evidence {
            dns_names: vec!["api.openai.com".into(), "chatgpt.com".into()],
            sni: vec!["api.openai.com".into()],
            ips: vec!["203.0.113.7".into(), "2001:db8::7".into()],
            ports: vec![443],
            protocols: vec!["dns".into(), "tls".into(), "quic".into()],
        },
    }
}

fn bench(c: &mut Criterion) {
    let batch: Vec<Finding> = (0..100).map(finding).collect();
    let syslog = SyslogConfig {
        name: "s".into(),
        address: "127.0.0.1:6514".into(),
        transport: SyslogTransport::Tcp,
        server_name: None,
        facility: Facility::Local0,
        app_name: "shadowai".into(),
        sd_id: "shadowai@32473".into(),
        utf8_bom: true,
        tls: TlsConfig::default(),
        delivery: DeliveryConfig::default(),
        verdicts: vec![],
    };
    let hec = HecConfig {
        name: "h".into(),
        url: "https://splunk.example:8088".into(),
        token: Secret("t".into()),
        index: Some("security".into()),
        source: "shadowai".into(),
        sourcetype: "ocsf:detection_finding".into(),
        tls: TlsConfig::default(),
        delivery: DeliveryConfig::default(),
        verdicts: vec![],
    };
    let mut g = c.benchmark_group("siem_render_100_findings");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("syslog_rfc5424_framed", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(128 * 1024);
            for f in black_box(&batch) {
                out.extend_from_slice(&frame(&format_message(&syslog, f)));
            }
            out
        })
    });
    g.bench_function("splunk_hec_body", |b| {
        b.iter(|| HecSink::body(&hec, black_box(&batch)))
    });
    g.bench_function("webhook_ocsf_array", |b| {
        b.iter(|| WebhookSink::body(black_box(&batch)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
