//! shadowai-agent: the host agent's command line.

use std::net::SocketAddr;
use std::time::Duration;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use shadowai_agent::sensor::SensorOptions;
use shadowai_agent::watch::{self, WatchOptions};

/// shadowai's host agent: sees which process talks to which AI service.
#[derive(Parser, Debug)]
#[command(name = "shadowai-agent", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show, live, every DNS query/answer, TLS/QUIC ClientHello and outbound connection on
    /// this host with the process, user and container behind it (needs root).
    Watch {
        /// One OCSF 1.8 JSON object per line (DNS Activity 4003 / Network Activity 4001).
        #[arg(long)]
        json: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Only show events of this process id (repeatable).
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Hide outbound-connection events (show only DNS and ClientHellos).
        #[arg(long)]
        no_connects: bool,
        /// Ports whose traffic is DNS (repeatable).
        #[arg(long = "dns-port", value_name = "PORT", default_values_t = [53u16])]
        dns_ports: Vec<u16>,
        /// Report a (process, destination) connection, and an identical DNS message (but its
        /// ID) of the same process and direction, once per this many seconds (0: every one).
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        dedup_secs: u64,
        /// Drain the ring buffer at least this often (milliseconds).
        #[arg(long, value_name = "MS", default_value_t = 50)]
        poll_ms: u64,
    },
    /// The daemon: classify live events against the rules, aggregate findings, spool them
    /// durably and upload them to the collector (needs root).
    Run {
        /// Agent configuration (TOML).
        #[arg(
            long,
            short,
            value_name = "FILE",
            default_value = "/etc/shadowai/agent.toml"
        )]
        config: std::path::PathBuf,
        /// Print each classified AI use and each finding to stdout.
        #[arg(long)]
        print: bool,
        /// Drain the ring buffer at least this often (milliseconds).
        #[arg(long, value_name = "MS", default_value_t = 100)]
        poll_ms: u64,
    },
    /// Check a configuration file, the rules it points at and that its collector section can
    /// enroll (https or loopback http, no user info, a readable CA, a token or a secret), then
    /// exit.
    Validate {
        /// Agent configuration (TOML).
        #[arg(
            long,
            short,
            value_name = "FILE",
            default_value = "/etc/shadowai/agent.toml"
        )]
        config: std::path::PathBuf,
    },
    /// Write the collector section into the configuration, enroll with the collector,
    /// verify the token can upload, then delete the enrollment secret (needs root).
    Enroll(shadowai_agent::admin::enroll::EnrollArgs),
    /// Show enrollment, collector reachability, rules and mode, hooks attached, spool depth
    /// and lost events of the installed agent. Exits 1 when not healthy.
    Status(shadowai_agent::admin::status::StatusArgs),
    /// Print the AI agents (sessions and what they spawned), MCP servers and local model
    /// runtimes at work on this host, with their risk flags. Executes nothing.
    Inventory(shadowai_agent::inventory::cli::InventoryArgs),
    /// Write man pages and shell completions into DIR (used by `cargo xtask dist`).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory (man/ and completions/ are created in it).
        out: std::path::PathBuf,
    },
    /// Run a pcap/pcapng capture through the same decode and correlation pipeline as
    /// `watch` and print the same events (JSON lines by default; no process identity).
    Replay {
        /// The capture file.
        file: std::path::PathBuf,
        /// Human-readable lines instead of OCSF JSON.
        #[arg(long)]
        text: bool,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHADOWAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: the journal and log files get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Watch {
            json,
            metrics,
            pids,
            no_connects,
            dns_ports,
            dedup_secs,
            poll_ms,
        } => rt
            .block_on(watch::run(WatchOptions {
                json,
                metrics,
                pids,
                connects: !no_connects,
                sensor: SensorOptions {
                    dns_ports,
                    dedup: Duration::from_secs(dedup_secs),
                    ..SensorOptions::default()
                },
                poll: Duration::from_millis(poll_ms.max(1)),
            }))
            .map(|()| ExitCode::SUCCESS),
        Command::Run {
            config,
            print,
            poll_ms,
        } => {
            let cfg = shadowai_agent::run::config::AgentConfig::load(&config)?;
            rt.block_on(shadowai_agent::run::run(
                cfg,
                print,
                Duration::from_millis(poll_ms.max(1)),
            ))
            .map(|()| ExitCode::SUCCESS)
        }
        Command::Validate { config } => {
            println!("{}", shadowai_agent::run::validate(&config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Enroll(args) => {
            println!(
                "{}",
                rt.block_on(shadowai_agent::admin::enroll::run(&args))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let st = rt.block_on(shadowai_agent::admin::status::run(&args))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{st}");
            }
            Ok(if st.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Inventory(args) => {
            let (r, from_daemon) = shadowai_agent::inventory::cli::collect(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!(
                    "{}",
                    shadowai_agent::inventory::cli::render(&r, from_daemon)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::GenerateDocs { out } => {
            shadowai_agent::admin::docs::generate(Cli::command(), &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { file, text } => {
            let stdout = std::io::stdout();
            // 256 KiB: a replay writes hundreds of MB; one write(2) per 8 KiB (the default)
            // is ≈ 50 k system calls per 400 MB.
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
            let summary = match shadowai_agent::replay::run(&file, !text, &mut out)
                .and_then(|s| flush(&mut out).map(|()| s))
            {
                Ok(s) => s,
                // The reader went away (`| head`): stop quietly, like any filter.
                Err(e) if is_broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(e.into()),
            };
            let st = &summary.stats;
            tracing::info!(
                frames = st.frames,
                packets = summary.packets,
                events = summary.events,
                "replay finished"
            );
            // Anything the replay could not read or had to forget is said, not dropped quietly.
            if st.malformed + st.unsupported_link + st.flows_evicted + st.defrag.dropped > 0 {
                tracing::warn!(
                    malformed = st.malformed,
                    unsupported_link_type = st.unsupported_link,
                    flows_forgotten_at_bound = st.flows_evicted,
                    fragments_given_up = st.defrag.dropped,
                    "replay skipped frames or forgot flows"
                );
            }
            if let Some(e) = summary.error {
                anyhow::bail!("the capture ended early: {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn flush(out: &mut impl std::io::Write) -> Result<(), shadowai_agent::AgentError> {
    out.flush()
        .map_err(|source| shadowai_agent::AgentError::Io {
            what: "writing output".into(),
            source,
        })
}

fn is_broken_pipe(e: &shadowai_agent::AgentError) -> bool {
    matches!(e, shadowai_agent::AgentError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}
