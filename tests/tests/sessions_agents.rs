//! End-to-end: AI agents at work, seen by the real daemon (`shadowai-agent run`) with its
//! eBPF programs, a real collector, and real programs in network namespaces:
//! - Gemini CLI from npm (`@google/gemini-cli`, no credentials, `--yolo`) starts the
//!   reference MCP server (`npx -y @modelcontextprotocol/server-filesystem`, unpinned, not
//!   installed: npx asks the registry, answered inside the namespace) as its child; both belong to one session (kind, root pid, version from its package), the
//!   MCP server is inventoried with launcher, package and `pinned: false`, and Gemini's
//!   connection to its API (answered inside the test namespace) reaches the collector as a
//!   finding carrying the session and the `permission_bypass` / `agent_as_root` flags;
//! - listeners on 0.0.0.0:11434 and 127.0.0.1:11434 (Ollama's port) are runtimes, the first
//!   exposed and flagged, the second not; a client connecting to it is recorded; each is a
//!   finding of its own at the collector (`runtime:ollama`, `self_hosted_runtime`, bind
//!   address as evidence), the exposed one judged by a rule scoped on `runtime_exposed`;
//! - nothing in any configuration file is executed by shadowai, and prompts never appear in
//!   the inventory.
//!
//! Needs root (eBPF, namespaces) and `.ci/deps/sessions.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use shadowai_tests::sessions::{has, items, npm_bin, set_policy, wait_inventory, write_config};
use shadowai_tests::{Collector, Daemon, Topology, bin, serial, sh, wait_until};

#[test]
fn gemini_cli_and_its_mcp_server_are_one_session_with_flags_on_findings() {
    let _g = serial();
    let gemini = npm_bin("gemini").unwrap();
    let (t, _cert) = Topology::with_servers(
        &["generativelanguage.googleapis.com", "registry.npmjs.org"],
        "generativelanguage.googleapis.com A {v4}\nregistry.npmjs.org A {v4}\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = 19100 + (std::process::id() % 300) as u16;
    let collector = Collector::start(&work.path().join("collector"), port).unwrap();
    let token = collector.admin_token.clone().expect("admin token");
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let state = work.path().join("state");
    let config = work.path().join("agent.toml");
    write_config(&config, &state, Some((&collector, &secret))).unwrap();
    // Monitor mode; any use from a session started with a permission bypass is refused
    // (would be), and so is the session itself (category `ai_agent`).
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "mode = \"monitor\"\ndefault_verdict = \"tolerated\"\n\n[[rules]]\nid = \"no-bypassing-agents\"\n\
         verdict = \"blocked\"\ncategories = [\"ai_agent\", \"model_api\"]\nflags = [\"permission_bypass\"]\n",
    )
    .unwrap();
    set_policy(&config, &policy).unwrap();
    let _agent = Daemon::agent_run(&config).unwrap();

    // Gemini's own settings name the MCP server; a file beside it holds a command that
    // must never run (shadowai reads no tool configuration, let alone executes it).
    let home = work.path().join("home");
    let project = work.path().join("project");
    std::fs::create_dir_all(home.join(".gemini")).unwrap();
    std::fs::create_dir_all(&project).unwrap();
    let marker = work.path().join("executed-from-config");
    std::fs::write(
        home.join(".gemini/settings.json"),
        serde_json::json!({"mcpServers": {"fs": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-filesystem", project],
            // Run where the package is not installed, as `npx -y` is used: npx must ask
            // the registry for it (answered inside the namespace, by a server npm does
            // not trust, so the server never starts). Where the package is installed
            // npx asks nothing, and npm's update check, the only other contact, is
            // skipped under CI.
            "cwd": project,
        }}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        home.join(".claude.json"),
        serde_json::json!({"primaryApiKey": "sk-ant-FAKE-KEY-NEVER-READ",
            "mcpServers": {"evil": {"command": "touch", "args": [marker]}}})
        .to_string(),
    )
    .unwrap();
    let prompt = "summarise-the-quarterly-numbers";
    let mut cli = t
        .cmd(&t.client, "env")
        // No proxy from the machine's environment: npx must ask the registry by its name.
        .args([
            "-u",
            "HTTPS_PROXY",
            "-u",
            "https_proxy",
            "-u",
            "HTTP_PROXY",
            "-u",
            "http_proxy",
        ])
        .args(["-u", "npm_config_proxy", "-u", "npm_config_https_proxy"])
        .arg(format!("HOME={}", home.display()))
        .args([
            "GEMINI_API_KEY=fake-key-for-the-test",
            "GEMINI_CLI_TRUST_WORKSPACE=true",
            "NO_COLOR=1",
            // As on CI (npm skips its update check there): the MCP server's contact
            // below is its own request for the package, here as on a CI machine.
            "CI=true",
            // npm retries a refused registry for over a minute, and Gemini waits for its
            // MCP servers before it asks its API: fail at once.
            "npm_config_fetch_retries=0",
            // The public registry's name, answered inside the namespace, whatever mirror
            // the machine's npm may be configured with.
            "npm_config_registry=https://registry.npmjs.org/",
        ])
        .arg(&gemini)
        .args(["--yolo", "-p", prompt])
        .current_dir(&project)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let ours = project.display().to_string();
    let inv = wait_inventory(&state, "the Gemini session and its MCP server", 90, |v| {
        items(v, "sessions")
            .iter()
            .any(|s| s["kind"] == "gemini-cli" && s["cwd"] == ours.as_str())
            && items(v, "mcp_servers")
                .iter()
                .any(|m| m["package"] == "@modelcontextprotocol/server-filesystem")
    });
    let stop = |cli: &mut std::process::Child| {
        // Gemini relaunches itself and starts the server: stop the whole process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", cli.id())])
            .status();
        let _ = cli.wait();
    };
    let inv = match inv {
        Ok(v) => v,
        Err(e) => {
            stop(&mut cli);
            panic!("{e}");
        }
    };
    let sessions = items(&inv, "sessions");
    let gem: Vec<_> = sessions
        .iter()
        .filter(|s| s["kind"] == "gemini-cli" && s["cwd"] == ours.as_str())
        .collect();
    assert_eq!(
        gem.len(),
        1,
        "the relaunched child is the same session: {inv}"
    );
    let s = gem[0];
    assert_eq!(s["version"], "0.61.0", "{s}");
    assert_eq!(s["user"], "root");
    assert!(
        has(s, "flags", "permission_bypass") && has(s, "flags", "agent_as_root"),
        "{s}"
    );
    assert!(
        s["processes"].as_u64().unwrap() >= 3,
        "agent, its relaunch, the MCP server: {s}"
    );
    assert_eq!(s["cwd"], project.display().to_string());
    let mcp = items(&inv, "mcp_servers")
        .into_iter()
        .find(|m| {
            m["package"] == "@modelcontextprotocol/server-filesystem" && m["session_id"] == s["id"]
        })
        .unwrap_or_else(|| panic!("no MCP server of our session: {inv}"));
    assert_eq!(mcp["session_id"], s["id"], "{mcp}");
    assert_eq!(mcp["pinned"], false);
    assert!(has(mcp, "flags", "unpinned_mcp_server"), "{mcp}");
    assert!(
        ["npx", "npm-exec"].contains(&mcp["launcher"].as_str().unwrap()),
        "{mcp}"
    );
    let text = inv.to_string();
    assert!(!text.contains(prompt), "the prompt is never kept: {text}");
    assert!(
        !text.contains("FAKE-KEY") && !text.contains("fake-key"),
        "{text}"
    );

    // Gemini's connection to its API reaches the collector with the session and flags.
    let f = wait_until(
        "a finding of the Gemini session",
        Duration::from_secs(60),
        || {
            collector.findings(&token).into_iter().find(|f| {
                f["session"]["id"] == s["id"]
                    && f["evidence"]["sni"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|n| n == "generativelanguage.googleapis.com"))
            })
        },
    );
    let f = match f {
        Ok(f) => f,
        Err(e) => {
            stop(&mut cli);
            panic!("{e}");
        }
    };
    assert_eq!(f["session"]["id"], s["id"], "{f}");
    assert_eq!(f["session"]["version"], "0.61.0");
    assert!(
        has(&f, "flags", "permission_bypass") && has(&f, "flags", "agent_as_root"),
        "{f}"
    );
    // The policy acts on the flag: blocked (monitor mode: would be, at the SNI layer).
    assert_eq!(f["verdict"], "blocked", "{f}");
    assert_eq!(f["rule"], "rule:no-bypassing-agents", "{f}");
    assert_eq!(f["action"], "would_block", "{f}");
    assert!(
        f["evidence"]["dns_names"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(f["evidence"]["sni"].as_array().into_iter().flatten())
            .any(|n| n == "generativelanguage.googleapis.com"),
        "{f}"
    );
    // Everything the session contacted is listed; the MCP server's destinations too.
    let inv = wait_inventory(&state, "the session's destinations", 60, |v| {
        let sid = &s["id"];
        items(v, "sessions")
            .iter()
            .any(|x| &x["id"] == sid && has(x, "destinations", "generativelanguage.googleapis.com"))
            // `npx -y` asks the registry (answered inside the namespace): the MCP server's own
            // contact, attributed to it and to the session.
            && items(v, "mcp_servers").iter().any(|m| {
                &m["session_id"] == sid && has(m, "destinations", "registry.npmjs.org")
            })
    });
    // Only now is the CLI stopped: on a fresh machine npx's cold start takes seconds
    // before it asks the registry, and stopping Gemini earlier stops its MCP server too.
    stop(&mut cli);
    let inv = inv.unwrap();
    eprintln!("inventory: {inv:#}");
    // The session is a finding of its own (category ai_agent), judged by the policy on its
    // flags; the registry the MCP server asked is outside the catalogue: the session's
    // finding says so, with the name as evidence.
    let agent_finding = wait_until(
        "the session's own finding with its off-catalogue contact",
        Duration::from_secs(60),
        || {
            collector.findings(&token).into_iter().find(|f| {
                f["category"] == "ai_agent"
                    && f["session"]["id"] == s["id"]
                    && has(f, "flags", "off_catalogue_contact")
            })
        },
    )
    .unwrap();
    let af = &agent_finding;
    assert_eq!(af["service_id"], "agent:gemini-cli", "{af}");
    assert_eq!(af["vendor"], "Google", "{af}");
    assert_eq!(af["verdict"], "blocked", "{af}");
    assert_eq!(af["rule"], "rule:no-bypassing-agents", "{af}");
    assert_eq!(af["action"], "allowed", "nothing refuses a session: {af}");
    assert!(
        has(af, "flags", "permission_bypass") && has(af, "flags", "agent_as_root"),
        "{af}"
    );
    assert!(
        has(&af["evidence"], "dns_names", "registry.npmjs.org"),
        "{af}"
    );
    assert!(
        !has(
            &af["evidence"],
            "dns_names",
            "generativelanguage.googleapis.com"
        ),
        "a catalogued name is not off-catalogue: {af}"
    );
    assert!(
        !marker.exists(),
        "a command from a configuration file was executed"
    );

    // The collector: the fleet-wide inventory, per host, first/last seen and flags.
    let sid = s["id"].as_str().unwrap().to_string();
    let item = wait_until(
        "the session at the collector",
        Duration::from_secs(30),
        || {
            collector
                .get(&token, "/api/v1/inventory?host=sessions-host&kind=session")
                .ok()?
                .as_array()?
                .iter()
                .find(|i| i["id"] == sid.as_str())
                .cloned()
        },
    )
    .unwrap();
    assert_eq!(item["name"], "gemini-cli");
    assert!(has(&item, "flags", "permission_bypass"), "{item}");
    assert!(item["first_seen_ms"].as_i64() <= item["last_seen_ms"].as_i64());
    let flagged = collector
        .get(&token, "/api/v1/inventory?flag=unpinned_mcp_server")
        .unwrap();
    assert!(
        flagged
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "mcp_server" && i["detail"]["session_id"] == sid.as_str()),
        "{flagged}"
    );
    let curl = |path: &str| {
        sh(Command::new("curl").args([
            "-sS",
            "--fail-with-body",
            "--cacert",
            collector.ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{}{path}", collector.url),
        ]))
        .unwrap()
    };
    let csv = curl("/api/v1/exports/inventory.csv?host=sessions-host");
    assert!(
        csv.starts_with("host_id,hostname,kind,id,name,flags"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(&sid) && l.contains("permission_bypass")),
        "{csv}"
    );
    let ocsf: serde_json::Value =
        serde_json::from_str(&curl("/api/v1/exports/inventory.ocsf.json")).unwrap();
    assert!(
        ocsf.as_array()
            .unwrap()
            .iter()
            .any(|e| e["class_uid"] == 2004
                && e["finding_info"]["types"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t == "permission_bypass")),
        "{ocsf}"
    );
    // A host holding an agent token cannot write another host's inventory.
    let agent_token = std::fs::read_to_string(state.join("agent.token")).unwrap();
    let forged = serde_json::json!({"host_id": "another-host", "hostname": "x", "time_ms": 1,
        "sessions": [], "mcp_servers": [], "runtimes": []});
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            collector.ca.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {}", agent_token.trim()),
            "-H",
            "Content-Type: application/json",
            "--data",
            &forged.to_string(),
            &format!("{}/api/v1/inventory", collector.url),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
}

#[test]
fn runtime_listeners_exposed_or_loopback_only() {
    let _g = serial();
    let t = Topology::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = 19400 + (std::process::id() % 300) as u16;
    let collector = Collector::start(&work.path().join("collector"), port).unwrap();
    let token = collector.admin_token.clone().expect("admin token");
    let secret = work.path().join("enroll.secret");
    std::fs::write(&secret, collector.enroll_secret.clone().expect("secret")).unwrap();
    let state = work.path().join("state");
    let config = work.path().join("agent.toml");
    write_config(&config, &state, Some((&collector, &secret))).unwrap();
    // A runtime open to the network is unsanctioned; the rest is tolerated.
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "mode = \"monitor\"\ndefault_verdict = \"tolerated\"\n\n[[rules]]\nid = \"no-open-runtimes\"\n\
         verdict = \"unsanctioned\"\ncategories = [\"self_hosted_runtime\"]\nflags = [\"runtime_exposed\"]\n",
    )
    .unwrap();
    set_policy(&config, &policy).unwrap();
    let _agent = Daemon::agent_run(&config).unwrap();
    let serve = |ns: &str, bind: &str| {
        t.cmd(ns, "python3")
            .args(["-m", "http.server", "--bind", bind, "11434"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut open = serve(&t.remote, "0.0.0.0");
    let mut local = serve(&t.client, "127.0.0.1");
    let (open_pid, local_pid) = (open.id(), local.id());
    // Who talks to the exposed one: curl from the other namespace.
    wait_until(
        "the exposed runtime answers",
        Duration::from_secs(20),
        || {
            t.cmd(&t.client, "curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    &format!("http://{}:11434/", t.remote_v4),
                ])
                .status()
                .ok()
                .filter(|s| s.success())
        },
    )
    .unwrap();
    // A client is recorded once the runtime's listener is known: keep connecting.
    let inv = wait_until(
        "both runtimes with their listeners and a client",
        Duration::from_secs(60),
        || {
            let _ = t
                .cmd(&t.client, "curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    &format!("http://{}:11434/", t.remote_v4),
                ])
                .status();
            let v = shadowai_tests::sessions::inventory(&state)?;
            let rt = items(&v, "runtimes");
            let listening = |pid: u32| {
                rt.iter().any(|r| {
                    r["pid"] == pid && r["listeners"].as_array().is_some_and(|l| !l.is_empty())
                })
            };
            // `ip netns exec` execs python3 in place: the pid is the server's.
            let client = rt.iter().any(|r| {
                r["pid"] == open_pid && r["clients"].as_array().is_some_and(|c| !c.is_empty())
            });
            (listening(open_pid) && listening(local_pid) && client).then_some(v)
        },
    );
    if inv.is_err() {
        eprintln!(
            "last inventory: {:?}",
            shadowai_tests::sessions::inventory(&state)
        );
    }
    // The one-shot command finds the same from /proc alone.
    let cat = shadowai_tests::repo_root().join("rules/catalogue");
    let once = sh(Command::new(bin("shadowai-agent").unwrap())
        .args(["inventory", "--json", "--scan", "--catalogue"])
        .arg(&cat))
    .unwrap();
    let once: serde_json::Value = serde_json::from_str(&once).unwrap();
    let _ = (open.kill(), local.kill(), open.wait(), local.wait());
    for pid in [open_pid, local_pid] {
        assert!(
            items(&once, "runtimes")
                .iter()
                .any(|r| r["pid"] == pid && r["kind"] == "ollama"),
            "{once}"
        );
    }
    let inv = inv.unwrap();
    let rt = items(&inv, "runtimes");
    let o = rt.iter().find(|r| r["pid"] == open_pid).unwrap();
    let l = rt.iter().find(|r| r["pid"] == local_pid).unwrap();
    assert_eq!(o["kind"], "ollama");
    assert_eq!(o["matched_by"], "port");
    assert_eq!(o["listeners"][0]["addr"], "0.0.0.0");
    assert_eq!(o["listeners"][0]["exposed"], true);
    assert!(has(o, "flags", "runtime_exposed"), "{o}");
    assert!(
        o["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().ends_with("curl")),
        "{o}"
    );
    assert_eq!(l["listeners"][0]["addr"], "127.0.0.1");
    assert_eq!(l["listeners"][0]["exposed"], false);
    assert!(!has(l, "flags", "runtime_exposed"), "{l}");

    // Each runtime is a finding of its own at the collector, told apart by its bind
    // address and first-seen time (the inventory's, for this test's processes): the
    // exposed one flagged and judged by the rule scoped on the flag, the other not.
    let finding_of = |r: &serde_json::Value, addr: &str| {
        let (first, addr) = (r["first_seen_ms"].clone(), addr.to_string());
        let token = token.clone();
        let collector = &collector;
        wait_until(
            &format!("the runtime finding for the listener on {addr}"),
            Duration::from_secs(60),
            move || {
                collector.findings(&token).into_iter().find(|f| {
                    f["service_id"] == "runtime:ollama"
                        && f["first_seen_ms"] == first
                        && has(&f["evidence"], "ips", &addr)
                })
            },
        )
    };
    let of = finding_of(o, "0.0.0.0").unwrap();
    assert_eq!(of["category"], "self_hosted_runtime", "{of}");
    assert!(has(&of, "flags", "runtime_exposed"), "{of}");
    assert_eq!(of["verdict"], "unsanctioned", "{of}");
    assert_eq!(of["rule"], "rule:no-open-runtimes", "{of}");
    assert_eq!(of["action"], "allowed", "nothing refuses a listener: {of}");
    assert!(
        of["evidence"]["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == 11434)),
        "{of}"
    );
    assert!(
        of["process"]["exe"]
            .as_str()
            .is_some_and(|e| e.contains("python3")),
        "the listening process: {of}"
    );
    assert_eq!(of["user"], o["user"], "{of}");
    let lf = finding_of(l, "127.0.0.1").unwrap();
    assert_eq!(lf["category"], "self_hosted_runtime", "{lf}");
    assert!(!has(&lf, "flags", "runtime_exposed"), "{lf}");
    assert_eq!(lf["verdict"], "tolerated", "{lf}");
    assert_eq!(lf["rule"], "default", "{lf}");
}
