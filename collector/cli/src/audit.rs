//! `audit verify FILE` (offline), `audit export`, `audit list`.
//!
//! Anchoring: a hash chain alone does not stop someone with database access from rewriting
//! the log and recomputing every hash, or from cutting its tail. `audit export --key K`
//! therefore keeps the heads it has seen in a local checkpoints file (next to the login
//! file), one line per export signed with the admin's key and chained to the line before
//! (`checkpoints.rs`), and refuses (exit 7) a log that contradicts any of them — or a
//! checkpoints file someone edited. `audit verify FILE --checkpoints CP --trusted-keys KEYS`
//! does the same offline; `--expect-head SEQ:HASH` checks a head noted elsewhere (a ticket,
//! the SIEM).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shadowai_api::audit::{AuditEntry, Checkpoint, check_checkpoint, verify};
use shadowai_rules::keyset::KeySet;

use crate::checkpoints::{self, SignedCheckpoint, Trust};

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
        /// A signed checkpoints file (`audit export --key`): every line's signature and the
        /// chain between lines are checked, then the log against each head.
        #[arg(long, value_name = "FILE", requires = "trusted_keys")]
        checkpoints: Option<PathBuf>,
        /// Public keys the checkpoints may be signed with (one hex key per line; the
        /// `rules keygen` public key file is a one-key set).
        #[arg(long, value_name = "FILE")]
        trusted_keys: Option<PathBuf>,
    },
    /// Download the whole chain as a JSON array (verified, and checked against every
    /// checkpoint kept from earlier exports, before it is written; its head is then kept).
    Export {
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Checkpoints file (default: `audit-checkpoints.jsonl` next to the login file).
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// The admin's secret key (`rules keygen`): the new head is signed with it and kept,
        /// and earlier lines are checked against its public half. Without it (and without
        /// `--trusted-keys`) no checkpoint is checked or kept.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// More public keys earlier lines may be signed with (after a key rotation).
        #[arg(long, value_name = "FILE")]
        trusted_keys: Option<PathBuf>,
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

/// The key sets checkpoint lines are checked with.
fn trust(key: Option<&ed25519_dalek::SigningKey>, trusted: Option<&Path>) -> Result<Trust> {
    let mut t = Trust::default();
    if let Some(k) = key {
        t.0.push(KeySet::new(vec![k.verifying_key()]).map_err(anyhow::Error::msg)?);
    }
    if let Some(p) = trusted {
        t.0.push(KeySet::read(p)?);
    }
    Ok(t)
}

fn now_ms() -> Result<i64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    i64::try_from(d.as_millis()).context("the system clock is out of range")
}

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify {
            file,
            expect_head,
            checkpoints,
            trusted_keys,
        } => {
            let entries = read_log(&file)?;
            let summary = check(&entries)?;
            check_all(&entries, &expect_head)?;
            let signed = match &checkpoints {
                Some(cp) => checkpoints::read(cp, &trust(None, trusted_keys.as_deref())?)?,
                None => Vec::new(),
            };
            let heads: Vec<Checkpoint> = signed.iter().map(SignedCheckpoint::checkpoint).collect();
            check_all(&entries, &heads)?;
            println!("{summary}");
            if !expect_head.is_empty() {
                println!("matches {} expected head(s)", expect_head.len());
            }
            if let Some(cp) = &checkpoints {
                println!(
                    "matches {} signed checkpoint(s) in {}",
                    heads.len(),
                    cp.display()
                );
            }
            Ok(())
        }
        AuditCmd::Export {
            output,
            checkpoints,
            key,
            trusted_keys,
        } => {
            let key = key
                .as_deref()
                .map(shadowai_rules::bundle::read_signing_key)
                .transpose()?;
            let trust = trust(key.as_ref(), trusted_keys.as_deref())?;
            let entries = ctx.client()?.audit_export().await?;
            let summary = check(&entries).context("the collector's audit export")?;
            let cp_path = match checkpoints {
                Some(p) => p,
                None => ctx.config_path()?.with_file_name("audit-checkpoints.jsonl"),
            };
            let earlier = if trust.is_empty() {
                eprintln!(
                    "note: no --key or --trusted-keys: the export is not checked against signed checkpoints and no head is kept"
                );
                Vec::new()
            } else {
                checkpoints::read(&cp_path, &trust)?
            };
            let heads: Vec<Checkpoint> = earlier.iter().map(SignedCheckpoint::checkpoint).collect();
            check_all(&entries, &heads).context("the collector's audit export")?;
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
            if let (Some(last), Some(key)) = (entries.last(), key.as_ref()) {
                let cp = Checkpoint {
                    seq: last.seq,
                    hash: last.hash.clone(),
                };
                let line = SignedCheckpoint::sign(&cp, now_ms()?, earlier.last(), key);
                checkpoints::append(&cp_path, &line)?;
                eprintln!(
                    "matches {} earlier checkpoint(s); head {cp} signed (key {}) and kept in {}",
                    earlier.len(),
                    line.key_id,
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
