//! `enrollment-keys create | list | revoke`: the secrets hosts enroll with. Each is
//! single-use or time-limited as the admin chooses; revocation takes effect at the next
//! enrollment on every replica (keys live in the collector's database).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use shadowai_api::wire::EnrollmentKeyRequest;

use crate::Ctx;
use crate::output::{Table, opt_time, print_json, time};

#[derive(Subcommand, Debug)]
pub enum EnrollmentCmd {
    /// Create an enrollment secret. It is shown once: written to --out (mode 0600, never
    /// overwritten), else printed on standard output.
    Create {
        /// What it is for (shown in the list and the audit log).
        #[arg(long, default_value = "")]
        note: String,
        /// Seconds until it stops working (1..=31536000); default: no expiry.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl_secs: Option<u64>,
        /// How many distinct hosts may enroll with it (1..=1000000); default: no limit.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        max_uses: Option<u64>,
        /// File to write the secret to instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Enrollment keys (never the secrets): expiry, uses, who created them.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once; hosts already enrolled with it keep working.
    Revoke { id: i64 },
}

/// Writes the secret to a new file readable only by its owner.
fn write_secret(path: &std::path::Path, secret: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

pub async fn run(ctx: &Ctx, cmd: EnrollmentCmd) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        EnrollmentCmd::Create {
            note,
            ttl_secs,
            max_uses,
            out,
        } => {
            let created = client
                .create_enrollment_key(&EnrollmentKeyRequest {
                    note,
                    ttl_s: ttl_secs,
                    max_uses,
                })
                .await?;
            let k = &created.key;
            let limits = format!(
                "expires {}, {} use(s)",
                opt_time(k.expires_ms),
                k.max_uses
                    .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
            );
            match out {
                Some(path) => {
                    write_secret(&path, &created.secret)?;
                    println!(
                        "enrollment key {} ({limits}): secret written to {}",
                        k.id,
                        path.display()
                    );
                }
                None => {
                    eprintln!(
                        "enrollment key {} ({limits}); the secret, shown once:",
                        k.id
                    );
                    println!("{}", created.secret);
                }
            }
            Ok(())
        }
        EnrollmentCmd::List { json } => {
            let keys = client.enrollment_keys().await?;
            if json {
                return print_json(&keys);
            }
            let mut table = Table::new(vec![
                "ID", "NOTE", "CREATED", "BY", "EXPIRES", "USES", "STATE",
            ]);
            for k in &keys {
                table.row(vec![
                    k.id.to_string(),
                    k.note.clone(),
                    time(k.created_ms),
                    k.created_by.clone(),
                    opt_time(k.expires_ms),
                    match k.max_uses {
                        Some(m) => format!("{}/{m}", k.uses),
                        None => k.uses.to_string(),
                    },
                    if k.revoked { "revoked" } else { "active" }.to_owned(),
                ]);
            }
            if table.is_empty() {
                println!("no enrollment keys");
                return Ok(());
            }
            Ok(table.print()?)
        }
        EnrollmentCmd::Revoke { id } => {
            let k = client.revoke_enrollment_key(id).await?;
            println!("revoked enrollment key {} ({})", k.id, k.note);
            Ok(())
        }
    }
}
