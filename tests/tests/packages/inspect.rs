//! Building the packages and inspecting them: metadata and contents of the .deb and .rpm,
//! and the .rpm installed into a scratch root.

use std::path::{Path, PathBuf};
use std::process::Command;

use shadowai_tests::{repo_root, sh};

use super::PACKAGES;

/// `cargo xtask dist --out DIR [--version V] [--no-build]`; returns the package files.
pub fn dist(out: &Path, version: Option<&str>) -> Vec<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.args(["xtask", "dist", "--out"])
        .arg(out)
        .current_dir(repo_root());
    if let Some(v) = version {
        cmd.args(["--version", v, "--no-build"]);
    }
    let st = cmd.status().unwrap();
    assert!(st.success(), "cargo xtask dist failed: {st}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

pub fn pick<'a>(files: &'a [PathBuf], prefix: &str, ext: &str) -> &'a Path {
    files
        .iter()
        .find(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.ends_with(ext)
                && n.strip_prefix(prefix).is_some_and(|rest| {
                    rest.starts_with(['_', '-'])
                        && rest[1..].starts_with(|c: char| c.is_ascii_digit())
                })
        })
        .unwrap_or_else(|| panic!("no {prefix}*{ext} in {files:?}"))
}

pub fn inspect_debs(files: &[PathBuf], version: &str) {
    let agent = pick(files, "shadowai-agent", ".deb");
    let info = sh(Command::new("dpkg-deb").arg("-I").arg(agent)).unwrap();
    assert!(info.contains("Package: shadowai-agent"), "{info}");
    assert!(info.contains(&format!("Version: {version}")), "{info}");
    for script in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "{script} missing: {info}");
    }
    let ctl = tempfile::tempdir().unwrap();
    sh(Command::new("dpkg-deb")
        .arg("-e")
        .arg(agent)
        .arg(ctl.path()))
    .unwrap();
    let conf = std::fs::read_to_string(ctl.path().join("conffiles")).unwrap();
    assert!(conf.contains("/etc/shadowai/agent.toml"), "{conf}");
    let list = sh(Command::new("dpkg-deb").arg("-c").arg(agent)).unwrap();
    for f in [
        "./usr/bin/shadowai-agent",
        "./etc/shadowai/agent.toml",
        "./lib/systemd/system/shadowai-agent.service",
        "./usr/share/shadowai/catalogue/openai.toml",
        "./usr/share/man/man1/shadowai-agent.1.gz",
        "./usr/share/man/man1/shadowai-agent-enroll.1.gz",
        "./usr/share/bash-completion/completions/shadowai-agent",
    ] {
        assert!(list.contains(f), "{f} not in the agent .deb:\n{list}");
    }
    assert!(
        !list.contains("generate-docs"),
        "the hidden subcommand has no man page:\n{list}"
    );

    let collector = pick(files, "shadowai-collector", ".deb");
    let info = sh(Command::new("dpkg-deb").arg("-I").arg(collector)).unwrap();
    assert!(
        info.contains("Depends:") && info.contains("adduser"),
        "{info}"
    );
    let list = sh(Command::new("dpkg-deb").arg("-c").arg(collector)).unwrap();
    for f in [
        "./usr/bin/shadowai-collector",
        "./etc/shadowai/collector.toml",
        "./lib/systemd/system/shadowai-collector.service",
        "./usr/lib/sysusers.d/shadowai-collector.conf",
        "./usr/share/man/man1/shadowai-collector-serve.1.gz",
    ] {
        assert!(list.contains(f), "{f} not in the collector .deb:\n{list}");
    }

    let cli = pick(files, "shadowai", ".deb");
    let list = sh(Command::new("dpkg-deb").arg("-c").arg(cli)).unwrap();
    for f in [
        "./usr/bin/shadowai",
        "./usr/share/man/man1/shadowai.1.gz",
        "./usr/share/man/man1/shadowai-findings.1.gz",
        "./usr/share/bash-completion/completions/shadowai",
        "./usr/share/zsh/vendor-completions/_shadowai",
        "./usr/share/fish/vendor_completions.d/shadowai.fish",
    ] {
        assert!(list.contains(f), "{f} not in the CLI .deb:\n{list}");
    }
}

pub fn inspect_rpms(files: &[PathBuf], version: &str, work: &Path) {
    let agent = pick(files, "shadowai-agent", ".rpm");
    let qpil = sh(Command::new("rpm").arg("-qpil").arg(agent)).unwrap();
    assert!(qpil.contains("Name        : shadowai-agent"), "{qpil}");
    assert!(qpil.contains(&format!("Version     : {version}")), "{qpil}");
    for f in [
        "/usr/bin/shadowai-agent",
        "/usr/lib/systemd/system/shadowai-agent.service",
        "/usr/share/shadowai/catalogue/openai.toml",
        "/usr/share/man/man1/shadowai-agent-status.1.gz",
    ] {
        assert!(qpil.contains(f), "{f} not in the agent .rpm:\n{qpil}");
    }
    let conf = sh(Command::new("rpm").arg("-qpc").arg(agent)).unwrap();
    assert!(conf.contains("/etc/shadowai/agent.toml"), "{conf}");
    let scripts = sh(Command::new("rpm").args(["-qp", "--scripts"]).arg(agent)).unwrap();
    assert!(
        scripts.contains("postinstall") && scripts.contains("preuninstall"),
        "{scripts}"
    );

    // Install all three into a scratch root and check files land where the units and the
    // default configurations expect them.
    let root = work.join("rpmroot");
    std::fs::create_dir_all(&root).unwrap();
    let rpms: Vec<&Path> = PACKAGES.iter().map(|p| pick(files, p, ".rpm")).collect();
    sh(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .arg("--dbpath")
        .arg("/rpmdb") // relative to --root
        .args(["-i", "--nodeps", "--noscripts"])
        .args(&rpms))
    .unwrap();
    let agent_unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/shadowai-agent.service"))
            .unwrap();
    let collector_unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/shadowai-collector.service"))
            .unwrap();
    for unit in [&agent_unit, &collector_unit] {
        for line in unit.lines() {
            if let Some(cmd) = line
                .strip_prefix("ExecStart=")
                .or_else(|| line.strip_prefix("ExecStartPre="))
            {
                let mut words = cmd.split_whitespace();
                let exe = words.next().unwrap();
                assert!(
                    root.join(exe.trim_start_matches('/')).is_file(),
                    "{exe} missing in the rpm root"
                );
                // --config FILE must be a file the package installed.
                while let Some(w) = words.next() {
                    if w == "--config" {
                        let f = words.next().unwrap();
                        assert!(
                            root.join(f.trim_start_matches('/')).is_file(),
                            "{f} missing in the rpm root"
                        );
                    }
                }
            }
        }
    }
    let cfg: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("etc/shadowai/agent.toml")).unwrap())
            .unwrap();
    let cat = cfg["rules"]["catalogue"].as_str().unwrap();
    let n = std::fs::read_dir(root.join(cat.trim_start_matches('/')))
        .unwrap()
        .count();
    assert!(n > 100, "catalogue at {cat} has {n} files");
    assert!(
        root.join("usr/share/zsh/site-functions/_shadowai")
            .is_file()
    );
    assert!(
        root.join("usr/lib/sysusers.d/shadowai-collector.conf")
            .is_file()
    );
    let q = sh(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .arg("--dbpath")
        .arg("/rpmdb") // relative to --root
        .args(["-q", "shadowai-agent", "shadowai-collector", "shadowai"]))
    .unwrap();
    assert_eq!(q.lines().count(), 3, "{q}");
}
