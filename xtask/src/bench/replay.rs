//! (4) `shadowai-agent replay` (its normal OCSF JSON lines) against tshark extracting the
//! same DNS names and SNIs from the same ≥ 1 M-packet capture, in alternating trials.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::Ctx;
use super::report::table;
use super::stats::{Trials, num};

pub const TSHARK_FILTER: &str = "dns || tls.handshake.type == 1";

/// What one side extracted: DNS messages, ClientHellos, distinct names and SNIs.
#[derive(Debug, Default, PartialEq)]
struct Extract {
    dns: u64,
    hellos: u64,
    names: BTreeSet<String>,
    snis: BTreeSet<String>,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    rest.find('"').map(|end| &rest[..end])
}

fn ours(out: &str) -> Extract {
    let mut x = Extract::default();
    for line in out.lines() {
        if let Some(n) = field(line, "\"query\":{\"class\":\"IN\",\"hostname\":\"") {
            x.dns += 1;
            x.names.insert(n.to_ascii_lowercase());
        } else if line.contains("\"tls\":{") {
            x.hellos += 1;
            if let Some(s) = field(line, "\"sni\":\"") {
                x.snis.insert(s.to_ascii_lowercase());
            }
        }
    }
    x
}

fn theirs(out: &str) -> Extract {
    let mut x = Extract::default();
    for line in out.lines() {
        let (name, sni) = line.split_once('\t').unwrap_or((line, ""));
        if !name.is_empty() {
            x.dns += 1;
            x.names.insert(name.to_ascii_lowercase());
        } else if !sni.is_empty() {
            x.hellos += 1;
            x.snis.insert(sni.to_ascii_lowercase());
        }
    }
    x
}

fn timed(cmd: &mut Command, out: &Path) -> Result<f64> {
    let file = std::fs::File::create(out)?;
    let t = Instant::now();
    let st = cmd
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("starting {cmd:?}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(secs)
}

/// `perf record` of one run of `cmd`; the top of `perf report` (self time by symbol).
pub fn profile(work: &Path, name: &str, cmd: &[&str]) -> Result<String> {
    let data = work.join(format!("{name}.perf.data"));
    let st = Command::new("perf")
        .args(["record", "-F", "999", "-g", "-o"])
        .arg(&data)
        .arg("--")
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("starting perf (Debian: linux-perf)")?;
    if !st.success() {
        bail!("perf record failed: {st}");
    }
    perf_top(&data)
}

/// The top 15 symbols by self time in a `perf record` file.
pub fn perf_top(data: &Path) -> Result<String> {
    let rep = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "symbol",
            "-g",
            "none",
            "-i",
        ])
        .arg(data)
        .stderr(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&rep.stdout);
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        // perf pads each row with empty columns ("  -  -"): cut them.
        .map(|l| l.trim_end_matches([' ', '-']))
        .take(15)
        .collect::<Vec<_>>()
        .join("\n"))
}

pub fn run(ctx: &Ctx, agent_bin: &Path) -> Result<String> {
    let (capture, packets, how) =
        super::capture::mixed(&ctx.root, &ctx.target, ctx.replay_packets)?;
    let cap = capture.to_string_lossy().into_owned();
    let (out_ours, out_theirs) = (ctx.work.join("replay.jsonl"), ctx.work.join("tshark.tsv"));
    let tshark_args = [
        "-r",
        cap.as_str(),
        "-n",
        "-T",
        "fields",
        "-e",
        "dns.qry.name",
        "-e",
        "tls.handshake.extensions_server_name",
        "-Y",
        TSHARK_FILTER,
    ];
    let (mut t_ours, mut t_theirs) = (Trials::default(), Trials::default());
    for trial in 0..ctx.replay_trials {
        eprintln!("[bench] replay trial {}/{}", trial + 1, ctx.replay_trials);
        t_ours.push(timed(
            Command::new(agent_bin)
                .args(["replay", &cap])
                .env("SHADOWAI_LOG", "warn"),
            &out_ours,
        )?);
        t_theirs.push(timed(
            Command::new("tshark").args(tshark_args),
            &out_theirs,
        )?);
    }
    let a = ours(&std::fs::read_to_string(&out_ours)?);
    let b = theirs(&std::fs::read_to_string(&out_theirs)?);
    let speedup = Trials::ratio(&t_theirs, &t_ours);
    let pps = |t: &Trials| Trials(t.0.iter().map(|s| packets as f64 / s).collect());
    let mut body = format!(
        "Capture: {} packets ({how}). {} alternating trials (shadowai, tshark, …), output \
         to a file; median (min–max) wall time.\n\n\
         - shadowai: `shadowai-agent replay {cap}` (release; its normal OCSF 1.8 JSON lines)\n\
         - tshark: `tshark {}` (Debian's tshark; TCP reassembly on, as by default)\n\n",
        num(packets as f64, 0),
        ctx.replay_trials,
        tshark_args
            .iter()
            .map(|a| if a.contains(' ') {
                format!("'{a}'")
            } else {
                (*a).to_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    body.push_str(&table(
        &[
            "side",
            "seconds",
            "packets/s",
            "DNS messages",
            "ClientHellos",
            "distinct names",
            "distinct SNIs",
        ],
        &[
            vec![
                "shadowai replay".into(),
                t_ours.show(2),
                pps(&t_ours).show(0),
                num(a.dns as f64, 0),
                num(a.hellos as f64, 0),
                a.names.len().to_string(),
                a.snis.len().to_string(),
            ],
            vec![
                "tshark".into(),
                t_theirs.show(2),
                pps(&t_theirs).show(0),
                num(b.dns as f64, 0),
                num(b.hellos as f64, 0),
                b.names.len().to_string(),
                b.snis.len().to_string(),
            ],
        ],
    ));
    let same = a.names == b.names && a.snis == b.snis;
    body.push_str(&format!(
        "\nSpeed-up (tshark time / shadowai time, per trial): **{}×** — target ≥ 10×: **{}**. \
         Same distinct DNS names and SNIs on both sides: **{}**{}.\n",
        speedup.show(1),
        if speedup.median() >= 10.0 {
            "met"
        } else {
            "missed"
        },
        if same { "yes" } else { "no" },
        if a.dns == b.dns && a.hellos == b.hellos {
            ", and the same number of DNS messages and ClientHellos".to_owned()
        } else {
            format!(
                " (message counts differ: DNS {} vs {}, hellos {} vs {})",
                a.dns, b.dns, a.hellos, b.hellos
            )
        }
    ));
    let prof = profile(
        &ctx.work,
        "replay",
        &[agent_bin.to_string_lossy().as_ref(), "replay", &cap],
    )?;
    body.push_str(&format!(
        "\nWhere shadowai's replay time goes (`perf record -g` of one run, self time by symbol):\n\n```\n{prof}\n```\n"
    ));
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::{ours, theirs};

    #[test]
    fn both_extractions_read_their_formats() {
        let a = ours(concat!(
            r#"{"action":"Allowed","query":{"class":"IN","hostname":"API.openai.com","packet_uid":1,"type":"A"}}"#,
            "\n",
            r#"{"tls":{"ja4_fingerprint_list":[{"value":"x"}],"sni":"claude.ai"}}"#,
            "\n"
        ));
        let b = theirs("api.openai.com\t\n\tclaude.ai\n");
        assert_eq!(a, b);
        assert_eq!((a.dns, a.hellos), (1, 1));
    }
}
