//! The real `shadowai-collector` binary on a loopback port, with a config file of the test's
//! limits and, optionally, a lower descriptor limit; killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const SECRET: &str = "sae_binary-test-enrollment-secret";

pub struct Binary {
    child: Child,
    pub url: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Binary {
    /// `limits` is the body of the config's `[limits]` table.
    pub async fn start(limits: &str, nofile: Option<u32>) -> Binary {
        let mut last = String::new();
        // A port picked by bind-and-release can be taken before the collector binds it.
        for _ in 0..3 {
            match Binary::try_start(limits, nofile).await {
                Ok(b) => return b,
                Err(log) => last = log,
            }
        }
        panic!("the collector did not come up three times: {last}");
    }

    async fn try_start(limits: &str, nofile: Option<u32>) -> Result<Binary, String> {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("collector.toml");
        let log = dir.path().join("collector.log");
        let bin = env!("CARGO_BIN_EXE_shadowai-collector");
        let port = super::free_port();
        std::fs::write(
            &cfg_path,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ninsecure_http = true\n\
                 enrollment_secret = \"{SECRET}\"\n[limits]\n{limits}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let out = Command::new(bin)
            .args([
                "token", "create", "--role", "admin", "--name", "ops", "--config",
            ])
            .arg(&cfg_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned();
        let script = match nofile {
            Some(n) => format!("ulimit -n {n} && exec \"$0\" \"$@\""),
            None => "exec \"$0\" \"$@\"".to_owned(),
        };
        let child = Command::new("sh")
            .args(["-c", &script, bin, "serve", "--config"])
            .arg(&cfg_path)
            .env("SHADOWAI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut b = Binary {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin,
            dir,
            log,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{}/healthz", b.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return Ok(b);
            }
            if let Ok(Some(_)) = b.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(b.log_text())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self, token: Option<&str>) -> shadowai_api::client::Client {
        let mut b = shadowai_api::client::Client::builder(&self.url);
        if let Some(t) = token {
            b = b.token(t);
        }
        b.build().unwrap()
    }

    /// The collector's resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
