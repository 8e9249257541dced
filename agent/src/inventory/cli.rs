//! `shadowai-agent inventory [--json]`: the AI agents, MCP servers and local runtimes at
//! work on this host now. By default the running daemon's view (lineage from exec events,
//! destinations) when it wrote one in the last 30 s, else a fresh /proc scan (`--scan`
//! forces it). Never executes or reads any tool's configuration.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shadowai_api::inventory::InventoryReport;

use super::feed::now_ms;
use super::tracker::{Tracker, TrackerOptions};

/// File the daemon writes its latest report to, in its state directory.
pub const REPORT_FILE: &str = "inventory.json";
/// A daemon report older than this is not shown as "now".
const FRESH_MS: i64 = 30_000;

#[derive(clap::Args, Debug)]
pub struct InventoryArgs {
    /// One JSON object (the collector's inventory report format).
    #[arg(long)]
    pub json: bool,
    /// Scan /proc now even when the daemon has a fresh report.
    #[arg(long)]
    pub scan: bool,
    /// Catalogue directory holding `_agents.toml` (the process hints).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/usr/share/shadowai/catalogue"
    )]
    pub catalogue: PathBuf,
    /// The daemon's state directory (where it writes `inventory.json`).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/shadowai")]
    pub state_dir: PathBuf,
    /// Also read the organisation id tools keep locally (the `tenant` fields of
    /// `_agents.toml`; never tokens or keys).
    #[arg(long)]
    pub read_tenant: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("loading the process hints from {dir}")]
    Catalogue {
        dir: String,
        #[source]
        source: shadowai_rules::RulesError,
    },
}

/// The daemon's report, if fresh.
fn daemon_report(state_dir: &Path) -> Option<InventoryReport> {
    let text = std::fs::read(state_dir.join(REPORT_FILE)).ok()?;
    let r: InventoryReport = serde_json::from_slice(&text).ok()?;
    (now_ms() - r.time_ms <= FRESH_MS).then_some(r)
}

/// The inventory, from the daemon or a scan; the bool says it came from the daemon.
pub fn collect(args: &InventoryArgs) -> Result<(InventoryReport, bool), InventoryError> {
    if !args.scan
        && let Some(r) = daemon_report(&args.state_dir)
    {
        return Ok((r, true));
    }
    let cat = shadowai_rules::Catalogue::load_dir(&args.catalogue).map_err(|source| {
        InventoryError::Catalogue {
            dir: args.catalogue.display().to_string(),
            source,
        }
    })?;
    let matcher = shadowai_rules::matcher::Matcher::build(&cat.services).ok();
    let known = |n: &str| matcher.as_ref().is_some_and(|m| m.match_name(n).is_some());
    let mut t = Tracker::new(
        Arc::new(cat.inventory_hints.clone()),
        TrackerOptions {
            read_tenant: args.read_tenant,
            ..TrackerOptions::default()
        },
    );
    let proc_root = Path::new("/proc");
    super::scan::seed(&mut t, proc_root);
    let host = crate::watch::hostname();
    Ok((t.report(&host, &host, now_ms(), &known), false))
}

fn flags(f: &[shadowai_api::Flag]) -> String {
    if f.is_empty() {
        return String::new();
    }
    let v: Vec<&str> = f.iter().map(|f| f.as_str()).collect();
    format!("  flags: {}", v.join(", "))
}

/// Human-readable text; every value from a process is escaped (terminal control
/// sequences in argv are shown, not interpreted).
pub fn render(r: &InventoryReport, from_daemon: bool) -> String {
    let mut o = String::new();
    let src = if from_daemon {
        "the running agent"
    } else {
        "a /proc scan"
    };
    let _ = writeln!(o, "inventory of {} (from {src})", r.hostname.escape_debug());
    let _ = writeln!(o, "\nAI agent sessions: {}", r.sessions.len());
    for s in &r.sessions {
        let _ = writeln!(
            o,
            "  {} {} pid {} user {}{}{}{}",
            s.session.kind,
            s.session
                .version
                .as_deref()
                .unwrap_or("(version unknown)")
                .escape_debug(),
            s.session.root_pid,
            s.user.escape_debug(),
            s.cwd
                .as_deref()
                .map(|c| format!(" cwd {}", c.escape_debug()))
                .unwrap_or_default(),
            if s.ended { " (ended)" } else { "" },
            flags(&s.flags)
        );
        let _ = writeln!(
            o,
            "    processes {} ({} live)  tenant {}",
            s.processes,
            s.live_processes,
            s.tenant.as_deref().unwrap_or("-").escape_debug()
        );
        if !s.destinations.is_empty() {
            let _ = writeln!(
                o,
                "    contacted {}",
                s.destinations.join(", ").escape_debug()
            );
        }
    }
    let _ = writeln!(o, "\nMCP servers: {}", r.mcp_servers.len());
    for m in &r.mcp_servers {
        let _ = writeln!(
            o,
            "  {} {} {} pid {} {}{}{}",
            m.transport,
            m.launcher,
            m.package.as_deref().unwrap_or("-").escape_debug(),
            m.pid,
            if m.pinned { "pinned" } else { "unpinned" },
            if m.ended { " (ended)" } else { "" },
            flags(&m.flags)
        );
        if let Some(sid) = &m.session_id {
            let _ = writeln!(o, "    session {sid}");
        }
    }
    let _ = writeln!(o, "\nlocal model runtimes: {}", r.runtimes.len());
    for rt in &r.runtimes {
        let ls: Vec<String> = rt
            .listeners
            .iter()
            .map(|l| {
                let a = if l.addr.contains(':') {
                    format!("[{}]", l.addr)
                } else {
                    l.addr.clone()
                };
                format!(
                    "{a}:{}{}",
                    l.port,
                    if l.exposed { " (exposed)" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "  {} pid {} {} user {} listening {}{}",
            rt.kind,
            rt.pid,
            rt.exe.escape_debug(),
            rt.user.escape_debug(),
            if ls.is_empty() {
                "-".into()
            } else {
                ls.join(", ")
            },
            flags(&rt.flags)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowai_api::inventory::{Listener, Runtime};

    #[test]
    fn text_shows_exposure_and_escapes_what_processes_chose() {
        let r = InventoryReport {
            host_id: "h".into(),
            hostname: "host".into(),
            time_ms: 0,
            sessions: vec![],
            mcp_servers: vec![],
            runtimes: vec![Runtime {
                id: "ollama-1-0".into(),
                kind: "ollama".into(),
                name: "Ollama".into(),
                pid: 1,
                exe: "/tmp/ol\u{1b}[31mlama".into(),
                user: "bob".into(),
                matched_by: "port".into(),
                listeners: vec![
                    Listener {
                        addr: "::".into(),
                        port: 11434,
                        exposed: true,
                    },
                    Listener {
                        addr: "127.0.0.1".into(),
                        port: 11434,
                        exposed: false,
                    },
                ],
                pull_hosts: vec![],
                clients: vec![],
                flags: vec![shadowai_api::Flag::RuntimeExposed],
                first_seen_ms: 0,
                last_seen_ms: 0,
                ended: false,
            }],
        };
        let t = render(&r, false);
        assert!(t.contains("[::]:11434 (exposed), 127.0.0.1:11434"), "{t}");
        assert!(t.contains("flags: runtime_exposed"), "{t}");
        assert!(!t.contains('\u{1b}'), "control characters are escaped: {t}");
    }
}
