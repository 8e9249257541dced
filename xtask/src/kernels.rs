//! `cargo xtask kernels`: the kernel matrix (issue 16). Boots each kernel of [`MATRIX`] in
//! qemu (TCG: nested KVM is not available on the CI machine kind) from a self-built
//! initramfs — busybox, the agent, real clients and servers with the libraries `ldd` names,
//! `tests/kernels/init` as PID 1 — and runs `tests/kernels/suite.sh` inside; runs the same
//! suite on this host's kernel in a private network and mount namespace; judges every run
//! with one checker (`kernels/check.rs`) and checks the README's supported-kernels table
//! against what was measured. Any failed check (a program the verifier refuses included)
//! fails the command with the agent's own log line.

mod check;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use check::{Evidence, HOOKS, Verdict};

/// A kernel of the matrix: a Debian meta-package that always names the current build.
pub struct Kernel {
    /// The series the README's table lists it under.
    pub series: &'static str,
    /// Depends on the current image package of the series.
    pub meta: &'static str,
    /// Who runs it (the README table's second column).
    pub fleet: &'static str,
}

/// Debian's cloud kernels (virtio/serial built in, no modules needed for loopback tests).
pub const MATRIX: [Kernel; 2] = [
    Kernel {
        series: "6.1",
        meta: "linux-image-cloud-amd64",
        fleet: "Debian 12 stock kernel",
    },
    Kernel {
        series: "6.12",
        meta: "linux-image-6.12-cloud-amd64",
        fleet: "Debian 12 (bookworm-security 6.12), Debian 13's series",
    },
];

/// How long one VM may take from boot to power-off before it counts as hung.
const VM_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Options {
    /// Only these series (all when empty).
    pub only: Vec<String>,
    /// Skip the run on this host's kernel.
    pub skip_host: bool,
}

/// One judged run and what it cost.
struct Run {
    series: String,
    fleet: String,
    verdict: Verdict,
    secs: f64,
}

/// Runs the matrix; `agent` is the built `shadowai-agent`.
pub fn run(root: &Path, target: &Path, agent: &Path, opts: &Options) -> Result<()> {
    if let Some(unknown) = opts
        .only
        .iter()
        .find(|o| !MATRIX.iter().any(|k| k.series == o.as_str()))
    {
        let known: Vec<&str> = MATRIX.iter().map(|k| k.series).collect();
        bail!("--kernel {unknown}: the matrix has {}", known.join(", "));
    }
    let work = target.join("kernels");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let started = Instant::now();
    let mut runs = Vec::new();
    if !opts.skip_host {
        let t = Instant::now();
        let verdict = host_run(root, &work, agent)?;
        runs.push(Run {
            series: series_of(&verdict.kernel),
            fleet: "this CI machine kind (Firecracker)".into(),
            verdict,
            secs: t.elapsed().as_secs_f64(),
        });
    }
    let selected: Vec<&Kernel> = MATRIX
        .iter()
        .filter(|k| opts.only.is_empty() || opts.only.iter().any(|o| o == k.series))
        .collect();
    if !selected.is_empty() {
        let t = Instant::now();
        let initrd = initramfs(root, &work, agent)?;
        eprintln!(
            "kernels: initramfs {} ({:.1} MB) in {:.1} s",
            initrd.display(),
            file_mb(&initrd),
            t.elapsed().as_secs_f64()
        );
    }
    for k in selected {
        let t = Instant::now();
        let vmlinuz = fetch(&work, k)?;
        let fetched = t.elapsed().as_secs_f64();
        let verdict = boot(&work, k, &vmlinuz, &work.join("initramfs.cpio"))?;
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "kernels: {} ({}) fetched in {fetched:.1} s, booted and tested in {:.1} s",
            k.series,
            verdict.kernel,
            secs - fetched
        );
        runs.push(Run {
            series: k.series.into(),
            fleet: k.fleet.into(),
            verdict,
            secs,
        });
    }
    report(root, &runs, started.elapsed().as_secs_f64())
}

/// Prints every run's checks and the table; fails on any failed check or a README row that
/// no longer says what was measured.
fn report(root: &Path, runs: &[Run], total: f64) -> Result<()> {
    let mut failed = 0;
    for r in runs {
        let start = r
            .verdict
            .start_secs
            .map_or_else(|| "?".to_string(), |s| format!("{s:.1} s"));
        println!(
            "\n== {} ({}), {:.0} s; agent load + verify + attach: {start}",
            r.verdict.kernel, r.series, r.secs
        );
        for o in &r.verdict.outcomes {
            match &o.failure {
                None => println!("  ok    {}", o.name),
                Some(why) => {
                    failed += 1;
                    println!("  FAIL  {}\n{}", o.name, indent(why));
                }
            }
        }
    }
    let readme_path = root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .with_context(|| format!("reading {}", readme_path.display()))?;
    println!("\nSupported kernels (measured):\n{TABLE_HEAD}");
    let mut stale = Vec::new();
    for r in runs {
        let row = table_row(r);
        println!("{row}");
        if r.verdict.failures().next().is_none() && !readme.lines().any(|l| l == row) {
            stale.push(row);
        }
    }
    println!("kernels: {} runs in {total:.0} s", runs.len());
    if failed > 0 {
        bail!("{failed} kernel-matrix check(s) failed (see above)");
    }
    if !stale.is_empty() {
        bail!(
            "README.md's \"Supported kernels\" table does not say what the matrix measured; \
             its rows should read:\n{}",
            stale.join("\n")
        );
    }
    Ok(())
}

pub const TABLE_HEAD: &str =
    "| kernel | who runs it | hooks attached | enforcement layers |\n|---|---|---|---|";

fn table_row(r: &Run) -> String {
    let hooks = &r.verdict.hooks_attached;
    let hooks = if HOOKS.iter().all(|h| hooks.iter().any(|a| a == h)) {
        format!(
            "all {}: connect4/6, sendmsg4/6, cgroup_skb egress/ingress (capture, byte counts), sock_release, exec/exit/fork tracepoints, argv offsets from BTF",
            HOOKS.len()
        )
    } else {
        format!("{}/{}: {}", hooks.len(), HOOKS.len(), hooks.join(", "))
    };
    let layers = if r.verdict.layers.is_empty() {
        "none".to_string()
    } else {
        r.verdict.layers.join("; ")
    };
    format!("| {} | {} | {hooks} | {layers} |", r.series, r.fleet)
}

/// The suite on this host's kernel, in a private network namespace (loopback servers that
/// no other test sees) and mount namespace (its own resolv.conf, the hidden tracefs).
fn host_run(root: &Path, work: &Path, agent: &Path) -> Result<Verdict> {
    let out = work.join("host");
    let _ = std::fs::remove_dir_all(&out);
    let data = root.join("tests/kernels");
    let status = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "--"])
        .args(["busybox", "sh"])
        .arg(data.join("suite.sh"))
        .env("AGENT", agent)
        .env("DATA", &data)
        .env("OUT", &out)
        .status()
        .context("starting the suite on this host (unshare, busybox)")?;
    if !status.success() {
        bail!("the suite on this host exited with {status}");
    }
    let mut files = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&out).with_context(|| format!("reading {}", out.display()))? {
        let p = e?.path();
        if p.is_file() && p.extension().is_none_or(|x| x != "pem") {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            files.insert(name, String::from_utf8_lossy(&text).into_owned());
        }
    }
    Ok(check::judge(&Evidence { files }))
}

/// The current image of a series from Debian's archive, unpacked under `work`; returns
/// its vmlinuz. Cached: a second run downloads nothing.
fn fetch(work: &Path, k: &Kernel) -> Result<PathBuf> {
    let pkg = match image_of(k.meta) {
        Ok(p) => p,
        Err(_) => {
            // A fresh machine may not have the package lists yet.
            crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
            image_of(k.meta)?
        }
    };
    let dir = work.join("debs").join(&pkg);
    if find_vmlinuz(&dir).is_none() {
        std::fs::create_dir_all(&dir)?;
        let download = || {
            crate::run(
                Command::new("apt-get")
                    .args(["download", "-q", &pkg])
                    .current_dir(&dir),
            )
        };
        if download().is_err() {
            // Stale package lists name a version the mirror no longer has: refresh once.
            crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
            download()?;
        }
        let deb = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .with_context(|| format!("apt-get download {pkg} left no .deb"))?;
        crate::run(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(dir.join("root")),
        )?;
        std::fs::remove_file(&deb)?;
    }
    find_vmlinuz(&dir).with_context(|| format!("no boot/vmlinuz-* in {pkg}"))
}

/// `linux-image-cloud-amd64` → `linux-image-6.1.0-56-cloud-amd64`.
fn image_of(meta: &str) -> Result<String> {
    let deps = crate::output(Command::new("apt-cache").args(["depends", "--important", meta]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| format!("{meta} depends on no linux-image package:\n{deps}"))
}

fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("root/boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

/// Boots one kernel with the initramfs; the suite's evidence comes back over ttyS1.
fn boot(work: &Path, k: &Kernel, vmlinuz: &Path, initrd: &Path) -> Result<Verdict> {
    let dir = work.join(format!("vm-{}", k.series));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (console, report) = (dir.join("console.log"), dir.join("report.txt"));
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine",
        "q35",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
    ])
    .args(["-smp", "2", "-m", "1024", "-nodefaults", "-display", "none"])
    .args(["-no-reboot", "-kernel"])
    .arg(vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", "console=ttyS0 panic=-1 loglevel=4 rdinit=/init"])
    .arg("-serial")
    .arg(format!("file:{}", console.display()))
    .arg("-serial")
    .arg(format!("file:{}", report.display()))
    .stdin(Stdio::null());
    eprintln!("+ {cmd:?}");
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > VM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console_text = std::fs::read_to_string(&console).unwrap_or_default();
    let report_text = std::fs::read(&report).unwrap_or_default();
    let parsed = Evidence::from_report(&String::from_utf8_lossy(&report_text));
    match (status, parsed) {
        (_, Ok(ev)) => Ok(check::judge(&ev)),
        (None, Err(e)) => bail!(
            "{} hung for {} s ({e}); console:\n{}",
            k.series,
            VM_TIMEOUT.as_secs(),
            check::tail(&console_text, 40)
        ),
        (Some(s), Err(e)) => bail!(
            "{} exited ({s}) without its report ({e}); console:\n{}",
            k.series,
            check::tail(&console_text, 40)
        ),
    }
}

/// The VM's root filesystem: busybox, the agent (debug info stripped), curl, openssl and
/// dnsmasq with every library `ldd` names, the suite and its rules, `init`.
fn initramfs(root: &Path, work: &Path, agent: &Path) -> Result<PathBuf> {
    let stage = work.join("initramfs");
    let _ = std::fs::remove_dir_all(&stage);
    for d in [
        "bin",
        "sbin",
        "etc/ssl",
        "usr/lib/ssl",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "kmatrix/catalogue",
    ] {
        std::fs::create_dir_all(stage.join(d))?;
    }
    copy_file(Path::new("/bin/busybox"), &stage.join("bin/busybox"))?;
    crate::run(
        Command::new("objcopy")
            .arg("--strip-debug")
            .arg(agent)
            .arg(stage.join("bin/shadowai-agent")),
    )?;
    let mut libs = ldd(agent)?;
    for tool in ["curl", "openssl", "dnsmasq"] {
        let path = which(tool)?;
        copy_file(&path, &stage.join("bin").join(tool))?;
        libs.extend(ldd(&path)?);
    }
    libs.sort();
    libs.dedup();
    for lib in libs {
        copy_file(&lib, &stage.join(lib.strip_prefix("/").unwrap_or(&lib)))?;
    }
    for (path, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        (
            // glibc's defaults (5 s a try): a query dropped without EPERM would be slow.
            "etc/resolv.conf",
            "nameserver 127.0.0.1\n",
        ),
        ("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        (
            "etc/nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files dns\n",
        ),
    ] {
        std::fs::write(stage.join(path), text)?;
    }
    copy_file(
        Path::new("/etc/ssl/openssl.cnf"),
        &stage.join("etc/ssl/openssl.cnf"),
    )?;
    copy_file(
        Path::new("/etc/ssl/openssl.cnf"),
        &stage.join("usr/lib/ssl/openssl.cnf"),
    )?;
    let data = root.join("tests/kernels");
    copy_file(&data.join("init"), &stage.join("init"))?;
    // PID 1 must be executable whatever mode the checkout gave the file.
    std::fs::set_permissions(stage.join("init"), std::fs::Permissions::from_mode(0o755))?;
    copy_file(&data.join("suite.sh"), &stage.join("kmatrix/suite.sh"))?;
    copy_file(
        &data.join("policy.toml"),
        &stage.join("kmatrix/policy.toml"),
    )?;
    for e in std::fs::read_dir(data.join("catalogue"))? {
        let p = e?.path();
        if let Some(name) = p.file_name() {
            copy_file(&p, &stage.join("kmatrix/catalogue").join(name))?;
        }
    }
    let cpio = work.join("initramfs.cpio");
    let out =
        std::fs::File::create(&cpio).with_context(|| format!("creating {}", cpio.display()))?;
    let status = Command::new("sh")
        .args([
            "-c",
            "find . -print0 | cpio --null --create --format=newc --owner=0:0 --quiet",
        ])
        .current_dir(&stage)
        .stdout(out)
        .status()
        .context("starting find | cpio")?;
    if !status.success() {
        bail!("packing {} failed: {status}", stage.display());
    }
    Ok(cpio)
}

/// Copies a file (following symlinks) and keeps its mode.
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The libraries (and the dynamic loader) a binary needs, as absolute paths.
fn ldd(bin: &Path) -> Result<Vec<PathBuf>> {
    let text = crate::output(Command::new("ldd").arg(bin))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=> ").map_or(l, |(_, p)| p);
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn which(tool: &str) -> Result<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .with_context(|| format!("{tool} not installed (.ci/deps/kernels.sh installs it)"))
}

/// `6.18.44-fc-v769` → `6.18`.
fn series_of(release: &str) -> String {
    release.split('.').take(2).collect::<Vec<_>>().join(".")
}

fn file_mb(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("        {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
