//! Test helpers: findings, a throwaway PostgreSQL server, a collector process.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test; not every test binary uses every helper"
)]

pub mod binary;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use shadowai_api::{Action, Evidence, Finding, ProcessRef, Verdict};

pub fn finding(
    id: &str,
    host: &str,
    service: &str,
    verdict: Verdict,
    user: &str,
    start_ms: i64,
) -> Finding {
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
        host_id: host.to_owned(),
        hostname: format!("{host}.example"),
        window_start_ms: start_ms,
        window_end_ms: start_ms + 60_000,
        service_id: service.to_owned(),
        service_name: format!("{service} name"),
        vendor: "Vendor".to_owned(),
        category: "chat".to_owned(),
        risk_score: 70,
        verdict,
        action: if verdict == Verdict::Blocked {
            Action::Blocked
        } else {
            Action::Allowed
        },
        rule: "catalogue".to_owned(),
        process: ProcessRef {
            exe: "/usr/bin/python3".to_owned(),
            name: "python3".to_owned(),
            exe_sha256: Some("ab".repeat(32)),
            container_id: Some("c0ffee".to_owned()),
            systemd_unit: None,
        },
        user: user.to_owned(),
        uid: 1000,
        count: 5,
        first_seen_ms: start_ms + 1,
        last_seen_ms: start_ms + 59_000,
        evidence: Evidence {
            dns_names: vec!["api.example.ai".to_owned()],
            sni: vec!["api.example.ai".to_owned()],
            ips: vec!["192.0.2.1".to_owned()],
            ports: vec![443],
            protocols: vec!["tls".to_owned()],
        },
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run .ci/deps/collector.sh (Debian's postgresql)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("{name} not found under /usr/lib/postgresql/*/bin"))
}

fn is_root() -> bool {
    // SAFETY-free check: root's home directory convention is unreliable; ask `id -u`.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL binary as the `postgres` user when we are root (initdb refuses root).
fn pg_cmd(name: &str) -> Command {
    let bin = pg_bin(name);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// A PostgreSQL server in a temporary directory on a loopback port, stopped on drop.
pub struct PgServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// PEM of the server's self-signed certificate when started with TLS.
    pub ca: Option<PathBuf>,
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with(false)
    }

    /// A server that requires TLS (`hostssl` only) with a self-signed certificate for
    /// `127.0.0.1`, returned in `ca`.
    pub fn start_tls() -> PgServer {
        PgServer::start_with(true)
    }

    fn start_with(tls: bool) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("shadowai-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "chown of the PostgreSQL temp dir failed");
        }
        let data = dir.path().join("data");
        let out = pg_cmd("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut extra = String::new();
        let mut ca = None;
        if tls {
            let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
            let cert = dir.path().join("server.crt");
            let key = dir.path().join("server.key");
            std::fs::write(&cert, ck.cert.pem()).unwrap();
            std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                let st = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&cert)
                    .arg(&key)
                    .status()
                    .unwrap();
                assert!(st.success());
            }
            // Only TLS connections from loopback are accepted.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
            )
            .unwrap();
            extra = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            );
            ca = Some(cert);
        }
        // A port picked by bind-and-release can be taken by someone else before the server
        // binds it: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB{extra}",
                dir.path().display()
            );
            let out = pg_cmd("pg_ctl")
                .args(["-w", "-t", "60", "-l"])
                .arg(dir.path().join("log"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &opts, "start"])
                .output()
                .unwrap();
            if out.status.success() {
                return PgServer { dir, port, ca };
            }
            last = format!(
                "{} {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
            );
        }
        panic!("pg_ctl start failed three times: {last}");
    }

    pub fn conn(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// Creates a fresh database.
    pub fn create_db(&self, name: &str) -> String {
        // The sync client runs its own runtime: keep it off any async test's threads.
        let admin = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.path().display(),
            self.port
        );
        let name2 = name.to_owned();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
            c.batch_execute(&format!("CREATE DATABASE {name2}"))
                .unwrap();
        })
        .join()
        .unwrap();
        self.conn(name)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = pg_cmd("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
    }
}

pub fn data_dir(p: &Path) -> PathBuf {
    p.to_path_buf()
}

/// Runs `f` on a plain thread: the PostgreSQL client blocks on its own runtime, which
/// panics on a tokio worker thread.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// An in-process collector on a loopback port (plain HTTP unless `tls`), stopped on drop.
pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub secret: String,
    pub cert: Option<PathBuf>,
    pub state: shadowai_collector::server::SharedState,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The repository's catalogue (what the collector checks proposals and bundles against).
pub fn catalogue_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue")
}

/// The repository's catalogue, loaded once per test binary.
pub fn catalogue() -> &'static shadowai_rules::Catalogue {
    static CAT: std::sync::OnceLock<shadowai_rules::Catalogue> = std::sync::OnceLock::new();
    CAT.get_or_init(|| shadowai_rules::Catalogue::load_dir(&catalogue_dir()).unwrap())
}

pub async fn start_server(
    tls: bool,
    tweak: impl FnOnce(&mut shadowai_collector::config::Config),
) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = shadowai_collector::config::Config::minimal(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("data"),
    );
    cfg.insecure_http = !tls;
    cfg.limits.rate_per_sec = 10_000.0;
    cfg.limits.rate_burst = 10_000.0;
    cfg.limits.ip_rate_per_sec = 10_000.0;
    cfg.limits.ip_rate_burst = 10_000.0;
    cfg.catalogue = catalogue_dir();
    tweak(&mut cfg);
    let cfg_secret = cfg.enrollment_secret.clone();
    let p = shadowai_collector::app::prepare(cfg).await.unwrap();
    let url = p
        .url()
        .replace("127.0.0.1", if tls { "localhost" } else { "127.0.0.1" });
    let admin = p.first.admin_token.clone().unwrap();
    let secret = p.first.enrollment_secret.clone().or(cfg_secret).unwrap();
    let cert = p.cert.clone();
    let state = p.state.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(p.serve(async move {
        let _ = rx.await;
    }));
    TestServer {
        url,
        admin,
        secret,
        cert,
        state,
        dir,
        stop: Some(tx),
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl TestServer {
    pub fn client(&self, token: Option<&str>) -> shadowai_api::client::Client {
        let mut b = shadowai_api::client::Client::builder(&self.url);
        if let Some(c) = &self.cert {
            b = b.ca_pem(&std::fs::read(c).unwrap());
        }
        if let Some(t) = token {
            b = b.token(t);
        }
        b.build().unwrap()
    }

    /// A person token with `role`.
    pub fn person(&self, name: &str, role: shadowai_api::Role) -> String {
        let t = shadowai_collector::server::auth::new_secret("sau_").unwrap();
        let h = shadowai_collector::server::auth::hash_secret(&t);
        off_runtime(|| self.state.store.create_token("test", name, role, &h, 1)).unwrap();
        t
    }

    pub async fn enroll(&self, host: &str, group: Option<&str>) -> (String, String) {
        let r = self
            .client(None)
            .enroll(&shadowai_api::EnrollRequest {
                secret: self.secret.clone(),
                host_id: host.to_owned(),
                hostname: format!("{host}.example"),
                group: group.map(str::to_owned),
                agent_version: "0.1.0".to_owned(),
                host_key: host_key(host),
            })
            .await
            .unwrap();
        (r.agent_id, r.token)
    }

    pub fn count(&self) -> u64 {
        off_runtime(|| self.state.store.count_findings()).unwrap()
    }

    /// The server's `/metrics` text (plain HTTP test servers).
    pub async fn metrics_text(&self) -> String {
        raw()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of the sample `name` (with its labels, if any) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

/// A stable host key for a test host (64 hex digits, as the agent makes them).
pub fn host_key(host: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("{host}-key").as_bytes()))
}

/// A raw HTTP client for hostile requests (plain HTTP test servers only).
pub fn raw() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// Enrolls `host` with agent id `agent` straight into a store (no server): the enrollment
/// key `secret` is seeded first, and the outcome must be `Enrolled`.
pub fn enroll_in_store(
    s: &dyn shadowai_collector::store::Store,
    secret: &str,
    agent: &str,
    host: &str,
    group: Option<&str>,
    now_ms: i64,
) {
    use shadowai_collector::store::{EnrollAttempt, EnrollOutcome, NewEnrollmentKey};
    s.seed_enrollment_key(
        &NewEnrollmentKey {
            key_hash: format!("{secret}-secret"),
            note: secret.into(),
            expires_ms: None,
            max_uses: None,
        },
        now_ms,
    )
    .unwrap();
    let out = s
        .enroll_host(
            &EnrollAttempt {
                secret_hash: format!("{secret}-secret"),
                host_id: host.into(),
                hostname: format!("{host}.example"),
                group: group.map(Into::into),
                agent_version: "0.1.0".into(),
                key_sha256: format!("key-{host}"),
                new_agent_id: agent.into(),
                token_hash: format!("hash-{agent}"),
                max_hosts: 1000,
                peer: "127.0.0.1".into(),
            },
            now_ms,
        )
        .unwrap();
    assert!(matches!(out, EnrollOutcome::Enrolled { .. }), "{out:?}");
}
