//! `_agents.toml`: process hints, as data, for recognising AI agents at work on a host —
//! coding agents (Claude Code, Codex CLI, Gemini CLI, …), the launchers that start stdio MCP
//! servers (`npx -y`, `uvx`, `docker run`, …) and local model runtimes (Ollama, vLLM,
//! llama.cpp server, …). The agent's inventory matches processes against these hints; no
//! process name or flag is hard-coded in the agent.
//!
//! Matching is on what the kernel reports for an exec: the executable's file name, and the
//! script an interpreter runs (`node …/@google/gemini-cli/bundle/gemini.js`). Being
//! recognised is never an advantage to the user, so a renamed binary can only hide itself
//! by also hiding its package path — which `script` hints catch.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::catalogue::{Category, Service};
use crate::error::RulesError;
use crate::report::Report;

/// File name of the process-hint list inside a catalogue directory.
pub const AGENTS_FILE: &str = "_agents.toml";

/// Field names a tenant hint may never read: the reader must stay away from secrets.
const SECRET_WORDS: [&str; 7] = [
    "token",
    "key",
    "secret",
    "password",
    "credential",
    "cookie",
    "session",
];

/// One AI agent program.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentHint {
    /// Stable kind reported on sessions and findings (`gemini-cli`).
    pub kind: String,
    /// Display name and vendor.
    pub name: String,
    pub vendor: String,
    /// Executable file names (`claude`, `codex`).
    #[serde(default)]
    pub exe: Vec<String>,
    /// Path fragments of the script an interpreter runs (`/@google/gemini-cli/`); matched
    /// against the first arguments after the interpreter.
    #[serde(default)]
    pub script: Vec<String>,
    /// npm/PyPI package name whose `package.json` beside the script gives the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Command-line flags that turn the agent's permission prompts off.
    #[serde(default)]
    pub bypass_flags: Vec<String>,
    /// Where the tool keeps a non-secret organisation id (read only when enabled).
    #[serde(default)]
    pub tenant: Vec<TenantField>,
    /// Where the hints come from.
    pub source: String,
}

/// One non-secret field of a tool's own JSON metadata file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantField {
    /// Path relative to the session user's home directory (`.gemini/settings.json`).
    pub file: String,
    /// Dotted path of the field holding the organisation/workspace id.
    pub field: String,
}

/// A program that starts a stdio MCP server from a package.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauncherHint {
    /// Launcher name (`npx`, `uvx`, `docker`).
    pub name: String,
    /// How its package argument pins a version: `npm` (`pkg@1.2.3`), `pypi`
    /// (`pkg==1.2.3`, `pkg@1.2.3`) or `oci` (`image@sha256:…`).
    pub pinning: Pinning,
    /// Executable or script file names of the launcher (`npx`, `npx-cli.js`).
    pub exe: Vec<String>,
    /// Words to skip before the package argument (`run` of `docker run`, `exec`).
    #[serde(default)]
    pub subcommands: Vec<String>,
    /// Options of the launcher that take a value (`--from`, `-e`): their value is skipped.
    #[serde(default)]
    pub value_options: Vec<String>,
    /// Option whose value names the package instead of the first argument (`--package`).
    #[serde(default)]
    pub package_options: Vec<String>,
    pub source: String,
}

/// How a launcher's package argument pins a version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pinning {
    #[default]
    Npm,
    Pypi,
    Oci,
}

/// A local model runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHint {
    /// Stable kind (`ollama`).
    pub kind: String,
    pub name: String,
    /// Executable file names.
    #[serde(default)]
    pub exe: Vec<String>,
    /// Path fragments of the script or module an interpreter runs (`vllm.entrypoints`).
    #[serde(default)]
    pub script: Vec<String>,
    /// Ports the runtime listens on by default: a listener there is reported as this
    /// runtime whatever the process (an OpenAI-compatible server copying Ollama's port).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// The catalogue's service for this runtime (category `self_hosted_runtime`), if it has
    /// one: rules naming it (or its jurisdiction) then judge the runtime too, where they
    /// are stricter than the category's (the agent never lets a name loosen a verdict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub source: String,
}

/// Everything `_agents.toml` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryHints {
    #[serde(default)]
    pub agent: Vec<AgentHint>,
    #[serde(default)]
    pub launcher: Vec<LauncherHint>,
    #[serde(default)]
    pub runtime: Vec<RuntimeHint>,
}

impl InventoryHints {
    pub fn is_empty(&self) -> bool {
        self.agent.is_empty() && self.launcher.is_empty() && self.runtime.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HintsFile {
    #[serde(default)]
    agent: Vec<Spanned<AgentHint>>,
    #[serde(default)]
    launcher: Vec<Spanned<LauncherHint>>,
    #[serde(default)]
    runtime: Vec<Spanned<RuntimeHint>>,
}

fn bad_name(s: &str) -> bool {
    s.is_empty() || s.len() > 64 || s.contains('/') || s.chars().any(char::is_whitespace)
}

fn bad_fragment(s: &str) -> bool {
    s.len() < 3 || s.len() > 128 || s.chars().any(char::is_whitespace)
}

fn kind_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 48
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_tenant(t: &TenantField) -> Option<String> {
    if t.file.is_empty() || t.file.starts_with('/') || t.file.split('/').any(|p| p == "..") {
        return Some(format!(
            "tenant file `{}` must be a path inside the home directory (relative, no `..`)",
            t.file
        ));
    }
    if t.field.is_empty() || t.field.split('.').any(str::is_empty) {
        return Some(format!(
            "tenant field `{}` must be a dotted path of names",
            t.field
        ));
    }
    let lower = t.field.to_ascii_lowercase();
    if let Some(w) = SECRET_WORDS.iter().find(|w| lower.contains(*w)) {
        return Some(format!(
            "tenant field `{}` looks like a secret (`{w}`): only organisation/workspace ids may be read",
            t.field
        ));
    }
    None
}

/// The first problem of an agent hint.
pub fn check_agent(a: &AgentHint) -> Option<String> {
    if !kind_ok(&a.kind) {
        return Some(format!("agent kind `{}` must be 1-48 of [a-z0-9-]", a.kind));
    }
    if a.exe.is_empty() && a.script.is_empty() {
        return Some(format!("agent `{}`: give `exe` or `script`", a.kind));
    }
    if let Some(e) = a.exe.iter().find(|e| bad_name(e)) {
        return Some(format!(
            "agent `{}`: exe `{e}` must be a file name (no `/`, no spaces)",
            a.kind
        ));
    }
    if let Some(s) = a.script.iter().find(|s| bad_fragment(s)) {
        return Some(format!(
            "agent `{}`: script fragment `{s}` must be 3-128 characters without spaces",
            a.kind
        ));
    }
    if let Some(f) = a
        .bypass_flags
        .iter()
        .find(|f| !f.starts_with('-') || f.len() < 2)
    {
        return Some(format!(
            "agent `{}`: bypass flag `{f}` must start with `-`",
            a.kind
        ));
    }
    if let Some(m) = a.tenant.iter().find_map(check_tenant) {
        return Some(format!("agent `{}`: {m}", a.kind));
    }
    if a.source.trim().is_empty() || a.name.trim().is_empty() {
        return Some(format!("agent `{}`: give `name` and `source`", a.kind));
    }
    None
}

fn check_launcher(l: &LauncherHint) -> Option<String> {
    if bad_name(&l.name) || l.exe.is_empty() {
        return Some(format!(
            "launcher `{}`: needs a file-name `name` and at least one `exe`",
            l.name
        ));
    }
    if let Some(e) = l.exe.iter().find(|e| bad_name(e)) {
        return Some(format!(
            "launcher `{}`: exe `{e}` must be a file name",
            l.name
        ));
    }
    if let Some(o) = l
        .value_options
        .iter()
        .chain(&l.package_options)
        .find(|o| !o.starts_with('-'))
    {
        return Some(format!(
            "launcher `{}`: option `{o}` must start with `-`",
            l.name
        ));
    }
    if l.source.trim().is_empty() {
        return Some(format!("launcher `{}`: cite a `source`", l.name));
    }
    None
}

fn check_runtime(r: &RuntimeHint) -> Option<String> {
    if !kind_ok(&r.kind) {
        return Some(format!(
            "runtime kind `{}` must be 1-48 of [a-z0-9-]",
            r.kind
        ));
    }
    if r.exe.is_empty() && r.script.is_empty() && r.ports.is_empty() {
        return Some(format!(
            "runtime `{}`: give `exe`, `script` or `ports`",
            r.kind
        ));
    }
    if let Some(e) = r.exe.iter().find(|e| bad_name(e)) {
        return Some(format!(
            "runtime `{}`: exe `{e}` must be a file name",
            r.kind
        ));
    }
    if let Some(s) = r.script.iter().find(|s| bad_fragment(s)) {
        return Some(format!(
            "runtime `{}`: script fragment `{s}` must be 3-128 characters without spaces",
            r.kind
        ));
    }
    if r.ports.contains(&0) {
        return Some(format!("runtime `{}`: port 0 is not a port", r.kind));
    }
    if r.source.trim().is_empty() || r.name.trim().is_empty() {
        return Some(format!("runtime `{}`: give `name` and `source`", r.kind));
    }
    None
}

/// Every problem of hints that did not come from a file (a bundle).
pub(crate) fn check_all(h: &InventoryHints, services: &[Service]) -> Vec<String> {
    h.agent
        .iter()
        .filter_map(check_agent)
        .chain(h.launcher.iter().filter_map(check_launcher))
        .chain(h.runtime.iter().filter_map(check_runtime))
        .chain(
            h.runtime
                .iter()
                .filter_map(|r| check_runtime_service(r, services)),
        )
        .collect()
}

/// A runtime's `service` must name a catalogue service of category `self_hosted_runtime`
/// (`services` sorted by id).
fn check_runtime_service(r: &RuntimeHint, services: &[Service]) -> Option<String> {
    let id = r.service.as_deref()?;
    let found = services
        .binary_search_by(|s| s.id.as_str().cmp(id))
        .ok()
        .and_then(|i| services.get(i));
    match found {
        None => Some(format!(
            "runtime `{}`: service `{id}` is not in the catalogue",
            r.kind
        )),
        Some(s) if s.category != Category::SelfHostedRuntime => Some(format!(
            "runtime `{}`: service `{id}` is of category `{}`, not `self_hosted_runtime`",
            r.kind, s.category
        )),
        Some(_) => None,
    }
}

/// Reads `_agents.toml` from `dir`: a missing file is a warning, a bad entry an error at
/// its line (the entry is left out), a kind listed twice likewise.
pub(crate) fn load(
    dir: &Path,
    report: &mut Report,
    services: &[Service],
) -> Result<InventoryHints, RulesError> {
    let Some((file, sm)) = super::listfile::read::<HintsFile>(
        dir,
        AGENTS_FILE,
        "no process-hint list: AI agents, MCP servers and local runtimes are not inventoried",
        report,
    )?
    else {
        return Ok(InventoryHints::default());
    };
    let mut out = InventoryHints::default();
    for a in file.agent {
        let off = a.span().start;
        let a = a.into_inner();
        if let Some(m) = check_agent(&a) {
            report.push(sm.error(Some(off), m));
        } else if out.agent.iter().any(|o| o.kind == a.kind) {
            report.push(sm.error(Some(off), format!("agent kind `{}` listed twice", a.kind)));
        } else {
            out.agent.push(a);
        }
    }
    for l in file.launcher {
        let off = l.span().start;
        let l = l.into_inner();
        if let Some(m) = check_launcher(&l) {
            report.push(sm.error(Some(off), m));
        } else {
            out.launcher.push(l);
        }
    }
    for r in file.runtime {
        let off = r.span().start;
        let r = r.into_inner();
        if let Some(m) = check_runtime(&r).or_else(|| check_runtime_service(&r, services)) {
            report.push(sm.error(Some(off), m));
        } else if out.runtime.iter().any(|o| o.kind == r.kind) {
            report.push(sm.error(Some(off), format!("runtime kind `{}` listed twice", r.kind)));
        } else {
            out.runtime.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn shipped_hints_load_without_problems() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
        let (cat, r) = crate::catalogue::load_dir_report(&dir).unwrap();
        assert_eq!(r.error_count(), 0, "{r:?}");
        let h = &cat.inventory_hints;
        // Every runtime the catalogue has a service for is tied to it.
        for id in [
            "ollama",
            "vllm",
            "llama-cpp-server",
            "lm-studio",
            "text-generation-inference",
            "localai",
            "koboldcpp",
        ] {
            assert!(
                h.runtime.iter().any(|r| r.service.as_deref() == Some(id)),
                "no runtime hint names the service `{id}`"
            );
        }
        assert!(h.agent.iter().any(|a| a.kind == "gemini-cli"));
        assert!(h.launcher.iter().any(|l| l.name == "npx"));
        assert!(h.runtime.iter().any(|r| r.ports.contains(&11434)));
    }

    #[test]
    fn bad_entries_are_errors_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(AGENTS_FILE),
            "[[agent]]\nkind = \"ok\"\nname = \"Ok\"\nvendor = \"V\"\nexe = [\"ok\"]\nsource = \"s\"\n\n\
             [[agent]]\nkind = \"leaky\"\nname = \"L\"\nvendor = \"V\"\nexe = [\"l\"]\nsource = \"s\"\n\
             tenant = [{ file = \".leaky.json\", field = \"account.apiKey\" }]\n\n\
             [[runtime]]\nkind = \"Bad Kind\"\nname = \"x\"\nports = [1]\nsource = \"s\"\n",
        )
        .unwrap();
        let mut r = Report::default();
        let h = load(dir.path(), &mut r, &[]).unwrap();
        assert_eq!(h.agent.len(), 1);
        assert!(h.runtime.is_empty());
        assert_eq!(r.error_count(), 2);
        let secret = r
            .diagnostics
            .iter()
            .find(|d| d.message.contains("looks like a secret"))
            .unwrap();
        assert!((8..=14).contains(&secret.line), "{secret}");
    }

    #[test]
    fn a_runtime_service_must_be_a_catalogued_runtime() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(AGENTS_FILE),
            "[[runtime]]\nkind = \"good\"\nname = \"G\"\nexe = [\"g\"]\nservice = \"ollama\"\nsource = \"s\"\n\n\
             [[runtime]]\nkind = \"ghost\"\nname = \"X\"\nexe = [\"x\"]\nservice = \"no-such\"\nsource = \"s\"\n\n\
             [[runtime]]\nkind = \"api\"\nname = \"A\"\nexe = [\"a\"]\nservice = \"openai\"\nsource = \"s\"\n",
        )
        .unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
        let services = crate::catalogue::load_dir_report(&shipped)
            .unwrap()
            .0
            .services;
        let mut r = Report::default();
        let h = load(dir.path(), &mut r, &services).unwrap();
        assert_eq!(
            h.runtime
                .iter()
                .map(|r| r.kind.as_str())
                .collect::<Vec<_>>(),
            ["good"]
        );
        assert_eq!(r.error_count(), 2, "{r:?}");
        let at = |needle: &str| {
            r.diagnostics
                .iter()
                .find(|d| d.message.contains(needle))
                .unwrap_or_else(|| panic!("no diagnostic with {needle}: {r:?}"))
                .line
        };
        assert_eq!(at("`no-such` is not in the catalogue"), 8);
        assert_eq!(at("of category `chat_assistant`"), 15);
        // A catalogue from a bundle gets the same check.
        let bad = InventoryHints {
            runtime: vec![RuntimeHint {
                service: Some("openai".into()),
                ..h.runtime[0].clone()
            }],
            ..InventoryHints::default()
        };
        assert_eq!(check_all(&bad, &services).len(), 1);
    }
}
