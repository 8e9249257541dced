//! What an agent session's start reads from files — its working directory (/proc), its
//! version (the package's `package.json`) and, opt-in, its tenant (the tool's metadata) —
//! is file I/O. With `TrackerOptions::defer_reads` (the daemon) none of it runs under the
//! tracker's lock on the event-draining task: the session is recorded at once and queued
//! ([`MAX_PENDING`] at most, counted in `dropped` beyond); the inventory stage reads the
//! facts on the blocking pool ([`Reader::read`]) and completes the session
//! ([`Tracker::complete`]), re-tagging its processes. Without it (the one-shot command,
//! tests) the same reads run inline.

use std::sync::Arc;

use shadowai_api::Flag;
use shadowai_rules::catalogue::{AgentHint, InventoryHints};

use super::{ProcFacts, Tag, Tracker, TrackerOptions, home_of};
use crate::inventory::hints;

/// Sessions waiting for their file reads at most.
pub const MAX_PENDING: usize = 256;

/// A session whose facts are still to be read.
#[derive(Clone, Debug)]
pub struct Pending {
    pub id: String,
    kind: String,
    pid: u32,
    uid: u32,
    exe: String,
    argv: Vec<String>,
}

/// What the reads found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionFacts {
    pub cwd: Option<String>,
    pub version: Option<String>,
    pub tenant: Option<String>,
}

/// Does the file reads, with nothing of the tracker's state but its options and hints.
#[derive(Clone)]
pub struct Reader {
    opts: TrackerOptions,
    hints: Arc<InventoryHints>,
}

impl Reader {
    /// The facts of one pending session (blocking file I/O).
    pub fn read(&self, p: &Pending) -> SessionFacts {
        let Some(hint) = self.hints.agent.iter().find(|h| h.kind == p.kind) else {
            return SessionFacts::default();
        };
        self.facts(
            hint,
            &ProcFacts {
                pid: p.pid,
                ppid: None,
                exe: &p.exe,
                argv: &p.argv,
                uid: p.uid,
                user: "",
                start_ms: 0,
            },
        )
    }

    pub(super) fn facts(&self, hint: &AgentHint, p: &ProcFacts) -> SessionFacts {
        let cwd = std::fs::read_link(self.opts.proc_root.join(p.pid.to_string()).join("cwd"))
            .ok()
            .map(|c| c.display().to_string());
        SessionFacts {
            cwd,
            version: self.version(hint, p),
            tenant: self.tenant(hint, p.uid),
        }
    }

    fn version(&self, hint: &AgentHint, p: &ProcFacts) -> Option<String> {
        let pkg = hint.package.as_deref()?;
        let needle = format!("/node_modules/{pkg}/");
        let inv = hints::invocation(p.exe, p.argv);
        let cwd = self.opts.proc_root.join(p.pid.to_string()).join("cwd");
        // The script is usually run through a symlink (`node_modules/.bin/gemini`).
        let real = std::fs::canonicalize(cwd.join(inv.path))
            .ok()
            .map(|r| r.display().to_string());
        let dir = [Some(inv.path), real.as_deref(), Some(p.exe)]
            .into_iter()
            .flatten()
            .find_map(|path| {
                path.find(&needle)
                    .map(|i| path[..i + needle.len()].to_string())
            })?;
        crate::inventory::tenant::read(std::path::Path::new(&dir), "package.json", "version")
            .ok()
            .flatten()
    }

    fn tenant(&self, hint: &AgentHint, uid: u32) -> Option<String> {
        if !self.opts.read_tenant || hint.tenant.is_empty() {
            return None;
        }
        let home = home_of(&self.opts.passwd, uid)?;
        hint.tenant.iter().find_map(|t| {
            match crate::inventory::tenant::read(std::path::Path::new(&home), &t.file, &t.field) {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "no tenant id");
                    None
                }
            }
        })
    }

    /// `personal_tenant` when the tenant is not one of the corporate ones (and a list is
    /// configured).
    pub(super) fn personal(&self, tenant: Option<&str>) -> bool {
        tenant.is_some_and(|t| {
            !self.opts.corporate_tenants.is_empty()
                && !self
                    .opts
                    .corporate_tenants
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(t))
        })
    }
}

impl Tracker {
    /// A reader for the pending sessions' facts (to use off the lock).
    pub fn reader(&self) -> Reader {
        Reader {
            opts: self.opts.clone(),
            hints: Arc::clone(&self.hints),
        }
    }

    /// Sessions waiting for their facts (taken: each is completed once).
    pub fn take_pending(&mut self) -> Vec<Pending> {
        std::mem::take(&mut self.pending)
    }

    /// The facts of a new session: read now, or queued when reads are deferred.
    pub(super) fn start_facts(
        &mut self,
        id: &str,
        hint: &AgentHint,
        p: &ProcFacts,
    ) -> SessionFacts {
        if !self.opts.defer_reads {
            return self.reader().facts(hint, p);
        }
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
        } else {
            self.pending.push(Pending {
                id: id.to_string(),
                kind: hint.kind.clone(),
                pid: p.pid,
                uid: p.uid,
                exe: p.exe.to_string(),
                argv: p.argv.to_vec(),
            });
        }
        SessionFacts::default()
    }

    /// Completes a session with the facts read off the lock: its record, and the tags of
    /// its processes (version, tenant, `personal_tenant`).
    pub fn complete(&mut self, id: &str, f: SessionFacts) {
        let personal = self.reader().personal(f.tenant.as_deref());
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let w = &mut s.wire;
        w.cwd = w.cwd.take().or(f.cwd);
        if f.version.is_some() {
            w.session.version.clone_from(&f.version);
        }
        if f.tenant.is_some() {
            w.tenant.clone_from(&f.tenant);
        }
        if personal && !w.flags.contains(&Flag::PersonalTenant) {
            w.flags.push(Flag::PersonalTenant);
            w.flags.sort();
        }
        let session = w.session.clone();
        let tenant = w.tenant.clone();
        for (pid, n) in &mut self.nodes {
            let Some(t) = &n.tag else { continue };
            if t.session.as_ref().is_none_or(|s| s.id != id) {
                continue;
            }
            let mut next: Tag = (**t).clone();
            next.session = Some(session.clone());
            next.tenant.clone_from(&tenant);
            if personal {
                next = next.with_flag(Flag::PersonalTenant);
            }
            if next != **t {
                n.tag = Some(Arc::new(next));
                self.retagged.push(*pid);
            }
        }
        self.generation += 1;
    }
}
