//! The tracker fed from the live event source: exec/exit records as they are drained from
//! the ring buffer (so a child's exec is tagged before its own connect in the same drain),
//! and every attributed event (its process's tag, then the destination it contacted).
//! One short lock per exec/exit and one per batch; no file I/O (the daemon's tracker
//! defers a new session's reads to the inventory stage); a parent /proc did not give is
//! looked up in the kernel's lineage map (a map lookup, not a file read).

use std::sync::Arc;

use parking_lot::Mutex;

use super::tracker::{ProcFacts, Tracker};
use crate::enrich::ProcTable;
use crate::event::{Event, EventKind};
use crate::sensor::records::Exec;

/// A tracker shared by the event source (writes) and the inventory stage (reports, scans).
pub type SharedTracker = Arc<Mutex<Tracker>>;

/// Unix ms now (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Who forked a pid, from the kernel's lineage map (`sensor::lineage`): one map lookup.
pub type ParentOf<'a> = &'a dyn Fn(u32) -> Option<u32>;

/// Ancestors climbed at most to find one the tracker knows (a subshell of a subshell …).
const MAX_HOPS: usize = 8;

/// Ties `pid` to the nearest ancestor the tracker knows, through parents that never
/// exec'd (subshells, workers) and so were never recorded: each one on the way joins the
/// ancestor's session. Returns `pid`'s parent. The kernel map is climbed only past
/// processes neither the tracker nor the process table knows (an exec'd process the
/// tracker does not know is outside every session: the climb stops there).
fn join_lineage(
    t: &mut Tracker,
    procs: &ProcTable,
    pid: u32,
    ppid: Option<u32>,
    parent_of: ParentOf<'_>,
) -> Option<u32> {
    let ppid = ppid.or_else(|| parent_of(pid))?;
    let mut chain = vec![ppid];
    let mut cur = ppid;
    while !t.knows(cur) && procs.get(cur).is_none() && chain.len() < MAX_HOPS {
        match parent_of(cur) {
            Some(up) if up != cur && up > 1 => {
                chain.push(up);
                cur = up;
            }
            _ => break,
        }
    }
    if t.knows(cur) {
        // Top down: each forked-only process adopts its parent's session.
        for pair in chain.windows(2).rev() {
            t.adopt(pair[0], pair[1]);
        }
    }
    Some(ppid)
}

/// After the process table recorded an exec. The kernel's argv (as passed to execve) is
/// preferred to /proc's, which a program may already have rewritten (`npx` shows
/// `npm exec …`). A parent /proc no longer shows comes from the kernel's lineage map.
pub fn on_exec(t: &SharedTracker, procs: &mut ProcTable, e: &Exec, parent_of: ParentOf<'_>) {
    let pid = e.pid;
    let Some(info) = procs.get(pid) else {
        return;
    };
    let full;
    let argv = if e.args.is_empty() {
        &info.cmdline
    } else if let Some(v) = complete_args(&e.args, &info.cmdline) {
        full = v;
        &full
    } else {
        &e.args
    };
    let mut t = t.lock();
    let ppid = join_lineage(&mut t, procs, pid, info.ppid, parent_of);
    let tag = t.on_exec(&ProcFacts {
        pid,
        ppid,
        exe: &info.exe,
        argv,
        uid: info.uid,
        user: &info.user,
        start_ms: now_ms(),
    });
    procs.set_tag(pid, tag);
}

/// The kernel keeps the first `ARGS_LEN` bytes of the argv area: where that bound cut it and
/// /proc still shows the same arguments (the last one kept a prefix of its own), /proc's
/// in full. `None` when nothing was cut (the common case: no allocation) or /proc's were
/// rewritten since.
fn complete_args(kernel: &[String], proc_args: &[String]) -> Option<Vec<String>> {
    let kept: usize = kernel.iter().map(|a| a.len() + 1).sum();
    let (last, whole) = kernel.split_last()?;
    if kept < shadowai_common::ARGS_LEN {
        return None;
    }
    let same = proc_args.len() >= kernel.len()
        && proc_args.get(..whole.len()) == Some(whole)
        && proc_args
            .get(whole.len())
            .is_some_and(|p| p.starts_with(last.as_str()));
    same.then(|| proc_args.to_vec())
}

pub fn on_exit(t: &SharedTracker, pid: u32) {
    t.lock().on_exit(pid, now_ms());
}

/// Tags a batch of events with their process's session and flags and records what each
/// contacted.
pub fn on_events(
    t: &SharedTracker,
    procs: &mut ProcTable,
    events: &mut [Event],
    parent_of: ParentOf<'_>,
) {
    let mut t = t.lock();
    for pid in t.take_retagged() {
        procs.set_tag(pid, t.tag(pid));
    }
    for e in events.iter_mut() {
        let Some(p) = e.process.clone() else {
            continue;
        };
        let tag = t.tag(p.pid).or_else(|| match p.ppid {
            Some(pp) => t.adopt(p.pid, pp),
            // /proc had no parent for it (gone already): the kernel's lineage.
            None => {
                let pp = join_lineage(&mut t, procs, p.pid, None, parent_of)?;
                t.adopt(p.pid, pp)
            }
        });
        if p.tag != tag {
            e.process = Some(procs.set_tag(p.pid, tag.clone()).unwrap_or_else(|| {
                let mut q = (*p).clone();
                q.tag = tag;
                Arc::new(q)
            }));
        }
        let dest = match e.kind {
            EventKind::DnsResponse => continue,
            EventKind::DnsQuery => e.dns.as_ref().map(|d| d.question.clone()),
            _ => e.hostname.clone(),
        }
        .unwrap_or_else(|| e.dst.ip().to_string());
        t.on_contact(p.pid, &dest, e.dst.port(), &p.exe, e.time_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::complete_args;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments_the_kernel_cut_are_completed_from_proc() {
        let long = "/opt/shadowai-test-agents/node_modules/@modelcontextprotocol/server-everything/dist/index.js";
        let mut full = v(&["node", long]);
        for i in 0..20 {
            full.push(format!("--option-{i}={long}"));
        }
        // What the kernel kept: the first ARGS_LEN bytes, the last argument cut.
        let joined = full.join("\0");
        let kept = &joined[..shadowai_common::ARGS_LEN - 1];
        let kernel: Vec<String> = kept.split('\0').map(str::to_owned).collect();
        assert!(kernel.len() < full.len());
        assert_eq!(complete_args(&kernel, &full), Some(full.clone()));
        // Nothing cut: the kernel's argv as it is.
        assert_eq!(
            complete_args(&v(&["npx", "-y", "pkg"]), &v(&["npm exec pkg"])),
            None
        );
        // /proc rewritten (not the same arguments): the kernel's stays.
        assert_eq!(complete_args(&kernel, &v(&["npm exec something"])), None);
        let mut other = full.clone();
        other[1] = "/elsewhere".into();
        assert_eq!(complete_args(&kernel, &other), None);
        assert_eq!(complete_args(&[], &full), None);
    }
}
