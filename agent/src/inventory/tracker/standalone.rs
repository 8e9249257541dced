//! MCP servers no AI agent started (HTTP/SSE, run by hand or by a service manager): a
//! process whose command line names an MCP package or script (`npx …/server-everything
//! streamableHttp`, `node …/node_modules/@modelcontextprotocol/server-x/dist/index.js`,
//! `python -m mcp_server_x`) is a *candidate*; once a listener scan finds it listening it
//! is inventoried as an `http` MCP server with its bind addresses (and an unpinned launch is
//! flagged). Nothing is inventoried that never listens. Candidates are bounded
//! ([`MAX_CANDIDATES`], new ones counted in `dropped` beyond) and forgotten at exit.

use std::collections::BTreeSet;
use std::sync::Arc;

use shadowai_api::Flag;
use shadowai_api::inventory::{Listener, McpServer};

use super::{McpState, Node, ProcFacts, Tag, Tracker, make_room, mentions_mcp};
use crate::inventory::hints::{self, Launch};

/// Candidate processes kept at most.
pub const MAX_CANDIDATES: usize = 1024;

/// A process that may be a standalone MCP server.
pub(super) struct Candidate {
    launch: Launch,
    argv: Vec<String>,
    start_ms: i64,
}

/// The npm package a script path lies in (`…/node_modules/@scope/name/…`), or the module
/// of `python -m module`.
fn package_of(argv: &[String]) -> Option<String> {
    for (i, a) in argv.iter().enumerate().take(8) {
        if let Some((_, rest)) = a.rsplit_once("/node_modules/") {
            let mut parts = rest.split('/');
            let first = parts.next()?;
            return Some(if first.starts_with('@') {
                format!("{first}/{}", parts.next()?)
            } else {
                first.to_string()
            });
        }
        if a == "-m" {
            return argv.get(i + 1).cloned();
        }
    }
    None
}

impl Tracker {
    /// An exec outside every session: remember it if it looks like an MCP server.
    pub(super) fn note_standalone(&mut self, p: &ProcFacts) {
        // A child of an unpinned launch (`npx -y pkg` → `sh -c` → `node …/dist/index.js`)
        // is the same server fetched at start: it inherits the launch, so the process that
        // ends up listening carries `pinned: false` and the launcher that fetched it.
        let from_parent = p
            .ppid
            .and_then(|pp| self.candidates.get(&pp))
            .filter(|c| !c.launch.pinned)
            .map(|c| c.launch.clone());
        let launch = match from_parent.or_else(|| hints::launch(&self.hints, p.exe, p.argv)) {
            Some(l) if l.package.as_deref().is_some_and(super::has_mcp) => l,
            Some(_) => return,
            None if mentions_mcp(p.argv) => Launch {
                launcher: "local".into(),
                package: package_of(p.argv),
                pinned: true,
            },
            None => return,
        };
        if self.candidates.len() >= MAX_CANDIDATES && !self.candidates.contains_key(&p.pid) {
            self.dropped += 1;
            return;
        }
        self.candidates.insert(
            p.pid,
            Candidate {
                launch,
                argv: hints::redact(p.argv),
                start_ms: p.start_ms,
            },
        );
    }

    /// A candidate found listening becomes an inventoried HTTP MCP server.
    pub(super) fn promote_standalone(&mut self, pid: u32, listeners: &[Listener], now_ms: i64) {
        let Some(c) = self.candidates.remove(&pid) else {
            return;
        };
        if !make_room(&mut self.mcp, |m| {
            m.wire.ended.then_some(m.wire.last_seen_ms)
        }) {
            self.dropped += 1;
            return;
        }
        let id = format!("-/{pid}-{}", c.start_ms);
        let mut flags = Vec::new();
        if !c.launch.pinned {
            flags.push(Flag::UnpinnedMcpServer);
        }
        tracing::info!(mcp = %id, launcher = %c.launch.launcher, package = ?c.launch.package, listeners = ?listeners, "standalone MCP server listening");
        self.mcp.insert(
            id.clone(),
            McpState {
                wire: McpServer {
                    id: id.clone(),
                    transport: "http".into(),
                    launcher: c.launch.launcher,
                    package: c.launch.package,
                    pinned: c.launch.pinned,
                    pid,
                    argv: c.argv,
                    session_id: None,
                    destinations: Vec::new(),
                    listeners: Vec::new(),
                    flags: flags.clone(),
                    first_seen_ms: c.start_ms,
                    last_seen_ms: now_ms.max(c.start_ms),
                    ended: false,
                },
                dest: BTreeSet::new(),
            },
        );
        let tag = Arc::new(Tag {
            flags,
            mcp: Some(id),
            ..Tag::default()
        });
        self.nodes.insert(
            pid,
            Node {
                tag: Some(tag),
                agent: false,
                exited_ms: None,
            },
        );
        self.retagged.push(pid);
        self.generation += 1;
    }

    /// Candidates waiting for a listener (pids).
    pub(super) fn candidate_pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.candidates.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::package_of;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn the_package_of_a_script_or_a_python_module() {
        assert_eq!(
            package_of(&v("node /opt/x/node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp")).as_deref(),
            Some("@modelcontextprotocol/server-everything")
        );
        assert_eq!(
            package_of(&v("node /srv/node_modules/mcp-server-x/index.js")).as_deref(),
            Some("mcp-server-x")
        );
        assert_eq!(
            package_of(&v("python3 -m mcp_server_time")).as_deref(),
            Some("mcp_server_time")
        );
        assert_eq!(package_of(&v("./mcp-server")), None);
    }
}
