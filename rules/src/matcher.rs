//! The catalogue's match index: names (a trie of labels walked right to left over one hashed
//! table, see [`crate::suffix_index`]), IPs (longest-prefix CIDR), processes and ports (self-hosted
//! runtimes). Built once, read on every event; lookups do not allocate.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::catalogue::Service;
use crate::pattern::{self, FirstLabel, Glob, PatternKind};
use crate::qname::QName;
use crate::suffix_index::{self, Builder, SuffixIndex};

const NONE: u32 = u32::MAX;

/// `TASK_COMM_LEN - 1`: the kernel truncates `comm` to 15 bytes.
pub const COMM_LEN: usize = 15;

/// Which field of a service a pattern came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// `domains` (suffix).
    Domains,
    /// `hosts` (exact).
    Hosts,
    /// `sni` (glob).
    Sni,
    /// `cidrs`.
    Cidrs,
    /// `process_hints`.
    ProcessHints,
    /// `ports` (when `port_alone`).
    Ports,
}

impl Field {
    /// The TOML key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Domains => "domains",
            Self::Hosts => "hosts",
            Self::Sni => "sni",
            Self::Cidrs => "cidrs",
            Self::ProcessHints => "process_hints",
            Self::Ports => "ports",
        }
    }
}

/// One pattern of one service, as indexed.
#[derive(Clone, Debug)]
pub struct PatternInfo {
    /// Index of the service in the catalogue.
    pub service: u32,
    /// Field it came from.
    pub field: Field,
    /// Position in that field's list.
    pub item: u32,
    /// The pattern text as written (normalised).
    pub text: Box<str>,
}

/// A problem found while building the index: which pattern, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildProblem {
    /// Service index.
    pub service: u32,
    /// Field.
    pub field: Field,
    /// Item in that field.
    pub item: u32,
    /// What is wrong.
    pub message: String,
}

/// A parsed CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    /// IPv4 network (address, prefix length).
    V4(u32, u8),
    /// IPv6 network.
    V6(u128, u8),
}

/// Parse `a.b.c.d/n` or `x::y/n`; host bits must be zero. A bare address is a /32 or /128.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => {
            let l: u8 = l
                .parse()
                .map_err(|_| format!("prefix length `{l}` is not a number"))?;
            (a, Some(l))
        }
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    match ip {
        IpAddr::V4(v4) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return Err(format!("prefix length {len} is more than 32"));
            }
            let bits = u32::from(v4);
            if bits & !mask32(len) != 0 {
                return Err(format!(
                    "host bits set: did you mean {}/{len}?",
                    std::net::Ipv4Addr::from(bits & mask32(len))
                ));
            }
            Ok(Cidr::V4(bits, len))
        }
        IpAddr::V6(v6) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return Err(format!("prefix length {len} is more than 128"));
            }
            let bits = u128::from(v6);
            if bits & !mask128(len) != 0 {
                return Err(format!(
                    "host bits set: did you mean {}/{len}?",
                    std::net::Ipv6Addr::from(bits & mask128(len))
                ));
            }
            Ok(Cidr::V6(bits, len))
        }
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// How a query was matched to a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Service index.
    pub service: u32,
    /// Pattern index (see [`Matcher::pattern`]).
    pub pattern: u32,
}

/// The match index over a catalogue.
#[derive(Clone, Default)]
pub struct Matcher {
    index: SuffixIndex,
    globs: Vec<(Glob, u32)>,
    v4: Vec<(u8, FxHashMap<u32, u32>)>,
    v6: Vec<(u8, FxHashMap<u128, u32>)>,
    process: FxHashMap<Box<str>, u32>,
    process_trunc: FxHashMap<Box<str>, u32>,
    ports_alone: FxHashMap<u16, u32>,
    patterns: Vec<PatternInfo>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("names", &self.index.len())
            .field("globs", &self.globs.len())
            .field("patterns", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

/// The problem text for a catalogue past [`suffix_index::MAX_SUFFIXES`].
fn too_many() -> String {
    format!(
        "too many name patterns: their labels make more than {} distinct suffixes, the most \
         one index holds",
        suffix_index::MAX_SUFFIXES
    )
}

impl Matcher {
    /// Build the index. Every conflict or invalid pattern is returned, not just the first.
    pub fn build(services: &[Service]) -> Result<Self, Vec<BuildProblem>> {
        Self::build_with(services, Builder::finish)
    }

    /// [`Matcher::build`], the name index made by `finish` (tests: a colliding hash).
    fn build_with(
        services: &[Service],
        finish: impl FnOnce(Builder) -> SuffixIndex,
    ) -> Result<Self, Vec<BuildProblem>> {
        let mut m = Self::default();
        let mut problems = Vec::new();
        let mut names = Builder::default();
        // Literal-suffix node → its globs, in the order listed.
        let mut globs_by_key: FxHashMap<u32, Vec<(Glob, u32)>> = FxHashMap::default();
        let mut v4: FxHashMap<u8, FxHashMap<u32, u32>> = FxHashMap::default();
        let mut v6: FxHashMap<u8, FxHashMap<u128, u32>> = FxHashMap::default();

        for (si, svc) in services.iter().enumerate() {
            let si = si as u32;
            let add = |m: &mut Self, field, item: usize, text: &str| -> u32 {
                m.patterns.push(PatternInfo {
                    service: si,
                    field,
                    item: item as u32,
                    text: text.into(),
                });
                (m.patterns.len() - 1) as u32
            };
            let problem = |field, item: usize, message: String| BuildProblem {
                service: si,
                field,
                item: item as u32,
                message,
            };
            for (i, d) in svc.domains.iter().enumerate() {
                if let Err(e) = pattern::check_literal(d) {
                    problems.push(problem(
                        Field::Domains,
                        i,
                        format!("invalid domain `{d}`: {e}"),
                    ));
                    continue;
                }
                let pid = add(&mut m, Field::Domains, i, d);
                m.claim(
                    &mut names,
                    services,
                    d,
                    pid,
                    PatternKind::Suffix,
                    &mut problems,
                );
            }
            for (i, h) in svc.hosts.iter().enumerate() {
                if let Err(e) = pattern::check_literal(h) {
                    problems.push(problem(Field::Hosts, i, format!("invalid host `{h}`: {e}")));
                    continue;
                }
                let pid = add(&mut m, Field::Hosts, i, h);
                m.claim(
                    &mut names,
                    services,
                    h,
                    pid,
                    PatternKind::Exact,
                    &mut problems,
                );
            }
            for (i, g) in svc.sni.iter().enumerate() {
                match pattern::parse_glob(g) {
                    Err(e) => problems.push(problem(
                        Field::Sni,
                        i,
                        format!("invalid SNI pattern `{g}`: {e}"),
                    )),
                    Ok(glob) => {
                        let Ok(node) = names.node(&glob.literal_suffix) else {
                            problems.push(problem(Field::Sni, i, too_many()));
                            continue;
                        };
                        let dup = globs_by_key
                            .get(&node)
                            .and_then(|v| v.iter().find(|(o, _)| *o == glob).map(|(_, p)| *p));
                        if let Some(other) = dup {
                            problems.push(problem(
                                Field::Sni,
                                i,
                                m.conflict_msg(services, g, other),
                            ));
                            continue;
                        }
                        let pid = add(&mut m, Field::Sni, i, g);
                        globs_by_key.entry(node).or_default().push((glob, pid));
                    }
                }
            }
            for (i, c) in svc.cidrs.iter().enumerate() {
                match parse_cidr(c) {
                    Err(e) => {
                        problems.push(problem(Field::Cidrs, i, format!("invalid CIDR `{c}`: {e}")))
                    }
                    Ok(cidr) => {
                        let prev = match cidr {
                            Cidr::V4(a, l) => v4.entry(l).or_default().get(&a).copied(),
                            Cidr::V6(a, l) => v6.entry(l).or_default().get(&a).copied(),
                        };
                        if let Some(other) = prev {
                            problems.push(problem(
                                Field::Cidrs,
                                i,
                                m.conflict_msg(services, c, other),
                            ));
                            continue;
                        }
                        let pid = add(&mut m, Field::Cidrs, i, c);
                        match cidr {
                            Cidr::V4(a, l) => v4.entry(l).or_default().insert(a, pid),
                            Cidr::V6(a, l) => v6.entry(l).or_default().insert(a, pid),
                        };
                    }
                }
            }
            for (i, p) in svc.process_hints.iter().enumerate() {
                if p.is_empty()
                    || p.contains('/')
                    || p.len() > 255
                    || p.bytes()
                        .any(|b| b.is_ascii_uppercase() || b.is_ascii_control())
                {
                    problems.push(problem(
                        Field::ProcessHints,
                        i,
                        format!("invalid process hint `{p}`: a lower-case executable name or comm, no '/'"),
                    ));
                    continue;
                }
                if let Some(&other) = m.process.get(p.as_str()) {
                    problems.push(problem(
                        Field::ProcessHints,
                        i,
                        m.conflict_msg(services, p, other),
                    ));
                    continue;
                }
                let pid = add(&mut m, Field::ProcessHints, i, p);
                m.process.insert(p.as_str().into(), pid);
                if p.len() > COMM_LEN && p.is_char_boundary(COMM_LEN) {
                    m.process_trunc.entry(p[..COMM_LEN].into()).or_insert(pid);
                }
            }
            for (i, &port) in svc.ports.iter().enumerate() {
                if port == 0 {
                    problems.push(problem(Field::Ports, i, "port 0 is not a port".into()));
                    continue;
                }
                if svc.port_alone {
                    if let Some(&other) = m.ports_alone.get(&port) {
                        problems.push(problem(
                            Field::Ports,
                            i,
                            m.conflict_msg(services, &port.to_string(), other),
                        ));
                        continue;
                    }
                    let pid = add(&mut m, Field::Ports, i, &port.to_string());
                    m.ports_alone.insert(port, pid);
                }
            }
        }
        // Globs: one contiguous run per literal-suffix key.
        for (node, list) in globs_by_key {
            let start = m.globs.len() as u32;
            let len = list.len() as u32;
            m.globs.extend(list);
            if let Some(slot) = names.slot_mut(node) {
                slot.glob_start = start;
                slot.glob_len = len;
            }
        }
        let mut v4: Vec<_> = v4.into_iter().filter(|(_, t)| !t.is_empty()).collect();
        v4.sort_by_key(|t| std::cmp::Reverse(t.0));
        let mut v6: Vec<_> = v6.into_iter().filter(|(_, t)| !t.is_empty()).collect();
        v6.sort_by_key(|t| std::cmp::Reverse(t.0));
        m.v4 = v4;
        m.v6 = v6;
        m.index = finish(names);
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(problems)
        }
    }

    fn conflict_msg(&self, services: &[Service], text: &str, other_pattern: u32) -> String {
        let other = self
            .patterns
            .get(other_pattern as usize)
            .and_then(|p| services.get(p.service as usize))
            .map_or("?", |s| s.id.as_str());
        format!("`{text}` is already claimed by service `{other}`")
    }

    fn claim(
        &mut self,
        names: &mut Builder,
        services: &[Service],
        name: &str,
        pid: u32,
        kind: PatternKind,
        problems: &mut Vec<BuildProblem>,
    ) {
        let cur = names.slot(name);
        // The same name as an exact host and as a suffix of two services is still one name
        // claimed twice: refuse it.
        let (mine, other) = match kind {
            PatternKind::Exact => (cur.exact, cur.suffix),
            _ => (cur.suffix, cur.exact),
        };
        let owner = |p: u32| self.patterns.get(p as usize).map(|p| p.service);
        let me = owner(pid);
        let Some(info) = self.patterns.get(pid as usize).cloned() else {
            return;
        };
        let report = |message: String| BuildProblem {
            service: info.service,
            field: info.field,
            item: info.item,
            message,
        };
        if other != NONE && owner(other) != me {
            problems.push(report(self.conflict_msg(services, name, other)));
            return;
        }
        if mine != NONE {
            let msg = if owner(mine) == me {
                format!("`{name}` is listed twice in this service")
            } else {
                self.conflict_msg(services, name, mine)
            };
            problems.push(report(msg));
            return;
        }
        let Some(slot) = names.node(name).ok().and_then(|n| names.slot_mut(n)) else {
            problems.push(report(too_many()));
            return;
        };
        match kind {
            PatternKind::Exact => slot.exact = pid,
            _ => slot.suffix = pid,
        }
    }

    /// Pattern details for a hit (for explanations).
    pub fn pattern(&self, id: u32) -> Option<&PatternInfo> {
        self.patterns.get(id as usize)
    }

    /// Number of indexed patterns.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Match a DNS name or SNI. Case-insensitive, one trailing dot ignored, label boundaries
    /// only. The most specific pattern wins: the longest matching literal suffix, and at equal
    /// length exact > glob > suffix. Does not allocate.
    ///
    /// Right to left over the labels (see [`SuffixIndex::walk`]): the hit of the longest
    /// indexed suffix that yields one wins — at the whole name an exact host, below it a
    /// glob whose wildcard labels fit, else a domain suffix.
    #[inline]
    pub fn match_name(&self, name: &str) -> Option<Hit> {
        let q = QName::new(name)?;
        let mut best = NONE;
        self.index.walk(&q, |start, slot| {
            let pid = if start == 0 && slot.exact != NONE {
                slot.exact
            } else {
                let glob = if slot.glob_len != 0 && start > 0 {
                    let left = q.labels_before(start - 1);
                    let first = FirstLabel::of(&q);
                    let from = slot.glob_start as usize;
                    self.globs
                        .get(from..from + slot.glob_len as usize)
                        .unwrap_or(&[])
                        .iter()
                        .find(|(g, _)| {
                            g.head.len() == left
                                && g.first_may_fit(&first)
                                && g.matches_first_labels(&q, &first, start - 1)
                        })
                        .map(|(_, pid)| *pid)
                } else {
                    None
                };
                glob.unwrap_or(slot.suffix)
            };
            if pid != NONE {
                best = pid;
            }
        });
        self.hit(best)
    }

    #[inline]
    fn hit(&self, pid: u32) -> Option<Hit> {
        self.patterns.get(pid as usize).map(|p| Hit {
            service: p.service,
            pattern: pid,
        })
    }

    /// Longest-prefix match of an address against the catalogue's CIDRs.
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as IPv4.
    pub fn match_ip(&self, ip: IpAddr) -> Option<Hit> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|(len, t)| t.get(&(bits & mask32(*len))))
                    .and_then(|&p| self.hit(p))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|(len, t)| t.get(&(bits & mask128(*len))))
                    .and_then(|&p| self.hit(p))
            }
        }
    }

    /// Match a process (exe path or comm) against the runtimes' process hints. The basename
    /// is compared case-insensitively; a 15-byte name (a truncated `comm`) also matches hints
    /// it is the start of; a trailing ` (deleted)` is ignored.
    pub fn match_process(&self, process: &str) -> Option<Hit> {
        let p = process.strip_suffix(" (deleted)").unwrap_or(process);
        let base = p.rsplit('/').next().unwrap_or(p);
        if base.is_empty() || base.len() > 255 {
            return None;
        }
        let mut buf = [0u8; 255];
        let out = buf.get_mut(..base.len())?;
        out.copy_from_slice(base.as_bytes());
        out.make_ascii_lowercase();
        let base = std::str::from_utf8(out).ok()?;
        if let Some(&pid) = self.process.get(base) {
            return self.hit(pid);
        }
        if base.len() == COMM_LEN
            && !process.contains('/')
            && let Some(&pid) = self.process_trunc.get(base)
        {
            return self.hit(pid);
        }
        None
    }

    /// Match a destination port that identifies a runtime on its own (`port_alone`).
    pub fn match_port(&self, port: u16) -> Option<Hit> {
        self.ports_alone.get(&port).and_then(|&p| self.hit(p))
    }
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
