//! `rules …`: policy proposals and approvals, bundles, staged rollouts and rollback, all
//! through the collector.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shadowai_api::wire::{
    PolicyScope, Proposal, ProposalRequest, ProposalStatus, Rollout, RolloutRequest,
};

use crate::Ctx;
use crate::filters::VerdictArg;
use crate::output::{Table, print_json, time};

#[derive(Subcommand, Debug)]
pub enum RulesCmd {
    /// Propose a verdict for a service. A `blocked` proposal waits for a different person
    /// with the approver role, and so does one replacing a block in force; other verdicts
    /// apply at once. `--service mode:enforce --verdict blocked` (or `mode:monitor`) proposes
    /// switching what `blocked` verdicts do; it always waits for a second person.
    Propose {
        /// Service id from the catalogue (e.g. deepseek), `category:<name>`,
        /// `jurisdiction:<code>`, `*`, or `mode:enforce` / `mode:monitor`.
        #[arg(long)]
        service: String,
        #[arg(long, value_enum)]
        verdict: VerdictArg,
        /// Apply to one agent group instead of the whole fleet.
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// List proposals.
    Proposals {
        /// pending, approved, rejected or applied.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// What approving a proposal would change: verdicts per service and audience, and the
    /// hosts, users and processes that use those services (findings of the last 7 days).
    Impact {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending proposal (approver role; never your own).
    Approve {
        id: i64,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a pending proposal (approver role).
    Reject {
        id: i64,
        #[arg(long)]
        note: Option<String>,
    },
    /// The effective organisation policy.
    Policy {
        #[arg(long)]
        json: bool,
    },
    /// Upload a signed bundle (admin).
    Upload {
        file: PathBuf,
        #[arg(long)]
        version: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Compose the approved policy with the collector's catalogue, sign it here with your
    /// key, upload it and start a canary rollout.
    Publish(crate::publish::PublishArgs),
    /// List uploaded bundles.
    Bundles {
        #[arg(long)]
        json: bool,
    },
    /// Staged rollouts: start (canary group), advance (percent, then all), list.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Roll a rollout back. Without `--key`, agents that have not loaded it yet stay on the
    /// previous bundle, but agents that did keep it (they refuse older versions). With
    /// `--key`, the previous content is signed again under a higher version and rolled out
    /// to all: every agent returns to it.
    Rollback {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
        /// Publisher's secret key: re-sign the previous content (a real rollback).
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=366))]
        valid_days: u32,
    },
    /// Local catalogue and bundle tools (no collector needed).
    #[command(flatten)]
    Local(shadowai_rules::cli::RulesCommand),
}

#[derive(Subcommand, Debug)]
pub enum RolloutCmd {
    /// Start rolling out a bundle version to a canary group.
    Start {
        #[arg(long = "bundle-version")]
        bundle_version: String,
        #[arg(long)]
        canary_group: String,
    },
    /// Widen a rollout to a percentage of agents (1–99), or to all with 100 (required:
    /// there is no default).
    Advance {
        id: i64,
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
        percent: u8,
    },
    /// Agents each stage of a rollout reaches, and warnings (a stage with no agents,
    /// canary agents that stopped heartbeating).
    Status {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// List rollouts, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn scope_text(scope: &PolicyScope) -> String {
    match scope {
        PolicyScope::Fleet => "fleet".to_owned(),
        PolicyScope::Group { group } => format!("group:{group}"),
    }
}

fn verdict_text(v: shadowai_api::Verdict) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn describe(p: &Proposal) -> String {
    let mut s = format!(
        "proposal {}: {} -> {} ({}) is {}",
        p.id,
        p.service_id,
        verdict_text(p.verdict),
        scope_text(&p.scope),
        p.status.as_str()
    );
    if p.status == ProposalStatus::Pending {
        s.push_str("; a different person with the approver role must approve it");
    }
    if let Some(by) = &p.decided_by {
        s.push_str(&format!(" (decided by {by})"));
    }
    s
}

fn describe_rollout(r: &Rollout) -> String {
    format!(
        "rollout {}: bundle {} (previous {}) stage {}{}",
        r.id,
        r.bundle_version,
        r.previous_version.as_deref().unwrap_or("none"),
        r.stage.as_str(),
        if r.percent > 0 {
            format!(" {}%", r.percent)
        } else {
            String::new()
        }
    )
}

/// Agents per stage, then each warning on stderr.
pub fn print_stages(a: &shadowai_api::RolloutAgents) {
    for (name, s) in [
        ("canary", &a.canary),
        ("percent", &a.percent),
        ("rest", &a.rest),
    ] {
        println!(
            "  {name:<8} {} agents, {} on {}, {} silent",
            s.agents, s.on_version, a.bundle_version, s.silent
        );
    }
    for w in &a.warnings {
        eprintln!("warning: {w}");
    }
}

pub async fn run(ctx: &Ctx, cmd: RulesCmd) -> Result<ExitCode> {
    if let RulesCmd::Local(local) = &cmd {
        let mut out = std::io::stdout().lock();
        return Ok(shadowai_rules::cli::run(local, &mut out)?);
    }
    let client = ctx.client()?;
    match cmd {
        RulesCmd::Local(_) => {}
        RulesCmd::Propose {
            service,
            verdict,
            group,
            reason,
            json,
        } => {
            let scope = match group {
                Some(group) => PolicyScope::Group { group },
                None => PolicyScope::Fleet,
            };
            let p = client
                .propose(&ProposalRequest {
                    service_id: service,
                    verdict: verdict.into(),
                    scope,
                    reason,
                })
                .await?;
            if json {
                return print_json(&p).map(|()| ExitCode::SUCCESS);
            }
            println!("{}", describe(&p));
        }
        RulesCmd::Proposals { status, json } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(ProposalStatus::parse(s).with_context(|| {
                    format!("--status {s:?}: expected pending, approved, rejected or applied")
                })?),
            };
            let list = client.proposals(status).await?;
            if json {
                return print_json(&list).map(|()| ExitCode::SUCCESS);
            }
            let mut table = Table::new(vec![
                "ID",
                "SERVICE",
                "VERDICT",
                "SCOPE",
                "STATUS",
                "PROPOSED BY",
                "PROPOSED",
                "DECIDED BY",
                "REASON",
            ]);
            for p in &list {
                table.row(vec![
                    p.id.to_string(),
                    p.service_id.clone(),
                    verdict_text(p.verdict),
                    scope_text(&p.scope),
                    p.status.as_str().to_owned(),
                    p.proposed_by.clone(),
                    time(p.proposed_ms),
                    p.decided_by.clone().unwrap_or_else(|| "-".into()),
                    p.reason.clone(),
                ]);
            }
            if table.is_empty() {
                println!("no proposals");
            } else {
                table.print()?;
            }
        }
        RulesCmd::Impact { id, json } => {
            let imp = client.proposal_impact(id).await?;
            if json {
                return print_json(&imp).map(|()| ExitCode::SUCCESS);
            }
            let v =
                |x: Option<shadowai_api::Verdict>| x.map_or_else(|| "absent".into(), verdict_text);
            if imp.changes.is_empty() {
                println!("proposal {id} changes no verdict");
            }
            for c in &imp.changes {
                println!(
                    "{}: for {}: {} -> {}",
                    c.service_id,
                    c.who,
                    v(c.old),
                    v(c.new)
                );
            }
            for a in &imp.affected {
                println!(
                    "{} in use ({} findings): hosts {}; users {}; processes {}",
                    a.service_id,
                    a.findings,
                    a.hosts.join(", "),
                    a.users.join(", "),
                    a.processes.join(", ")
                );
            }
        }
        RulesCmd::Approve { id, note } => {
            println!("{}", describe(&client.approve(id, note.as_deref()).await?))
        }
        RulesCmd::Reject { id, note } => {
            println!("{}", describe(&client.reject(id, note.as_deref()).await?))
        }
        RulesCmd::Policy { json } => {
            let entries = client.policy().await?;
            if json {
                return print_json(&entries).map(|()| ExitCode::SUCCESS);
            }
            let mut table = Table::new(vec![
                "SERVICE",
                "VERDICT",
                "SCOPE",
                "PROPOSAL",
                "APPROVED BY",
                "SINCE",
            ]);
            for e in &entries {
                table.row(vec![
                    e.service_id.clone(),
                    verdict_text(e.verdict),
                    scope_text(&e.scope),
                    e.proposal_id.to_string(),
                    e.decided_by.clone().unwrap_or_else(|| "-".into()),
                    time(e.effective_ms),
                ]);
            }
            if table.is_empty() {
                println!("no policy entries: the catalogue defaults apply");
            } else {
                table.print()?;
            }
        }
        RulesCmd::Upload {
            file,
            version,
            note,
        } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("reading bundle {}", file.display()))?;
            if bytes.is_empty() {
                bail!("bundle {} is empty", file.display());
            }
            let b = client
                .upload_bundle(&version, note.as_deref(), bytes)
                .await?;
            println!(
                "uploaded bundle {} ({} bytes, sha256 {})",
                b.version, b.size, b.sha256
            );
        }
        RulesCmd::Publish(args) => crate::publish::run(&client, args).await?,
        RulesCmd::Bundles { json } => {
            let list = client.bundles().await?;
            if json {
                return print_json(&list).map(|()| ExitCode::SUCCESS);
            }
            let mut table = Table::new(vec![
                "VERSION",
                "SIZE",
                "SHA256",
                "UPLOADED BY",
                "UPLOADED",
                "NOTE",
            ]);
            for b in &list {
                table.row(vec![
                    b.version.clone(),
                    b.size.to_string(),
                    b.sha256.chars().take(16).collect(),
                    b.uploaded_by.clone(),
                    time(b.uploaded_ms),
                    b.note.clone(),
                ]);
            }
            if table.is_empty() {
                println!("no bundles uploaded");
            } else {
                table.print()?;
            }
        }
        RulesCmd::Rollout(RolloutCmd::Start {
            bundle_version,
            canary_group,
        }) => {
            let r = client
                .start_rollout(&RolloutRequest {
                    bundle_version,
                    canary_group,
                })
                .await?;
            println!("{}", describe_rollout(&r));
            print_stages(&client.rollout_agents(r.id).await?);
        }
        RulesCmd::Rollout(RolloutCmd::Advance { id, percent }) => {
            println!(
                "{}",
                describe_rollout(&client.advance_rollout(id, percent).await?)
            );
            print_stages(&client.rollout_agents(id).await?);
        }
        RulesCmd::Rollout(RolloutCmd::Status { id, json }) => {
            let a = client.rollout_agents(id).await?;
            if json {
                return print_json(&a).map(|()| ExitCode::SUCCESS);
            }
            print_stages(&a);
        }
        RulesCmd::Rollout(RolloutCmd::List { json }) => {
            let list = client.rollouts().await?;
            if json {
                return print_json(&list).map(|()| ExitCode::SUCCESS);
            }
            let mut table = Table::new(vec![
                "ID", "BUNDLE", "PREVIOUS", "STAGE", "CANARY", "PERCENT", "BY", "UPDATED",
            ]);
            for r in &list {
                table.row(vec![
                    r.id.to_string(),
                    r.bundle_version.clone(),
                    r.previous_version.clone().unwrap_or_else(|| "-".into()),
                    r.stage.as_str().to_owned(),
                    r.canary_group.clone(),
                    r.percent.to_string(),
                    r.created_by.clone(),
                    time(r.updated_ms),
                ]);
            }
            if table.is_empty() {
                println!("no rollouts");
            } else {
                table.print()?;
            }
        }
        RulesCmd::Rollback {
            id,
            reason,
            key: Some(key),
            valid_days,
        } => crate::publish::rollback(&client, id, reason.as_deref(), &key, valid_days).await?,
        RulesCmd::Rollback {
            id,
            reason,
            key: None,
            ..
        } => {
            println!(
                "{}",
                describe_rollout(&client.rollback_rollout(id, reason.as_deref()).await?)
            );
            eprintln!(
                "note: agents that already loaded it keep it; `--key` re-signs the previous content so they return"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
