//! The tracker against hand-made process trees (the real thing runs in
//! tests/tests/sessions_agents.rs).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::sync::Arc;

use shadowai_api::Flag;
use shadowai_api::inventory::Listener;

use super::tracker::{MAX_ITEMS, MAX_NODES};
use super::{ProcFacts, Tracker, TrackerOptions};

fn tracker() -> Tracker {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
    let hints = shadowai_rules::Catalogue::load_dir(&dir)
        .unwrap()
        .inventory_hints;
    Tracker::new(
        Arc::new(hints),
        TrackerOptions {
            proc_root: "/nonexistent-proc".into(),
            ..TrackerOptions::default()
        },
    )
}

fn argv(s: &str) -> Vec<String> {
    s.split(' ').map(String::from).collect()
}

fn exec(
    t: &mut Tracker,
    pid: u32,
    ppid: u32,
    exe: &str,
    args: &str,
    uid: u32,
) -> Option<Arc<super::Tag>> {
    let a = argv(args);
    t.on_exec(&ProcFacts {
        pid,
        ppid: Some(ppid),
        exe,
        argv: &a,
        uid,
        user: if uid == 0 { "root" } else { "alice" },
        start_ms: 1_000 + i64::from(pid),
    })
}

const GEMINI: &str = "node /opt/a/node_modules/@google/gemini-cli/bundle/gemini.js --yolo -p hi";

#[test]
fn lineage_survives_short_lived_children_and_flags_follow() {
    let mut t = tracker();
    assert!(exec(&mut t, 10, 1, "/usr/bin/bash", "bash", 0).is_none());
    let root = exec(&mut t, 100, 10, "/usr/bin/node", GEMINI, 0).unwrap();
    let s = root.session.clone().unwrap();
    assert_eq!((s.kind.as_str(), s.root_pid), ("gemini-cli", 100));
    assert_eq!(root.flags, vec![Flag::PermissionBypass, Flag::AgentAsRoot]);
    // The agent relaunches itself: same session, not a new one.
    let relaunch = exec(&mut t, 101, 100, "/usr/bin/node", GEMINI, 0).unwrap();
    assert_eq!(relaunch.session, root.session);
    // It starts an MCP server through npx (unpinned), which runs sh, which runs the server.
    let npx = exec(
        &mut t,
        200,
        101,
        "/usr/bin/node",
        "node /usr/bin/npx -y @modelcontextprotocol/server-filesystem /tmp",
        0,
    )
    .unwrap();
    assert!(npx.flags.contains(&Flag::UnpinnedMcpServer));
    let mcp_id = npx.mcp.clone().unwrap();
    let sh = exec(
        &mut t,
        201,
        200,
        "/usr/bin/dash",
        "sh -c mcp-server-filesystem /tmp",
        0,
    )
    .unwrap();
    assert_eq!(sh.mcp.as_deref(), Some(mcp_id.as_str()));
    // npx and sh exit before the server's own child starts: lineage holds.
    t.on_exit(200, 5_000);
    t.on_exit(201, 5_001);
    let server = exec(
        &mut t,
        202,
        201,
        "/usr/bin/node",
        "node /x/dist/index.js /tmp",
        0,
    )
    .unwrap();
    assert_eq!(server.session, root.session);
    assert_eq!(server.mcp.as_deref(), Some(mcp_id.as_str()));
    // A tool the agent runs through bash is in the session, but no MCP server.
    let bash = exec(&mut t, 300, 101, "/usr/bin/bash", "bash -c curl x", 0).unwrap();
    assert!(bash.mcp.is_none() || bash.mcp.as_deref() != Some(mcp_id.as_str()));
    let curl = exec(&mut t, 301, 300, "/usr/bin/curl", "curl https://x", 0).unwrap();
    assert_eq!(curl.session, root.session);
    t.on_contact(301, "api.example.org", 443, "/usr/bin/curl", 6_000);
    // The MCP server contacting a name its session knows already is still a change of
    // the report (its own list grows): the daemon rewrites the inventory on a new
    // generation only.
    let g = t.generation;
    t.on_contact(202, "api.example.org", 443, "/usr/bin/node", 6_000);
    assert!(
        t.generation > g,
        "the MCP server's new destination is a change"
    );
    let g = t.generation;
    t.on_contact(202, "api.example.org", 443, "/usr/bin/node", 6_000);
    assert_eq!(t.generation, g, "nothing new, no change");
    t.on_contact(
        202,
        "generativelanguage.googleapis.com",
        443,
        "/usr/bin/node",
        6_000,
    );
    let r = t.report("h", "host", 7_000, &|n| n.ends_with("googleapis.com"));
    assert_eq!(r.sessions.len(), 1);
    let sess = &r.sessions[0];
    assert_eq!(sess.processes, 7, "{sess:?}");
    assert_eq!(sess.live_processes, 5);
    assert_eq!(sess.off_catalogue, vec!["api.example.org"]);
    assert!(sess.flags.contains(&Flag::OffCatalogueContact));
    assert_eq!(r.mcp_servers.len(), 1);
    let m = &r.mcp_servers[0];
    assert_eq!(m.launcher, "npx");
    assert_eq!(
        m.package.as_deref(),
        Some("@modelcontextprotocol/server-filesystem")
    );
    assert!(!m.pinned);
    assert!(m.ended, "its launcher process exited");
    assert_eq!(
        m.destinations,
        vec!["api.example.org", "generativelanguage.googleapis.com"]
    );
    // A forked child seen only through its traffic joins its parent's session.
    assert_eq!(t.adopt(302, 300).unwrap().session, root.session);
    assert!(t.adopt(303, 1).is_none(), "outside any session");
    // An unrelated process is not tracked.
    assert!(exec(&mut t, 400, 1, "/usr/bin/curl", "curl x", 1000).is_none());
    // The root exits: the session has ended, its members stay resolvable for a while.
    t.on_exit(100, 8_000);
    let r = t.report("h", "host", 9_000, &|_| true);
    assert!(r.sessions[0].ended);
    assert!(t.tag(301).is_some());
}

#[test]
fn runtime_by_port_exposed_or_not() {
    let mut t = tracker();
    let a = argv("python3 -m http.server 11434");
    let p = ProcFacts {
        pid: 500,
        exe: "/usr/bin/python3",
        argv: &a,
        user: "alice",
        uid: 1000,
        start_ms: 1,
        ppid: None,
    };
    assert!(t.on_exec(&p).is_none());
    let l = |addr: &str, exposed| Listener {
        addr: addr.into(),
        port: 11434,
        exposed,
    };
    t.on_port_listener(&p, 11434, vec![l("127.0.0.1", false)]);
    assert!(t.tag(500).is_none(), "loopback only: no flag");
    t.on_port_listener(&p, 11434, vec![l("0.0.0.0", true)]);
    assert_eq!(t.take_retagged(), vec![500]);
    assert_eq!(t.tag(500).unwrap().flags, vec![Flag::RuntimeExposed]);
    // A client of the runtime is recorded.
    t.on_contact(600, "10.0.0.5", 11434, "/usr/bin/curl", 10);
    let r = t.report("h", "host", 20, &|_| true);
    assert_eq!(r.runtimes[0].kind, "ollama");
    assert_eq!(r.runtimes[0].matched_by, "port");
    assert_eq!(r.runtimes[0].clients, vec!["/usr/bin/curl"]);
    assert_eq!(r.runtimes[0].flags, vec![Flag::RuntimeExposed]);
}

#[test]
fn floods_stay_bounded() {
    let mut t = tracker();
    exec(&mut t, 1, 0, "/usr/bin/node", GEMINI, 1000).unwrap();
    // A session member forks without end: the table stays bounded, the rest is counted.
    for pid in 2..(MAX_NODES as u32 + 100) {
        exec(&mut t, pid, 1, "/usr/bin/sh", "sh", 1000);
    }
    assert!(t.report("h", "h", 0, &|_| true).sessions[0].processes >= MAX_NODES as u64 - 1);
    assert!(t.dropped >= 99, "{}", t.dropped);
    // Exited members make room again.
    t.on_exit(5, 1);
    assert!(exec(&mut t, 900_000, 1, "/usr/bin/sh", "sh", 1000).is_some());

    // Sessions: ended ones are evicted first, live ones are never displaced.
    let mut t = tracker();
    for pid in 0..MAX_ITEMS as u32 {
        exec(&mut t, 10_000 + pid, 1, "/usr/bin/node", GEMINI, 1000).unwrap();
    }
    assert!(exec(&mut t, 20_000, 1, "/usr/bin/node", GEMINI, 1000).is_none());
    t.on_exit(10_007, 50);
    assert!(exec(&mut t, 20_001, 1, "/usr/bin/node", GEMINI, 1000).is_some());
    let r = t.report("h", "h", 0, &|_| true);
    assert_eq!(r.sessions.len(), MAX_ITEMS);
    assert!(!r.sessions.iter().any(|s| s.session.root_pid == 10_007));
}

const CLAUDE: &str = "node /opt/a/node_modules/@anthropic-ai/claude-code/cli.js";

/// A tracker reading tenants from a fake home: `uid` 1000 → `home`.
fn tenant_tracker(home: &std::path::Path, corporate: &[&str]) -> (Tracker, tempfile::TempDir) {
    let etc = tempfile::tempdir().unwrap();
    let passwd = etc.path().join("passwd");
    std::fs::write(
        &passwd,
        format!("alice:x:1000:1000::{}:/bin/sh\n", home.display()),
    )
    .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
    let hints = shadowai_rules::Catalogue::load_dir(&dir)
        .unwrap()
        .inventory_hints;
    let t = Tracker::new(
        Arc::new(hints),
        TrackerOptions {
            proc_root: "/nonexistent-proc".into(),
            passwd,
            read_tenant: true,
            corporate_tenants: corporate.iter().map(|s| s.to_string()).collect(),
            ..TrackerOptions::default()
        },
    );
    (t, etc)
}

#[test]
fn a_tenant_outside_the_corporate_list_is_personal_and_the_key_beside_it_is_never_kept() {
    let home = tempfile::tempdir().unwrap();
    let key = "sk-ant-api03-FAKE-KEY-FOR-THE-TENANT-TEST";
    std::fs::write(
        home.path().join(".claude.json"),
        format!(
            r#"{{"primaryApiKey": "{key}", "oauthAccount": {{"accessToken": "{key}", "organizationUuid": "9f9f-home"}}}}"#
        ),
    )
    .unwrap();
    let (mut t, _etc) = tenant_tracker(home.path(), &["0B1C-CORP"]);
    let tag = exec(&mut t, 10, 1, "/usr/bin/node", CLAUDE, 1000).unwrap();
    assert_eq!(tag.tenant.as_deref(), Some("9f9f-home"));
    assert!(tag.flags.contains(&Flag::PersonalTenant), "{tag:?}");
    let r = t.report("h", "h", 2_000, &|_| false);
    assert_eq!(r.sessions[0].tenant.as_deref(), Some("9f9f-home"));
    assert!(r.sessions[0].flags.contains(&Flag::PersonalTenant));
    // The key is in no value the tracker holds, reports or tags.
    let all = format!("{tag:?} {}", serde_json::to_string(&r).unwrap());
    assert!(!all.contains("FAKE-KEY"), "{all}");

    // The same tool signed in to the organisation's tenant: corporate, no flag.
    std::fs::write(
        home.path().join(".claude.json"),
        format!(
            r#"{{"primaryApiKey": "{key}", "oauthAccount": {{"organizationUuid": "0b1c-corp"}}}}"#
        ),
    )
    .unwrap();
    let tag = exec(&mut t, 20, 1, "/usr/bin/node", CLAUDE, 1000).unwrap();
    assert_eq!(tag.tenant.as_deref(), Some("0b1c-corp"));
    assert!(!tag.flags.contains(&Flag::PersonalTenant), "{tag:?}");

    // No corporate list: nobody is judged personal.
    let (mut t, _etc2) = tenant_tracker(home.path(), &[]);
    let tag = exec(&mut t, 30, 1, "/usr/bin/node", CLAUDE, 1000).unwrap();
    assert!(!tag.flags.contains(&Flag::PersonalTenant), "{tag:?}");
}

#[test]
fn a_standalone_mcp_server_is_inventoried_once_it_listens() {
    let mut t = tracker();
    let script = "node /opt/m/node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp";
    assert!(exec(&mut t, 500, 1, "/usr/bin/node", script, 1000).is_none());
    // `vim mcp-notes.txt` is a candidate too, but never listens.
    exec(&mut t, 501, 1, "/usr/bin/vim", "vim mcp-notes.txt", 1000);
    let r = t.report("h", "h", 2_000, &|_| false);
    assert!(r.mcp_servers.is_empty(), "nothing before it listens: {r:?}");
    assert!(t.listening_candidates().contains(&500));
    let l = Listener {
        addr: "::".into(),
        port: 3001,
        exposed: true,
    };
    t.set_listeners(500, vec![l.clone()]);
    t.set_listeners(501, vec![]);
    let r = t.report("h", "h", 3_000, &|_| false);
    assert_eq!(r.mcp_servers.len(), 1, "{r:?}");
    let m = &r.mcp_servers[0];
    assert_eq!(m.transport, "http");
    assert_eq!(m.launcher, "local");
    assert_eq!(
        m.package.as_deref(),
        Some("@modelcontextprotocol/server-everything")
    );
    assert_eq!(m.session_id, None);
    assert_eq!(m.listeners, vec![l]);
    assert_eq!(m.pid, 500);
    // Its own traffic is attributed to it.
    assert_eq!(t.tag(500).unwrap().mcp.as_deref(), Some(m.id.as_str()));
    t.on_exit(500, 4_000);
    t.on_exit(501, 4_000);
    assert!(t.report("h", "h", 5_000, &|_| false).mcp_servers[0].ended);
    assert!(!t.listening_candidates().contains(&501));
}

#[test]
fn a_standalone_server_started_by_npx_is_unpinned_in_the_process_that_listens() {
    let mut t = tracker();
    exec(
        &mut t,
        600,
        1,
        "/usr/bin/node",
        "node /usr/bin/npx -y @modelcontextprotocol/server-everything streamableHttp",
        1000,
    );
    // npx runs the package's bin through a shell, which runs node on the script.
    exec(
        &mut t,
        601,
        600,
        "/usr/bin/dash",
        "sh -c mcp-server-everything streamableHttp",
        1000,
    );
    let script = "node /root/.npm/_npx/1f/node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp";
    exec(&mut t, 602, 601, "/usr/bin/node", script, 1000);
    // An unrelated child of a pinned local server is not made unpinned.
    exec(
        &mut t,
        700,
        1,
        "/usr/bin/python3",
        "python3 -m mcp_server_x",
        1000,
    );
    exec(
        &mut t,
        701,
        700,
        "/usr/bin/python3",
        "python3 -m mcp_server_x --worker",
        1000,
    );
    let l = Listener {
        addr: "0.0.0.0".into(),
        port: 3001,
        exposed: true,
    };
    t.set_listeners(602, vec![l.clone()]);
    t.set_listeners(701, vec![Listener { port: 3002, ..l }]);
    let r = t.report("h", "h", 3_000, &|_| false);
    let npx = r.mcp_servers.iter().find(|m| m.pid == 602).unwrap();
    assert!(!npx.pinned, "{npx:?}");
    assert_eq!(npx.launcher, "npx");
    assert!(npx.flags.contains(&Flag::UnpinnedMcpServer));
    assert_eq!(
        npx.package.as_deref(),
        Some("@modelcontextprotocol/server-everything")
    );
    let local = r.mcp_servers.iter().find(|m| m.pid == 701).unwrap();
    assert!(local.pinned && local.launcher == "local", "{local:?}");
}

#[test]
fn standalone_candidates_are_bounded() {
    let mut t = tracker();
    let n = super::tracker::MAX_CANDIDATES as u32 + 5;
    for pid in 0..n {
        exec(
            &mut t,
            10_000 + pid,
            1,
            "/usr/bin/python3",
            "python3 -m mcp_server_x",
            1000,
        );
    }
    assert_eq!(t.dropped, 5);
    assert_eq!(
        t.listening_candidates().len(),
        super::tracker::MAX_CANDIDATES
    );
}

#[test]
fn deferred_reads_leave_the_event_path_and_complete_the_session_later() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".claude.json"),
        r#"{"primaryApiKey": "sk-ant-FAKE-DEFERRED", "oauthAccount": {"organizationUuid": "9f9f-home"}}"#,
    )
    .unwrap();
    // The daemon's tracker: reads deferred.
    let etc = tempfile::tempdir().unwrap();
    let passwd = etc.path().join("passwd");
    std::fs::write(
        &passwd,
        format!("alice:x:1000:1000::{}:/bin/sh\n", home.path().display()),
    )
    .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
    let hints = shadowai_rules::Catalogue::load_dir(&dir)
        .unwrap()
        .inventory_hints;
    let mut t = Tracker::new(
        Arc::new(hints),
        TrackerOptions {
            proc_root: "/nonexistent-proc".into(),
            passwd,
            read_tenant: true,
            corporate_tenants: vec!["0b1c-corp".into()],
            defer_reads: true,
        },
    );
    let tag = exec(&mut t, 10, 1, "/usr/bin/node", CLAUDE, 1000).unwrap();
    assert_eq!(tag.tenant, None, "nothing read on the event path");
    assert!(!tag.flags.contains(&Flag::PersonalTenant));
    exec(&mut t, 11, 10, "/usr/bin/git", "git status", 1000);
    let pending = t.take_pending();
    assert_eq!(pending.len(), 1);
    let facts = t.reader().read(&pending[0]);
    assert_eq!(facts.tenant.as_deref(), Some("9f9f-home"));
    t.complete(&pending[0].id, facts);
    let mut retagged = t.take_retagged();
    retagged.sort();
    assert_eq!(
        retagged,
        vec![10, 11],
        "the session's processes are re-tagged"
    );
    for pid in [10, 11] {
        let tag = t.tag(pid).unwrap();
        assert_eq!(tag.tenant.as_deref(), Some("9f9f-home"));
        assert!(tag.flags.contains(&Flag::PersonalTenant), "{tag:?}");
    }
    let r = t.report("h", "h", 2_000, &|_| false);
    assert!(r.sessions[0].flags.contains(&Flag::PersonalTenant));
    assert!(!format!("{r:?}").contains("FAKE"));
    assert!(t.take_pending().is_empty());
}

#[test]
fn hints_from_a_newer_bundle_recognise_new_agents() {
    let mut t = tracker();
    assert!(exec(&mut t, 10, 1, "/usr/local/bin/new-agent", "new-agent", 1000).is_none());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
    let mut hints = shadowai_rules::Catalogue::load_dir(&dir)
        .unwrap()
        .inventory_hints;
    let mut extra = hints.agent[0].clone();
    extra.kind = "new-agent".into();
    extra.exe = vec!["new-agent".into()];
    extra.script = vec![];
    hints.agent.push(extra);
    t.set_hints(Arc::new(hints));
    let tag = exec(&mut t, 11, 1, "/usr/local/bin/new-agent", "new-agent", 1000).unwrap();
    assert_eq!(tag.session.as_ref().unwrap().kind, "new-agent");
}
