//! The inventory from /proc alone: every running process, oldest first (so parents come
//! before their children), fed to a [`Tracker`]; then the listeners of runtimes and MCP
//! servers and of anything on a runtime's default port. Used by `shadowai-agent inventory`
//! and when the daemon starts (processes older than the agent). Reads /proc only: nothing
//! a tool has configured is ever executed or parsed.

use std::path::Path;

use super::listeners;
use super::tracker::{ProcFacts, Tracker};
use crate::enrich::users::Users;

/// One process as /proc shows it.
#[derive(Clone, Debug, Default)]
pub struct ProcRow {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub exe: String,
    pub argv: Vec<String>,
    pub uid: u32,
    pub user: String,
    pub start_ms: i64,
}

impl ProcRow {
    pub fn facts(&self) -> ProcFacts<'_> {
        ProcFacts {
            pid: self.pid,
            ppid: self.ppid,
            exe: &self.exe,
            argv: &self.argv,
            uid: self.uid,
            user: &self.user,
            start_ms: self.start_ms,
        }
    }
}

/// Boot time (Unix s) from /proc/stat.
fn boot_time(proc_root: &Path) -> Option<i64> {
    std::fs::read_to_string(proc_root.join("stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

fn ticks_per_sec() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t } else { 100 }
}

/// Start time (ticks since boot) from /proc/PID/stat: field 22, counted after the `)` that
/// ends the command name (which may itself hold spaces and parentheses).
fn start_ticks(stat: &str) -> Option<i64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Reads one process; `None` when it is gone or unreadable.
pub fn read_proc(proc_root: &Path, pid: u32, users: &mut Users, boot_s: i64) -> Option<ProcRow> {
    let dir = proc_root.join(pid.to_string());
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let mut row = ProcRow {
        pid,
        ..ProcRow::default()
    };
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("PPid:") {
            row.ppid = v.trim().parse().ok().filter(|p| *p != 0);
        } else if let Some(v) = line.strip_prefix("Uid:") {
            row.uid = v.split_whitespace().next()?.parse().ok()?;
        }
    }
    if let Ok(exe) = std::fs::read_link(dir.join("exe")) {
        let s = exe.to_string_lossy();
        row.exe = s.strip_suffix(" (deleted)").unwrap_or(&s).to_string();
    }
    if let Ok(raw) = std::fs::read(dir.join("cmdline")) {
        row.argv = raw
            .split(|&c| c == 0)
            .filter(|a| !a.is_empty())
            .take(64)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
    }
    if row.exe.is_empty() && row.argv.is_empty() {
        return None; // a kernel thread
    }
    let ticks = std::fs::read_to_string(dir.join("stat"))
        .ok()
        .and_then(|s| start_ticks(&s))
        .unwrap_or(0);
    row.start_ms = (boot_s * 1000).saturating_add(ticks * 1000 / ticks_per_sec());
    row.user = users.name(row.uid);
    Some(row)
}

/// Every process, oldest first.
pub fn processes(proc_root: &Path) -> Vec<ProcRow> {
    let boot_s = boot_time(proc_root).unwrap_or(0);
    let mut users = Users::new();
    let mut rows: Vec<ProcRow> = std::fs::read_dir(proc_root)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| read_proc(proc_root, pid, &mut users, boot_s))
                .collect()
        })
        .unwrap_or_default();
    rows.sort_by_key(|r| (r.start_ms, r.pid));
    rows
}

/// Feeds every running process to the tracker, then reads listeners.
pub fn seed(t: &mut Tracker, proc_root: &Path) {
    for row in processes(proc_root) {
        t.on_exec(&row.facts());
    }
    scan_listeners(t, proc_root);
}

/// What one listener scan found (gathered without the tracker, applied under its lock).
#[derive(Debug, Default)]
pub struct Found {
    /// Processes on a runtime's default port: the process, the port, its listeners there.
    pub on_ports: Vec<(ProcRow, u16, Vec<shadowai_api::inventory::Listener>)>,
    /// Listeners of known runtimes and MCP servers.
    pub of_pids: Vec<(u32, Vec<shadowai_api::inventory::Listener>)>,
}

/// Reads the listeners of `pids` and of anything on one of `ports` (blocking /proc reads:
/// call it off the event path).
pub fn gather(proc_root: &Path, ports: &[u16], pids: &[u32]) -> Found {
    let boot_s = boot_time(proc_root).unwrap_or(0);
    let mut users = Users::new();
    let on_ports = listeners::on_ports(proc_root, ports)
        .into_iter()
        .filter_map(|(pid, ls)| {
            let port = ls.first()?.port;
            Some((read_proc(proc_root, pid, &mut users, boot_s)?, port, ls))
        })
        .collect();
    let of_pids = pids
        .iter()
        .map(|pid| (*pid, listeners::of_pid(proc_root, *pid)))
        .collect();
    Found { on_ports, of_pids }
}

/// Applies a scan's findings.
pub fn apply(t: &mut Tracker, f: Found) {
    for (row, port, ls) in f.on_ports {
        t.on_port_listener(&row.facts(), port, ls);
    }
    for (pid, ls) in f.of_pids {
        t.set_listeners(pid, ls);
    }
}

/// Reads and applies listeners in one go (the one-shot command).
pub fn scan_listeners(t: &mut Tracker, proc_root: &Path) {
    let f = gather(proc_root, &t.runtime_ports(), &t.listening_candidates());
    apply(t, f);
    // Runtimes found by port are candidates now too.
    let f = gather(proc_root, &[], &t.listening_candidates());
    apply(t, f);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "4242 (we ird) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(start_ticks(stat), Some(98765));
        assert_eq!(start_ticks("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let rows = processes(Path::new("/proc"));
        let me = std::process::id();
        let row = rows.iter().find(|r| r.pid == me);
        assert!(row.is_some_and(|r| r.start_ms > 1_600_000_000_000 && !r.exe.is_empty()));
    }
}
