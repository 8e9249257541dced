//! `findings`, `services`, `trend` and `export`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::Ctx;
use crate::filters::FilterArgs;
use crate::output::{Table, print_json, time};

#[derive(Args, Debug)]
pub struct FindingsArgs {
    #[command(flatten)]
    filters: FilterArgs,
    /// Findings per page (1–1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Continue after a previous page (the cursor it printed).
    #[arg(long)]
    cursor: Option<String>,
    /// Print the raw JSON page.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ServicesArgs {
    #[command(flatten)]
    filters: FilterArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Ocsf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    format: ExportFormat,
    #[command(flatten)]
    filters: FilterArgs,
    /// Most findings to export (1–100000; the collector's default is 10000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: Option<u32>,
    /// Write to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `80 severe`.
fn risk_cell(score: u8) -> String {
    format!("{score} {}", shadowai_api::risk_band(score))
}

/// Below a table: each distinct (service, score) with the factors of the plan that gives the
/// score (from the collector's catalogue), or why there are none — too long for a cell.
fn print_risk_legend(lines: std::collections::BTreeMap<(String, u8), String>) {
    if lines.is_empty() {
        return;
    }
    println!("\nrisk scores, factor by factor (the collector's catalogue):");
    for ((service, _), why) in lines {
        println!("  {service}: {why}");
    }
}

fn verdict(v: shadowai_api::Verdict) -> &'static str {
    match v {
        shadowai_api::Verdict::Sanctioned => "sanctioned",
        shadowai_api::Verdict::Tolerated => "tolerated",
        shadowai_api::Verdict::Unsanctioned => "unsanctioned",
        shadowai_api::Verdict::Blocked => "blocked",
    }
}

pub async fn findings(ctx: &Ctx, args: FindingsArgs) -> Result<()> {
    let query = args.filters.query(Some(args.limit), args.cursor.clone())?;
    let page = ctx.client()?.findings(&query).await?;
    if args.json {
        return print_json(&page);
    }
    let mut table = Table::new(vec![
        "LAST SEEN",
        "HOST",
        "USER",
        "PROCESS",
        "SERVICE",
        "VERDICT",
        "ACTION",
        "COUNT",
        "SENT",
        "RULE",
        "POLICY",
        "RISK",
    ]);
    for f in &page.items {
        table.row(vec![
            time(f.last_seen_ms),
            f.hostname.clone(),
            f.user.clone(),
            f.process.exe.clone(),
            f.service_id.clone(),
            verdict(f.verdict).to_owned(),
            f.action.as_str().to_owned(),
            f.count.to_string(),
            f.bytes_out
                .map_or_else(|| "-".to_owned(), crate::who::bytes),
            f.rule.clone(),
            f.policy_version
                .clone()
                .unwrap_or_else(|| "catalogue".to_owned()),
            risk_cell(f.risk_score),
        ]);
    }
    if table.is_empty() {
        println!("no findings match");
    } else {
        table.print()?;
        print_risk_legend(
            page.items
                .iter()
                .map(|f| {
                    let risk = page.risk.iter().find(|r| r.service_id == f.service_id);
                    (
                        (f.service_id.clone(), f.risk_score),
                        shadowai_api::risk_details(f.risk_score, risk),
                    )
                })
                .collect(),
        );
    }
    if let Some(next) = page.next_cursor {
        println!("more: --cursor {next}");
    }
    Ok(())
}

pub async fn services(ctx: &Ctx, args: ServicesArgs) -> Result<()> {
    let rows = ctx
        .client()?
        .services_report(&args.filters.query(None, None)?)
        .await?;
    if args.json {
        return print_json(&rows);
    }
    let mut table = Table::new(vec![
        "SERVICE",
        "VENDOR",
        "CATEGORY",
        "VERDICT",
        "RISK",
        "HOSTS",
        "USERS",
        "PROCS",
        "EVENTS",
        "BLOCKED",
        "WOULD BLOCK",
        "SENT",
        "FIRST SEEN (EVER)",
        "LAST SEEN",
    ]);
    for r in &rows {
        table.row(vec![
            r.service_id.clone(),
            r.vendor.clone(),
            r.category.clone(),
            verdict(r.verdict).to_owned(),
            risk_cell(r.risk_score),
            r.hosts.to_string(),
            r.users.to_string(),
            r.processes.to_string(),
            r.events.to_string(),
            r.blocked_events.to_string(),
            r.would_block_events.to_string(),
            crate::who::bytes(r.bytes_out),
            time(
                r.first_seen_ever_ms
                    .unwrap_or(r.first_seen_ms)
                    .min(r.first_seen_ms),
            ),
            time(r.last_seen_ms),
        ]);
    }
    if table.is_empty() {
        println!("no AI services seen");
        return Ok(());
    }
    table.print()?;
    print_risk_legend(
        rows.iter()
            .map(|r| {
                let why = match &r.risk {
                    Some(p) => format!(
                        "{}/100 ({}): {}",
                        r.risk_score,
                        shadowai_api::risk_band(r.risk_score),
                        p.details()
                    ),
                    None => format!(
                        "{}/100 ({}); not explained by the collector's catalogue (the service \
                         is not in it, or it scores the service differently now)",
                        r.risk_score,
                        shadowai_api::risk_band(r.risk_score)
                    ),
                };
                ((r.service_id.clone(), r.risk_score), why)
            })
            .collect(),
    );
    Ok(())
}

pub async fn trend(ctx: &Ctx, args: ServicesArgs) -> Result<()> {
    let rows = ctx
        .client()?
        .trend(&args.filters.query(None, None)?)
        .await?;
    if args.json {
        return print_json(&rows);
    }
    let mut table = Table::new(vec![
        "BUCKET (UTC)",
        "SERVICE",
        "VERDICT",
        "EVENTS",
        "HOSTS",
        "USERS",
    ]);
    for r in &rows {
        table.row(vec![
            match r.bucket {
                shadowai_api::Bucket::Hour => time(r.bucket_start_ms),
                shadowai_api::Bucket::Day => r.day.clone(),
            },
            r.service_id.clone(),
            verdict(r.verdict).to_owned(),
            r.events.to_string(),
            r.hosts.to_string(),
            r.users.to_string(),
        ]);
    }
    if table.is_empty() {
        println!("no AI use in this range");
        return Ok(());
    }
    Ok(table.print()?)
}

pub async fn export(ctx: &Ctx, args: ExportArgs) -> Result<()> {
    let query = args.filters.query(args.limit, None)?;
    let client = ctx.client()?;
    let mut bytes = match args.format {
        ExportFormat::Csv => client.export_csv(&query).await?.into_bytes(),
        ExportFormat::Ocsf => serde_json::to_vec_pretty(&client.export_ocsf(&query).await?)?,
    };
    if args.format == ExportFormat::Ocsf {
        bytes.push(b'\n');
    }
    match &args.output {
        Some(path) => {
            if path.exists() && path.is_dir() {
                bail!("--output {}: is a directory", path.display());
            }
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
        }
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}
