//! `rules publish`: the policy in force (composed by the collector from approved
//! proposals) + the collector's catalogue → a bundle signed here with the publisher's key
//! (the secret key never leaves this machine; the collector only verifies) → uploaded (the
//! collector re-checks the two-person rule) → a canary rollout started.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use shadowai_api::client::Client;
use shadowai_api::wire::{BundleInfo, RolloutRequest};
use shadowai_rules::bundle::{self, CompileOptions};
use shadowai_rules::policy::Mode;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Agents block what is `blocked`.
    Enforce,
    /// Agents only report.
    Monitor,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The publisher's secret key file (`shadowai rules keygen`); its public key must be the
    /// one the collector and the agents trust.
    #[arg(long)]
    key: PathBuf,
    /// Enforce (agents block `blocked` uses) or monitor (report only). Required.
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// Agent group that gets the bundle first.
    #[arg(long)]
    canary_group: String,
    /// Bundle version (semver); default: the newest uploaded version with the minor part
    /// raised, or 1.0.0.
    #[arg(long)]
    version: Option<String>,
    /// Days until agents refuse the bundle.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=366))]
    valid_days: u32,
    /// Oldest agent version that may load it.
    #[arg(long, default_value = "0.1.0")]
    min_agent_version: String,
    #[arg(long)]
    note: Option<String>,
}

/// The newest semver among the uploaded bundles, minor raised; 1.0.0 when there is none.
fn next_version(bundles: &[BundleInfo]) -> semver::Version {
    bundles
        .iter()
        .filter_map(|b| semver::Version::parse(&b.version).ok())
        .max()
        .map_or_else(
            || semver::Version::new(1, 0, 0),
            |v| semver::Version::new(v.major, v.minor + 1, 0),
        )
}

fn now_s() -> Result<i64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    i64::try_from(d.as_secs()).context("the system clock is out of range")
}

pub async fn run(client: &Client, a: PublishArgs) -> Result<()> {
    let key = bundle::read_signing_key(&a.key)?;
    let mode = match a.mode {
        ModeArg::Enforce => Mode::Enforce,
        ModeArg::Monitor => Mode::Monitor,
    };
    let catalogue = client.catalogue().await?;
    let doc = client.policy_document(mode).await?;
    let version = match &a.version {
        Some(v) => semver::Version::parse(v).with_context(|| format!("--version {v:?}"))?,
        None => next_version(&client.bundles().await?),
    };
    let min_agent_version = semver::Version::parse(&a.min_agent_version)
        .with_context(|| format!("--min-agent-version {:?}", a.min_agent_version))?;
    let issued_at = now_s()?;
    let opts = CompileOptions {
        version: version.clone(),
        issued_at,
        expires_at: issued_at + i64::from(a.valid_days) * 86_400,
        min_agent_version,
    };
    let body = bundle::compile(&catalogue, &doc.policy, &opts)
        .context("the collector's policy does not compile against its catalogue")?;
    let signed = bundle::sign_body(&body, &key)?;
    if signed.is_empty() {
        bail!("signing produced no bytes");
    }
    let info = client
        .upload_bundle(&version.to_string(), a.note.as_deref(), signed)
        .await
        .context("upload refused")?;
    println!(
        "published bundle {} ({} rules from proposals {:?}, {} services, key {}, sha256 {})",
        info.version,
        doc.policy.rules.len(),
        doc.proposals,
        catalogue.services.len(),
        bundle::key_id(&key.verifying_key()),
        info.sha256
    );
    let r = client
        .start_rollout(&RolloutRequest {
            bundle_version: info.version.clone(),
            canary_group: a.canary_group.clone(),
        })
        .await
        .context("bundle uploaded, but the rollout did not start")?;
    println!(
        "rollout {}: bundle {} to canary group {:?} (advance with `shadowai rules rollout advance {} --percent N`)",
        r.id, r.bundle_version, r.canary_group, r.id
    );
    crate::rules::print_stages(&client.rollout_agents(r.id).await?);
    Ok(())
}

/// `rules rollback ID --key K`: the collector stops the rollout, then the content of the
/// bundle it replaced is signed here again under a new, higher version, uploaded (the
/// two-person rule is checked again: lifting a block still needs an approval) and rolled out
/// to every agent at once. Agents that already loaded the bad bundle accept it because its
/// version is higher: anti-rollback protection stays on.
pub async fn rollback(
    client: &Client,
    id: i64,
    reason: Option<&str>,
    key: &std::path::Path,
    valid_days: u32,
) -> Result<()> {
    let key = bundle::read_signing_key(key)?;
    let r = client.rollback_rollout(id, reason).await?;
    println!("rollout {id} of {} stopped", r.bundle_version);
    let Some(prev) = r.previous_version.clone() else {
        bail!("rollout {id} replaced no earlier bundle: there is no content to return to");
    };
    let old = client.bundle_file(&prev).await?;
    let mut body = bundle::read_unverified(&old)
        .with_context(|| format!("stored bundle {prev} does not parse"))?;
    let version = next_version(&client.bundles().await?);
    body.version = version.to_string();
    body.issued_at = now_s()?;
    body.expires_at = body.issued_at + i64::from(valid_days) * 86_400;
    let signed = bundle::sign_body(&body, &key)?;
    let note = format!("rollback of rollout {id}: the content of {prev}");
    let info = client
        .upload_bundle(&body.version, Some(&note), signed)
        .await
        .context("the re-signed earlier content was refused")?;
    let r2 = client
        .start_rollout(&RolloutRequest {
            bundle_version: info.version.clone(),
            canary_group: r.canary_group.clone(),
        })
        .await?;
    let r2 = client.advance_rollout(r2.id, 100).await?;
    println!(
        "re-published the content of {prev} as {} (rollout {}, stage {}): every agent returns to it",
        info.version,
        r2.id,
        r2.stage.as_str()
    );
    crate::rules::print_stages(&client.rollout_agents(r2.id).await?);
    Ok(())
}
