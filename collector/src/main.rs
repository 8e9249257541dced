//! `shadowai-collector`: serve the fleet API, or manage API tokens on the server side.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use shadowai_api::Role;
use shadowai_collector::app;
use shadowai_collector::config::Config;
use shadowai_collector::server::auth::{PERSON_PREFIX, hash_secret, new_secret};
use shadowai_collector::server::now_ms;

#[derive(Parser)]
#[command(
    name = "shadowai-collector",
    version,
    about = "shadowai fleet collector"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Where {
    /// Config file (TOML).
    #[arg(long, conflicts_with_all = ["data"])]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, generated TLS certificate) when no config is given.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use PostgreSQL instead of SQLite (`host=… user=… dbname=…`).
    #[arg(long, env = "SHADOWAI_POSTGRES", conflicts_with = "config")]
    postgres: Option<String>,
    /// CA (PEM) of the PostgreSQL server certificate: connect over verified TLS.
    #[arg(long, requires = "postgres")]
    postgres_ca: Option<PathBuf>,
    /// The AI-service catalogue directory proposals and bundles are checked against
    /// (overrides the config; default /usr/share/shadowai/catalogue).
    #[arg(long)]
    catalogue: Option<PathBuf>,
    /// Trusted bundle-signing public keys (one per line; overrides the config's
    /// `bundle_public_key`): uploads are verified with the key id they name.
    #[arg(long, value_name = "FILE")]
    bundle_key: Option<PathBuf>,
}

impl Where {
    fn config(&self, listen: Option<SocketAddr>, insecure_http: bool) -> anyhow::Result<Config> {
        let mut cfg = match (&self.config, &self.data) {
            (Some(path), _) => Config::load(path)?,
            (None, Some(data)) => Config::minimal(
                listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
                data.clone(),
            ),
            (None, None) => bail!("give --config FILE, or --data DIR"),
        };
        if let Some(l) = listen {
            cfg.listen = l;
        }
        if insecure_http {
            cfg.insecure_http = true;
        }
        if let Some(c) = &self.catalogue {
            cfg.catalogue.clone_from(c);
        }
        if let Some(k) = &self.bundle_key {
            cfg.bundle_public_key = Some(k.clone());
        }
        if let Some(url) = &self.postgres {
            cfg.database = shadowai_collector::config::Database::Postgres {
                url: url.clone(),
                pool: 4,
                ca: self.postgres_ca.clone(),
            };
        }
        cfg.validate("command line")?;
        Ok(cfg)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the collector.
    Serve {
        #[command(flatten)]
        at: Where,
        /// Listen address (overrides the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Plain HTTP; refused unless the listen address is loopback (development, tests).
        #[arg(long)]
        insecure_http: bool,
    },
    /// Check a config file and exit.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage API tokens of people.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Write man pages and shell completions into DIR (used by `cargo xtask dist`).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory (man/ and completions/ are created in it).
        out: PathBuf,
    },
    /// Replace the agent enrollment secret; the new one is written to DATA/enroll.secret
    /// (mode 0600), never printed.
    RotateEnrollmentSecret {
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print it once.
    Create {
        #[command(flatten)]
        at: Where,
        /// viewer, analyst, admin or approver.
        #[arg(long)]
        role: String,
        /// The person's name (approvals compare names: use one name per person).
        #[arg(long)]
        name: String,
    },
    /// List tokens (never the secrets), with who created each.
    List {
        #[command(flatten)]
        at: Where,
    },
    /// Revoke a token by id.
    Revoke {
        #[command(flatten)]
        at: Where,
        id: i64,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHADOWAI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let operator = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".to_owned());
    match cli.cmd {
        Cmd::Serve {
            at,
            listen,
            insecure_http,
        } => {
            let cfg = at.config(listen, insecure_http)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(app::run(cfg))?;
        }
        Cmd::Validate { config } => {
            Config::load(&config)?;
            println!("{}: ok", config.display());
        }
        Cmd::Token { cmd } => match cmd {
            TokenCmd::Create { at, role, name } => {
                let role = Role::parse(&role).with_context(|| {
                    format!("--role {role:?}: use viewer, analyst, admin or approver")
                })?;
                if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                    bail!("--name: 1..=128 printable characters");
                }
                if shadowai_collector::identity::person_key(&name).is_empty() {
                    bail!("--name: has no visible character (names identify people for approvals)");
                }
                let store = app::open_store(&at.config(None, false)?)?;
                let token = new_secret(PERSON_PREFIX)?;
                let rec = store.create_token(
                    &format!("cli:{operator}"),
                    &name,
                    role,
                    &hash_secret(&token),
                    now_ms(),
                )?;
                println!(
                    "token id {} for {} (role {}):",
                    rec.id,
                    rec.name,
                    role.as_str()
                );
                println!("{token}");
            }
            TokenCmd::List { at } => {
                let store = app::open_store(&at.config(None, false)?)?;
                println!("ID\tNAME\tROLE\tSTATE\tCREATED BY");
                for t in store.list_tokens()? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        t.id,
                        t.name,
                        t.role.as_str(),
                        if t.revoked { "revoked" } else { "active" },
                        if t.created_by.is_empty() {
                            "(before this was recorded)"
                        } else {
                            &t.created_by
                        }
                    );
                }
            }
            TokenCmd::Revoke { at, id } => {
                let store = app::open_store(&at.config(None, false)?)?;
                let t = store.revoke_token(&format!("cli:{operator}"), id, now_ms())?;
                println!("revoked token {} ({})", t.id, t.name);
            }
        },
        Cmd::GenerateDocs { out } => generate_docs(Cli::command(), &out)
            .with_context(|| format!("writing man pages and completions to {}", out.display()))?,
        Cmd::RotateEnrollmentSecret { at } => {
            let cfg = at.config(None, false)?;
            let store = app::open_store(&cfg)?;
            let s = app::rotate_enrollment_secret(&*store, &operator)?;
            let path = app::write_secret(&cfg.data_dir, app::ENROLL_SECRET_FILE, &s)?;
            println!("new enrollment secret written to {}", path.display());
        }
    }
    Ok(())
}

/// Man pages (one per subcommand) and bash/zsh/fish completions from the clap definition.
fn generate_docs(mut cmd: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    cmd = without_help_subcommand(cmd);
    cmd.build();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let name = cmd.get_name().to_string();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, &name, &completions)?;
    }
    Ok(())
}

/// clap's implicit `help` subcommand would get a man page of its own at every level.
fn without_help_subcommand(cmd: clap::Command) -> clap::Command {
    cmd.disable_help_subcommand(true)
        .mut_subcommands(without_help_subcommand)
}
