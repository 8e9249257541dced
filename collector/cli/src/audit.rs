//! `audit verify FILE` (offline), `audit export`, `audit list`.
//!
//! Anchoring: a hash chain alone does not stop someone with database access from rewriting
//! the log and recomputing every hash, or from cutting its tail. `audit export` therefore
//! keeps the heads it has seen in a local checkpoints file (one `{"seq","hash"}` line per
//! export, next to the login file) and refuses (exit 7) a log that contradicts any of them;
//! `audit verify FILE --expect-head SEQ:HASH` does the same offline for a head noted
//! elsewhere (a ticket, the SIEM).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shadowai_api::audit::{AuditEntry, Checkpoint, check_checkpoint, verify};

use crate::output::{Table, print_json, time};
use crate::{AuditTampered, Ctx};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check an exported audit log offline: sequence, hash chain and every entry's hash.
    /// Exit code 7 names the first entry that fails.
    Verify {
        file: PathBuf,
        /// A head seen earlier: entry SEQ must still exist with this HASH (repeatable).
        #[arg(long = "expect-head", value_name = "SEQ:HASH")]
        expect_head: Vec<Checkpoint>,
    },
    /// Download the whole chain as a JSON array (verified, and checked against every
    /// checkpoint kept from earlier exports, before it is written; its head is then kept).
    Export {
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Checkpoints file (default: `audit-checkpoints.jsonl` next to the login file).
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
    },
    /// Show audit entries, oldest first.
    List {
        #[arg(long, default_value_t = 0)]
        after_seq: i64,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

/// Reads an export: a JSON array, or one JSON entry per line.
pub fn read_log(path: &Path) -> Result<Vec<AuditEntry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON array of audit entries", path.display()));
    }
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not an audit entry", path.display(), i + 1))?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Verifies and describes the result in one line.
pub fn check(entries: &[AuditEntry]) -> Result<String> {
    if let Err(e) = verify(entries) {
        let seq = entries
            .get(e.index)
            .map_or_else(|| "?".to_owned(), |x| x.seq.to_string());
        return Err(AuditTampered(format!(
            "audit log does NOT verify: entry #{} (seq {seq}): {}",
            e.index + 1,
            e.reason
        ))
        .into());
    }
    Ok(match entries.last() {
        Some(last) => format!(
            "audit log verified: {} entries, seq 1..{}, head hash {}",
            entries.len(),
            last.seq,
            last.hash
        ),
        None => "audit log verified: empty".to_owned(),
    })
}

/// Fails (exit 7) when the verified log contradicts a checkpoint.
fn check_all(entries: &[AuditEntry], cps: &[Checkpoint]) -> Result<()> {
    for cp in cps {
        if let Err(e) = check_checkpoint(entries, cp) {
            return Err(AuditTampered(format!(
                "audit log does NOT match checkpoint {}:{}…: {e}",
                cp.seq,
                cp.hash.get(..12).unwrap_or(&cp.hash)
            ))
            .into());
        }
    }
    Ok(())
}

/// Reads the checkpoints file (absent: none yet).
fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a checkpoint", path.display(), i + 1))
        })
        .collect()
}

/// Appends a checkpoint (file mode 0600, created with its directory).
fn append_checkpoint(path: &Path, cp: &Checkpoint) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut line = serde_json::to_vec(cp)?;
    line.push(b'\n');
    f.write_all(&line)
        .with_context(|| format!("writing {}", path.display()))
}

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { file, expect_head } => {
            let entries = read_log(&file)?;
            let summary = check(&entries)?;
            check_all(&entries, &expect_head)?;
            println!("{summary}");
            if !expect_head.is_empty() {
                println!("matches {} expected head(s)", expect_head.len());
            }
            Ok(())
        }
        AuditCmd::Export {
            output,
            checkpoints,
        } => {
            let entries = ctx.client()?.audit_export().await?;
            let summary = check(&entries).context("the collector's audit export")?;
            let cp_path = match checkpoints {
                Some(p) => p,
                None => ctx.config_path()?.with_file_name("audit-checkpoints.jsonl"),
            };
            let earlier = read_checkpoints(&cp_path)?;
            check_all(&entries, &earlier).context("the collector's audit export")?;
            let mut bytes = serde_json::to_vec_pretty(&entries)?;
            bytes.push(b'\n');
            match output {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                None => std::io::stdout().write_all(&bytes)?,
            }
            eprintln!("{summary}");
            if let Some(last) = entries.last() {
                let cp = Checkpoint {
                    seq: last.seq,
                    hash: last.hash.clone(),
                };
                append_checkpoint(&cp_path, &cp)?;
                eprintln!(
                    "matches {} earlier checkpoint(s); head {cp} kept in {}",
                    earlier.len(),
                    cp_path.display()
                );
            }
            Ok(())
        }
        AuditCmd::List {
            after_seq,
            limit,
            json,
        } => {
            if after_seq < 0 {
                bail!("--after-seq must be 0 or more");
            }
            let entries = ctx.client()?.audit(after_seq, limit).await?;
            if json {
                return print_json(&entries);
            }
            let mut table = Table::new(vec!["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "DETAILS"]);
            for e in &entries {
                table.row(vec![
                    e.seq.to_string(),
                    time(e.ts_ms),
                    e.actor.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.details.to_string(),
                ]);
            }
            if table.is_empty() {
                println!("no audit entries after seq {after_seq}");
                return Ok(());
            }
            Ok(table.print()?)
        }
    }
}
