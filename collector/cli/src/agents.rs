//! `agents list | revoke | rotate-token | release`.

use anyhow::Result;
use clap::Subcommand;
use shadowai_api::AgentInfo;

use crate::Ctx;
use crate::output::{Table, opt_time, print_json};

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// Enrolled agents: last seen, versions, mode, lost events, and a state that names refused
    /// enrollments of the host id and sensor hooks that did not attach.
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
                    state(a),
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

/// The STATE column: revoked or active, then what needs an admin's eye — refused
/// enrollments of the host id, and hooks the sensor could not attach (blind there).
fn state(a: &AgentInfo) -> String {
    if a.revoked {
        return "revoked".to_owned();
    }
    let mut s = "active".to_owned();
    if a.identity_conflicts > 0 {
        s.push_str(&format!(", {} identity conflict(s)", a.identity_conflicts));
    }
    if let Some(p) = a.pipeline.as_ref().filter(|p| !p.hooks_missing.is_empty()) {
        s.push_str(&format!(", hooks missing: {}", p.hooks_missing.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_names_what_needs_an_admins_eye() {
        let mut a: AgentInfo = serde_json::from_value(serde_json::json!({
            "agent_id": "agt-1", "host_id": "h1", "hostname": "web-01",
            "enrolled_ms": 0, "lost_events": 0, "revoked": false
        }))
        .unwrap();
        assert_eq!(state(&a), "active");
        a.identity_conflicts = 2;
        a.pipeline = Some(shadowai_api::PipelineHealth {
            hooks_missing: vec!["skb_egress".into(), "skb_ingress".into()],
            ..Default::default()
        });
        assert_eq!(
            state(&a),
            "active, 2 identity conflict(s), hooks missing: skb_egress skb_ingress"
        );
        a.revoked = true;
        assert_eq!(state(&a), "revoked");
    }
}
