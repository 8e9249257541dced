//! `agents list | revoke | rotate-token | release`.

use anyhow::Result;
use clap::Subcommand;

use crate::Ctx;
use crate::output::{Table, opt_time, print_json};

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// Enrolled agents: last seen, versions, mode, lost events.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent: its token is refused from then on, and its host cannot enroll
    /// again until an admin releases it.
    Revoke {
        agent_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Kill only the agent's current token (say it leaked): the host stays enrolled and its
    /// agent re-enrolls by itself with its per-host key on the next 401.
    RotateToken {
        agent_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Clear the host's key binding (after a revocation or a host identity conflict) so the
    /// host may enroll anew with an enrollment secret.
    Release {
        agent_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

pub async fn run(ctx: &Ctx, cmd: AgentsCmd) -> Result<()> {
    let client = ctx.client()?;
    match cmd {
        AgentsCmd::List { json } => {
            let agents = client.agents().await?;
            if json {
                return print_json(&agents);
            }
            let mut table = Table::new(vec![
                "AGENT",
                "HOST",
                "GROUP",
                "LAST SEEN",
                "VERSION",
                "BUNDLE",
                "MODE",
                "LOST",
                "STATE",
            ]);
            for a in &agents {
                table.row(vec![
                    a.agent_id.clone(),
                    a.hostname.clone(),
                    a.group.clone().unwrap_or_else(|| "-".into()),
                    opt_time(a.last_seen_ms),
                    a.agent_version.clone().unwrap_or_else(|| "-".into()),
                    a.bundle_version.clone().unwrap_or_else(|| "-".into()),
                    a.mode.map_or("-", |m| m.as_str()).to_owned(),
                    a.lost_events.to_string(),
                    match (a.revoked, a.identity_conflicts) {
                        (true, _) => "revoked".to_owned(),
                        (false, 0) => "active".to_owned(),
                        (false, n) => format!("active, {n} identity conflict(s)"),
                    },
                ]);
            }
            if table.is_empty() {
                println!("no agents enrolled");
                return Ok(());
            }
            Ok(table.print()?)
        }
        AgentsCmd::Revoke { agent_id, reason } => {
            let a = client.revoke_agent(&agent_id, reason.as_deref()).await?;
            println!("revoked {} ({})", a.agent_id, a.hostname);
            Ok(())
        }
        AgentsCmd::RotateToken { agent_id, reason } => {
            let a = client
                .rotate_agent_token(&agent_id, reason.as_deref())
                .await?;
            println!(
                "token of {} ({}) rotated: the agent re-enrolls with its host key",
                a.agent_id, a.hostname
            );
            Ok(())
        }
        AgentsCmd::Release { agent_id, reason } => {
            let a = client.release_agent(&agent_id, reason.as_deref()).await?;
            println!(
                "released host {} ({}): it may enroll again with an enrollment secret",
                a.host_id, a.hostname
            );
            Ok(())
        }
    }
}
