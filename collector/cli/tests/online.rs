//! The `shadowai` binary against a real `shadowai-collector` on a loopback port: login file,
//! reports, exports, proposals and approvals by two people, bundles and staged rollouts,
//! agents, the audit export and its offline verification, and the exit codes on refusals.
//!
//! Needs the collector binary next to this crate's: `cargo build --bins` (cargo xtask test
//! does it before the tests).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shadowai_api::client::Client;
use shadowai_api::wire::{EnrollRequest, IngestBatch};
use shadowai_api::{Action, Evidence, Finding, ProcessRef, Verdict};

fn collector_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("shadowai-collector");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` before this test (cargo xtask test does)",
        bin.display()
    );
    bin
}

fn secret_line(data: &Path, args: &[&str], prefix: &str) -> String {
    let out = Command::new(collector_bin())
        .args(args)
        .args(["--data", data.to_str().unwrap()])
        .env("SHADOWAI_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap()
        .to_owned()
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    url: String,
    config: PathBuf,
}

impl Env {
    /// Runs `shadowai ARGS` (whitespace-separated; the paths used here have no spaces) with the
    /// login file, and `token` (if any) overriding it.
    fn run(&self, token: Option<&str>, args: &str) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shadowai"));
        cmd.args(args.split_whitespace())
            .env("SHADOWAI_CONFIG", &self.config)
            .env_remove("SHADOWAI_URL")
            .env_remove("SHADOWAI_CA")
            .env_remove("SHADOWAI_TOKEN");
        if let Some(t) = token {
            cmd.env("SHADOWAI_TOKEN", t);
        }
        cmd.output().unwrap()
    }

    fn ok(&self, token: Option<&str>, args: &str) -> String {
        let out = self.run(token, args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "shadowai {args} failed ({}): {stdout}{stderr}",
            out.status
        );
        stdout.into_owned()
    }

    fn json(&self, token: Option<&str>, args: &str) -> Value {
        serde_json::from_str(&self.ok(token, args)).unwrap()
    }

    fn fails(&self, token: Option<&str>, args: &str, code: i32, message: &str) {
        let out = self.run(token, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "shadowai {args}: {stderr}");
        assert!(
            stderr.contains(message),
            "shadowai {args}: expected {message:?} in {stderr}"
        );
    }
}

fn finding(i: usize, host: &str, service: &str, verdict: Verdict, now: i64) -> Finding {
    Finding {
        layer: None,
        policy_version: None,
        bytes_out: None,
        bytes_in: None,
        naming: None,
        session: None,
        flags: Vec::new(),
        truncated: false,
        id: format!("{host}-{service}-{i}"),
        host_id: host.into(),
        hostname: host.into(),
        window_start_ms: now - 3_600_000 - i as i64 * 60_000,
        window_end_ms: now - 3_540_000 - i as i64 * 60_000,
        service_id: service.into(),
        service_name: service.into(),
        vendor: "v".into(),
        category: "chat".into(),
        risk_score: 80,
        verdict,
        action: Action::Allowed,
        rule: format!("catalogue:{service}"),
        process: ProcessRef {
            exe: "/usr/bin/python3".into(),
            name: "python3".into(),
            ..Default::default()
        },
        user: "alice".into(),
        uid: 1000,
        count: 2,
        first_seen_ms: now - 3_600_000,
        last_seen_ms: now - 3_550_000,
        evidence: Evidence {
            sni: vec![format!("api.{service}.example")],
            ..Default::default()
        },
    }
}

#[test]
fn cli_against_a_real_collector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let alice = secret_line(
        &data,
        &["token", "create", "--role", "admin", "--name", "alice"],
        "sau_",
    );
    let bob = secret_line(
        &data,
        &["token", "create", "--role", "approver", "--name", "bob"],
        "sau_",
    );
    // The new secret goes to DATA/enroll.secret (0600), never to stdout.
    secret_line(
        &data,
        &["rotate-enrollment-secret"],
        "new enrollment secret written to",
    );
    let enroll_secret = std::fs::read_to_string(data.join("enroll.secret"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(enroll_secret.starts_with("sae_"), "{enroll_secret}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = Server(
        Command::new(collector_bin())
            .args(["serve", "--data", data.to_str().unwrap(), "--insecure-http"])
            .arg("--catalogue")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/catalogue"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SHADOWAI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Seed: one agent, 5 unsanctioned + 3 sanctioned findings.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let agent = rt.block_on(async {
        let anon = Client::builder(&url).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while anon.healthz().await.is_err() {
            assert!(Instant::now() < deadline, "collector did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let e = anon
            .enroll(&EnrollRequest {
                secret: enroll_secret.clone(),
                host_id: "web-01".into(),
                hostname: "web-01".into(),
                group: Some("canary".into()),
                agent_version: "0.1.0".into(),
                host_key: "0e".repeat(32),
            })
            .await
            .unwrap();
        let agent = anon.with_token(e.token);
        // soc: deepseek's findings carry the catalogue's score, so its factors explain it.
        let mut findings: Vec<Finding> = (0..5)
            .map(|i| {
                let mut f = finding(i, "web-01", "deepseek", Verdict::Unsanctioned, now);
                f.risk_score = deepseek_risk().score;
                f
            })
            .collect();
        findings.extend(
            (0..3).map(|i| finding(i, "web-01", "github-copilot", Verdict::Sanctioned, now)),
        );
        agent
            .ingest(&IngestBatch {
                batch_id: "b1".into(),
                findings,
            })
            .await
            .unwrap();
        (agent, e.agent_id)
    });

    let env = Env {
        url: url.clone(),
        config: dir.path().join("home/.config/shadowai/cli.toml"),
    };
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    // login: checks the token, writes the file 0600; a bad token writes nothing (exit 4).
    env.fails(
        Some("sau_wrong"),
        &format!("login --url {}", env.url),
        4,
        "401",
    );
    assert!(!env.config.exists());
    let out = env.ok(Some(&alice), &format!("login --url {}", env.url));
    assert!(out.contains("logged in as alice (admin)"), "{out}");
    let mode = std::fs::metadata(&env.config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(env.ok(None, "whoami").trim(), "alice (admin)");

    // Reports.
    let page = env.json(None, "findings --verdict unsanctioned --json");
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    let table = env.ok(None, "findings --service github-copilot");
    assert_eq!(
        table.lines().take_while(|l| !l.is_empty()).count(),
        4,
        "header + 3 rows, then the risk legend:\n{table}"
    );
    assert!(table.starts_with("LAST SEEN"));
    assert_eq!(
        env.json(None, "services --json --since 7d")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(env.ok(None, "services").contains("deepseek"));
    assert!(env.ok(None, "trend").contains("deepseek"));
    // Risk with its factors wherever a score is shown (issue 15): findings, services, exports.
    let risk = deepseek_risk();
    let first = &risk.factors[0];
    let factor = format!(
        "{} {} +{}",
        first.factor.replace('_', " "),
        if first.value.is_empty() {
            "none"
        } else {
            &first.value
        },
        first.points
    );
    let table = env.ok(None, "findings --service deepseek");
    assert!(
        table.lines().next().unwrap().ends_with("RISK")
            && table.contains(&format!("{} {}", risk.score, risk.band))
            && table.contains(&format!(
                "  deepseek: {}/100 ({}): {factor}",
                risk.score, risk.band
            ))
            && table.contains("catalogue:deepseek"),
        "{factor}:\n{table}"
    );
    let table = env.ok(None, "findings --service github-copilot");
    let copilot_scores_80 = {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/catalogue");
        let cat = shadowai_rules::Catalogue::load_dir(&dir).unwrap();
        cat.service("github-copilot")
            .is_some_and(|s| s.risk.plans().iter().any(|p| p.score == 80))
    };
    assert!(
        copilot_scores_80
            || table.contains("so its factors do not explain this score")
            || table.contains("not in the collector's catalogue"),
        "a score the catalogue does not give is said so:\n{table}"
    );
    let services = env.ok(None, "services");
    assert!(
        services.contains(&format!("  deepseek: {}/100", risk.score)) && services.contains(&factor),
        "{services}"
    );
    assert!(
        services.contains("  github-copilot: 80/100 (severe)"),
        "{services}"
    );
    let page = env.json(None, "findings --service deepseek --json");
    assert_eq!(page["risk"][0]["service_id"], "deepseek", "{page}");
    // Who, fleet-wide (issue 15): group-by user with paging, uploaders, partial filters, alerts.
    let who = env.json(None, "who --by host --json --limit 1");
    assert_eq!(who["items"].as_array().unwrap().len(), 1);
    assert_eq!(who["by"], "host");
    let table = env.ok(None, "who --by user --user-contains LIC");
    assert!(
        table.starts_with("KEY") && table.contains("alice"),
        "{table}"
    );
    assert!(env.ok(None, "who --by user --uploads").contains("alice"));
    let alerts = env.json(None, "alerts --json");
    assert!(!alerts["items"].as_array().unwrap().is_empty(), "{alerts}");
    assert!(env.ok(None, "alerts").contains("new_in_fleet"));
    env.fails(
        None,
        "who --by user --uploads --verdict sanctioned",
        5,
        "unsanctioned or blocked",
    );

    // Exports.
    env.ok(
        None,
        &format!(
            "export --format csv --verdict unsanctioned -o {}",
            path("f.csv")
        ),
    );
    let csv = std::fs::read_to_string(path("f.csv")).unwrap();
    assert!(csv.starts_with("id,host_id,hostname,"));
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("risk_level,risk_plan,risk_factors,risk_details")
    );
    let cell = format!("{}={}:+{}", first.factor, first.value, first.points);
    assert!(
        csv.lines().skip(1).all(|l| l.contains(&cell)),
        "{cell}:\n{csv}"
    );
    assert_eq!(csv.trim().lines().count(), 6);
    let ocsf = env.json(None, "export --format ocsf");
    let ocsf = ocsf.as_array().unwrap();
    assert_eq!(ocsf.len(), 8);
    assert!(ocsf.iter().all(|o| o["class_uid"] == 2004));
    let d = ocsf
        .iter()
        .find(|o| o["resources"][0]["uid"] == "deepseek")
        .unwrap();
    assert_eq!(d["risk_score"], risk.score);
    assert!(
        d["risk_level_id"]
            .as_u64()
            .is_some_and(|l| (1..=4).contains(&l))
    );
    assert!(d["risk_details"].as_str().unwrap().contains(&factor), "{d}");
    assert_eq!(
        d["unmapped"]["shadowai"]["risk"]["factors"][0]["factor"],
        first.factor
    );
    assert_eq!(d["unmapped"]["shadowai"]["rule"], "catalogue:deepseek");

    // Alice proposes a fleet-wide block; she cannot approve it herself (exit 4).
    let p = env.json(
        None,
        "rules propose --service deepseek --verdict blocked --reason residency --json",
    );
    assert_eq!(p["status"], "pending");
    let id = p["id"].as_i64().unwrap();
    assert!(
        env.ok(None, "rules proposals --status pending")
            .contains("deepseek")
    );
    env.fails(None, &format!("rules approve {id}"), 4, "403");
    env.fails(
        None,
        "rules proposals --status maybe",
        1,
        "expected pending",
    );

    // A real signed bundle that blocks the service fleet-wide, made with the mounted local
    // rules tools: the collector refuses it while the block is not approved.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let catalogue = repo.join("rules/catalogue");
    std::fs::write(
        path("policy.toml"),
        "mode = \"enforce\"\ndefault_verdict = \"unsanctioned\"\n\n[[rules]]\n\
         id = \"block-deepseek\"\nverdict = \"blocked\"\nservices = [\"deepseek\"]\n",
    )
    .unwrap();
    env.ok(
        None,
        &format!(
            "rules keygen --secret {} --public {}",
            path("k.sec"),
            path("k.pub")
        ),
    );
    env.ok(
        None,
        &format!(
            "rules compile --catalogue {} --policy {} --version 1.5.0 --key {} -o {}",
            catalogue.display(),
            path("policy.toml"),
            path("k.sec"),
            path("bundle.json")
        ),
    );
    env.ok(
        None,
        &format!(
            "rules verify {} --pubkey {}",
            path("bundle.json"),
            path("k.pub")
        ),
    );
    let upload = format!("rules upload {} --version 1.5.0", path("bundle.json"));
    env.fails(None, &upload, 4, "without an approval by a second person");

    // Bob approves; approving twice is a conflict (exit 5).
    let approved = env.ok(Some(&bob), &format!("rules approve {id} --note ok"));
    assert!(
        approved.contains("is approved (decided by bob)"),
        "{approved}"
    );
    env.fails(Some(&bob), &format!("rules approve {id}"), 5, "409");
    let policy = env.json(None, "rules policy --json");
    assert_eq!(
        (
            policy[0]["service_id"].as_str(),
            policy[0]["verdict"].as_str()
        ),
        (Some("deepseek"), Some("blocked"))
    );

    // The bundle is in enforce mode: switching from monitor (nothing rolled out yet) is a
    // decision of its own, refused until a second person approves it.
    env.fails(None, &upload, 4, "propose `mode:enforce`");
    let m = env.json(
        None,
        "rules propose --service mode:enforce --verdict blocked --reason go-live --json",
    );
    assert_eq!(m["status"], "pending");
    env.ok(Some(&bob), &format!("rules approve {}", m["id"]));

    // Now the bundle is accepted, rolled out in stages, and rolled back.
    assert!(env.ok(None, &upload).contains("uploaded bundle 1.5.0"));
    assert!(env.ok(None, "rules bundles").contains("1.5.0"));
    let started = env.ok(
        None,
        "rules rollout start --bundle-version 1.5.0 --canary-group canary",
    );
    assert!(started.contains("stage canary"), "{started}");
    let rid = started
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    let advanced = env.ok(None, &format!("rules rollout advance {rid} --percent 25"));
    assert!(advanced.contains("stage percent 25%"), "{advanced}");
    env.fails(
        None,
        "rules rollout start --bundle-version 1.5.0 --canary-group canary",
        5,
        "409",
    );
    env.fails(Some(&bob), &format!("rules rollback {rid}"), 4, "403");
    let rolled_back = env.ok(None, &format!("rules rollback {rid} --reason bad-canary"));
    assert!(rolled_back.contains("stage rolled_back"), "{rolled_back}");
    assert!(env.ok(None, "rules rollout list").contains("rolled_back"));

    // Publish: the policy in force (Bob's approved block), composed by the collector, with
    // its catalogue, signed here with the local key, uploaded, canary rollout started.
    let publish = format!(
        "rules publish --key {} --mode enforce --canary-group canary",
        path("k.sec")
    );
    let published = env.ok(None, &publish);
    assert!(published.contains("published bundle 1.6.0"), "{published}");
    assert!(
        published.contains("to canary group \"canary\""),
        "{published}"
    );
    assert!(env.ok(None, "rules bundles").contains("1.6.0"));
    let rollout_of = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("rollout "))
            .and_then(|l| l.split(':').next())
            .unwrap()
            .to_owned()
    };
    env.ok(
        None,
        &format!(
            "rules rollout advance {} --percent 100",
            rollout_of(&published)
        ),
    );
    // A later, non-blocking change goes out to the canary…
    env.ok(
        None,
        "rules propose --service category:ai_search --verdict tolerated --reason pilot",
    );
    let second = env.ok(None, &publish);
    assert!(second.contains("published bundle 1.7.0"), "{second}");

    // …and is rolled back for real: the content of 1.6.0 signed again as 1.8.0 and rolled
    // out to all. An agent that runs 1.7.0 accepts it (higher version) and gets 1.6.0's
    // policy back.
    let back = env.ok(
        None,
        &format!(
            "rules rollback {} --key {} --reason bad",
            rollout_of(&second),
            path("k.sec")
        ),
    );
    assert!(
        back.contains("re-published the content of 1.6.0 as 1.8.0"),
        "{back}"
    );
    let fetched = rt.block_on(agent.0.fetch_bundle(None)).unwrap();
    let shadowai_api::client::BundleFetch::Bundle { bytes, version, .. } = fetched else {
        panic!("the agent gets the rollback bundle: {fetched:?}")
    };
    assert_eq!(version, "1.8.0");
    std::fs::write(path("rollback.json"), &bytes).unwrap();
    let verified = env.ok(
        None,
        &format!(
            "rules verify {} --pubkey {} --in-use-version 1.7.0",
            path("rollback.json"),
            path("k.pub")
        ),
    );
    assert!(verified.starts_with("OK"), "{verified}");
    let body = shadowai_rules::bundle::read_unverified(&bytes).unwrap();
    let ids: Vec<&str> = body.policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["proposal-1"],
        "the 1.6.0 content: only the approved block"
    );

    // Agents: list, rotate a token (the old one dies, the host key brings a new one),
    // revoke (the token is refused from then on), release (the host may enroll again).
    let agents = env.json(None, "agents list --json");
    assert_eq!(agents[0]["hostname"], "web-01");
    env.fails(
        Some(&bob),
        &format!("agents rotate-token {}", agent.1),
        4,
        "403",
    );
    let rotated = env.ok(
        None,
        &format!("agents rotate-token {} --reason leak", agent.1),
    );
    assert!(rotated.contains("rotated"), "{rotated}");
    let stale = rt.block_on(agent.0.heartbeat(&heartbeat()));
    assert_eq!(stale.unwrap_err().status(), Some(401));
    let anon = Client::builder(&url).build().unwrap();
    let renewed = rt
        .block_on(anon.reenroll(&shadowai_api::wire::ReenrollRequest {
            host_id: "web-01".into(),
            host_key: "0e".repeat(32),
            agent_version: "0.1.0".into(),
        }))
        .unwrap();
    assert_eq!(renewed.agent_id, agent.1, "same agent, new token");
    let agent = (anon.with_token(renewed.token), agent.1);
    rt.block_on(agent.0.heartbeat(&heartbeat())).unwrap();

    // Enrollment keys: a single-use secret written to a 0600 file enrolls one host only;
    // a revoked key enrolls nobody.
    let created = env.ok(
        None,
        &format!(
            "enrollment-keys create --note lab --max-uses 1 --ttl-secs 3600 --out {}",
            path("lab.secret")
        ),
    );
    assert!(created.contains("secret written to"), "{created}");
    let lab_mode = std::fs::metadata(path("lab.secret"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(lab_mode & 0o777, 0o600);
    let lab = std::fs::read_to_string(path("lab.secret"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(lab.starts_with("sae_"), "{lab}");
    let enroll_with = |secret: &str, host: &str| {
        rt.block_on(anon.enroll(&EnrollRequest {
            secret: secret.to_owned(),
            host_id: host.into(),
            hostname: host.into(),
            group: None,
            agent_version: "0.1.0".into(),
            host_key: "1f".repeat(32),
        }))
    };
    enroll_with(&lab, "lab-01").unwrap();
    assert_eq!(
        enroll_with(&lab, "lab-02").unwrap_err().status(),
        Some(401),
        "single use"
    );
    let keys = env.json(None, "enrollment-keys list --json");
    let lab_key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["note"] == "lab")
        .unwrap();
    assert_eq!(lab_key["uses"], 1);
    assert_eq!(lab_key["created_by"], "alice");
    let listed = env.ok(None, "enrollment-keys list");
    assert!(
        listed.contains("1/1") && listed.contains("alice"),
        "{listed}"
    );
    let more = env.ok(None, "enrollment-keys create --note spare");
    let spare = more.trim().to_owned();
    assert!(
        spare.starts_with("sae_"),
        "the secret alone on stdout: {more}"
    );
    let spare_id = env
        .json(None, "enrollment-keys list --json")
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["note"] == "spare")
        .unwrap()["id"]
        .clone();
    assert!(
        env.ok(None, &format!("enrollment-keys revoke {spare_id}"))
            .contains("revoked enrollment key")
    );
    assert_eq!(
        enroll_with(&spare, "lab-03").unwrap_err().status(),
        Some(401)
    );
    assert!(
        env.ok(None, &format!("agents revoke {} --reason gone", agent.1))
            .contains("revoked")
    );
    assert!(env.ok(None, "agents list").contains("revoked"));
    let refused = rt.block_on(agent.0.ingest(&IngestBatch {
        batch_id: "b2".into(),
        findings: vec![],
    }));
    assert_eq!(refused.unwrap_err().status(), Some(401));
    // Revoked: the host cannot enroll again until an admin releases it.
    let again = || {
        rt.block_on(anon.enroll(&EnrollRequest {
            secret: enroll_secret.clone(),
            host_id: "web-01".into(),
            hostname: "web-01".into(),
            group: None,
            agent_version: "0.1.0".into(),
            host_key: "0e".repeat(32),
        }))
    };
    assert!(again().is_err(), "a revoked host stays out");
    let released = env.ok(
        None,
        &format!("agents release {} --reason rebuilt", agent.1),
    );
    assert!(released.contains("released host web-01"), "{released}");
    again().unwrap();

    // Audit: export (verified on the way, its head signed with the admin's key and kept),
    // list, verify offline; a changed approver fails at that entry with exit code 7.
    let key = format!("--key {}", path("k.sec"));
    let out = env.run(
        None,
        &format!("audit export -o {} {key}", path("audit.json")),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("audit log verified"), "{stderr}");
    assert!(stderr.contains("signed (key"), "{stderr}");
    let listed = env.ok(Some(&bob), "audit list");
    for action in [
        "proposal.create",
        "proposal.approve",
        "bundle.upload",
        "rollout.rollback",
        "agent.revoke",
        "agent.rotate_token",
        "agent.release",
        "enrollment_key.create",
        "enrollment_key.revoke",
    ] {
        assert!(
            listed.contains(action),
            "audit list lacks {action}:\n{listed}"
        );
    }
    assert!(
        env.ok(None, &format!("audit verify {}", path("audit.json")))
            .contains("verified")
    );
    let text = std::fs::read_to_string(path("audit.json")).unwrap();
    let mut entries: Vec<Value> = serde_json::from_str(&text).unwrap();
    let cps = env.config.with_file_name("audit-checkpoints.jsonl");
    let signed = format!(
        "audit verify {} --checkpoints {} --trusted-keys {}",
        path("audit.json"),
        cps.display(),
        path("k.pub")
    );
    assert!(
        env.ok(None, &signed)
            .contains("matches 1 signed checkpoint")
    );
    // The head can also be given explicitly.
    let head = entries.last().unwrap();
    let head = format!("{}:{}", head["seq"], head["hash"].as_str().unwrap());
    let anchored = format!("audit verify {} --expect-head {head}", path("audit.json"));
    assert!(env.ok(None, &anchored).contains("matches 1 expected head"));
    let cut = entries.len() - 2;
    let short = serde_json::to_vec(&entries[..cut]).unwrap();
    std::fs::write(path("short.json"), short).unwrap();
    let truncated = format!("audit verify {} --expect-head {head}", path("short.json"));
    env.fails(None, &truncated, 7, "truncated");

    // Someone with database access rewrites the log: an approval is re-attributed and every
    // later hash recomputed, so the chain verifies on its own — not against the checkpoint.
    let db = data.join("collector.db");
    let sqlite = |sql: &str, rows: &str| {
        let script = format!(
            "import json, sqlite3, sys; c = sqlite3.connect({:?}); {sql}; c.commit()",
            db.display().to_string()
        );
        let st = Command::new("python3")
            .args(["-c", &script, rows])
            .status()
            .unwrap();
        assert!(st.success());
    };
    let approve = entries
        .iter()
        .position(|e| e["action"] == "proposal.approve")
        .unwrap();
    let mut forged: Vec<shadowai_api::audit::AuditEntry> =
        serde_json::from_value(Value::from(entries.clone())).unwrap();
    forged[approve].actor = "mallory".into();
    for i in approve..forged.len() {
        let prev = (i > 0).then(|| (forged[i - 1].hash.clone(), forged[i - 1].seq));
        let e = &forged[i];
        forged[i] = shadowai_api::audit::AuditEntry::next(
            prev.as_ref().map(|(h, s)| (h.as_str(), *s)),
            e.ts_ms,
            &e.actor,
            &e.action,
            &e.target,
            e.details.clone(),
        );
    }
    shadowai_api::audit::verify(&forged).unwrap();
    let rows: Vec<Value> = forged[approve..]
        .iter()
        .map(|e| serde_json::json!([e.actor, e.prev_hash, e.hash, e.seq]))
        .collect();
    sqlite(
        "c.execute('DROP TRIGGER audit_no_update'); \
         c.executemany('UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?', json.loads(sys.argv[1]))",
        &Value::from(rows).to_string(),
    );
    env.fails(
        None,
        &format!("audit export -o {} {key}", path("again.json")),
        7,
        "was rewritten",
    );
    assert!(!path_exists(&path("again.json")));
    // Editing the local checkpoint to match the rewrite breaks its signature.
    let line = std::fs::read_to_string(&cps).unwrap();
    let edited = line.replace(
        entries.last().unwrap()["hash"].as_str().unwrap(),
        &forged.last().unwrap().hash,
    );
    assert_ne!(line, edited);
    std::fs::write(&cps, edited).unwrap();
    env.fails(
        None,
        &format!("audit export -o {} {key}", path("again.json")),
        7,
        "the signature does not match the line: it was edited",
    );
    env.fails(None, &signed, 7, "the signature does not match");
    std::fs::write(&cps, &line).unwrap();

    // Someone cuts the log's tail (dropping the append-only trigger): the shorter chain still
    // verifies on its own, but not against the signed checkpoint.
    sqlite(
        &format!(
            "c.execute('DROP TRIGGER audit_no_delete'); c.execute('DELETE FROM audit WHERE seq > {cut}')"
        ),
        "",
    );
    env.fails(
        None,
        &format!("audit export -o {} {key}", path("again.json")),
        7,
        "truncated",
    );
    assert!(!path_exists(&path("again.json")));
    let at = entries
        .iter()
        .position(|e| e["action"] == "proposal.approve")
        .unwrap();
    entries[at]["actor"] = Value::from("alice");
    std::fs::write(path("audit.json"), serde_json::to_vec(&entries).unwrap()).unwrap();
    env.fails(
        None,
        &format!("audit verify {}", path("audit.json")),
        7,
        &format!("entry #{}", at + 1),
    );

    // After logout, commands need a login again.
    assert!(env.ok(None, "logout").contains("removed"));
    env.fails(None, "whoami", 3, "not logged in");
}

/// The repository catalogue's top-level risk of deepseek (what the collector explains with).
fn deepseek_risk() -> shadowai_rules::catalogue::RiskBreakdown {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/catalogue");
    let cat = shadowai_rules::Catalogue::load_dir(&dir).unwrap();
    cat.service("deepseek").unwrap().risk.breakdown()
}

fn heartbeat() -> shadowai_api::wire::Heartbeat {
    shadowai_api::wire::Heartbeat {
        agent_version: "0.1.0".into(),
        bundle_version: None,
        mode: shadowai_api::wire::AgentMode::Monitor,
        lost_events: 0,
        group: None,
        bundle_error: None,
        pipeline: None,
    }
}

fn path_exists(p: &str) -> bool {
    Path::new(p).exists()
}
