//! `audit verify FILE` (offline), `audit export`, `audit list`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shadowai_api::audit::{AuditEntry, verify};

use crate::output::{Table, print_json, time};
use crate::{AuditTampered, Ctx};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check an exported audit log offline: sequence, hash chain and every entry's hash.
    /// Exit code 7 names the first entry that fails.
    Verify { file: PathBuf },
    /// Download the whole chain as a JSON array (verified before it is written).
    Export {
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
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

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { file } => {
            let entries = read_log(&file)?;
            println!("{}", check(&entries)?);
            Ok(())
        }
        AuditCmd::Export { output } => {
            let entries = ctx.client()?.audit_export().await?;
            let summary = check(&entries).context("the collector's audit export")?;
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
