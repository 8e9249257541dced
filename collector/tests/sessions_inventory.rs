//! The inventory store (issue 12) against SQLite and a throwaway PostgreSQL: upserts keep
//! first seen and advance last seen, filters by host/kind/flag, and each host's items stay
//! within the bound however many a (compromised) agent reports, without touching others.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

mod common;

use common::PgServer;
use shadowai_api::inventory::{
    AgentSession, InventoryQuery, InventoryReport, ItemKind, Listener, Runtime,
};
use shadowai_api::{Flag, SessionRef};
use shadowai_collector::store::Store;

const T0: i64 = 1_763_769_600_000;

fn session(id: &str, first: i64, last: i64, flags: Vec<Flag>) -> AgentSession {
    AgentSession {
        session: SessionRef {
            id: id.into(),
            kind: "claude-code".into(),
            root_pid: 42,
            started_ms: first,
            version: Some("2.1.332".into()),
        },
        name: "Claude Code".into(),
        user: "alice".into(),
        uid: 1000,
        cwd: Some("/home/alice/src".into()),
        exe: "/usr/bin/claude".into(),
        argv: vec!["claude".into(), "--dangerously-skip-permissions".into()],
        processes: 3,
        live_processes: 2,
        destinations: vec!["api.anthropic.com".into()],
        off_catalogue: vec![],
        tenant: None,
        flags,
        first_seen_ms: first,
        last_seen_ms: last,
        ended: false,
    }
}

fn report(host: &str, sessions: Vec<AgentSession>, runtimes: Vec<Runtime>) -> InventoryReport {
    InventoryReport {
        host_id: host.into(),
        hostname: format!("{host}.example"),
        time_ms: T0,
        sessions,
        mcp_servers: vec![],
        runtimes,
    }
}

fn runtime(exposed: bool) -> Runtime {
    Runtime {
        id: "ollama-7-1".into(),
        kind: "ollama".into(),
        name: "Ollama".into(),
        pid: 7,
        exe: "/usr/local/bin/ollama".into(),
        user: "ollama".into(),
        matched_by: "exe".into(),
        listeners: vec![Listener {
            addr: if exposed { "0.0.0.0" } else { "127.0.0.1" }.into(),
            port: 11434,
            exposed,
        }],
        pull_hosts: vec!["registry.ollama.ai".into()],
        clients: vec![],
        flags: if exposed {
            vec![Flag::RuntimeExposed]
        } else {
            vec![]
        },
        first_seen_ms: T0,
        last_seen_ms: T0,
        ended: false,
    }
}

fn q(host: Option<&str>, kind: Option<ItemKind>, flag: Option<Flag>) -> InventoryQuery {
    InventoryQuery {
        host: host.map(Into::into),
        kind,
        flag,
        limit: Some(1000),
    }
}

fn suite(s: &dyn Store) {
    let flags = vec![Flag::PermissionBypass];
    s.put_inventory(&report(
        "h1",
        vec![session("1-1", T0, T0 + 10, flags.clone())],
        vec![runtime(false)],
    ))
    .unwrap();
    // Reported again: first seen stays the earliest, last seen the latest, flags the newest.
    s.put_inventory(&report(
        "h1",
        vec![session("1-1", T0 + 5, T0 + 99, flags.clone())],
        vec![runtime(true)],
    ))
    .unwrap();
    s.put_inventory(&report("h2", vec![session("9-9", T0, T0, vec![])], vec![]))
        .unwrap();
    let all = s.inventory(&q(None, None, None)).unwrap();
    assert_eq!(all.len(), 3);
    let one = s
        .inventory(&q(Some("h1"), Some(ItemKind::Session), None))
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].first_seen_ms, one[0].last_seen_ms), (T0, T0 + 99));
    assert_eq!(one[0].detail["user"], "alice");
    assert_eq!(
        s.inventory(&q(Some("h1.example"), None, None))
            .unwrap()
            .len(),
        2,
        "by host name too"
    );
    let exposed = s
        .inventory(&q(None, None, Some(Flag::RuntimeExposed)))
        .unwrap();
    assert_eq!(exposed.len(), 1);
    assert_eq!(exposed[0].kind, ItemKind::Runtime);
    assert_eq!(
        s.inventory(&q(None, None, Some(Flag::PermissionBypass)))
            .unwrap()
            .len(),
        1
    );

    // A flood from one host: 4,000 distinct sessions. Its items stay within the bound, the
    // newest kept; the other host keeps its own.
    for chunk in 0..4 {
        let sessions = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                session(&format!("flood-{n}"), T0, T0 + 1000 + n, vec![])
            })
            .collect();
        s.put_inventory(&report("h1", sessions, vec![])).unwrap();
    }
    let mut h1 = Vec::new();
    for kind in [ItemKind::Session, ItemKind::Runtime] {
        h1.extend(s.inventory(&q(Some("h1"), Some(kind), None)).unwrap());
    }
    assert!(h1.len() <= 1000, "limit per query");
    let newest = s.inventory(&q(Some("h1"), None, None)).unwrap();
    assert_eq!(newest[0].id, "flood-3999");
    assert_eq!(s.inventory(&q(Some("h2"), None, None)).unwrap().len(), 1);
}

#[test]
fn sqlite_inventory_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = shadowai_collector::store::sqlite::open(&dir.path().join("c.db")).unwrap();
    suite(&s);
    let c = rusqlite::Connection::open(dir.path().join("c.db")).unwrap();
    let n: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM inventory_items WHERE host_id = 'h1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(n <= 3072, "{n} items kept for one host");
    assert!(n >= 3000, "{n}: the newest are kept");
}

#[test]
fn postgres_inventory_store() {
    let pg = PgServer::start_tls();
    let conn = pg.create_db("inventory");
    let s = shadowai_collector::store::postgres::open(&conn, 1, pg.ca.as_deref()).unwrap();
    suite(&s);
}

/// A host holding an agent token: it may only report its own host, every text is checked,
/// lists are bounded on the wire, and only people read the inventory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inventory_reports_are_refused_with_a_reason() {
    let srv = common::start_server(false, |_| {}).await;
    let (_, token) = srv.enroll("h1", None).await;
    let agent = srv.client(Some(&token));
    let viewer = srv.person("vera", shadowai_api::Role::Viewer);
    let http = common::raw();
    let post = |body: serde_json::Value| {
        http.post(format!("{}/api/v1/inventory", srv.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let ok = report(
        "h1",
        vec![session("1-1", T0, T0, vec![Flag::AgentAsRoot])],
        vec![],
    );
    assert_eq!(agent.inventory_report(&ok).await.unwrap().items, 1);
    // Another host's inventory: forbidden.
    let other = report("h2", vec![], vec![]);
    let e = agent.inventory_report(&other).await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    // A control character in a session's argv: refused, naming the field.
    let mut bad = serde_json::to_value(&ok).unwrap();
    bad["sessions"][0]["argv"][1] = "--x\u{1b}[31m".into();
    let r = post(bad).await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("sessions[0].argv[1]"), "{text}");
    // Past the wire bound (1,024 sessions): refused before anything is stored.
    let mut many = serde_json::to_value(&ok).unwrap();
    let s0 = many["sessions"][0].clone();
    many["sessions"] = serde_json::Value::Array(vec![s0; 1025]);
    let r = post(many).await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // A listener address that is not an address.
    let mut rt = serde_json::to_value(report("h1", vec![], vec![runtime(true)])).unwrap();
    rt["runtimes"][0]["listeners"][0]["addr"] = "0.0.0.0; DROP TABLE".into();
    assert_eq!(post(rt).await.unwrap().status(), 400);
    // People read it; an agent token cannot.
    let items = srv
        .client(Some(&viewer))
        .inventory(&q(None, None, None))
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0].flags.contains(&Flag::AgentAsRoot));
    assert!(agent.inventory(&q(None, None, None)).await.is_err());
}
