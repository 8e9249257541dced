//! Hooks against programs: where a loop's extra time goes when an observer is attached. A
//! `perf record -g` (cpu-clock) of the loop's own thread puts every sample in one part by its
//! kernel stack: inside one of the observer's BPF programs (its own code, or a helper or map
//! it called), in the kernel's code that runs the hooks around the programs (the cgroup
//! hooks for shadowai, the traced-syscall path for bpftrace), or elsewhere (the loop's own
//! work). `bpfstats.rs` times only the programs; this split also shows the part no program
//! change can remove — what a build whose programs returned at once would still pay.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::report::table;

/// Frames of the kernel's code that runs attached programs (a sample under one of them and
/// under no program is the hooks' own cost): the cgroup hooks, and the traced-syscall path
/// a syscall tracepoint puts every syscall of every process on.
const DISPATCH: [&str; 6] = [
    "__cgroup_bpf_run_filter",
    "syscall_trace_enter",
    "syscall_exit_work",
    "perf_syscall_enter",
    "trace_call_bpf",
    "bpf_trace_run",
];

/// Is this sample in the socket lock that an attached sendmsg4/6 hook makes `udp_sendmsg`
/// take (`BPF_CGROUP_RUN_PROG_UDP4_SENDMSG_LOCK`: `lock_sock` before the programs,
/// `release_sock` after)? Without the hook an uncorked send takes no socket lock, and the
/// loops never cork, so these frames are the hook's cost, outside `__cgroup_bpf_run_filter_*`.
fn sendmsg_hook_lock(stack: &[&str]) -> bool {
    stack.windows(2).any(|w| {
        matches!(w[0], "lock_sock_nested" | "release_sock")
            && matches!(w[1], "udp_sendmsg" | "udpv6_sendmsg")
    })
}

/// One loop thread's samples, by part.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Split {
    pub samples: u64,
    /// In the hooks' kernel code, outside every program.
    pub dispatch: u64,
    /// In a program's own (JIT-compiled) code.
    pub programs: u64,
    /// In a helper or map operation a program called.
    pub helpers: u64,
    /// Program name → its samples (own code and helpers).
    pub per_program: BTreeMap<String, u64>,
    /// Helper or map function → its samples.
    pub per_helper: BTreeMap<String, u64>,
    /// Iterations per second of the profiled run.
    pub rate: f64,
}

impl Split {
    /// Counts one sample; `stack` is leaf first.
    fn add(&mut self, stack: &[&str]) {
        self.samples += 1;
        if let Some(i) = stack.iter().position(|s| s.starts_with("bpf_prog_")) {
            // bpf_prog_<tag>_<name>
            let name = stack[i].splitn(4, '_').nth(3).unwrap_or(stack[i]);
            *self.per_program.entry(name.to_owned()).or_default() += 1;
            if i == 0 {
                self.programs += 1;
            } else {
                self.helpers += 1;
                *self.per_helper.entry(stack[0].to_owned()).or_default() += 1;
            }
        } else if stack
            .iter()
            .any(|s| DISPATCH.iter().any(|d| s.starts_with(d)))
            || sendmsg_hook_lock(stack)
        {
            self.dispatch += 1;
        }
    }

    fn share(&self, n: u64) -> f64 {
        n as f64 / self.samples.max(1) as f64
    }

    /// The observer's whole part: hooks, programs and helpers.
    fn observer(&self) -> u64 {
        self.dispatch + self.programs + self.helpers
    }
}

/// Parses `perf script -F tid,ip,sym`: a sample is a line with its thread id, then one
/// tab-indented `ip symbol` line per frame (leaf first), then a blank line. Samples of other
/// threads than `tid` are skipped.
pub fn parse(text: &str, tid: u32) -> Split {
    let mut split = Split::default();
    let mut stack: Vec<&str> = Vec::new();
    let mut mine = false;
    let flush = |stack: &mut Vec<&str>, mine: bool, split: &mut Split| {
        if mine && !stack.is_empty() {
            split.add(stack);
        }
        stack.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut stack, mine, &mut split);
            mine = false;
        } else if let Some(frame) = line.strip_prefix('\t') {
            // "ffffffff8161dc08 get_page_from_freelist"
            if let Some((_, sym)) = frame.trim_start().split_once(' ') {
                stack.push(sym.trim());
            }
        } else {
            flush(&mut stack, mine, &mut split);
            mine = line.trim().parse::<u32>() == Ok(tid);
        }
    }
    flush(&mut stack, mine, &mut split);
    split
}

/// Runs `rate(secs)` on this thread under `perf record -g` of this thread alone and splits
/// its samples. `tag` names the data file in `work`.
pub fn record(work: &Path, tag: &str, secs: f64, rate: fn(f64) -> Result<f64>) -> Result<Split> {
    // SAFETY: gettid(2) has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    let data = work.join(format!("hooks-{tag}.perf.data"));
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "4999", "-g", "-t"])
        .arg(tid.to_string())
        .arg("-o")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record (Debian: linux-perf)")?;
    // perf prints nothing once it records; give it time to open its events.
    std::thread::sleep(Duration::from_millis(700));
    let loop_rate = rate(secs);
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(perf.id() as libc::pid_t, libc::SIGINT);
    }
    let st = perf.wait().context("waiting for perf record")?;
    let loop_rate = loop_rate?;
    // perf record ends on SIGINT by re-raising it once its data is written.
    if !st.success() && st.signal() != Some(libc::SIGINT) {
        bail!("perf record failed: {st}");
    }
    let out = Command::new("perf")
        .args(["script", "-F", "tid,ip,sym", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    if !out.status.success() {
        bail!("perf script failed: {}", out.status);
    }
    let _ = std::fs::remove_file(&data);
    let mut split = parse(&String::from_utf8_lossy(&out.stdout), tid);
    if split.samples == 0 {
        bail!("perf recorded no sample of the loop thread {tid}");
    }
    split.rate = loop_rate;
    Ok(split)
}

/// The report's part: the split of both observers side by side, and what the dispatch
/// alone leaves for the programs under the 0.95× target.
pub fn render(name: &str, unit: &str, secs: f64, ours: &Split, peer: &Split) -> String {
    let iter_ns = |s: &Split| 1e9 / s.rate.max(1.0);
    let cell = |s: &Split, n: u64| {
        format!(
            "{:.1} % · {:.0} ns",
            s.share(n) * 100.0,
            s.share(n) * iter_ns(s)
        )
    };
    let rest = |s: &Split| s.samples - s.observer();
    let rows = vec![
        vec![
            "the hooks' kernel code around the programs".into(),
            cell(ours, ours.dispatch),
            cell(peer, peer.dispatch),
        ],
        vec![
            "the programs' own code".into(),
            cell(ours, ours.programs),
            cell(peer, peer.programs),
        ],
        vec![
            "helpers and maps the programs call".into(),
            cell(ours, ours.helpers),
            cell(peer, peer.helpers),
        ],
        vec![
            "**the observer in all**".into(),
            format!("**{}**", cell(ours, ours.observer())),
            format!("**{}**", cell(peer, peer.observer())),
        ],
        vec![
            format!("everything else (the {unit} itself)"),
            cell(ours, rest(ours)),
            cell(peer, rest(peer)),
        ],
    ];
    let top = |m: &BTreeMap<String, u64>, s: &Split, k: usize| {
        let mut v: Vec<_> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .take(k)
            .map(|(n, c)| format!("`{n}` {:.1} %", s.share(**c) * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Time per iteration with the observer = rest + observer. Programs that returned at
    // once would leave rest + dispatch; 0.95× allows rest / 0.95 in all.
    let ns = |n: u64| ours.share(n) * iter_ns(ours);
    let (rest_ns, dispatch_ns) = (ns(rest(ours)), ns(ours.dispatch));
    let floor = rest_ns / (rest_ns + dispatch_ns).max(1.0);
    let budget = rest_ns / 0.95 - rest_ns - dispatch_ns;
    let work_ns = ns(ours.programs + ours.helpers);
    let budget_text = if budget > 0.0 {
        format!(
            "0.95× leaves the programs {budget:.0} ns per {unit} beside that dispatch; they \
             take {work_ns:.0} ns"
        )
    } else {
        format!(
            "the dispatch alone is more than 0.95× allows (the programs take {work_ns:.0} ns \
             per {unit} on top)"
        )
    };
    format!(
        "\nThe {name}, hooks against programs: one more trial per observer ({secs} s), the \
         loop thread under `perf record -e cpu-clock -g` (≈5,000 samples/s), each sample \
         counted once by its kernel stack — inside one of the observer's programs (its own \
         code, or a helper or map it called), in the kernel code that runs the hooks around \
         the programs (shadowai: the cgroup hooks, `__cgroup_bpf_run_filter_*`, and the socket \
         lock a sendmsg hook makes `udp_sendmsg` take; bpftrace: the traced-syscall path every \
         syscall takes while a syscall tracepoint is on), or elsewhere. Share of the loop thread's samples · that share of this trial's time per \
         {unit} ({:.0} ns with shadowai, {:.0} ns with bpftrace; {} and {} samples).\n\n{}\n\
         shadowai's programs: {}. Their top helpers and maps: {}.\n\n\
         With programs that returned at once, the hooks' dispatch alone would leave this \
         loop at ≈ {floor:.2}× (everything else ÷ (everything else + dispatch)); \
         {budget_text}.\n",
        iter_ns(ours),
        iter_ns(peer),
        ours.samples,
        peer.samples,
        table(&["part", "shadowai `run`", "bpftrace counter"], &rows),
        top(&ours.per_program, ours, 8),
        top(&ours.per_helper, ours, 6),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
7 \n\tffffffff81000001 bpf_prog_8a54244a8927937f_skb_egress\n\tffffffff81000002 __bpf_prog_run_save_cb\n\tffffffff81000003 __cgroup_bpf_run_filter_skb\n\tffffffff81000004 ip_finish_output\n
7 \n\tffffffff81000005 __htab_map_lookup_elem\n\tffffffff81000001 bpf_prog_8a54244a8927937f_skb_egress\n\tffffffff81000003 __cgroup_bpf_run_filter_skb\n
7 \n\tffffffff81000006 __rcu_read_unlock\n\tffffffff81000003 __cgroup_bpf_run_filter_skb\n\tffffffff81000004 ip_finish_output\n
7 \n\tffffffff81000007 tcp_v4_connect\n\tffffffff81000008 __sys_connect\n
7 \n\tffffffff81000009 _raw_spin_lock_bh\n\tffffffff8100000a release_sock\n\tffffffff8100000b udp_sendmsg\n
9 \n\tffffffff81000006 __rcu_read_unlock\n\tffffffff81000003 __cgroup_bpf_run_filter_skb\n
7 \n\t          15c51 main\n\t              0 [unknown]\n";

    #[test]
    fn each_sample_of_the_loop_thread_lands_in_one_part() {
        let s = parse(SCRIPT, 7);
        assert_eq!(s.samples, 6, "thread 9's sample is not the loop's");
        // The socket lock a sendmsg hook makes udp_sendmsg take is the hook's.
        assert_eq!((s.programs, s.helpers, s.dispatch), (1, 1, 2));
        assert_eq!(s.observer(), 4);
        assert_eq!(s.per_program.get("skb_egress"), Some(&2));
        assert_eq!(s.per_helper.get("__htab_map_lookup_elem"), Some(&1));
    }

    #[test]
    fn the_floor_and_budget_follow_from_the_parts() {
        let split = |dispatch, programs, rest| Split {
            samples: dispatch + programs + rest,
            dispatch,
            programs,
            rate: 100_000.0,
            ..Default::default()
        };
        // 10 µs per iteration: 2 % dispatch, 8 % programs, 90 % the rest.
        let text = render("loop", "connect", 3.0, &split(2, 8, 90), &split(1, 1, 98));
        assert!(text.contains("≈ 0.98×"), "{text}");
        // 9,000 / 0.95 − 9,000 − 200 = 273.7 ns.
        assert!(text.contains("leaves the programs 274 ns"), "{text}");
        let text = render("loop", "connect", 3.0, &split(8, 2, 90), &split(1, 1, 98));
        assert!(text.contains("the dispatch alone is more than"), "{text}");
    }
}
