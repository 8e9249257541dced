//! Matching one exec (executable path + argv) against the catalogue's process hints
//! (`_agents.toml`): which AI agent, MCP launcher or local runtime it is. Pure functions.
//!
//! An interpreter (`node`, `python3`, `bun`, …) is looked through: for
//! `node /usr/lib/node_modules/@google/gemini-cli/bundle/gemini.js -p hi` the program is
//! the script and its arguments follow it; `python3 -m vllm.entrypoints.openai.api_server`
//! runs the module.

use shadowai_rules::catalogue::{AgentHint, InventoryHints, LauncherHint, Pinning, RuntimeHint};

/// File name of a path (`/usr/bin/npx` → `npx`).
pub fn file_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn is_interpreter(name: &str) -> bool {
    matches!(name, "node" | "nodejs" | "bun" | "deno" | "ruby" | "perl")
        || name
            .strip_prefix("python")
            .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// What an exec runs: the program (a script for interpreters) and its own arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invocation<'a> {
    /// Full path (or module name) of what runs.
    pub path: &'a str,
    /// Its arguments (after the script for interpreters).
    pub args: &'a [String],
}

impl Invocation<'_> {
    pub fn program(&self) -> &str {
        file_name(self.path)
    }
}

/// `argv` without a leading `env` and its options and assignments: a `#!/usr/bin/env node`
/// script's argv, as the kernel and /proc show it, is `/usr/bin/env node /path/script …`.
/// `None` when argv does not start with `env`.
fn after_env(argv: &[String]) -> Option<&[String]> {
    if argv.first().map(|a| file_name(a)) != Some("env") {
        return None;
    }
    let rest = argv.get(1..)?;
    let skip = rest
        .iter()
        .take_while(|a| a.starts_with('-') || a.contains('='))
        .count();
    rest.get(skip..)
}

/// The invocation behind `exe` + `argv`.
pub fn invocation<'a>(exe: &'a str, argv: &'a [String]) -> Invocation<'a> {
    let (exe, argv) = match after_env(argv) {
        // The program env runs: the executable is env itself until it execs it.
        Some(rest) if file_name(exe) == "env" || exe.is_empty() => ("", rest),
        Some(rest) => (exe, rest),
        None => (exe, argv),
    };
    let exe = if exe.is_empty() {
        argv.first().map_or("", String::as_str)
    } else {
        exe
    };
    // A process that rewrote its title (`npx` shows `npm exec pkg …`): argv[0] names the
    // program even though the executable is the interpreter.
    let argv0 = argv.first().map_or("", |a| file_name(a));
    if is_interpreter(file_name(exe)) && !argv0.is_empty() && !is_interpreter(argv0) {
        return Invocation {
            path: argv.first().map_or(exe, String::as_str),
            args: argv.get(1..).unwrap_or(&[]),
        };
    }
    if is_interpreter(file_name(exe)) {
        let mut i = 1;
        while let Some(a) = argv.get(i) {
            if a == "-m" {
                if let Some(m) = argv.get(i + 1) {
                    return Invocation {
                        path: m,
                        args: argv.get(i + 2..).unwrap_or(&[]),
                    };
                }
                break;
            }
            if a.starts_with('-') {
                i += 1;
                continue;
            }
            return Invocation {
                path: a,
                args: argv.get(i + 1..).unwrap_or(&[]),
            };
        }
    }
    Invocation {
        path: exe,
        args: argv.get(1..).unwrap_or(&[]),
    }
}

fn matches_names(names: &[String], fragments: &[String], exe: &str, inv: &Invocation) -> bool {
    let prog = inv.program();
    names.iter().any(|n| n == prog || n == file_name(exe))
        || fragments
            .iter()
            .any(|f| inv.path.contains(f.as_str()) || exe.contains(f.as_str()))
}

/// The AI agent this exec is, if any.
pub fn agent<'h>(h: &'h InventoryHints, exe: &str, argv: &[String]) -> Option<&'h AgentHint> {
    let inv = invocation(exe, argv);
    h.agent
        .iter()
        .find(|a| matches_names(&a.exe, &a.script, exe, &inv))
}

/// The local runtime this exec is (by executable or script), if any.
pub fn runtime<'h>(h: &'h InventoryHints, exe: &str, argv: &[String]) -> Option<&'h RuntimeHint> {
    let inv = invocation(exe, argv);
    h.runtime
        .iter()
        .find(|r| matches_names(&r.exe, &r.script, exe, &inv))
}

/// Does the command line carry one of the agent's permission-bypass flags?
pub fn bypass(a: &AgentHint, argv: &[String]) -> bool {
    argv.iter().skip(1).any(|arg| {
        let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
        a.bypass_flags.iter().any(|b| b == flag)
    })
}

/// Words that mark an argument's value as a secret.
const SECRET_WORDS: [&str; 6] = ["token", "key", "secret", "password", "passwd", "auth"];

fn secret_name(n: &str) -> bool {
    let n = n.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| n.contains(w))
}

/// An agent's command line as kept: the program and its options' names only. Values and
/// positional arguments are dropped — they hold prompts (`-p "…"`), which are never kept.
pub fn agent_argv(exe: &str, argv: &[String]) -> Vec<String> {
    let inv = invocation(exe, argv);
    let mut out: Vec<String> = vec![inv.path.to_string()];
    out.extend(
        inv.args
            .iter()
            .filter(|a| a.starts_with('-') && a.len() > 1)
            .map(|a| a.split_once('=').map_or(a.as_str(), |(n, _)| n).to_string())
            .take(63),
    );
    out
}

/// A command line with the values of secret-looking options and `NAME=value` pairs
/// replaced (`-e GITHUB_TOKEN=ghp_…`, `--api-key sk-…`).
pub fn redact(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len().min(64));
    let mut hide_next = false;
    for a in argv.iter().take(64) {
        if hide_next {
            out.push("<redacted>".to_string());
            hide_next = false;
            continue;
        }
        match a.split_once('=') {
            Some((n, _)) if secret_name(n) => out.push(format!("{n}=<redacted>")),
            None if a.starts_with('-') && secret_name(a) => {
                hide_next = true;
                out.push(a.clone());
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

/// A stdio MCP server start: which launcher, which package, pinned or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    pub launcher: String,
    pub package: Option<String>,
    pub pinned: bool,
}

/// The launcher this exec is, with its package argument, if any.
pub fn launch(h: &InventoryHints, exe: &str, argv: &[String]) -> Option<Launch> {
    let inv = invocation(exe, argv);
    let prog = inv.program();
    h.launcher
        .iter()
        .filter(|l| l.exe.iter().any(|e| e == prog))
        .find_map(|l| parse_launch(l, inv.args))
}

/// Finds the package argument of a launcher's command line; `None` when the command line
/// is not this launcher's form (`npm install` is not `npm exec`).
pub fn parse_launch(l: &LauncherHint, args: &[String]) -> Option<Launch> {
    let mut subs = l.subcommands.iter();
    let mut want = subs.next();
    let mut package: Option<String> = None;
    let mut i = 0;
    let mut options_done = false;
    while let Some(a) = args.get(i) {
        i += 1;
        if !options_done && a == "--" {
            options_done = true;
            continue;
        }
        if !options_done && a.starts_with('-') && a.len() > 1 {
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (a.as_str(), None),
            };
            let takes_value = l.value_options.iter().any(|o| o == name);
            let value = match inline {
                Some(v) => Some(v),
                None if takes_value => {
                    i += 1;
                    args.get(i - 1).cloned()
                }
                None => None,
            };
            if l.package_options.iter().any(|o| o == name) && package.is_none() {
                package = value;
            }
            continue;
        }
        if let Some(w) = want {
            if a != w {
                return None;
            }
            want = subs.next();
            continue;
        }
        if package.is_none() {
            package = Some(a.clone());
        }
        break;
    }
    if want.is_some() {
        return None;
    }
    let pinned = package.as_deref().is_some_and(|p| is_pinned(l.pinning, p));
    Some(Launch {
        launcher: l.name.clone(),
        package,
        pinned,
    })
}

/// Does a package argument pin an exact version? Local paths count as pinned (nothing is
/// fetched); a tag, a range, `latest` or no version at all do not.
pub fn is_pinned(p: Pinning, spec: &str) -> bool {
    if spec.starts_with(['.', '/']) || spec.starts_with("file:") {
        return true;
    }
    match p {
        Pinning::Npm => {
            let body = spec.strip_prefix('@').unwrap_or(spec);
            body.rsplit_once('@')
                .is_some_and(|(_, v)| semver::Version::parse(v).is_ok())
        }
        Pinning::Pypi => {
            let v = spec
                .split_once("==")
                .map(|(_, v)| v)
                .or_else(|| spec.split_once('@').map(|(_, v)| v));
            v.is_some_and(|v| {
                !v.is_empty()
                    && v.starts_with(|c: char| c.is_ascii_digit())
                    && !v.contains(['*', ',', '<', '>', '~', '^'])
            })
        }
        Pinning::Oci => spec
            .split_once("@sha256:")
            .is_some_and(|(_, d)| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    fn hints() -> InventoryHints {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/catalogue");
        shadowai_rules::Catalogue::load_dir(&dir)
            .unwrap()
            .inventory_hints
    }

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn agents_through_interpreters_and_by_exe() {
        let h = hints();
        let g = agent(
            &h,
            "/usr/bin/node",
            &v("node --max-old-space-size=8192 /opt/x/node_modules/@google/gemini-cli/bundle/gemini.js --yolo -p hi"),
        )
        .unwrap();
        assert_eq!(g.kind, "gemini-cli");
        assert!(bypass(g, &v("node x.js --yolo")));
        assert!(!bypass(g, &v("node x.js -p yolo")));
        let c = agent(&h, "/home/u/.local/bin/claude", &v("claude")).unwrap();
        assert_eq!(c.kind, "claude-code");
        assert!(bypass(c, &v("claude --dangerously-skip-permissions")));
        // A file named like an agent handed to a non-interpreter is not the agent.
        assert!(agent(&h, "/usr/bin/cat", &v("cat gemini")).is_none());
        assert!(agent(&h, "/usr/bin/node", &v("node /srv/app.js")).is_none());
        // Through the npm bin symlink, as the shell runs it.
        let g = agent(
            &h,
            "/usr/bin/node",
            &v(
                "/usr/bin/node --max-old-space-size=12052 /opt/n/node_modules/.bin/gemini --yolo -p hi",
            ),
        );
        assert_eq!(g.unwrap().kind, "gemini-cli");
    }

    #[test]
    fn env_scripts_read_as_their_interpreter_runs_them() {
        let h = hints();
        // `#!/usr/bin/env node`: argv as the kernel and /proc show it, before and after env
        // execs node in place.
        for exe in ["/usr/bin/env", "/usr/bin/node", ""] {
            let argv =
                v("/usr/bin/env node /usr/bin/npx -y @modelcontextprotocol/server-filesystem /tmp");
            let l = launch(&h, exe, &argv).unwrap_or_else(|| panic!("{exe}: {argv:?}"));
            assert_eq!(
                l.package.as_deref(),
                Some("@modelcontextprotocol/server-filesystem"),
                "{exe}"
            );
            let inv = invocation(exe, &argv);
            assert_eq!(inv.program(), "npx", "{exe}");
        }
        let argv = v("env -i PATH=/bin python3 -m aider --yes");
        assert_eq!(invocation("/usr/bin/python3", &argv).program(), "aider");
        // env alone, or with only options: nothing to run, nothing to panic on.
        for argv in [v("env"), v("env -i"), v("/usr/bin/env A=b")] {
            let _ = invocation("/usr/bin/env", &argv);
        }
    }

    #[test]
    fn launchers_and_pinning() {
        let h = hints();
        let l = launch(
            &h,
            "/usr/bin/node",
            &v("node /usr/bin/npx -y @modelcontextprotocol/server-filesystem /tmp"),
        )
        .unwrap();
        assert_eq!(l.launcher, "npx");
        assert_eq!(
            l.package.as_deref(),
            Some("@modelcontextprotocol/server-filesystem")
        );
        assert!(!l.pinned);
        let l = launch(&h, "/usr/bin/npx", &v("npx --yes @scope/srv@1.2.3")).unwrap();
        assert!(l.pinned);
        let l = launch(&h, "/usr/bin/npx", &v("npx -p mcp-x@latest mcp-x")).unwrap();
        assert_eq!(l.package.as_deref(), Some("mcp-x@latest"));
        assert!(!l.pinned);
        let l = launch(&h, "/usr/bin/uvx", &v("uvx mcp-server-fetch")).unwrap();
        assert!(!l.pinned);
        let l = launch(
            &h,
            "/usr/bin/uvx",
            &v("uvx --from mcp-server-git==0.6.2 mcp-server-git"),
        )
        .unwrap();
        assert_eq!(l.package.as_deref(), Some("mcp-server-git==0.6.2"));
        assert!(l.pinned);
        let l = launch(
            &h,
            "/usr/bin/docker",
            &v("docker run -i --rm -e GITHUB_TOKEN ghcr.io/github/github-mcp-server:v1"),
        )
        .unwrap();
        assert_eq!(
            l.package.as_deref(),
            Some("ghcr.io/github/github-mcp-server:v1")
        );
        assert!(!l.pinned, "a tag is not a pin");
        let digest = "a".repeat(64);
        let l = launch(
            &h,
            "/usr/bin/docker",
            &v(&format!("docker run -i img@sha256:{digest}")),
        )
        .unwrap();
        assert!(l.pinned);
        assert!(launch(&h, "/usr/bin/docker", &v("docker ps")).is_none());
        assert!(launch(&h, "/usr/bin/npm", &v("npm install x")).is_none());
        // npx after rewriting its process title.
        let l = launch(
            &h,
            "/usr/bin/node",
            &v("npm exec @modelcontextprotocol/server-filesystem /w"),
        )
        .unwrap();
        assert_eq!(
            l.package.as_deref(),
            Some("@modelcontextprotocol/server-filesystem")
        );
        assert!(
            launch(&h, "/usr/bin/npm", &v("npm exec -y x@2.0.0"))
                .unwrap()
                .pinned
        );
    }

    #[test]
    fn runtimes_by_exe_and_module() {
        let h = hints();
        assert_eq!(
            runtime(&h, "/usr/local/bin/ollama", &v("ollama serve"))
                .unwrap()
                .kind,
            "ollama"
        );
        assert_eq!(
            runtime(
                &h,
                "/usr/bin/python3.11",
                &v("python3 -m vllm.entrypoints.openai.api_server --port 8000")
            )
            .unwrap()
            .kind,
            "vllm"
        );
        assert!(runtime(&h, "/usr/bin/python3", &v("python3 -m http.server 11434")).is_none());
    }

    #[test]
    fn prompts_and_secrets_are_not_kept() {
        let a = agent_argv(
            "/usr/bin/node",
            &v("node /x/gemini.js --yolo -p summarise-the-secret-plan --model=gemini-pro"),
        );
        assert_eq!(a, vec!["/x/gemini.js", "--yolo", "-p", "--model"]);
        let r = redact(&v(
            "docker run -i -e GITHUB_PERSONAL_ACCESS_TOKEN=ghp_FAKE --api-key sk-FAKE ghcr.io/x/y",
        ));
        assert_eq!(
            r.join(" "),
            "docker run -i -e GITHUB_PERSONAL_ACCESS_TOKEN=<redacted> --api-key <redacted> ghcr.io/x/y"
        );
    }

    #[test]
    fn hostile_argv_never_panics() {
        let h = hints();
        for argv in [
            vec![],
            v("npx"),
            v("npx -p"),
            v("npx --"),
            v("docker run"),
            v("uvx --from"),
            vec!["node".into(), "-m".into()],
            vec!["python3".into(), "-".into()],
        ] {
            let exe = argv.first().cloned().unwrap_or_default();
            let _ = launch(&h, &exe, &argv);
            let _ = agent(&h, &exe, &argv);
            let _ = runtime(&h, "", &argv);
        }
    }
}
