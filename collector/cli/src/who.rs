//! `who` (fleet-wide group-by, top uploaders) and `alerts` (first-use alerts).

use anyhow::Result;
use clap::{Args, ValueEnum};
use shadowai_api::GroupBy;

use crate::Ctx;
use crate::filters::FilterArgs;
use crate::output::{Table, print_json, time};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ByArg {
    User,
    Host,
    Process,
    Group,
}

impl From<ByArg> for GroupBy {
    fn from(b: ByArg) -> GroupBy {
        match b {
            ByArg::User => GroupBy::User,
            ByArg::Host => GroupBy::Host,
            ByArg::Process => GroupBy::Process,
            ByArg::Group => GroupBy::Group,
        }
    }
}

#[derive(Args, Debug)]
pub struct WhoArgs {
    /// What to group findings by, across services.
    #[arg(long, value_enum, default_value = "user")]
    by: ByArg,
    /// Only unsanctioned and blocked services, most data sent first (top uploaders).
    #[arg(long)]
    uploads: bool,
    #[command(flatten)]
    filters: FilterArgs,
    /// Rows per page (1–500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: u32,
    /// Start at this row (the `more: --offset N` a previous page printed).
    #[arg(long)]
    offset: Option<u64>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// Show the outbox instead: every alert and security notice (host identity conflicts,
    /// alerts suppressed over a host's cap) with its webhook delivery state — pending,
    /// delivered, failed, not_sent (no webhook configured) — attempts and last error.
    #[arg(long)]
    outbox: bool,
    /// Alerts older than this alert id (the `more: --before N` a previous page printed).
    #[arg(long)]
    before: Option<i64>,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    #[arg(long)]
    json: bool,
}

/// 1536 → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{v:.0} {}", UNITS[i])
    }
}

pub async fn who(ctx: &Ctx, args: WhoArgs) -> Result<()> {
    let mut q = args.filters.query(Some(args.limit), None)?;
    q.by = Some(args.by.into());
    q.offset = args.offset;
    let client = ctx.client()?;
    let page = if args.uploads {
        client.uploaders(&q).await?
    } else {
        client.group_report(&q).await?
    };
    if args.json {
        return print_json(&page);
    }
    let mut table = Table::new(vec![
        "KEY",
        "SERVICES",
        "UNSANCTIONED",
        "HOSTS",
        "USERS",
        "EVENTS",
        "BLOCKED",
        "WOULD BLOCK",
        "SENT",
        "MAX RISK",
        "FIRST SEEN (EVER)",
        "LAST SEEN",
    ]);
    for r in &page.items {
        table.row(vec![
            if r.label.is_empty() {
                "(none)".to_owned()
            } else {
                r.label.clone()
            },
            r.services.to_string(),
            r.risky_services.to_string(),
            r.hosts.to_string(),
            r.users.to_string(),
            r.events.to_string(),
            r.blocked_events.to_string(),
            r.would_block_events.to_string(),
            bytes(r.bytes_out),
            r.max_risk.to_string(),
            time(r.first_seen_ms),
            time(r.last_seen_ms),
        ]);
    }
    if table.is_empty() {
        println!("no AI use matches");
    } else {
        table.print()?;
    }
    if let Some(next) = page.next_offset {
        println!("more: --offset {next}");
    }
    Ok(())
}

pub async fn alerts(ctx: &Ctx, args: AlertsArgs) -> Result<()> {
    if args.outbox {
        return outbox(ctx, args).await;
    }
    let page = ctx.client()?.alerts(args.before, args.limit).await?;
    if args.json {
        return print_json(&page);
    }
    let mut table = Table::new(vec![
        "RAISED", "WHY", "SERVICE", "VERDICT", "ACTION", "HOST", "USER", "PROCESS",
    ]);
    for a in &page.items {
        let why: Vec<&str> = a.reasons.iter().map(|r| r.as_str()).collect();
        table.row(vec![
            time(a.created_ms),
            why.join(","),
            a.service_id.clone(),
            a.verdict.as_str().to_owned(),
            a.action.as_str().to_owned(),
            a.hostname.clone(),
            a.user.clone(),
            a.exe.clone(),
        ]);
    }
    if table.is_empty() {
        println!("no alerts");
    } else {
        table.print()?;
    }
    if let Some(b) = page.next_before {
        println!("more: --before {b}");
    }
    Ok(())
}

async fn outbox(ctx: &Ctx, args: AlertsArgs) -> Result<()> {
    use shadowai_api::OutboxItem;
    let page = ctx.client()?.outbox(args.before, args.limit).await?;
    if args.json {
        return print_json(&page);
    }
    println!(
        "outbox: {} pending, {} delivered, {} failed, {} not sent (no webhook)",
        page.pending, page.delivered, page.failed, page.not_sent
    );
    let mut table = Table::new(vec![
        "ID",
        "RAISED",
        "KIND",
        "HOST",
        "STATE",
        "ATTEMPTS",
        "NEXT / DONE",
        "WHAT",
        "LAST ERROR",
    ]);
    for e in &page.items {
        let (kind, what) = match &e.item {
            OutboxItem::Alert(a) => (
                "first_use".to_owned(),
                format!("{} {} by {}", a.verdict.as_str(), a.service_id, a.user),
            ),
            OutboxItem::Notice(n) => (n.kind.as_str().to_owned(), n.summary.clone()),
        };
        table.row(vec![
            e.id.to_string(),
            time(e.created_ms),
            kind,
            e.host_id.clone(),
            e.state.as_str().to_owned(),
            e.attempts.to_string(),
            e.next_attempt_ms
                .or(e.done_ms)
                .map_or_else(|| "-".to_owned(), time),
            what,
            e.last_error.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    if table.is_empty() {
        println!("nothing raised yet");
    } else {
        table.print()?;
    }
    if let Some(b) = page.next_before {
        println!("more: --outbox --before {b}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(50 << 20), "50 MiB");
    }
}
