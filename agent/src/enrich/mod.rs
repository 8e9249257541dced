//! Process identity: exe, cmdline, parent, user, container or systemd unit.
//!
//! Exec events from the kernel fill the table as programs start, so a process that exits
//! right after connecting keeps its identity; /proc fills in what the kernel did not send
//! (processes that predate the agent, the parent pid) while the process is alive. Exited
//! processes are kept for a grace period so late packets still resolve.

pub mod cgroup;
pub mod exe_hash;
pub mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// The file the process executed (from `/proc/PID/exe` while it ran), so the hash in
    /// its findings is of what ran even if the path is replaced later.
    #[serde(skip)]
    pub exe_file: Option<exe_hash::ExeFile>,
    /// When the program started (Unix ms), from its exec event.
    #[serde(skip)]
    pub started_ms: Option<i64>,
    /// The AI agent session and risk flags of the process (see [`crate::inventory`]).
    #[serde(skip)]
    pub tag: Option<Arc<crate::inventory::Tag>>,
    /// When [`ProcTable::refresh`] last re-read /proc for it (reset by an exec, which
    /// records the process anew).
    #[serde(skip)]
    pub refreshed_at: Option<std::time::Instant>,
}

/// A process's credentials are re-read for a decision at most this often: a local user
/// flooding ClientHellos from one process costs one set of /proc reads per interval, not
/// one per hello. Credentials change within it only through privilege (setuid/setgroups)
/// or an exec, and an exec records the process anew.
pub const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// pid → [`ProcInfo`], bounded: when full, the process that exited longest ago goes
/// first, else the one recorded longest ago — both found through ordered indexes in
/// O(log n), so a fork flood cannot make each insert scan the table.
pub struct ProcTable {
    procs: HashMap<u32, (Arc<ProcInfo>, u64)>,
    /// Insertion number → pid (oldest first).
    by_age: BTreeMap<u64, u32>,
    /// (exit time, pid) of exited processes.
    exited: BTreeSet<(u64, u32)>,
    next_seq: u64,
    cap: usize,
    /// Entries evicted because the table was full.
    pub evicted: u64,
    /// Times /proc was re-read for a decision ([`ProcTable::refresh`]).
    pub refreshes: u64,
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
            by_age: BTreeMap::new(),
            exited: BTreeSet::new(),
            next_seq: 0,
            cap: MAX_PROCS,
            evicted: 0,
            refreshes: 0,
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
            started_ms: Some(crate::correlate::Clock::system().to_unix_ms(e.ts_ns)),
            ..ProcInfo::default()
        };
        self.fill_from_proc(&mut info);
        if info.cmdline.is_empty() {
            info.cmdline = e.args.clone();
        }
        self.insert(Arc::new(info));
    }

    /// What the table knows of the file `pid` executed, for hashing what ran.
    pub fn executed(p: &ProcInfo) -> exe_hash::Executed {
        exe_hash::Executed {
            pid: p.pid,
            file: p.exe_file,
            started_ms: p.started_ms,
        }
    }

    /// The process recorded for `pid`, if any.
    pub fn get(&self, pid: u32) -> Option<Arc<ProcInfo>> {
        self.procs.get(&pid).map(|(p, _)| Arc::clone(p))
    }

    /// Re-reads what /proc tells of a recorded, running process and returns the updated
    /// entry. For decisions that depend on the process: its credentials and program may
    /// have changed since it was recorded (`setpriv --groups … curl` sets the groups, then
    /// execs; the exec's event may still wait in the bulk ring when the ClientHello's
    /// decision is made). A process not recorded, or gone, is returned as recorded.
    pub fn refresh(&mut self, pid: u32) -> Option<Arc<ProcInfo>> {
        let (p, _) = self.procs.get(&pid)?;
        let fresh = p
            .refreshed_at
            .is_some_and(|at| at.elapsed() < REFRESH_INTERVAL);
        if p.exited_ns.is_some() || fresh {
            return Some(Arc::clone(p));
        }
        let mut info = ProcInfo::clone(p);
        self.fill_from_proc(&mut info);
        info.refreshed_at = Some(std::time::Instant::now());
        self.refreshes += 1;
        let (p, _) = self.procs.get_mut(&pid)?;
        *Arc::make_mut(p) = info;
        Some(Arc::clone(p))
    }

    /// Sets the inventory tag of a recorded process; returns the updated entry.
    pub fn set_tag(
        &mut self,
        pid: u32,
        tag: Option<Arc<crate::inventory::Tag>>,
    ) -> Option<Arc<ProcInfo>> {
        let (p, _) = self.procs.get_mut(&pid)?;
        if p.tag != tag {
            Arc::make_mut(p).tag = tag;
        }
        Some(Arc::clone(p))
    }

    pub fn on_exit(&mut self, pid: u32, ts_ns: u64) {
        if let Some((p, _)) = self.procs.get_mut(&pid) {
            if let Some(old) = p.exited_ns {
                self.exited.remove(&(old, pid));
            }
            Arc::make_mut(p).exited_ns = Some(ts_ns);
            self.exited.insert((ts_ns, pid));
        }
    }

    /// A smaller bound (tests).
    pub fn with_capacity(mut self, cap: usize) -> Self {
        self.cap = cap.max(1);
        self
    }

    fn insert(&mut self, info: Arc<ProcInfo>) {
        let pid = info.pid;
        self.remove(pid);
        self.evict_if_full();
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(t) = info.exited_ns {
            self.exited.insert((t, pid));
        }
        self.by_age.insert(seq, pid);
        self.procs.insert(pid, (info, seq));
    }

    fn remove(&mut self, pid: u32) {
        if let Some((p, seq)) = self.procs.remove(&pid) {
            self.by_age.remove(&seq);
            if let Some(t) = p.exited_ns {
                self.exited.remove(&(t, pid));
            }
        }
    }

    /// The process behind a socket owner; looked up in /proc on first sight. A process seen
    /// again under another uid (a daemon that dropped its privileges after its first
    /// connection) takes the kernel's uid, which is the one of this connect or send.
    pub fn resolve(&mut self, owner: &Owner) -> Arc<ProcInfo> {
        match self.procs.get(&owner.pid) {
            Some((p, _)) if p.uid == owner.uid => return Arc::clone(p),
            Some(_) => {
                let user = self.users.name(owner.uid);
                if let Some((p, _)) = self.procs.get_mut(&owner.pid) {
                    let info = Arc::make_mut(p);
                    info.uid = owner.uid;
                    info.user = user;
                    return Arc::clone(p);
                }
            }
            None => {}
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
        let info = Arc::new(info);
        self.insert(Arc::clone(&info));
        info
    }

    /// Forgets processes that exited more than the grace period before `now_ns`; visits
    /// only those.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(&(t, pid)) = self.exited.first() {
            if now_ns.saturating_sub(t) < EXITED_GRACE_NS {
                break;
            }
            self.remove(pid);
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    fn evict_if_full(&mut self) {
        while self.procs.len() >= self.cap {
            let victim = self
                .exited
                .first()
                .map(|(_, pid)| *pid)
                .or_else(|| self.by_age.first_key_value().map(|(_, pid)| *pid));
            let Some(pid) = victim else { break };
            self.remove(pid);
            self.evicted += 1;
        }
    }

    /// Reads what /proc/PID still tells; a process that is gone leaves the fields as they
    /// were.
    fn fill_from_proc(&mut self, info: &mut ProcInfo) {
        let dir = self.proc_root.join(info.pid.to_string());
        if let Ok(exe) = std::fs::read_link(dir.join("exe")) {
            let s = exe.to_string_lossy();
            info.exe = s.strip_suffix(" (deleted)").unwrap_or(&s).to_string();
            info.exe_file = exe_hash::ExeFile::of_process(&self.proc_root, info.pid);
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
    fn a_process_seen_under_another_uid_takes_the_kernels() {
        let mut t = ProcTable::new("/nonexistent-proc");
        let first = t.resolve(&owner(4444));
        assert_eq!((first.uid, first.user.as_str()), (0, "root"));
        let dropped = t.resolve(&Owner {
            uid: 65534,
            ..owner(4444)
        });
        assert_eq!(dropped.uid, 65534);
        assert_ne!(dropped.user, "root");
        assert_eq!(dropped.name, first.name, "the rest of its record stays");
        assert_eq!(t.get(4444).unwrap().uid, 65534, "the table keeps it");
        assert_eq!(t.len(), 1);
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
    fn a_refresh_sees_groups_set_after_the_process_was_recorded() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("4242");
        std::fs::create_dir_all(&dir).unwrap();
        let status = |groups: &str| {
            format!(
                "Name:\tcurl\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t{groups}\n"
            )
        };
        std::fs::write(dir.join("status"), status("")).unwrap();
        let mut t = ProcTable::new(root.path());
        let first = t.resolve(&owner(4242));
        assert_eq!(first.groups.len(), 1, "{:?}", first.groups);
        // The program changed its supplementary groups (setpriv), then exec'd.
        std::fs::write(dir.join("status"), status("20")).unwrap();
        assert_eq!(t.resolve(&owner(4242)).groups, first.groups, "cached");
        let now = t.refresh(4242).unwrap();
        assert_eq!(now.groups.len(), 2, "{:?}", now.groups);
        assert_eq!(
            t.get(4242).unwrap().groups,
            now.groups,
            "the table keeps it"
        );
        // Gone: what was recorded stays.
        t.on_exit(4242, 5);
        std::fs::write(dir.join("status"), status("")).unwrap();
        assert_eq!(t.refresh(4242).unwrap().groups, now.groups);
        assert!(t.refresh(7).is_none());
    }

    #[test]
    fn a_hello_flood_from_one_process_costs_one_refresh_per_interval() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("4343");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("status"),
            "Name:\tcurl\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n",
        )
        .unwrap();
        let mut t = ProcTable::new(root.path());
        t.resolve(&owner(4343));
        for _ in 0..10_000 {
            assert!(t.refresh(4343).is_some());
        }
        assert_eq!(t.refreshes, 1, "one read for the whole burst");
        std::thread::sleep(REFRESH_INTERVAL);
        t.refresh(4343);
        assert_eq!(t.refreshes, 2, "read again once the interval passed");
        // An exec records the process anew: the next decision reads /proc again.
        t.on_exec(&exec(4343));
        t.refresh(4343);
        assert_eq!(t.refreshes, 3, "an exec resets the interval");
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

    fn exec(pid: u32) -> Exec {
        Exec {
            ts_ns: 1,
            pid,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            comm: "x".into(),
            filename: format!("/tmp/x{pid}"),
            args: vec![],
        }
    }

    #[test]
    fn a_fork_flood_at_the_bound_evicts_exited_first_then_oldest() {
        let mut t = ProcTable::new("/nonexistent-proc").with_capacity(100);
        for pid in 1..=100 {
            t.on_exec(&exec(pid));
        }
        t.on_exit(50, 5);
        t.on_exit(60, 3);
        t.on_exec(&exec(1000));
        assert_eq!(t.len(), 100);
        assert!(!t.procs.contains_key(&60), "exited longest ago goes first");
        t.on_exec(&exec(1001));
        assert!(!t.procs.contains_key(&50));
        // No exited left: the oldest recorded goes.
        for pid in 2000..12_000 {
            t.on_exec(&exec(pid));
            assert!(t.len() <= 100);
        }
        assert!(t.procs.contains_key(&11_999) && !t.procs.contains_key(&1));
        assert_eq!(t.by_age.len(), t.len());
        assert!(t.exited.is_empty());
        // Exit and re-exec of one pid keeps the indexes in step.
        t.on_exit(11_999, 10);
        t.on_exec(&exec(11_999));
        assert!(t.exited.is_empty() && t.by_age.len() == t.len());
        t.on_exit(11_998, 10);
        t.expire(10 + EXITED_GRACE_NS);
        assert!(!t.procs.contains_key(&11_998) && t.by_age.len() == t.len());
    }
}
