//! A finding reads back exactly as it was ingested, on both stores, whichever of its fields
//! live in columns and which in the row's doc (`store/finding_doc.rs`) — every optional
//! field set and every one unset — and rows whose doc is a whole finding (stored before the
//! doc kept only the rest, or bulk-loaded) read back as before.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use std::sync::Arc;

use common::{PgServer, finding};
use shadowai_api::{
    Action, Confidence, Finding, FindingQuery, Flag, IngestBatch, Layer, NameSource, Naming,
    SessionRef, Verdict,
};
use shadowai_collector::store::{AlertPolicy, Store};

const T0: i64 = 1_763_769_600_000;

/// Every field set, and none of the optional ones.
fn findings() -> Vec<Finding> {
    let mut full = finding(
        "full",
        "host-a",
        "openai-api",
        Verdict::Blocked,
        "alice",
        T0,
    );
    full.action = Action::Blocked;
    full.layer = Some(Layer::DnsTcp);
    full.policy_version = Some("2026.11.26-1".into());
    full.bytes_out = Some(1 << 40);
    full.bytes_in = Some(0);
    full.naming = Some(Naming {
        source: NameSource::ResolverAnswer,
        confidence: Confidence::Medium,
    });
    full.session = Some(SessionRef {
        id: "sess-1".into(),
        kind: "claude-code".into(),
        root_pid: 4242,
        started_ms: T0 - 5,
        version: Some("2.0.1".into()),
    });
    full.flags = vec![Flag::PermissionBypass, Flag::LargeUpload];
    full.truncated = true;
    full.rule = "policy: block openai-api".into();
    full.uid = u32::MAX;
    full.count = u64::from(u32::MAX);
    full.risk_score = 100;
    full.process.systemd_unit = Some("user@1000.service".into());
    full.evidence.dns_names = vec!["api.openai.com".into()];
    full.evidence.ports = vec![443, 853];
    let mut bare = finding(
        "bare",
        "host-a",
        "mistral",
        Verdict::Tolerated,
        "bob",
        T0 + 1,
    );
    bare.action = Action::WouldBlock;
    bare.process.exe_sha256 = None;
    bare.process.container_id = None;
    vec![full, bare]
}

fn round_trip(s: &dyn Store, before: &dyn Fn(&Finding)) {
    common::enroll_in_store(s, "doc", "agt-a", "host-a", None, T0);
    let sent = findings();
    let (ack, _) = s
        .ingest_shared(
            "agt-a",
            Arc::new(IngestBatch {
                batch_id: "b1".into(),
                findings: sent.clone(),
            }),
            &AlertPolicy::default(),
            T0,
        )
        .unwrap();
    assert_eq!(ack.accepted, 2);
    // A row whose doc is a whole finding, as rows stored before and bulk loads hold it.
    let mut legacy = finding(
        "legacy",
        "host-a",
        "deepseek",
        Verdict::Unsanctioned,
        "eve",
        T0,
    );
    legacy.naming = Some(Naming {
        source: NameSource::Sni,
        confidence: Confidence::High,
    });
    before(&legacy);
    let (mut got, _) = s.search(&FindingQuery::default(), 10, None).unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let mut want = sent;
    want.push(legacy);
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, want);
}

/// `INSERT` of a row whose doc is the whole finding `f` (`$1`: its JSON).
const LEGACY_INSERT: &str = "INSERT INTO findings (id, agent_id, host_id, hostname, \
     window_start_ms, window_end_ms, service_id, service_name, vendor, category, risk_score, \
     verdict, action, user_name, uid, exe, process_name, container_id, count, first_seen_ms, \
     last_seen_ms, received_ms, doc) VALUES ('legacy', 'agt-a', 'host-a', 'host-a.example', \
     1763769600000, 1763769660000, 'deepseek', 'deepseek name', 'Vendor', 'chat', 70, \
     'unsanctioned', 'allowed', 'eve', 1000, '/usr/bin/python3', 'python3', 'c0ffee', 1, \
     1763769600000, 1763769600000, 1763769600000, $1)";

#[test]
fn sqlite_findings_read_back_as_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = shadowai_collector::store::sqlite::open(&path).unwrap();
    round_trip(&store, &|f| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                &LEGACY_INSERT.replace("$1", "?1"),
                [serde_json::to_string(f).unwrap()],
            )
            .unwrap();
    });
}

#[test]
fn postgres_findings_read_back_as_ingested() {
    let pg = PgServer::start();
    let url = pg.create_db("doc");
    let store = shadowai_collector::store::postgres::open(&url, 2, None).unwrap();
    round_trip(&store, &|f| {
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .execute(LEGACY_INSERT, &[&serde_json::to_string(f).unwrap()])
            .unwrap();
    });
}
