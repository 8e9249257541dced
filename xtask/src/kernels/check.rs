//! Judges the evidence `tests/kernels/suite.sh` leaves behind (files of one run, from a VM's
//! report or the host's output folder): one checker for every kernel of the matrix.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// The hooks `agent/src/sensor` attaches; every one must be reported, and attached, on every
/// matrix kernel.
pub const HOOKS: [&str; 11] = [
    "connect4",
    "connect6",
    "sendmsg4",
    "sendmsg6",
    "skb_egress",
    "skb_ingress",
    "bytes_release",
    "exec_argv",
    "sched_process_exec",
    "sched_process_exit",
    "sched_process_fork",
];

/// The hooks the degraded phase hides (tracefs unavailable). `exec_argv` (offsets from the
/// kernel's BTF) is configured without tracefs.
const TRACEPOINTS: [&str; 3] = [
    "sched_process_exec",
    "sched_process_exit",
    "sched_process_fork",
];

/// A blocked name must be refused at once, not after a resolver timeout (glibc's is 5 s):
/// its curl may take at most this much longer than the same curl for an allowed name in
/// the same run, which does a whole TLS handshake (hundredths of a second). Relative, not
/// absolute: under TCG on a busy machine a curl alone can take seconds.
const REFUSED_WITHIN_CS: u64 = 300;

/// One run's files, by name.
pub struct Evidence {
    pub files: BTreeMap<String, String>,
}

/// One check's outcome.
pub struct Outcome {
    pub name: &'static str,
    pub failure: Option<String>,
}

/// What one kernel offered: the row of the supported-kernels table.
pub struct Verdict {
    pub kernel: String,
    pub outcomes: Vec<Outcome>,
    pub hooks_attached: Vec<String>,
    pub layers: Vec<&'static str>,
    /// Seconds from starting the agent to "sensor started" (load, verify, attach).
    pub start_secs: Option<f64>,
}

impl Verdict {
    pub fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.failure.is_some())
    }
}

impl Evidence {
    /// Parses a VM's report: `== file NAME` … `== end` sections between the begin/end lines.
    pub fn from_report(text: &str) -> Result<Self, String> {
        let text = text.replace('\r', "");
        if !text.contains("== kernels-report end") {
            return Err("the VM's report is missing or cut short (no end marker)".into());
        }
        let mut files = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("== file ") {
                current = Some((name.to_string(), String::new()));
            } else if line == "== end" {
                if let Some((name, body)) = current.take() {
                    files.insert(name, body);
                }
            } else if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        Ok(Self { files })
    }

    fn file(&self, name: &str) -> &str {
        self.files.get(name).map_or("", String::as_str)
    }

    /// `results.env`: `key=value` lines.
    fn results(&self) -> BTreeMap<&str, &str> {
        self.file("results.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .collect()
    }

    fn events(&self, name: &str) -> Vec<Value> {
        self.file(name)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The agent's log entry that mentions `needle` (its first line and, for a verifier log
    /// spanning many lines, the last lines, where the verifier says why), for failure
    /// messages; the log's tail when no entry does.
    fn log_entry(&self, file: &str, needle: &str) -> String {
        let text = self.file(file);
        let lines: Vec<&str> = text.lines().collect();
        let Some(start) = lines.iter().position(|l| l.contains(needle)) else {
            return tail(text, 15);
        };
        // An entry runs until the next line that starts with a timestamp.
        let end = lines[start + 1..]
            .iter()
            .position(|l| l.starts_with("20") && l.contains('Z'))
            .map_or(lines.len(), |p| start + 1 + p);
        let first = lines[start].chars().take(400).collect::<String>();
        let body = &lines[start + 1..end];
        if body.is_empty() {
            first
        } else {
            format!("{first}\n    …\n{}", tail(&body.join("\n"), 8))
        }
    }
}

/// Every check of the focused suite over one run's evidence.
pub fn judge(ev: &Evidence) -> Verdict {
    let r = ev.results();
    let kernel = r.get("kernel").unwrap_or(&"?").to_string();
    let mut outcomes = Vec::new();
    let mut push = |name: &'static str, failure: Option<String>| {
        outcomes.push(Outcome { name, failure });
    };
    push(
        "suite completed",
        (!r.contains_key("done")).then(|| "the suite did not finish".to_string()),
    );

    // Every program loads and attaches.
    let metrics = hook_metrics(ev.file("watch.metrics"));
    let mut hook_fail = Vec::new();
    for h in HOOKS {
        match metrics.get(h) {
            Some(true) => {}
            Some(false) => hook_fail.push(format!(
                "{h} not attached:\n{}",
                ev.log_entry("watch.log", &format!("hook=\"{h}\""))
            )),
            None => hook_fail.push(format!("{h} not reported by /metrics")),
        }
    }
    for (h, up) in &metrics {
        if !up && !HOOKS.contains(&h.as_str()) {
            hook_fail.push(format!(
                "{h} not attached:\n{}",
                ev.log_entry("watch.log", h)
            ));
        }
    }
    if metrics.is_empty() {
        hook_fail = vec![format!(
            "the agent served no hook metrics; its log:\n{}",
            tail(ev.file("watch.log"), 25)
        )];
    }
    push("every program loads and attaches", join(hook_fail));

    // Attribution: DNS, TLS v4/v6, connect, by a real client's pid.
    let watch = ev.events("watch.jsonl");
    let pid = |k: &str| {
        r.get(format!("{k}_pid").as_str())
            .and_then(|p| p.parse::<u64>().ok())
    };
    let mut attr = Vec::new();
    for (client, exe, name, ip, dns) in [
        ("curl4", "curl", "allowed.kmatrix.test", "127.0.0.1", true),
        ("curl6", "curl", "v6.kmatrix.test", "::1", true),
        (
            "s_client",
            "openssl",
            "openssl.kmatrix.test",
            "127.0.0.1",
            false,
        ),
    ] {
        let Some(p) = pid(client) else {
            attr.push(format!("{client} did not run"));
            continue;
        };
        if r.get(format!("{client}_rc").as_str()) != Some(&"0") {
            attr.push(format!(
                "{client} failed: {}",
                ev.file(&format!("{client}.err")).trim()
            ));
        }
        let mine: Vec<&Value> = watch.iter().filter(|e| actor_pid(e) == Some(p)).collect();
        if dns && !mine.iter().any(|e| is_query(e, name)) {
            attr.push(format!(
                "no DNS query for {name} attributed to {client} (pid {p})"
            ));
        }
        if !mine.iter().any(|e| is_hello(e, name, ip, exe)) {
            attr.push(format!(
                "no ClientHello (SNI {name}, to {ip}) attributed to {client} (pid {p}, exe {exe})"
            ));
        }
        if !mine.iter().any(|e| is_connect(e, ip, 443)) {
            attr.push(format!(
                "no connect to {ip}:443 attributed to {client} (pid {p})"
            ));
        }
    }
    if !attr.is_empty() {
        attr.push(format!("{} events seen", watch.len()));
    }
    push(
        "DNS, TLS v4/v6 and connects attributed to the client",
        join(attr),
    );
    push("watch stops cleanly", rc_is(&r, "watch_rc", "0"));

    // A deliberately missing hook: reported, not fatal.
    let degraded = hook_metrics(ev.file("degraded.metrics"));
    let mut deg = Vec::new();
    for h in HOOKS {
        let want = !TRACEPOINTS.contains(&h);
        if degraded.get(h) != Some(&want) {
            deg.push(format!(
                "{h}: /metrics says {:?}, expected {}",
                degraded.get(h),
                u8::from(want)
            ));
        }
    }
    if !ev
        .file("degraded.log")
        .lines()
        .any(|l| l.contains("hook unavailable") && l.contains("sched_process_exec"))
    {
        deg.push(format!(
            "no log line names the missing hook:\n{}",
            tail(ev.file("degraded.log"), 15)
        ));
    }
    if let Some(p) = pid("degraded_curl") {
        let events = ev.events("degraded.jsonl");
        if !events
            .iter()
            .any(|e| actor_pid(e) == Some(p) && is_query(e, "allowed.kmatrix.test"))
        {
            deg.push(format!(
                "without the tracepoints, the DNS query of pid {p} was not attributed"
            ));
        }
    } else {
        deg.push("the client did not run".into());
    }
    if let Some(e) = rc_is(&r, "degraded_rc", "0") {
        deg.push(e);
    }
    push("a missing hook is reported, not fatal", join(deg));

    // Enforcement.
    let mut layers = Vec::new();
    let mut enf = Vec::new();
    enf.extend(rc_is(&r, "baseline_blocked_rc", "0").map(|e| format!("baseline: {e}")));
    let cs = |k: &str| r.get(k).and_then(|v| v.parse::<u64>().ok());
    let at_once = cs("blocked_name_cs")
        .zip(cs("allowed_name_cs"))
        .is_some_and(|(blocked, allowed)| blocked < allowed + REFUSED_WITHIN_CS);
    match (
        rc_is(&r, "blocked_name_rc", "6"),
        rc_is(&r, "blocked_sub_rc", "6"),
    ) {
        (None, None) if at_once => layers.push("DNS name filter"),
        (a, b) => {
            enf.extend(a.map(|e| format!("blocked name: {e}")));
            enf.extend(b.map(|e| format!("name below the blocked one: {e}")));
            if !at_once {
                enf.push(format!(
                    "blocked name not refused at once ({:?} cs; an allowed name took {:?} cs)",
                    r.get("blocked_name_cs"),
                    r.get("allowed_name_cs")
                ));
            }
        }
    }
    enf.extend(rc_is(&r, "allowed_name_rc", "0").map(|e| format!("unblocked name: {e}")));
    for (k, layer) in [
        ("blocked_net4", "connect filter (IPv4 CIDRs)"),
        ("blocked_net6", "connect filter (IPv6 CIDRs)"),
    ] {
        let err = ev.file(&format!("{k}.err"));
        if err.contains("Operation not permitted") {
            layers.push(layer);
        } else {
            enf.push(format!("{k}: no EPERM from connect(): {}", tail(err, 3)));
        }
    }
    let findings = ev.events("findings.jsonl");
    if !findings.iter().any(|f| {
        f.to_string().contains("kmatrix-blocked") && f.get("action_id") == Some(&Value::from(2))
    }) {
        enf.push(format!(
            "no finding with action blocked for kmatrix-blocked ({} findings)",
            findings.len()
        ));
    }
    if !r.contains_key("blocked_name_rc") {
        enf.push(format!(
            "the enforcing agent did not come up:\n{}",
            tail(ev.file("run.log"), 20)
        ));
    }
    push(
        "enforce mode refuses blocked names and networks only",
        join(enf),
    );
    push("run stops cleanly", rc_is(&r, "run_rc", "0"));
    push(
        "fail-open after the agent stops",
        rc_is(&r, "failopen_name_rc", "0"),
    );

    let hooks_attached = metrics
        .iter()
        .filter(|(_, up)| **up)
        .map(|(h, _)| h.clone())
        .collect();
    let start_secs = r
        .get("watch_start_cs")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|cs| cs / 100.0);
    Verdict {
        kernel,
        outcomes,
        hooks_attached,
        layers,
        start_secs,
    }
}

/// `shadowai_hook_attached{hook="X"} 0|1` lines.
fn hook_metrics(text: &str) -> BTreeMap<String, bool> {
    text.lines()
        .filter_map(|l| l.strip_prefix("shadowai_hook_attached{hook=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(h, v)| (h.to_string(), v.trim() == "1"))
        .collect()
}

fn actor_pid(e: &Value) -> Option<u64> {
    e.pointer("/actor/process/pid").and_then(Value::as_u64)
}

fn is_query(e: &Value, name: &str) -> bool {
    e.get("class_uid") == Some(&Value::from(4003))
        && e.pointer("/query/hostname").and_then(Value::as_str) == Some(name)
}

fn is_hello(e: &Value, sni: &str, ip: &str, exe: &str) -> bool {
    e.pointer("/tls/sni").and_then(Value::as_str) == Some(sni)
        && e.pointer("/dst_endpoint/ip").and_then(Value::as_str) == Some(ip)
        && e.pointer("/actor/process/file/name")
            .and_then(Value::as_str)
            == Some(exe)
}

fn is_connect(e: &Value, ip: &str, port: u64) -> bool {
    e.get("class_uid") == Some(&Value::from(4001))
        && e.get("activity_name").and_then(Value::as_str) == Some("Open")
        && e.pointer("/dst_endpoint/ip").and_then(Value::as_str) == Some(ip)
        && e.pointer("/dst_endpoint/port").and_then(Value::as_u64) == Some(port)
}

fn rc_is(r: &BTreeMap<&str, &str>, key: &str, want: &str) -> Option<String> {
    match r.get(key) {
        Some(v) if *v == want => None,
        Some(v) => Some(format!("{key} = {v}, expected {want}")),
        None => Some(format!("{key} missing (that step did not run)")),
    }
}

fn join(v: Vec<String>) -> Option<String> {
    (!v.is_empty()).then(|| v.join("\n"))
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for l in &lines[lines.len().saturating_sub(n)..] {
        let _ = writeln!(out, "    {l}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(files: &[(&str, &str)]) -> String {
        let mut r = String::from("boot noise\r\n== kernels-report begin 6.1.0\r\n");
        for (name, body) in files {
            r.push_str(&format!("== file {name}\r\n{body}\r\n== end\r\n"));
        }
        r.push_str("== kernels-report end\r\n");
        r
    }

    fn metrics(down: &[&str]) -> String {
        HOOKS
            .iter()
            .map(|h| {
                let v = u8::from(!down.contains(h));
                format!("shadowai_hook_attached{{hook=\"{h}\"}} {v}\n")
            })
            .collect()
    }

    #[test]
    fn a_cut_short_report_is_an_error_not_an_empty_pass() {
        let full = report(&[("results.env", "done=1")]);
        let cut = &full[..full.len() - 30];
        assert!(Evidence::from_report(cut).is_err());
        let ev = Evidence::from_report(&full).unwrap();
        assert_eq!(ev.file("results.env"), "done=1\n");
    }

    #[test]
    fn a_refused_program_fails_with_the_verifiers_words() {
        let log = "2026-11-26T01:31:47Z  WARN shadowai_agent::sensor: hook unavailable on this kernel; continuing without it hook=\"skb_egress\" error=the BPF_PROG_LOAD syscall returned Argument list too long (os error 7). Verifier output: 0: R1=ctx(off=0,imm=0) R10=fp0\n1: (bf) r6 = r1\nBPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns (limit 1000000)\n2026-11-26T01:31:48Z  INFO shadowai_agent::live: sensor started\n";
        let text = report(&[
            ("results.env", "kernel=6.1.0\ndone=1\nwatch_rc=0"),
            ("watch.metrics", &metrics(&["skb_egress"])),
            ("watch.log", log),
        ]);
        let v = judge(&Evidence::from_report(&text).unwrap());
        let fail = v
            .outcomes
            .iter()
            .find(|o| o.name == "every program loads and attaches")
            .and_then(|o| o.failure.clone())
            .expect("the refused hook fails the check");
        assert!(fail.contains("skb_egress not attached"), "{fail}");
        assert!(fail.contains("BPF program is too large"), "{fail}");
        assert!(
            !fail.contains("sensor started"),
            "one log entry only: {fail}"
        );
        assert!(!v.hooks_attached.contains(&"skb_egress".to_string()));
        // Nothing else ran, so attribution and enforcement fail too: no silent passes.
        assert!(v.failures().count() >= 4);
    }

    #[test]
    fn a_missing_metric_or_an_unexpected_hook_down_fails() {
        let mut m = metrics(&[]);
        m = m.replace("shadowai_hook_attached{hook=\"connect6\"} 1\n", "");
        m.push_str("shadowai_hook_attached{hook=\"new_hook\"} 0\n");
        let text = report(&[("results.env", "done=1"), ("watch.metrics", &m)]);
        let v = judge(&Evidence::from_report(&text).unwrap());
        let fail = v.outcomes[1].failure.clone().unwrap();
        assert!(fail.contains("connect6 not reported"), "{fail}");
        assert!(fail.contains("new_hook not attached"), "{fail}");
    }

    #[test]
    fn enforcement_needs_eperm_and_a_fast_refusal() {
        let results = "done=1\nbaseline_blocked_rc=0\nblocked_name_rc=6\nblocked_name_cs=900\nallowed_name_cs=150\n\
                       blocked_sub_rc=6\nallowed_name_rc=0\nrun_rc=0\nfailopen_name_rc=0";
        let text = report(&[
            ("results.env", results),
            (
                "blocked_net4.err",
                "* Immediate connect fail for 192.0.2.10: Operation not permitted",
            ),
            (
                "blocked_net6.err",
                "* Immediate connect fail: Network is unreachable",
            ),
        ]);
        let v = judge(&Evidence::from_report(&text).unwrap());
        let fail = v
            .outcomes
            .iter()
            .find(|o| o.name.starts_with("enforce mode"))
            .and_then(|o| o.failure.clone())
            .unwrap();
        assert!(fail.contains("not refused at once"), "{fail}");
        assert!(fail.contains("blocked_net6: no EPERM"), "{fail}");
        assert_eq!(v.layers, vec!["connect filter (IPv4 CIDRs)"]);
    }
}
