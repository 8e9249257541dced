//! `shadowai rules …`: the admin CLI's subcommand. The CLI crate embeds [`RulesCommand`]
//! and calls [`run`]; everything here is also available as plain library functions.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::bundle::{self, CompileOptions, InUse, VerifyOptions};
use crate::catalogue::{self, Catalogue, RiskBand};
use crate::diff::diff;
use crate::engine::{Engine, Query};
use crate::error::RulesError;
use crate::policy::{self, Policy};
use crate::time::{format_rfc3339, now_unix, parse_rfc3339};

/// Default catalogue directory (relative to the repository root).
pub const DEFAULT_CATALOGUE: &str = "rules/catalogue";

/// `shadowai rules …`
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum RulesCommand {
    /// Check the catalogue (and a policy); print every problem as file:line:col.
    Validate {
        /// Catalogue directory.
        #[arg(long, default_value = DEFAULT_CATALOGUE)]
        catalogue: PathBuf,
        /// Policy file to check against the catalogue.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Show which service a name/IP/process/port belongs to and the verdict, with the reason.
    Explain {
        /// DNS name or SNI.
        name: Option<String>,
        /// Destination IP.
        #[arg(long)]
        ip: Option<IpAddr>,
        /// Destination port.
        #[arg(long)]
        port: Option<u16>,
        /// Process (exe path or comm).
        #[arg(long)]
        process: Option<String>,
        /// User name.
        #[arg(long)]
        user: Option<String>,
        /// Unix group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Host tag (repeatable).
        #[arg(long = "host-tag")]
        host_tags: Vec<String>,
        /// Catalogue directory (ignored with --bundle).
        #[arg(long, default_value = DEFAULT_CATALOGUE)]
        catalogue: PathBuf,
        /// Policy file (default: monitor, everything unsanctioned).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Use a signed bundle instead of catalogue + policy (needs --pubkey).
        #[arg(long, requires = "pubkey")]
        bundle: Option<PathBuf>,
        /// Public key for --bundle.
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compile catalogue + policy into one canonical bundle (signed if --key is given).
    Compile {
        /// Catalogue directory.
        #[arg(long, default_value = DEFAULT_CATALOGUE)]
        catalogue: PathBuf,
        /// Policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Bundle version (semver, must increase with every release).
        #[arg(long)]
        version: String,
        /// Validity in days from issue.
        #[arg(long, default_value_t = 30)]
        valid_days: u32,
        /// Issue time (RFC 3339); default now. Fix it for reproducible bundles.
        #[arg(long)]
        issued_at: Option<String>,
        /// Oldest agent version allowed to load the bundle.
        #[arg(long, default_value = "0.1.0")]
        min_agent_version: String,
        /// Secret key file: sign right away.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Output file.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Sign a compiled bundle.
    Sign {
        /// Bundle file.
        bundle: PathBuf,
        /// Secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Output file (default: overwrite the input).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify a bundle: signature, canonical form, expiry, rollback, agent version.
    Verify {
        /// Bundle file.
        bundle: PathBuf,
        /// Public key file.
        #[arg(long)]
        pubkey: PathBuf,
        /// Version currently in use (refuse older; refuse equal with other content unless
        /// --in-use-sha256 matches).
        #[arg(long)]
        in_use_version: Option<String>,
        /// SHA-256 (hex) of the body in use.
        #[arg(long, requires = "in_use_version")]
        in_use_sha256: Option<String>,
        /// Agent version to check min_agent_version against.
        #[arg(long)]
        agent_version: Option<String>,
        /// Time to verify at (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Which services change verdict, for whom, between two bundles (or two policy files
    /// over --catalogue).
    Diff {
        /// Old bundle or policy (.toml).
        old: PathBuf,
        /// New bundle or policy (.toml).
        new: PathBuf,
        /// Catalogue for .toml policies.
        #[arg(long, default_value = DEFAULT_CATALOGUE)]
        catalogue: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate an ed25519 signing key pair.
    Keygen {
        /// Secret key file to create (mode 0600).
        #[arg(long)]
        secret: PathBuf,
        /// Public key file to create.
        #[arg(long)]
        public: PathBuf,
    },
}

fn w(out: &mut dyn Write, s: std::fmt::Arguments<'_>) -> Result<(), RulesError> {
    out.write_fmt(s).map_err(|e| RulesError::io("<output>", e))
}

fn semver(arg: &'static str, s: &str) -> Result<semver::Version, RulesError> {
    semver::Version::parse(s).map_err(|e| RulesError::BadArgument {
        arg,
        reason: format!("`{s}` is not semver: {e}"),
    })
}

fn time_arg(arg: &'static str, s: Option<&str>) -> Result<i64, RulesError> {
    match s {
        None => Ok(now_unix()),
        Some(s) => parse_rfc3339(s).ok_or_else(|| RulesError::BadArgument {
            arg,
            reason: format!("`{s}` is not an RFC 3339 date-time with offset"),
        }),
    }
}

fn load_pair(catalogue: &Path, policy: Option<&Path>) -> Result<(Catalogue, Policy), RulesError> {
    let cat = Catalogue::load_dir(catalogue)?;
    let pol = match policy {
        Some(p) => Policy::load(p, &cat)?,
        None => Policy::default(),
    };
    Ok((cat, pol))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RulesError> {
    // Write beside, then rename: never leave a half-written bundle.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| RulesError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| RulesError::io(path, e))
}

fn read(path: &Path) -> Result<Vec<u8>, RulesError> {
    std::fs::read(path).map_err(|e| RulesError::io(path, e))
}

fn engine_from(path: &Path, catalogue: &Path) -> Result<Engine, RulesError> {
    if path.extension().is_some_and(|e| e == "toml") {
        let (c, p) = load_pair(catalogue, Some(path))?;
        Engine::new(c, p)
    } else {
        let body = bundle::read_unverified(&read(path)?)?;
        Engine::new(body.catalogue, body.policy)
    }
}

/// Run one `rules` subcommand, writing human output to `out`. Exit code 0 on success, 1
/// when the answer is "no" (validation errors, verification refused).
pub fn run(cmd: &RulesCommand, out: &mut dyn Write) -> Result<ExitCode, RulesError> {
    match cmd {
        RulesCommand::Validate { catalogue, policy } => {
            let (cat, mut report) = catalogue::load_dir_report(catalogue)?;
            if let Some(p) = policy {
                report.extend(policy::validate_policy(p, &cat)?);
            }
            w(out, format_args!("{report}"))?;
            w(
                out,
                format_args!(
                    "{} service file(s), {} service(s) loaded: {} error(s), {} warning(s)\n",
                    report.files_checked,
                    cat.services.len(),
                    report.error_count(),
                    report.warning_count()
                ),
            )?;
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        RulesCommand::Explain {
            name,
            ip,
            port,
            process,
            user,
            groups,
            host_tags,
            catalogue,
            policy,
            bundle: b,
            pubkey,
            json,
        } => {
            let engine = match (b, pubkey) {
                (Some(b), Some(k)) => {
                    let key = bundle::read_verifying_key(k)?;
                    let vb = bundle::verify(
                        &read(b)?,
                        &key,
                        &VerifyOptions {
                            now: now_unix(),
                            in_use: None,
                            agent_version: None,
                        },
                    )?;
                    Engine::from_bundle(&vb)?
                }
                _ => {
                    let (c, p) = load_pair(catalogue, policy.as_deref())?;
                    Engine::new(c, p)?
                }
            };
            let g: Vec<&str> = groups.iter().map(String::as_str).collect();
            let t: Vec<&str> = host_tags.iter().map(String::as_str).collect();
            let q = Query {
                name: name.as_deref(),
                ip: *ip,
                port: *port,
                process: process.as_deref(),
                user: user.as_deref(),
                unix_groups: &g,
                host_tags: &t,
            };
            match engine.classify(&q) {
                None if *json => w(out, format_args!("{{\"match\":null}}\n"))?,
                None => w(out, format_args!("no AI service matches\n"))?,
                Some(d) if *json => {
                    let v = serde_json::json!({
                        "match": {
                            "service": d.service.id, "name": d.service.name, "vendor": d.service.vendor,
                            "category": d.service.category, "risk_score": d.service.risk.score,
                            "matched_by": d.matched_by.to_string(), "tenant": d.tenant,
                        },
                        "risk": {
                            "score": d.service.risk.score,
                            "band": RiskBand::of(d.service.risk.score),
                            "plans": d.service.risk.plans(),
                            "evidence": d.service.risk.evidence,
                        },
                        "verdict": d.verdict, "rule": d.rule_id(), "enforce": d.enforce(), "explanation": d.explain(),
                    });
                    w(out, format_args!("{v}\n"))?;
                }
                Some(d) => {
                    w(
                        out,
                        format_args!("{} ({}) -> {}\n", d.service.id, d.service.name, d.verdict),
                    )?;
                    w(out, format_args!("rule: {}\n", d.rule_id()))?;
                    w(out, format_args!("why: {}\n", d.explain()))?;
                    for b in d.service.risk.plans() {
                        w(out, format_args!("service risk: {b}\n"))?;
                    }
                    for e in &d.service.risk.evidence {
                        w(out, format_args!("risk evidence: {e}\n"))?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Compile {
            catalogue,
            policy,
            version,
            valid_days,
            issued_at,
            min_agent_version,
            key,
            output,
        } => {
            let (cat, pol) = load_pair(catalogue, Some(policy))?;
            let issued = time_arg("--issued-at", issued_at.as_deref())?;
            let opts = CompileOptions {
                version: semver("--version", version)?,
                issued_at: issued,
                expires_at: issued.saturating_add(i64::from(*valid_days) * 86_400),
                min_agent_version: semver("--min-agent-version", min_agent_version)?,
            };
            let body = bundle::compile(&cat, &pol, &opts)?;
            let bytes = match key {
                Some(k) => bundle::sign_body(&body, &bundle::read_signing_key(k)?)?,
                None => bundle::unsigned_bytes(&body)?,
            };
            write_file(output, &bytes)?;
            w(
                out,
                format_args!(
                    "wrote {} ({} services, {} rules, {} exceptions, version {}, valid until {}, {})\n",
                    output.display(),
                    body.catalogue.services.len(),
                    body.policy.rules.len(),
                    body.policy.exceptions.len(),
                    body.version,
                    format_rfc3339(body.expires_at),
                    if key.is_some() { "signed" } else { "unsigned" }
                ),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Sign {
            bundle: b,
            key,
            output,
        } => {
            let k = bundle::read_signing_key(key)?;
            let signed = bundle::sign(&read(b)?, &k)?;
            let dest = output.as_deref().unwrap_or(b);
            write_file(dest, &signed)?;
            w(
                out,
                format_args!(
                    "signed {} with key {}\n",
                    dest.display(),
                    bundle::key_id(&k.verifying_key())
                ),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Verify {
            bundle: b,
            pubkey,
            in_use_version,
            in_use_sha256,
            agent_version,
            at,
        } => {
            let key = bundle::read_verifying_key(pubkey)?;
            let in_use = match in_use_version {
                Some(v) => Some(InUse {
                    version: semver("--in-use-version", v)?,
                    sha256: match in_use_sha256 {
                        Some(h) => hex::decode(h)
                            .ok()
                            .and_then(|v| v.try_into().ok())
                            .ok_or_else(|| RulesError::BadArgument {
                                arg: "--in-use-sha256",
                                reason: "expected 64 hex digits".into(),
                            })?,
                        None => [0; 32],
                    },
                }),
                None => None,
            };
            let agent = agent_version
                .as_deref()
                .map(|v| semver("--agent-version", v))
                .transpose()?;
            let opts = VerifyOptions {
                now: time_arg("--at", at.as_deref())?,
                in_use: in_use.as_ref(),
                agent_version: agent.as_ref(),
            };
            match bundle::verify(&read(b)?, &key, &opts) {
                Ok(vb) => {
                    w(
                        out,
                        format_args!(
                            "OK: version {}, {} services, signed by key {}, valid until {}, sha256 {}\n",
                            vb.version,
                            vb.body.catalogue.services.len(),
                            vb.key_id,
                            format_rfc3339(vb.body.expires_at),
                            hex::encode(vb.sha256)
                        ),
                    )?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ RulesError::Io { .. }) => Err(e),
                Err(e) => {
                    w(out, format_args!("REFUSED: {e}\n"))?;
                    Ok(ExitCode::from(1))
                }
            }
        }
        RulesCommand::Diff {
            old,
            new,
            catalogue,
            json,
        } => {
            let o = engine_from(old, catalogue)?;
            let n = engine_from(new, catalogue)?;
            let d = diff(&o, &n, now_unix());
            if *json {
                let v = serde_json::to_string(&d)
                    .map_err(|source| RulesError::BundleFormat { source })?;
                w(out, format_args!("{v}\n"))?;
            } else {
                w(out, format_args!("{d}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Keygen { secret, public } => {
            let k = bundle::generate_key()?;
            bundle::write_signing_key(secret, &k)?;
            bundle::write_verifying_key(public, &k.verifying_key())?;
            w(
                out,
                format_args!(
                    "key {}: secret {}, public {}\n",
                    bundle::key_id(&k.verifying_key()),
                    secret.display(),
                    public.display()
                ),
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
