//! The web UI's browser tests: a Node.js script under `tests/ui/` (playwright-core driving
//! Debian's Chromium, installed by `.ci/deps/collector-ui.sh`) run against a live
//! collector, with a deadline, its output collected for the test's assertions.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// `tests/ui`: the scripts and their `node_modules`.
pub fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

/// The Chromium to drive (`CHROMIUM`, else Debian's), after checking that it and
/// playwright-core are installed.
pub fn chromium() -> Result<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run `bash .ci/deps/collector-ui.sh` (Debian's chromium)"
    );
    ensure!(
        ui_dir().join("node_modules/playwright-core").exists(),
        "tests/ui/node_modules/playwright-core is missing: run `bash .ci/deps/collector-ui.sh` (npm ci)"
    );
    Ok(chromium)
}

/// How a script ended.
pub struct Run {
    pub status: ExitStatus,
    pub out: String,
    pub err: String,
}

/// Runs `script` against the collector at `url` with the test's `fixture` (JSON),
/// screenshots into `shots`, and `extra` environment variables; stops it and fails after
/// `deadline`.
pub fn run_script(
    script: &str,
    url: &str,
    fixture: &Value,
    shots: &Path,
    extra: &[(&str, &str)],
    deadline: Duration,
) -> Result<Run> {
    let chromium = chromium()?;
    let mut node = Command::new("node")
        .arg(ui_dir().join(script))
        .current_dir(ui_dir())
        .env("SHADOWAI_URL", url)
        .env("SHADOWAI_FIXTURE", fixture.to_string())
        .env("SCREENSHOT_DIR", shots)
        .env("CHROMIUM", &chromium)
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("node (Node.js) must be installed: run `bash .ci/deps/collector-ui.sh`")?;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(node.stdout.take().context("node's stdout")?));
    let err = reader(Box::new(node.stderr.take().context("node's stderr")?));
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = node.try_wait().context("waiting for node")? {
            break status;
        }
        if Instant::now() > until {
            let _ = node.kill();
            let _ = node.wait();
            let out = out.join().unwrap_or_default();
            bail!("{script} did not finish within {deadline:?}: {out}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(Run {
        status,
        out: out.join().unwrap_or_default(),
        err: err.join().unwrap_or_default(),
    })
}
