//! shadowai's project commands: `cargo xtask <setup|test|run|lint|bench|…>`.
//!
//! Every command installs what it needs first (`setup`), so the README's two commands work
//! on a fresh machine of the project's kind (Debian 12, rustup with stable + nightly, root).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod dist;
mod kernels;
mod overhead;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "shadowai build, test and run commands")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain (nightly rust-src, bpf-linker) and the test prerequisites
    /// (.ci/deps/*.sh: system packages, browsers, Python clients).
    Setup {
        /// Only the eBPF toolchain, not the test prerequisites.
        #[arg(long)]
        toolchain_only: bool,
    },
    /// Format check, clippy (-D warnings), build every binary, then every test (as root:
    /// the eBPF and network-namespace tests need it).
    Test {
        /// Skip fmt/clippy.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// cargo fmt --check and cargo clippy -D warnings.
    Lint,
    /// The main job: a local collector on its embedded store plus the agent streaming live
    /// findings to it (needs root). Ctrl-C stops both.
    Run {
        /// Also generate AI traffic from real clients in two network namespaces created for
        /// the demo (for machines where nothing else uses AI services).
        #[arg(long)]
        demo: bool,
    },
    /// Measure what the agent costs the host: loopback connects/s bare and with the agent
    /// attached, plus the agent's CPU and peak RSS (needs root; writes nothing).
    BenchOverhead {
        /// Seconds per trial.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Trials per side (the median is reported).
        #[arg(long, default_value_t = 3)]
        trials: u32,
        /// Another agent binary (e.g. the previous commit's release build) measured in the
        /// same run, for a before/after comparison on equal terms.
        #[arg(long, value_name = "AGENT")]
        peer: Option<std::path::PathBuf>,
    },
    /// Every speed figure beside its peer in one run (bare / bpftrace / tshark / PostgreSQL vs
    /// SQLite), medians of alternating trials, written to bench/REPORT.md (needs root;
    /// installs bpftrace, tshark, linux-perf, tcpdump from Debian when missing; ≈15 min).
    Bench(bench::BenchArgs),
    /// Build .deb and .rpm packages (agent, collector, admin CLI) with man pages and shell
    /// completions into target/dist (cargo-deb and cargo-generate-rpm, installed if missing).
    Dist(dist::DistArgs),
    /// The kernel matrix: boot each kernel of Debian's archive the agent must support
    /// (6.1, 6.12) in qemu and run the focused suite inside, and on this host's kernel —
    /// every program loads and attaches, DNS/TLS/connects are attributed, enforce mode
    /// refuses what it must, a missing hook is reported, fail-open holds (needs root).
    Kernels {
        /// Only this series (repeatable, e.g. `--kernel 6.1`); default: the whole matrix.
        #[arg(long = "kernel", value_name = "SERIES")]
        only: Vec<String>,
        /// Skip the run on this host's own kernel.
        #[arg(long)]
        skip_host: bool,
    },
    /// Build and run `shadowai-agent watch` (live events only, no collector).
    Watch {
        /// Arguments for `shadowai-agent watch`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = project_root()?;
    match cli.cmd {
        Cmd::Setup { toolchain_only } => setup(&root, !toolchain_only),
        Cmd::Lint => lint(&root),
        Cmd::Test { no_lint, args } => {
            setup(&root, true)?;
            if !no_lint {
                lint(&root)?;
            }
            run(Command::new("cargo")
                .args(["build", "--bins"])
                .current_dir(&root))?;
            run(Command::new("cargo")
                .arg("test")
                .arg("--")
                .args(&args)
                .current_dir(&root))?;
            kernels::run(
                &root,
                &target_dir(&root),
                &target_dir(&root).join("debug/shadowai-agent"),
                &kernels::Options::default(),
            )
        }
        Cmd::Kernels { only, skip_host } => {
            setup(&root, false)?;
            run(Command::new("bash")
                .arg(root.join(".ci/deps/kernels.sh"))
                .current_dir(&root))?;
            run(Command::new("cargo")
                .args(["build", "-p", "shadowai-agent"])
                .current_dir(&root))?;
            let opts = kernels::Options { only, skip_host };
            kernels::run(
                &root,
                &target_dir(&root),
                &target_dir(&root).join("debug/shadowai-agent"),
                &opts,
            )
        }
        Cmd::Run { demo } => {
            setup(&root, false)?;
            run(Command::new("bash")
                .arg(root.join(".ci/deps/agent.sh"))
                .current_dir(&root))?;
            run(Command::new("cargo")
                .args([
                    "build",
                    "--release",
                    "-p",
                    "shadowai-agent",
                    "-p",
                    "shadowai-collector",
                    "-p",
                    "shadowai-cli",
                ])
                .current_dir(&root))?;
            demo::run(&root, &target_dir(&root), demo)
        }
        Cmd::BenchOverhead { secs, trials, peer } => {
            setup(&root, false)?;
            run(Command::new("cargo")
                .args(["build", "--release", "-p", "shadowai-agent"])
                .current_dir(&root))?;
            overhead::run(
                &target_dir(&root).join("release/shadowai-agent"),
                peer.as_deref(),
                secs,
                trials.max(1),
            )
        }
        Cmd::Bench(args) => {
            setup(&root, false)?;
            bench::run(&root, &target_dir(&root), &args)
        }
        Cmd::Dist(args) => dist::dist(&root, &target_dir(&root), &args).map(|_| ()),
        Cmd::Watch { args } => {
            setup(&root, false)?;
            run(Command::new("cargo")
                .args(["build", "--release", "-p", "shadowai-agent"])
                .current_dir(&root))?;
            let agent = target_dir(&root).join("release/shadowai-agent");
            run(Command::new(agent).arg("watch").args(&args))
        }
    }
}

fn project_root() -> Result<PathBuf> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("run through `cargo xtask`")?;
    Path::new(&manifest)
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn lint(root: &Path) -> Result<()> {
    run(Command::new("cargo")
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(root))?;
    run(Command::new("cargo")
        .args(["clippy", "--all-targets", "--", "-D", "warnings"])
        .current_dir(root))
}

/// The eBPF toolchain and the test prerequisites.
fn setup(root: &Path, deps: bool) -> Result<()> {
    // rust-src for the nightly toolchain: `-Z build-std=core` for bpfel-unknown-none.
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    install_bpf_linker()?;
    if deps {
        let dir = root.join(".ci/deps");
        let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sh"))
            .collect();
        scripts.sort();
        for s in scripts {
            run(Command::new("bash").arg(&s).current_dir(root))?;
        }
    }
    Ok(())
}

/// bpf-linker 0.13 built against the nightly toolchain's own LLVM 22: the default feature
/// set wants LLVM 23 and finds Debian's LLVM 14, so it is built with `llvm-22` and
/// LLVM_PREFIX pointing at a folder of symlinks to the nightly's libLLVM.
fn install_bpf_linker() -> Result<()> {
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(&sysroot).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    let prefix = std::env::temp_dir().join("shadowai-llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    for name in [
        std::ffi::OsString::from("libLLVM.so"),
        llvm.file_name().map(ToOwned::to_owned).unwrap_or_default(),
    ] {
        let link = prefix_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)?;
    }
    run(Command::new("cargo")
        .args([
            "install",
            "--locked",
            "bpf-linker@0.13.0",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_PREFIX", &prefix))
}
