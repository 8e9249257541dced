//! `shadowai discovery …`: unknown AI names the fleet saw, and their promotion into the
//! catalogue through a catalogue proposal a different person approves.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use shadowai_api::ProposalStatus;
use shadowai_api::discovery::{
    CatalogueEntry, CatalogueImpact, CatalogueProposal, CatalogueProposalRequest, EntryRisk,
};
use shadowai_rules::Category;
use shadowai_rules::catalogue::{Certification, Control, Retention, Training};

use crate::Ctx;
use crate::output::{Table, print_json, time};

/// A snake_case value of one of the catalogue's enums.
fn snake<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("{s:?} is not a valid value"))
}

fn category(s: &str) -> Result<Category, String> {
    Category::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        format!("{s:?}: one of {}", all.join(", "))
    })
}

/// `discovery propose`.
#[derive(Args, Debug)]
pub struct ProposeArgs {
    /// The discovery candidate (a name from `discovery list`) this promotes.
    #[arg(long)]
    pub candidate: Option<String>,
    /// Catalogue id (lower-case letters, digits, `-`).
    #[arg(long)]
    pub id: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub vendor: String,
    /// Category, e.g. model_api, chat_assistant, coding_assistant, llm_ops.
    #[arg(long, value_parser = category)]
    pub category: Category,
    #[arg(long, default_value = "")]
    pub description: String,
    /// A domain: the name and every name below it (repeat for more).
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// An exact host name (repeat for more).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Trains on user data: yes, opt_out, opt_in, no, unknown.
    #[arg(long, value_parser = snake::<Training>)]
    pub trains: Training,
    /// Retention: none, limited, extended, unknown.
    #[arg(long, value_parser = snake::<Retention>)]
    pub retention: Retention,
    /// ISO 3166-1 alpha-2 code, EU or LOCAL.
    #[arg(long)]
    pub jurisdiction: String,
    /// Enterprise control (sso, scim, audit_log, dpa, zero_retention, data_residency,
    /// tenant_restriction); repeat for more.
    #[arg(long = "control", value_parser = snake::<Control>)]
    pub controls: Vec<Control>,
    /// Certification (soc2, iso27001, iso27701, iso42001, fedramp, hipaa_baa); repeat.
    #[arg(long = "cert", value_parser = snake::<Certification>)]
    pub certifications: Vec<Certification>,
    /// The https:// URL of the vendor page the facts were read from.
    #[arg(long)]
    pub source: String,
    /// The day the source was read (YYYY-MM-DD).
    #[arg(long)]
    pub checked: String,
    /// Why the service belongs in the catalogue.
    #[arg(long)]
    pub reason: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DiscoveryCmd {
    /// Unknown AI names seen across the fleet (most hosts first), with their promotion state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Propose adding a service to the catalogue, usually from a discovery candidate. The
    /// entry is validated like a catalogue file (shared infrastructure, known-benign hosts and
    /// names of existing services are refused, by field) and its impact is shown; it joins
    /// the catalogue once a different person approves it, and reaches agents with the next
    /// `shadowai rules publish`.
    Propose(Box<ProposeArgs>),
    /// Catalogue proposals, newest first.
    Proposals {
        /// pending, approved or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// What a catalogue proposal would name (candidates, recent findings, hosts, users).
    Impact {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Approve a catalogue proposal (a different person than the proposer, approver role).
    Approve {
        id: i64,
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a catalogue proposal.
    Reject {
        id: i64,
        #[arg(long)]
        note: Option<String>,
    },
}

fn print_impact(i: &CatalogueImpact) {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!(
        "  names candidates: {} ({} hits)",
        list(&i.candidates),
        i.candidate_hits
    );
    println!(
        "  findings (last {} days) with a matching name: {} (named today as {})",
        i.window_ms / 86_400_000,
        i.findings,
        list(&i.services_now)
    );
    println!("  hosts: {}", list(&i.hosts));
    println!("  users: {}", list(&i.users));
    println!("  processes: {}", list(&i.processes));
    if let Some(v) = i.verdict {
        println!("  verdict under the policy in force: {v}");
    }
}

fn describe(p: &CatalogueProposal) -> String {
    format!(
        "catalogue proposal {} ({}): {} `{}` [{}] {}{} — proposed by {}",
        p.id,
        p.status.as_str(),
        p.entry.name,
        p.entry.id,
        p.entry.category,
        p.entry
            .hosts
            .iter()
            .chain(&p.entry.domains)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        p.candidate
            .as_deref()
            .map(|c| format!(" (from candidate {c})"))
            .unwrap_or_default(),
        p.proposed_by
    )
}

pub async fn run(ctx: &Ctx, cmd: DiscoveryCmd) -> Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        DiscoveryCmd::List { json } => {
            let list = client.discovery().await?;
            if json {
                return print_json(&list).map(|()| ExitCode::SUCCESS);
            }
            let mut t = Table::new(vec![
                "NAME",
                "HOSTS",
                "HITS",
                "LAST SEEN",
                "PROCESSES",
                "ALONGSIDE",
                "PROPOSAL",
            ]);
            for c in &list {
                t.row(vec![
                    c.name.clone(),
                    c.hosts.len().to_string(),
                    c.hits.to_string(),
                    time(c.last_seen_ms),
                    c.processes.join(" "),
                    c.alongside.join(" "),
                    c.proposal.as_ref().map_or_else(
                        || "-".to_owned(),
                        |p| format!("{} {} ({})", p.id, p.entry_id, p.status.as_str()),
                    ),
                ]);
            }
            if t.is_empty() {
                println!("no discovery candidates");
            } else {
                t.print()?;
            }
        }
        DiscoveryCmd::Propose(a) => {
            let ProposeArgs {
                candidate,
                id,
                name,
                vendor,
                category,
                description,
                domains,
                hosts,
                trains,
                retention,
                jurisdiction,
                controls,
                certifications,
                source,
                checked,
                reason,
                json,
            } = *a;
            let req = CatalogueProposalRequest {
                candidate,
                entry: CatalogueEntry {
                    id,
                    name,
                    vendor,
                    category,
                    description,
                    domains,
                    hosts,
                    risk: EntryRisk {
                        trains_on_user_data: trains,
                        retention,
                        jurisdiction,
                        enterprise_controls: controls,
                        certifications,
                    },
                    source,
                    checked,
                },
                reason,
            };
            let p = client.propose_catalogue_entry(&req).await?;
            if json {
                return print_json(&p).map(|()| ExitCode::SUCCESS);
            }
            println!("{}", describe(&p));
            if let Some(i) = &p.impact {
                print_impact(i);
            }
            println!(
                "waits for a different person: `shadowai discovery approve {}`",
                p.id
            );
        }
        DiscoveryCmd::Proposals { status, json } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(ProposalStatus::parse(s).with_context(|| {
                    format!("--status {s:?}: expected pending, approved or rejected")
                })?),
            };
            let list = client.catalogue_proposals(status).await?;
            if json {
                return print_json(&list).map(|()| ExitCode::SUCCESS);
            }
            let mut t = Table::new(vec![
                "ID",
                "ENTRY",
                "NAMES",
                "CANDIDATE",
                "STATUS",
                "PROPOSED BY",
                "PROPOSED",
                "DECIDED BY",
                "SOURCE",
            ]);
            for p in &list {
                t.row(vec![
                    p.id.to_string(),
                    p.entry.id.clone(),
                    p.entry
                        .hosts
                        .iter()
                        .chain(&p.entry.domains)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" "),
                    p.candidate.clone().unwrap_or_else(|| "-".into()),
                    p.status.as_str().to_owned(),
                    p.proposed_by.clone(),
                    time(p.proposed_ms),
                    p.decided_by.clone().unwrap_or_else(|| "-".into()),
                    p.entry.source.clone(),
                ]);
            }
            if t.is_empty() {
                println!("no catalogue proposals");
            } else {
                t.print()?;
            }
        }
        DiscoveryCmd::Impact { id, json } => {
            let i = client.catalogue_proposal_impact(id).await?;
            if json {
                return print_json(&i).map(|()| ExitCode::SUCCESS);
            }
            println!("catalogue proposal {id} would name:");
            print_impact(&i);
        }
        DiscoveryCmd::Approve { id, note } => {
            let p = client
                .decide_catalogue_proposal(id, true, note.as_deref())
                .await?;
            println!("{}", describe(&p));
            println!("part of the collector's catalogue: publish a bundle to reach agents");
        }
        DiscoveryCmd::Reject { id, note } => {
            let p = client
                .decide_catalogue_proposal(id, false, note.as_deref())
                .await?;
            println!("{}", describe(&p));
        }
    }
    Ok(ExitCode::SUCCESS)
}
