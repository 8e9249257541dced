//! The live inventory: which processes belong to which AI agent session, which of them are
//! MCP servers, which are local model runtimes — fed by exec/exit (from the kernel, or a
//! /proc scan at start) and by attributed events (destinations). Lineage is recorded when
//! a process starts, so it survives its parent exiting: a grandchild stays in the session
//! after a short-lived shell or `npx` between it and the agent is gone.
//!
//! Only processes that belong to a session or are runtimes are kept, every table is
//! bounded (ended items are evicted first; beyond that a new item is not tracked and
//! counted in [`Tracker::dropped`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use shadowai_api::inventory::{AgentSession, InventoryReport, Listener, McpServer, Runtime};
use shadowai_api::{Flag, SessionRef};
use shadowai_rules::catalogue::{AgentHint, InventoryHints};

use super::hints;

/// Processes tracked at most (members of sessions and runtimes).
pub const MAX_NODES: usize = 65_536;
/// Sessions, MCP servers and runtimes kept at most, each.
pub const MAX_ITEMS: usize = 1024;
/// Destinations kept per item.
mod deferred;
mod standalone;
pub use deferred::{MAX_PENDING, Pending, Reader, SessionFacts};
pub use standalone::MAX_CANDIDATES;

const MAX_DEST: usize = shadowai_api::inventory::MAX_DESTINATIONS;
/// How long an exited process stays resolvable (late events), ms.
const EXITED_GRACE_MS: i64 = 120_000;
/// How long an ended item stays in the inventory, ms.
const ENDED_KEEP_MS: i64 = 3_600_000;

/// What events of one process carry onto findings: its session and risk flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tag {
    pub session: Option<SessionRef>,
    /// Sorted, each once.
    pub flags: Vec<Flag>,
    /// The MCP server (id) the process belongs to.
    pub mcp: Option<String>,
    /// The organisation id the session's tool records (opt-in `read_tenant`): policy rules
    /// scoped on `tenants` match the session's uses by it.
    pub tenant: Option<String>,
}

impl Tag {
    fn with_flag(&self, f: Flag) -> Self {
        let mut t = self.clone();
        if !t.flags.contains(&f) {
            t.flags.push(f);
            t.flags.sort();
        }
        t
    }
}

/// One process start as the tracker needs it.
#[derive(Clone, Debug, Default)]
pub struct ProcFacts<'a> {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub exe: &'a str,
    pub argv: &'a [String],
    pub uid: u32,
    pub user: &'a str,
    /// When it started, Unix ms.
    pub start_ms: i64,
}

/// Options from the agent's configuration.
#[derive(Clone, Debug)]
pub struct TrackerOptions {
    /// Read the organisation id tools keep locally (`_agents.toml` `tenant`).
    pub read_tenant: bool,
    /// /proc (tests point elsewhere).
    pub proc_root: PathBuf,
    /// /etc/passwd, for the home directory of a session's user.
    pub passwd: PathBuf,
    /// The organisation's own tenant ids (`[inventory] corporate_tenants`): a session whose
    /// tool records another one is flagged `personal_tenant`. Empty: no judgement.
    pub corporate_tenants: Vec<String>,
    /// Read a new session's cwd, version and tenant later, off the event path (the
    /// daemon: see `deferred`); else at once.
    pub defer_reads: bool,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            read_tenant: false,
            proc_root: "/proc".into(),
            passwd: "/etc/passwd".into(),
            corporate_tenants: Vec::new(),
            defer_reads: false,
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    tag: Option<Arc<Tag>>,
    /// The process is the agent program itself (not a tool it runs).
    agent: bool,
    exited_ms: Option<i64>,
}

fn push_dest(v: &mut BTreeSet<String>, d: &str) {
    if v.len() < MAX_DEST && !d.is_empty() {
        v.insert(d.to_string());
    }
}

fn as_vec(s: &BTreeSet<String>) -> Vec<String> {
    s.iter().cloned().collect()
}

struct SessionState {
    wire: AgentSession,
    dest: BTreeSet<String>,
    /// Contacts whose destination was not kept because `dest` was full.
    beyond: u64,
}

struct McpState {
    wire: McpServer,
    dest: BTreeSet<String>,
}

struct RuntimeState {
    wire: Runtime,
    /// The listening process's uid (the wire item names the user only).
    uid: u32,
    pulls: BTreeSet<String>,
    clients: BTreeSet<String>,
}

/// The host's inventory of AI agents at work, kept up to date.
pub struct Tracker {
    hints: Arc<InventoryHints>,
    opts: TrackerOptions,
    nodes: HashMap<u32, Node>,
    exited: VecDeque<(i64, u32)>,
    sessions: BTreeMap<String, SessionState>,
    mcp: BTreeMap<String, McpState>,
    runtimes: BTreeMap<u32, RuntimeState>,
    /// Processes whose tag changed since [`Tracker::take_retagged`] (runtime exposure).
    retagged: Vec<u32>,
    /// Processes outside sessions that may be standalone MCP servers (`standalone`).
    candidates: HashMap<u32, standalone::Candidate>,
    /// Sessions whose file reads are deferred (`deferred`).
    pending: Vec<deferred::Pending>,
    /// Items or processes not tracked because a table was full.
    pub dropped: u64,
    /// Contacts of sessions whose destination was not kept (a session's list was full).
    pub dest_dropped: u64,
    /// Bumped on every change a report would show.
    pub generation: u64,
}

impl Tracker {
    pub fn new(hints: Arc<InventoryHints>, opts: TrackerOptions) -> Self {
        Self {
            hints,
            opts,
            nodes: HashMap::new(),
            exited: VecDeque::new(),
            sessions: BTreeMap::new(),
            mcp: BTreeMap::new(),
            runtimes: BTreeMap::new(),
            retagged: Vec::new(),
            candidates: HashMap::new(),
            pending: Vec::new(),
            dropped: 0,
            dest_dropped: 0,
            generation: 0,
        }
    }

    /// Replaces the process hints (those of a newly verified bundle's `_agents.toml`): new
    /// execs are recognised by them; what is tracked already stays as it was recognised.
    pub fn set_hints(&mut self, hints: Arc<InventoryHints>) {
        self.hints = hints;
    }

    /// The process is tracked (part of a session, or a runtime).
    pub fn knows(&self, pid: u32) -> bool {
        self.nodes.contains_key(&pid)
    }

    /// The tag of a process, if it belongs to a session or is a flagged runtime.
    pub fn tag(&self, pid: u32) -> Option<Arc<Tag>> {
        self.nodes.get(&pid).and_then(|n| n.tag.clone())
    }

    /// A process first seen through its traffic (forked, never exec'd while the agent ran:
    /// a subshell, a worker): it joins its parent's session. Returns its tag.
    pub fn adopt(&mut self, pid: u32, ppid: u32) -> Option<Arc<Tag>> {
        if let Some(n) = self.nodes.get(&pid) {
            return n.tag.clone();
        }
        let tag = self
            .nodes
            .get(&ppid)
            .and_then(|n| n.tag.clone())
            .filter(|t| t.session.is_some())?;
        if self.nodes.len() >= MAX_NODES {
            self.evict_exited_node();
        }
        if self.nodes.len() >= MAX_NODES {
            self.dropped += 1;
            return None;
        }
        if let Some(s) = tag
            .session
            .as_ref()
            .and_then(|s| self.sessions.get_mut(&s.id))
        {
            s.wire.processes += 1;
        }
        self.nodes.insert(
            pid,
            Node {
                tag: Some(tag.clone()),
                agent: false,
                exited_ms: None,
            },
        );
        Some(tag)
    }

    /// Processes whose tag changed since the last call.
    pub fn take_retagged(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.retagged)
    }

    /// Ports of the runtime hints (listeners there are runtimes whatever the process).
    pub fn runtime_ports(&self) -> Vec<u16> {
        self.hints
            .runtime
            .iter()
            .flat_map(|r| r.ports.iter().copied())
            .collect()
    }

    /// Pids of live runtimes and MCP servers (whose listeners a scan reads).
    pub fn listening_candidates(&self) -> Vec<u32> {
        let rt = self
            .runtimes
            .iter()
            .filter(|(_, r)| !r.wire.ended)
            .map(|(p, _)| *p);
        let mcp = self
            .mcp
            .values()
            .filter(|m| !m.wire.ended)
            .map(|m| m.wire.pid);
        rt.chain(mcp).chain(self.candidate_pids()).collect()
    }

    /// A program started (an exec, or a process found at start-up). Returns its tag.
    pub fn on_exec(&mut self, p: &ProcFacts) -> Option<Arc<Tag>> {
        // A rewritten process title reads back as one argument with spaces.
        let split: Vec<String>;
        let mut p = p.clone();
        if let [one] = p.argv
            && one.contains(' ')
        {
            split = one.split_whitespace().map(String::from).collect();
            p.argv = &split;
        }
        let p = &p;
        let own = self.nodes.get(&p.pid).cloned();
        let parent = p.ppid.and_then(|pp| self.nodes.get(&pp)).cloned();
        let inherited = own
            .as_ref()
            .and_then(|n| n.tag.clone())
            .or_else(|| parent.as_ref().and_then(|n| n.tag.clone()))
            .filter(|t| t.session.is_some());
        let parent_is_agent = parent.as_ref().is_some_and(|n| n.agent);
        let mut agent = own.as_ref().is_some_and(|n| n.agent);
        let hs = Arc::clone(&self.hints);
        if own.is_none()
            && let Some(s) = inherited
                .as_ref()
                .and_then(|t| t.session.as_ref())
                .and_then(|s| self.sessions.get_mut(&s.id))
        {
            s.wire.processes += 1;
            s.wire.last_seen_ms = s.wire.last_seen_ms.max(p.start_ms);
        }
        let tag = if let Some(hint) = hints::agent(&hs, p.exe, p.argv) {
            agent = true;
            match inherited {
                Some(t) => Some(t),
                None => self.new_session(hint, p),
            }
        } else if let Some(t) = inherited {
            if t.mcp.is_none() && (parent_is_agent || mentions_mcp(p.argv)) {
                self.new_mcp(&t, p, parent_is_agent).or(Some(t))
            } else {
                Some(t)
            }
        } else {
            self.note_standalone(p);
            None
        };
        if let Some(r) = hints::runtime(&self.hints, p.exe, p.argv) {
            let (kind, name) = (r.kind.clone(), r.name.clone());
            self.add_runtime(p, &kind, &name, "exe");
        }
        let keep = tag.is_some() || self.runtimes.contains_key(&p.pid);
        if keep {
            if self.nodes.len() >= MAX_NODES && !self.nodes.contains_key(&p.pid) {
                self.evict_exited_node();
            }
            if self.nodes.len() >= MAX_NODES && !self.nodes.contains_key(&p.pid) {
                self.dropped += 1;
                return None;
            }
            let tag = tag.clone().or_else(|| self.runtime_tag(p.pid));
            self.nodes.insert(
                p.pid,
                Node {
                    tag,
                    agent,
                    exited_ms: None,
                },
            );
        } else {
            self.nodes.remove(&p.pid);
        }
        self.nodes.get(&p.pid).and_then(|n| n.tag.clone())
    }

    fn new_session(&mut self, hint: &AgentHint, p: &ProcFacts) -> Option<Arc<Tag>> {
        if !self.make_room_sessions() {
            self.dropped += 1;
            return None;
        }
        let id = format!("{}-{}", p.pid, p.start_ms);
        let facts = self.start_facts(&id, hint, p);
        let session = SessionRef {
            id: id.clone(),
            kind: hint.kind.clone(),
            root_pid: p.pid,
            started_ms: p.start_ms,
            version: facts.version,
        };
        let mut flags = Vec::new();
        if hints::bypass(hint, p.argv) {
            flags.push(Flag::PermissionBypass);
        }
        if p.uid == 0 {
            flags.push(Flag::AgentAsRoot);
        }
        let tenant = facts.tenant;
        if self.reader().personal(tenant.as_deref()) {
            flags.push(Flag::PersonalTenant);
        }
        flags.sort();
        let cwd = facts.cwd;
        let wire = AgentSession {
            session: session.clone(),
            name: hint.name.clone(),
            user: p.user.to_string(),
            uid: p.uid,
            cwd,
            exe: p.exe.to_string(),
            argv: hints::agent_argv(p.exe, p.argv),
            processes: 1,
            live_processes: 1,
            destinations: Vec::new(),
            off_catalogue: Vec::new(),
            tenant: tenant.clone(),
            flags: flags.clone(),
            first_seen_ms: p.start_ms,
            last_seen_ms: p.start_ms,
            ended: false,
        };
        tracing::info!(session = %id, kind = %hint.kind, pid = p.pid, user = %p.user, flags = ?flags, "AI agent session started");
        self.sessions.insert(
            id,
            SessionState {
                wire,
                dest: BTreeSet::new(),
                beyond: 0,
            },
        );
        self.generation += 1;
        Some(Arc::new(Tag {
            session: Some(session),
            flags,
            mcp: None,
            tenant,
        }))
    }

    fn new_mcp(&mut self, parent: &Tag, p: &ProcFacts, parent_is_agent: bool) -> Option<Arc<Tag>> {
        let launch = match hints::launch(&self.hints, p.exe, p.argv) {
            Some(l) if parent_is_agent || l.package.as_deref().is_some_and(has_mcp) => l,
            Some(_) => return None,
            // Run directly (`node server.js`, `python -m mcp_server_x`): nothing fetched.
            None if parent_is_agent && mentions_mcp(p.argv) => hints::Launch {
                launcher: "local".into(),
                package: None,
                pinned: true,
            },
            None => return None,
        };
        if !make_room(&mut self.mcp, |m| {
            m.wire.ended.then_some(m.wire.last_seen_ms)
        }) {
            self.dropped += 1;
            return None;
        }
        let sid = parent.session.as_ref().map(|s| s.id.clone());
        let id = format!("{}/{}", sid.as_deref().unwrap_or("-"), p.pid);
        let mut tag = Tag {
            mcp: Some(id.clone()),
            ..parent.clone()
        };
        let mut flags = Vec::new();
        if !launch.pinned {
            tag = tag.with_flag(Flag::UnpinnedMcpServer);
            flags.push(Flag::UnpinnedMcpServer);
        }
        tracing::info!(mcp = %id, launcher = %launch.launcher, package = ?launch.package, pinned = launch.pinned, "MCP server started");
        self.mcp.insert(
            id.clone(),
            McpState {
                wire: McpServer {
                    id,
                    transport: "stdio".into(),
                    launcher: launch.launcher,
                    package: launch.package,
                    pinned: launch.pinned,
                    pid: p.pid,
                    argv: hints::redact(p.argv),
                    session_id: sid,
                    destinations: Vec::new(),
                    listeners: Vec::new(),
                    flags,
                    first_seen_ms: p.start_ms,
                    last_seen_ms: p.start_ms,
                    ended: false,
                },
                dest: BTreeSet::new(),
            },
        );
        self.generation += 1;
        Some(Arc::new(tag))
    }

    fn add_runtime(&mut self, p: &ProcFacts, kind: &str, name: &str, by: &str) {
        if self.runtimes.contains_key(&p.pid) {
            return;
        }
        if !make_room(&mut self.runtimes, |r| {
            r.wire.ended.then_some(r.wire.last_seen_ms)
        }) {
            self.dropped += 1;
            return;
        }
        tracing::info!(
            kind,
            pid = p.pid,
            matched_by = by,
            "local model runtime seen"
        );
        self.runtimes.insert(
            p.pid,
            RuntimeState {
                wire: Runtime {
                    id: format!("{kind}-{}-{}", p.pid, p.start_ms),
                    kind: kind.to_string(),
                    name: name.to_string(),
                    pid: p.pid,
                    exe: p.exe.to_string(),
                    user: p.user.to_string(),
                    matched_by: by.to_string(),
                    listeners: Vec::new(),
                    pull_hosts: Vec::new(),
                    clients: Vec::new(),
                    flags: Vec::new(),
                    first_seen_ms: p.start_ms,
                    last_seen_ms: p.start_ms,
                    ended: false,
                },
                uid: p.uid,
                pulls: BTreeSet::new(),
                clients: BTreeSet::new(),
            },
        );
        self.generation += 1;
    }

    /// The uid of the runtime process `pid`, while the inventory holds it.
    pub fn runtime_uid(&self, pid: u32) -> Option<u32> {
        self.runtimes.get(&pid).map(|r| r.uid)
    }

    fn runtime_tag(&self, pid: u32) -> Option<Arc<Tag>> {
        let r = self.runtimes.get(&pid)?;
        (!r.wire.flags.is_empty()).then(|| {
            Arc::new(Tag {
                flags: r.wire.flags.clone(),
                ..Tag::default()
            })
        })
    }

    /// The listeners a scan found on a runtime's default port, held by `p` (a runtime by
    /// port even when its program is not in the hints).
    pub fn on_port_listener(&mut self, p: &ProcFacts, port: u16, listeners: Vec<Listener>) {
        if !self.runtimes.contains_key(&p.pid) {
            let Some(h) = self.hints.runtime.iter().find(|r| r.ports.contains(&port)) else {
                return;
            };
            let (kind, name) = (h.kind.clone(), h.name.clone());
            self.add_runtime(p, &kind, &name, "port");
        }
        self.set_listeners(p.pid, listeners);
    }

    /// What a scan found `pid` listening on (a runtime or an MCP server).
    pub fn set_listeners(&mut self, pid: u32, mut listeners: Vec<Listener>) {
        listeners.sort();
        listeners.truncate(MAX_DEST);
        if !listeners.is_empty() {
            self.promote_standalone(pid, &listeners, super::feed::now_ms());
        }
        for m in self
            .mcp
            .values_mut()
            .filter(|m| m.wire.pid == pid && !m.wire.ended)
        {
            if m.wire.listeners != listeners {
                m.wire.transport = if listeners.is_empty() {
                    "stdio"
                } else {
                    "http"
                }
                .into();
                m.wire.listeners.clone_from(&listeners);
                self.generation += 1;
            }
        }
        let Some(r) = self.runtimes.get_mut(&pid) else {
            return;
        };
        if r.wire.listeners == listeners {
            return;
        }
        let exposed = listeners.iter().any(|l| l.exposed);
        r.wire.listeners = listeners;
        let was = r.wire.flags.contains(&Flag::RuntimeExposed);
        if exposed != was {
            r.wire.flags = if exposed {
                vec![Flag::RuntimeExposed]
            } else {
                Vec::new()
            };
            if exposed {
                tracing::warn!(kind = %r.wire.kind, pid, "local model runtime listens on all interfaces");
            }
            let tag = self.runtime_tag(pid);
            let n = self.nodes.entry(pid).or_insert(Node {
                tag: None,
                agent: false,
                exited_ms: None,
            });
            n.tag = tag;
            self.retagged.push(pid);
        }
        self.generation += 1;
    }

    /// A process exited.
    pub fn on_exit(&mut self, pid: u32, now_ms: i64) {
        self.candidates.remove(&pid);
        let Some(n) = self.nodes.get_mut(&pid) else {
            return;
        };
        n.exited_ms = Some(now_ms);
        self.exited.push_back((now_ms, pid));
        if let Some(s) = n
            .tag
            .as_ref()
            .and_then(|t| t.session.as_ref())
            .filter(|s| s.root_pid == pid)
            .and_then(|s| self.sessions.get_mut(&s.id))
        {
            s.wire.ended = true;
            s.wire.last_seen_ms = now_ms;
        }
        for m in self
            .mcp
            .values_mut()
            .filter(|m| m.wire.pid == pid && !m.wire.ended)
        {
            m.wire.ended = true;
            m.wire.last_seen_ms = now_ms;
        }
        if let Some(r) = self.runtimes.get_mut(&pid) {
            r.wire.ended = true;
            r.wire.last_seen_ms = now_ms;
        }
        self.generation += 1;
    }

    /// An attributed use: `dest` is the name (SNI/DNS) or address the process contacted.
    pub fn on_contact(
        &mut self,
        pid: u32,
        dest: &str,
        peer_port: u16,
        peer_exe: &str,
        now_ms: i64,
    ) {
        if let Some(tag) = self.tag(pid) {
            if let Some(s) = tag
                .session
                .as_ref()
                .and_then(|s| self.sessions.get_mut(&s.id))
            {
                s.wire.last_seen_ms = s.wire.last_seen_ms.max(now_ms);
                let before = s.dest.len();
                push_dest(&mut s.dest, dest);
                if s.dest.len() != before {
                    self.generation += 1;
                } else if s.dest.len() >= MAX_DEST && !s.dest.contains(dest) {
                    s.beyond += 1;
                    self.dest_dropped += 1;
                }
            }
            if let Some(m) = tag.mcp.as_ref().and_then(|id| self.mcp.get_mut(id)) {
                m.wire.last_seen_ms = m.wire.last_seen_ms.max(now_ms);
                let before = m.dest.len();
                push_dest(&mut m.dest, dest);
                // A new destination of the MCP server alone (its session knew the name
                // already) is a change of the report too.
                if m.dest.len() != before {
                    self.generation += 1;
                }
            }
        }
        if let Some(r) = self.runtimes.get_mut(&pid) {
            r.wire.last_seen_ms = r.wire.last_seen_ms.max(now_ms);
            push_dest(&mut r.pulls, dest);
        }
        // Who talks to a runtime: a connection to one of its listening ports.
        for r in self.runtimes.values_mut().filter(|r| r.wire.pid != pid) {
            if r.wire.listeners.iter().any(|l| l.port == peer_port) {
                let before = r.clients.len();
                push_dest(&mut r.clients, peer_exe);
                if r.clients.len() != before {
                    self.generation += 1;
                }
            }
        }
    }

    /// Contacts of session `id` whose destination was not kept (its list was full).
    pub fn destinations_beyond(&self, id: &str) -> u64 {
        self.sessions.get(id).map_or(0, |s| s.beyond)
    }

    /// Forgets exited processes after the grace period and ended items after an hour.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some(&(t, pid)) = self.exited.front() {
            if now_ms - t < EXITED_GRACE_MS {
                break;
            }
            self.exited.pop_front();
            if self.nodes.get(&pid).is_some_and(|n| n.exited_ms == Some(t)) {
                self.nodes.remove(&pid);
            }
        }
        let old = |ended: bool, last: i64| ended && now_ms - last > ENDED_KEEP_MS;
        let before = self.sessions.len() + self.mcp.len() + self.runtimes.len();
        self.sessions
            .retain(|_, s| !old(s.wire.ended, s.wire.last_seen_ms));
        self.mcp
            .retain(|_, m| !old(m.wire.ended, m.wire.last_seen_ms));
        self.runtimes
            .retain(|_, r| !old(r.wire.ended, r.wire.last_seen_ms));
        if self.sessions.len() + self.mcp.len() + self.runtimes.len() != before {
            self.generation += 1;
        }
    }

    /// The inventory now. `known` tells names the catalogue knows (the rest are
    /// off-catalogue contacts).
    pub fn report(
        &self,
        host_id: &str,
        hostname: &str,
        now_ms: i64,
        known: &dyn Fn(&str) -> bool,
    ) -> InventoryReport {
        let mut live: HashMap<&str, u64> = HashMap::new();
        for n in self.nodes.values().filter(|n| n.exited_ms.is_none()) {
            if let Some(s) = n.tag.as_ref().and_then(|t| t.session.as_ref()) {
                *live.entry(s.id.as_str()).or_default() += 1;
            }
        }
        let sessions = self
            .sessions
            .values()
            .map(|s| {
                let mut w = s.wire.clone();
                w.destinations = as_vec(&s.dest);
                w.off_catalogue = s
                    .dest
                    .iter()
                    .filter(|d| d.parse::<std::net::IpAddr>().is_err() && !known(d))
                    .cloned()
                    .collect();
                if !w.off_catalogue.is_empty() && !w.flags.contains(&Flag::OffCatalogueContact) {
                    w.flags.push(Flag::OffCatalogueContact);
                    w.flags.sort();
                }
                w.live_processes = live.get(w.session.id.as_str()).copied().unwrap_or(0);
                w
            })
            .collect();
        let mcp_servers = self
            .mcp
            .values()
            .map(|m| {
                let mut w = m.wire.clone();
                w.destinations = as_vec(&m.dest);
                w
            })
            .collect();
        let runtimes = self
            .runtimes
            .values()
            .map(|r| {
                let mut w = r.wire.clone();
                w.pull_hosts = as_vec(&r.pulls);
                w.clients = as_vec(&r.clients);
                w
            })
            .collect();
        InventoryReport {
            host_id: host_id.to_string(),
            hostname: hostname.to_string(),
            time_ms: now_ms,
            sessions,
            mcp_servers,
            runtimes,
        }
    }

    fn make_room_sessions(&mut self) -> bool {
        make_room(&mut self.sessions, |s| {
            s.wire.ended.then_some(s.wire.last_seen_ms)
        })
    }

    fn evict_exited_node(&mut self) {
        while let Some((t, pid)) = self.exited.pop_front() {
            if self.nodes.get(&pid).is_some_and(|n| n.exited_ms == Some(t)) {
                self.nodes.remove(&pid);
                return;
            }
        }
    }
}

/// Frees a slot in a bounded table by evicting the ended item seen longest ago; false when
/// the table is full of live items.
fn make_room<K: Clone + Ord, V>(
    m: &mut BTreeMap<K, V>,
    ended_at: impl Fn(&V) -> Option<i64>,
) -> bool {
    if m.len() < MAX_ITEMS {
        return true;
    }
    let victim = m
        .iter()
        .filter_map(|(k, v)| ended_at(v).map(|t| (t, k.clone())))
        .min_by_key(|(t, _)| *t)
        .map(|(_, k)| k);
    match victim {
        Some(k) => {
            m.remove(&k);
            true
        }
        None => false,
    }
}

fn has_mcp(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    s.contains("mcp") || s.contains("modelcontextprotocol")
}

fn mentions_mcp(argv: &[String]) -> bool {
    argv.iter().take(8).any(|a| has_mcp(a))
}

/// Home directory of `uid` from a passwd file.
fn home_of(passwd: &std::path::Path, uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f.get(5).map(|h| h.to_string()))?
    })
}
