//! `shadowai`, the admin CLI: log in to a collector, read reports, export findings, propose /
//! approve / roll out / roll back rules, list, revoke, rotate and release agents, manage
//! enrollment keys, export and verify the audit log.
//! It talks to the collector only through the typed client in `shadowai-api`.

mod agents;
mod audit;
mod checkpoints;
mod config;
mod discovery;
mod docs;
mod enrollment;
mod filters;
mod output;
mod publish;
mod reports;
mod rules;
mod who;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use shadowai_api::client::{Client, ClientError};

use crate::config::{CliConfig, NotLoggedIn};

/// Administer a shadowai collector.
#[derive(Parser, Debug)]
#[command(name = "shadowai", version, about, long_about = None)]
struct Cli {
    /// Login file (default: ~/.config/shadowai/cli.toml).
    #[arg(long, global = true, env = "SHADOWAI_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Collector URL, overriding the login file.
    #[arg(long, global = true, env = "SHADOWAI_URL", value_name = "URL")]
    url: Option<String>,
    /// Token, overriding the login file (prefer the environment over the command line).
    #[arg(
        long,
        global = true,
        env = "SHADOWAI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// PEM CA certificate for the collector's TLS, overriding the login file.
    #[arg(long, global = true, env = "SHADOWAI_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a token against the collector and store URL + token in the login file (0600).
    /// The token comes from --token / $SHADOWAI_TOKEN, else one line of standard input.
    Login,
    /// Remove the login file.
    Logout,
    /// Show who the token belongs to.
    Whoami,
    /// List findings, newest first.
    Findings(reports::FindingsArgs),
    /// Discovered AI services × verdict, with host/user/process counts.
    Services(reports::ServicesArgs),
    /// Events per UTC hour (ranges up to 7 days, e.g. --since 24h) or day × service × verdict.
    Trend(reports::ServicesArgs),
    /// Who uses AI, fleet-wide: findings grouped by user, host, process or host group across
    /// services, with events, data sent and true first use (--uploads: top uploaders to
    /// unsanctioned or blocked services).
    Who(who::WhoArgs),
    /// First-use alerts: the first unsanctioned or blocked use of a service in the fleet, on a
    /// host or by a user.
    Alerts(who::AlertsArgs),
    /// Export findings as CSV or OCSF JSON.
    Export(reports::ExportArgs),
    /// Policy proposals, approvals, bundles and staged rollouts (and local catalogue tools).
    #[command(subcommand)]
    Rules(rules::RulesCmd),
    /// Enrolled agents: list, revoke, rotate a token, release a host.
    #[command(subcommand)]
    Agents(agents::AgentsCmd),
    /// Enrollment secrets: create (single-use or time-limited), list, revoke.
    #[command(subcommand)]
    EnrollmentKeys(enrollment::EnrollmentCmd),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Unknown AI names the fleet saw, and their promotion into the catalogue through a
    /// catalogue proposal a different person approves.
    #[command(subcommand)]
    Discovery(discovery::DiscoveryCmd),
    /// Write man pages and shell completions into DIR (used by `cargo xtask dist`).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory (man/ and completions/ are created in it).
        out: PathBuf,
    },
}

/// Exit codes (documented in README.md).
mod exit {
    pub const OTHER: u8 = 1;
    pub const NOT_LOGGED_IN: u8 = 3;
    pub const REFUSED: u8 = 4;
    pub const REJECTED: u8 = 5;
    pub const UNREACHABLE: u8 = 6;
    pub const AUDIT_TAMPERED: u8 = 7;
}

/// The audit log did not verify (exit code 7).
#[derive(Debug)]
pub struct AuditTampered(pub String);
impl std::fmt::Display for AuditTampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for AuditTampered {}

fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<NotLoggedIn>().is_some() {
            return exit::NOT_LOGGED_IN;
        }
        if cause.downcast_ref::<AuditTampered>().is_some() {
            return exit::AUDIT_TAMPERED;
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return match e {
                ClientError::Status {
                    status: 401 | 403, ..
                } => exit::REFUSED,
                ClientError::Status { status, .. } if *status >= 500 => exit::UNREACHABLE,
                ClientError::Status { .. } => exit::REJECTED,
                ClientError::Transport { .. } | ClientError::Decode { .. } => exit::UNREACHABLE,
                ClientError::InvalidUrl { .. }
                | ClientError::InvalidCa { .. }
                | ClientError::Build { .. } => exit::NOT_LOGGED_IN,
                _ => exit::OTHER,
            };
        }
    }
    exit::OTHER
}

/// Everything needed to reach the collector, from flags/environment over the login file.
pub struct Ctx {
    config_path: Option<PathBuf>,
    url: Option<String>,
    token: Option<String>,
    ca: Option<PathBuf>,
}

impl Ctx {
    fn config_path(&self) -> Result<PathBuf> {
        match &self.config_path {
            Some(p) => Ok(p.clone()),
            None => config::default_path(),
        }
    }

    /// A client for the logged-in collector.
    pub fn client(&self) -> Result<Client> {
        let stored = match (&self.url, &self.token) {
            (Some(_), Some(_)) => None,
            _ => Some(config::load(&self.config_path()?)?),
        };
        let url = self
            .url
            .clone()
            .or_else(|| stored.as_ref().map(|c| c.url.clone()))
            .ok_or_else(|| NotLoggedIn("no collector URL".into()))?;
        let token = self
            .token
            .clone()
            .or_else(|| stored.as_ref().map(|c| c.token.clone()))
            .ok_or_else(|| NotLoggedIn("no token".into()))?;
        let ca = self.ca.clone().or_else(|| stored.and_then(|c| c.ca_file));
        build_client(&url, &token, ca.as_deref())
    }
}

fn build_client(url: &str, token: &str, ca: Option<&std::path::Path>) -> Result<Client> {
    let mut builder = Client::builder(url).token(token);
    if let Some(path) = ca {
        let pem =
            std::fs::read(path).with_context(|| format!("reading CA file {}", path.display()))?;
        builder = builder.ca_pem(&pem);
    }
    Ok(builder.build()?)
}

async fn login(ctx: &Ctx) -> Result<()> {
    let path = ctx.config_path()?;
    let url = ctx
        .url
        .clone()
        .ok_or_else(|| NotLoggedIn("login needs --url (or $SHADOWAI_URL)".into()))?;
    let token = match &ctx.token {
        Some(t) => t.clone(),
        None => {
            eprint!("token: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the token from standard input")?;
            line.trim().to_owned()
        }
    };
    if token.is_empty() {
        return Err(NotLoggedIn(
            "no token given (--token, $SHADOWAI_TOKEN or standard input)".into(),
        )
        .into());
    }
    let ca_file = match &ctx.ca {
        Some(p) => {
            Some(std::fs::canonicalize(p).with_context(|| format!("CA file {}", p.display()))?)
        }
        None => None,
    };
    let client = build_client(&url, &token, ca_file.as_deref())?;
    let me = client
        .whoami()
        .await
        .context("checking the token with the collector")?;
    config::save(
        &path,
        &CliConfig {
            url,
            token,
            ca_file,
        },
    )?;
    println!(
        "logged in as {} ({}); login stored in {}",
        me.name,
        me.role.as_str(),
        path.display()
    );
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        config_path: cli.config,
        url: cli.url,
        token: cli.token,
        ca: cli.ca,
    };
    let done = match cli.command {
        Command::Login => login(&ctx).await,
        Command::Logout => {
            let path = ctx.config_path()?;
            match std::fs::remove_file(&path) {
                Ok(()) => println!("removed {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("not logged in"),
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
            Ok(())
        }
        Command::Whoami => {
            let me = ctx.client()?.whoami().await?;
            println!("{} ({})", me.name, me.role.as_str());
            Ok(())
        }
        Command::Findings(args) => reports::findings(&ctx, args).await,
        Command::Services(args) => reports::services(&ctx, args).await,
        Command::Trend(args) => reports::trend(&ctx, args).await,
        Command::Export(args) => reports::export(&ctx, args).await,
        Command::Who(args) => who::who(&ctx, args).await,
        Command::Alerts(args) => who::alerts(&ctx, args).await,
        Command::Rules(cmd) => return rules::run(&ctx, cmd).await,
        Command::Discovery(cmd) => return discovery::run(&ctx, cmd).await,
        Command::Agents(cmd) => agents::run(&ctx, cmd).await,
        Command::EnrollmentKeys(cmd) => enrollment::run(&ctx, cmd).await,
        Command::Audit(cmd) => audit::run(&ctx, cmd).await,
        Command::GenerateDocs { out } => docs::generate(Cli::command(), &out)
            .with_context(|| format!("writing man pages and completions to {}", out.display())),
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shadowai: error: starting the async runtime: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("shadowai: error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}
