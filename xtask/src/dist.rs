//! `cargo xtask dist`: .deb and .rpm packages of shadowai-agent, shadowai-collector and
//! shadowai (the admin CLI) with cargo-deb and cargo-generate-rpm, from one release build.
//! Man pages and shell completions are generated from each binary's clap definition (its
//! hidden `generate-docs` subcommand) into `target/release/shadowai-docs/`, where the
//! package metadata in the crates' Cargo.toml files picks them up.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

/// Pinned packaging tools, installed with `cargo install --locked` when missing.
const CARGO_DEB: (&str, &str) = ("cargo-deb", "3.8.0");
const CARGO_GENERATE_RPM: (&str, &str) = ("cargo-generate-rpm", "0.21.1");

/// (crate, binary) of every package.
const PACKAGES: [(&str, &str); 3] = [
    ("shadowai-agent", "shadowai-agent"),
    ("shadowai-collector", "shadowai-collector"),
    ("shadowai-cli", "shadowai"),
];

#[derive(clap::Args, Debug)]
pub struct DistArgs {
    /// Package version instead of the workspace's (e.g. 0.1.1 to test an upgrade).
    #[arg(long, value_name = "VERSION", env = "SHADOWAI_DIST_VERSION")]
    pub version: Option<String>,
    /// Reuse the existing release binaries instead of building them.
    #[arg(long)]
    pub no_build: bool,
    /// Where the packages go (default: target/dist).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn dist(root: &Path, target: &Path, args: &DistArgs) -> Result<Vec<PathBuf>> {
    if let Some(v) = &args.version {
        check_version(v)?;
    }
    ensure_tool(CARGO_DEB, "deb")?;
    ensure_tool(CARGO_GENERATE_RPM, "generate-rpm")?;
    if !args.no_build {
        let mut build = Command::new("cargo");
        build.args(["build", "--release"]).current_dir(root);
        for (krate, _) in PACKAGES {
            build.args(["-p", krate]);
        }
        run(&mut build)?;
    }
    let release = target.join("release");
    for (_, bin) in PACKAGES {
        docs(&release, bin)?;
    }
    let out = args.out.clone().unwrap_or_else(|| target.join("dist"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (krate, _) in PACKAGES {
        let mut deb = Command::new("cargo");
        deb.args(["deb", "--no-build", "-p", krate, "--output"])
            .arg(&out)
            .current_dir(root);
        if let Some(v) = &args.version {
            deb.args(["--deb-version", v]);
        }
        run(&mut deb)?;
        let mut rpm = Command::new("cargo");
        rpm.args(["generate-rpm", "-p", krate_dir(krate), "-o"])
            .arg(&out)
            .current_dir(root);
        if let Some(v) = &args.version {
            rpm.arg(format!("--set-metadata=version = \"{v}\""));
        }
        run(&mut rpm)?;
    }
    let version = args.version.as_deref().unwrap_or(env!("CARGO_PKG_VERSION"));
    let made: Vec<PathBuf> = listing(&out)?
        .into_iter()
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.contains(&format!("{version}-")) || n.contains(&format!("_{version}_"))
            })
        })
        .collect();
    for p in &made {
        eprintln!("built {}", p.display());
    }
    Ok(made)
}

/// The directory of a workspace crate (cargo-generate-rpm takes a path, not a name).
fn krate_dir(krate: &str) -> &'static str {
    match krate {
        "shadowai-agent" => "agent",
        "shadowai-collector" => "collector",
        _ => "collector/cli",
    }
}

/// Runs `BIN generate-docs` and gzips the man pages (Debian and Fedora ship them gzipped).
fn docs(release: &Path, bin: &str) -> Result<()> {
    let dir = release.join("shadowai-docs").join(bin);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    run(Command::new(release.join(bin))
        .arg("generate-docs")
        .arg(&dir))?;
    let man = dir.join("man");
    let pages: Vec<PathBuf> = listing(&man)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    if pages.is_empty() {
        bail!(
            "{bin} generate-docs wrote no man page into {}",
            man.display()
        );
    }
    run(Command::new("gzip").arg("-9nf").args(&pages))
}

fn listing(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// A Debian/RPM-safe upstream version: starts with a digit; digits, letters, `.`, `+`, `~`.
fn check_version(v: &str) -> Result<()> {
    let ok = v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~'));
    if !ok {
        bail!("--version {v:?}: start with a digit; use only 0-9 a-z A-Z . + ~ (at most 64)");
    }
    Ok(())
}

/// `cargo install --locked NAME@VERSION` unless `cargo SUBCOMMAND --version` already works.
pub fn ensure_tool((name, version): (&str, &str), subcommand: &str) -> Result<()> {
    let present = Command::new("cargo")
        .args([subcommand, "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    run(Command::new("cargo").args(["install", "--locked", &format!("{name}@{version}")]))
}

#[cfg(test)]
mod tests {
    use super::check_version;

    #[test]
    fn package_versions_are_checked() {
        for good in ["0.1.0", "0.1.1", "1.2.3+git5", "2.0~rc1"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["", "v1", "1.0 x", "1;rm", "1/2", "1-2"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }
}
