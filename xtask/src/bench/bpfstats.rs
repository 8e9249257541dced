//! Where the kernel side of a loop goes: per-program run counts and run time from the kernel's
//! own BPF statistics (`kernel.bpf_stats_enabled`, read with `bpftool prog show -j`), split
//! into the agent's programs and every other program on the host that ran meanwhile (other
//! engineers' agents attach at the cgroup root too and cost all sides of a trial alike).

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

const KNOB: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns the kernel's BPF run-time statistics on; puts the old value back on drop. The
/// statistics add their own ~20–30 ns to every program run while on.
pub struct StatsOn(String);

impl StatsOn {
    pub fn enable() -> Result<Self> {
        let prev = std::fs::read_to_string(KNOB).with_context(|| format!("reading {KNOB}"))?;
        std::fs::write(KNOB, "1").with_context(|| format!("writing {KNOB}"))?;
        Ok(Self(prev.trim().to_owned()))
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(KNOB, &self.0) {
            eprintln!("[bench] could not restore {KNOB} to {}: {e}", self.0);
        }
    }
}

/// One program's counters at one moment.
#[derive(Clone, Debug)]
pub struct Prog {
    pub name: String,
    pub kind: String,
    pub ours: bool,
    pub runs: u64,
    pub ns: u64,
}

/// Every loaded program by id; `ours` when `pid` holds it (bpftool built with pid
/// iterators lists the holders) or, failing that, when its id is not in `loaded_before`
/// (the programs that were there before the agent started).
pub fn snapshot(pid: u32, loaded_before: &BTreeMap<u64, Prog>) -> Result<BTreeMap<u64, Prog>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .context("running bpftool (Debian: bpftool)")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("bpftool's JSON")?;
    let mut progs = BTreeMap::new();
    for p in v.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(id) = p["id"].as_u64() else { continue };
        let ours = match p["pids"].as_array() {
            Some(a) => a.iter().any(|x| x["pid"].as_u64() == Some(u64::from(pid))),
            None => !loaded_before.contains_key(&id),
        };
        progs.insert(
            id,
            Prog {
                name: p["name"].as_str().unwrap_or("?").to_owned(),
                kind: p["type"].as_str().unwrap_or("?").to_owned(),
                ours,
                runs: p["run_cnt"].as_u64().unwrap_or(0),
                ns: p["run_time_ns"].as_u64().unwrap_or(0),
            },
        );
    }
    Ok(progs)
}

/// What ran between two snapshots: the agent's programs one by one (most time first), and
/// everything else summed. A program is the agent's only if it was already the agent's in
/// `before`: one loaded during the trial (another engineer's agent starting meanwhile: it
/// too is "not loaded before the agent started") is counted with the others.
pub struct Delta {
    pub ours: Vec<Prog>,
    pub others_runs: u64,
    pub others_ns: u64,
    pub others_count: usize,
}

pub fn delta(before: &BTreeMap<u64, Prog>, after: &BTreeMap<u64, Prog>) -> Delta {
    let mut d = Delta {
        ours: Vec::new(),
        others_runs: 0,
        others_ns: 0,
        others_count: 0,
    };
    for (id, a) in after {
        let (r0, n0) = before.get(id).map_or((0, 0), |b| (b.runs, b.ns));
        let (runs, ns) = (a.runs.saturating_sub(r0), a.ns.saturating_sub(n0));
        if runs == 0 {
            continue;
        }
        if a.ours && before.get(id).is_some_and(|b| b.ours) {
            d.ours.push(Prog {
                runs,
                ns,
                ..a.clone()
            });
        } else {
            d.others_runs += runs;
            d.others_ns += ns;
            d.others_count += 1;
        }
    }
    d.ours.sort_by_key(|p| std::cmp::Reverse(p.ns));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(name: &str, ours: bool, runs: u64, ns: u64) -> Prog {
        Prog {
            name: name.into(),
            kind: "cgroup_skb".into(),
            ours,
            runs,
            ns,
        }
    }

    #[test]
    fn a_program_loaded_during_the_trial_is_not_the_agents() {
        let before = BTreeMap::from([
            (1, prog("skb_egress", true, 10, 1_000)),
            (2, prog("other", false, 5, 500)),
        ]);
        let after = BTreeMap::from([
            (1, prog("skb_egress", true, 30, 3_000)),
            (2, prog("other", false, 6, 600)),
            // Loaded after `before` was taken, by another agent: "not loaded before".
            (3, prog("skb_egress", true, 7, 700)),
        ]);
        let d = delta(&before, &after);
        assert_eq!(d.ours.len(), 1);
        assert_eq!((d.ours[0].runs, d.ours[0].ns), (20, 2_000));
        assert_eq!((d.others_count, d.others_runs, d.others_ns), (2, 8, 800));
    }
}
