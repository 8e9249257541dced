//! Process identity: exe, cmdline, parent, user, container or systemd unit.
//!
//! Exec events from the kernel fill the table as programs start, so a process that exits
//! right after connecting keeps its identity; /proc fills in what the kernel did not send
//! (processes that predate the agent, the parent pid) while the process is alive. Exited
//! processes are kept for a grace period so late packets still resolve.

pub mod cgroup;
pub mod exe_hash;
pub mod users;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::sensor::records::{Exec, Owner};

/// How long an exited process stays resolvable.
const EXITED_GRACE_NS: u64 = 120 * 1_000_000_000;
/// Table size bound; the oldest exited entries go first.
const MAX_PROCS: usize = 65_536;

/// Everything the agent knows about one process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcInfo {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    /// Task name (`comm`).
    pub name: String,
    /// Executable path.
    pub exe: String,
    pub cmdline: Vec<String>,
    pub uid: u32,
    pub user: String,
    /// Names of the process's groups (primary first, then supplementary).
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// When the process exited (kernel ns), if it did.
    #[serde(skip)]
    pub exited_ns: Option<u64>,
}

/// pid → [`ProcInfo`].
pub struct ProcTable {
    procs: HashMap<u32, Arc<ProcInfo>>,
    users: users::Users,
    group_names: users::Users,
    proc_root: std::path::PathBuf,
}

impl Default for ProcTable {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcTable {
    pub fn new(proc_root: impl Into<std::path::PathBuf>) -> Self {
        Self {
            procs: HashMap::new(),
            users: users::Users::new(),
            group_names: users::Users::groups(),
            proc_root: proc_root.into(),
        }
    }

    /// A program started: record it from the kernel's view, completed from /proc.
    pub fn on_exec(&mut self, e: &Exec) {
        let mut info = ProcInfo {
            pid: e.pid,
            name: e.comm.clone(),
            exe: e.filename.clone(),
            cmdline: e.args.clone(),
            uid: e.uid,
            user: self.users.name(e.uid),
            groups: vec![self.group_names.name(e.gid)],
            ..ProcInfo::default()
        };
        self.fill_from_proc(&mut info);
        if info.cmdline.is_empty() {
            info.cmdline = e.args.clone();
        }
        self.evict_if_full();
        self.procs.insert(e.pid, Arc::new(info));
    }

    pub fn on_exit(&mut self, pid: u32, ts_ns: u64) {
        if let Some(p) = self.procs.get_mut(&pid) {
            Arc::make_mut(p).exited_ns = Some(ts_ns);
        }
    }

    /// The process behind a socket owner; looked up in /proc on first sight.
    pub fn resolve(&mut self, owner: &Owner) -> Arc<ProcInfo> {
        if let Some(p) = self.procs.get(&owner.pid) {
            return Arc::clone(p);
        }
        let mut info = ProcInfo {
            pid: owner.pid,
            name: owner.comm.clone(),
            uid: owner.uid,
            user: self.users.name(owner.uid),
            groups: vec![self.group_names.name(owner.gid)],
            ..ProcInfo::default()
        };
        self.fill_from_proc(&mut info);
        self.evict_if_full();
        let info = Arc::new(info);
        self.procs.insert(owner.pid, Arc::clone(&info));
        info
    }

    /// Forgets processes that exited more than the grace period before `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        self.procs.retain(|_, p| match p.exited_ns {
            Some(t) => now_ns.saturating_sub(t) < EXITED_GRACE_NS,
            None => true,
        });
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    fn evict_if_full(&mut self) {
        if self.procs.len() < MAX_PROCS {
            return;
        }
        let oldest = self
            .procs
            .iter()
            .filter_map(|(pid, p)| p.exited_ns.map(|t| (t, *pid)))
            .min();
        let victim = oldest
            .map(|(_, pid)| pid)
            .or_else(|| self.procs.keys().next().copied());
        if let Some(pid) = victim {
            self.procs.remove(&pid);
        }
    }

    /// Reads what /proc/PID still tells; a process that is gone leaves the fields as they
    /// were.
    fn fill_from_proc(&mut self, info: &mut ProcInfo) {
        let dir = self.proc_root.join(info.pid.to_string());
        if let Ok(exe) = std::fs::read_link(dir.join("exe")) {
            let s = exe.to_string_lossy();
            info.exe = s.strip_suffix(" (deleted)").unwrap_or(&s).to_string();
        }
        if let Ok(raw) = std::fs::read(dir.join("cmdline")) {
            let args: Vec<String> = raw
                .split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if !args.is_empty() {
                info.cmdline = args;
            }
        }
        if let Ok(status) = std::fs::read_to_string(dir.join("status")) {
            let gids = apply_status(info, &status);
            info.user = self.users.name(info.uid);
            if !gids.is_empty() {
                info.groups = gids.into_iter().map(|g| self.group_names.name(g)).collect();
            }
        }
        if let Ok(cg) = std::fs::read_to_string(dir.join("cgroup"))
            && let Some(path) = cgroup::v2_path(&cg)
        {
            let pl = cgroup::placement(path);
            info.container_id = pl.container_id;
            info.systemd_unit = pl.systemd_unit;
        }
        if info.exe.is_empty() {
            info.exe = Path::new(&info.name).display().to_string();
        }
    }
}

/// Name, PPid and real Uid from /proc/PID/status; returns the real gid followed by the
/// supplementary gids.
fn apply_status(info: &mut ProcInfo, status: &str) -> Vec<u32> {
    let mut gids = Vec::new();
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("Gid:") {
            if let Some(g) = v.split_whitespace().next().and_then(|g| g.parse().ok()) {
                gids.insert(0, g);
            }
            continue;
        }
        if let Some(v) = line.strip_prefix("Groups:") {
            gids.extend(v.split_whitespace().filter_map(|g| g.parse::<u32>().ok()));
            continue;
        }
        if let Some(v) = line.strip_prefix("PPid:") {
            info.ppid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Uid:") {
            if let Some(uid) = v.split_whitespace().next().and_then(|u| u.parse().ok()) {
                info.uid = uid;
            }
        } else if let Some(v) = line.strip_prefix("Name:")
            && info.name.is_empty()
        {
            info.name = v.trim().to_string();
        }
    }
    // The primary group usually appears again among the supplementary ones.
    let mut seen = Vec::with_capacity(gids.len());
    gids.retain(|g| {
        let new = !seen.contains(g);
        seen.push(*g);
        new
    });
    gids
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    fn owner(pid: u32) -> Owner {
        Owner {
            pid,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            netns: 0,
            comm: "x".into(),
        }
    }

    #[test]
    fn resolves_self_from_proc() {
        let mut t = ProcTable::default();
        let me = std::process::id();
        let p = t.resolve(&owner(me));
        let exe = std::env::current_exe().unwrap();
        assert_eq!(p.exe, exe.display().to_string());
        assert_eq!(p.ppid, Some(std::os::unix::process::parent_id()));
        assert!(!p.cmdline.is_empty());
    }

    #[test]
    fn exec_then_exit_keeps_identity_for_grace_period() {
        let mut t = ProcTable::new("/nonexistent-proc");
        let e = Exec {
            ts_ns: 1,
            pid: 999_999,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            comm: "curl".into(),
            filename: "/usr/bin/curl".into(),
            args: vec!["curl".into(), "-s".into()],
        };
        t.on_exec(&e);
        t.on_exit(999_999, 10);
        let p = t.resolve(&owner(999_999));
        assert_eq!(p.exe, "/usr/bin/curl");
        assert_eq!(p.cmdline, vec!["curl", "-s"]);
        assert_eq!(p.user, "root");
        t.expire(10 + EXITED_GRACE_NS - 1);
        assert_eq!(t.len(), 1);
        t.expire(10 + EXITED_GRACE_NS);
        assert!(t.is_empty());
    }

    #[test]
    fn status_parsing() {
        let mut i = ProcInfo::default();
        let gids = apply_status(
            &mut i,
            "Name:\tpython3\nPPid:\t12\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t27 100 1001 \nbad line\n",
        );
        assert_eq!(gids, vec![100, 27, 1001], "primary first, no repeats");
        assert_eq!(i.ppid, Some(12));
        assert_eq!(i.uid, 1000);
        assert_eq!(i.name, "python3");
    }
}
