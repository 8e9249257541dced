//! The kernel side from userspace: load the eBPF object, attach every hook it can, and
//! hand out the ring buffer and counters.
//!
//! A hook that a kernel does not offer (an old kernel, a locked-down one) is logged with the
//! reason and reported by `/metrics` as `shadowai_hook_attached{hook=…} 0`; the rest keep
//! running. Links are owned by the returned [`Sensor`]: when the agent exits they detach
//! (fail-open).

pub mod argv;
pub mod blocklist;
pub mod btf_fields;
pub mod bytes;
pub mod dns_dedup;
pub mod lineage;
pub mod mounts;
pub mod quic_ids;
pub mod records;
pub mod share;
pub mod teardown;

use std::os::fd::AsFd;

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, TracePoint},
};
use shadowai_common::{Config, FlowState, dns_port_bit, drop, flow, prog};

use crate::error::AgentError;

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/shadowai"));

/// Tuning the eBPF side reads from its CONFIG map.
#[derive(Clone, Debug)]
pub struct SensorOptions {
    /// Ports whose traffic is DNS.
    pub dns_ports: Vec<u16>,
    /// Pending ring-buffer bytes that wake the reader early (batched wakeups below it).
    pub wakeup_bytes: u64,
    /// Window of in-kernel de-duplication of (process, destination) reports.
    pub dedup: std::time::Duration,
    /// Size of the events ring buffer (a power of two, ≥ the page size). It counts twice in
    /// the agent's RSS: the kernel maps its pages twice, for wrap-around reads.
    pub ring_bytes: u32,
}

/// Default size of the events ring buffer: 16× the early-wakeup threshold.
pub const RING_BYTES: u32 = 4 << 20;

impl Default for SensorOptions {
    fn default() -> Self {
        Self {
            dns_ports: vec![53],
            wakeup_bytes: 256 * 1024,
            dedup: std::time::Duration::from_secs(10),
            ring_bytes: RING_BYTES,
        }
    }
}

/// One hook and whether it is attached.
#[derive(Clone, Debug)]
pub struct HookStatus {
    pub name: &'static str,
    pub attached: bool,
    pub error: Option<String>,
    /// Instructions the verifier processed to accept the program (kernels ≥ 5.16).
    pub verified_insns: Option<u32>,
}

/// The kernel's ring buffers: the bulk of events, and the records that need a decision or
/// a teardown at once (refusals, held ClientHellos and QUIC Initials), which the reader
/// drains first so that no flood of bulk events delays them past the kernel's hold.
pub struct Rings {
    pub events: RingBuf<MapData>,
    pub decisions: RingBuf<MapData>,
}

/// The loaded and attached eBPF programs.
pub struct Sensor {
    // Keeps programs and links alive; dropping it detaches everything.
    _ebpf: Ebpf,
    config: Array<MapData, Config>,
    base_config: Config,
    block_names: LpmTrie<MapData, [u8; shadowai_common::QNAME_MAX], u32>,
    block_nets4: LpmTrie<MapData, [u8; 4], u32>,
    block_nets6: LpmTrie<MapData, [u8; 16], u32>,
    flows: HashMap<MapData, u64, FlowState>,
    drops: PerCpuArray<MapData, u64>,
    /// Repeated DNS messages the kernel counted instead of sending up.
    pub dns_dedup: dns_dedup::DnsDedup,
    /// The kernel's charges per process under a flood (who went over their share).
    pub shares: share::Shares,
    pub hooks: Vec<HookStatus>,
    /// Payload bytes per socket, when those programs attached (taken by whoever reads them).
    pub bytes: Option<bytes::ByteCounters>,
    /// Child → parent of every fork, when the lineage program attached.
    pub lineage: Option<lineage::Lineage>,
}

impl Sensor {
    /// Loads and attaches; returns the sensor and its ring buffers of events. Fails only
    /// when nothing at all could be attached.
    pub fn start(opts: &SensorOptions) -> Result<(Self, Rings), AgentError> {
        bump_memlock();
        let cgroup_root = mounts::cgroup2_root()?;
        let tracefs = mounts::ensure_tracefs();
        if let Err(e) = &tracefs {
            tracing::warn!(error = %e, "tracefs unavailable: exec/exit tracking disabled");
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(EBPF_OBJECT)?;
        if let Err(e) = aya_log::EbpfLogger::init(&mut ebpf) {
            tracing::debug!(error = %e, "eBPF programs carry no log map");
        }
        configure(&mut ebpf, opts)?;

        let cgroup = std::fs::File::open(&cgroup_root).map_err(|source| AgentError::Io {
            what: format!("opening cgroup2 root {}", cgroup_root.display()),
            source,
        })?;
        let mut hooks = Vec::new();
        for name in ["connect4", "connect6", "sendmsg4", "sendmsg6"] {
            let r = attach_sock_addr(&mut ebpf, name, &cgroup);
            hooks.push(status(name, r));
        }
        for (name, ty) in [
            ("skb_egress", CgroupSkbAttachType::Egress),
            ("skb_ingress", CgroupSkbAttachType::Ingress),
        ] {
            let r = attach_skb(&mut ebpf, name, &cgroup, ty);
            hooks.push(status(name, r));
        }
        // The capture programs count the bytes too: after them, as it checks they attached.
        let bytes = bytes::ByteCounters::attach(&mut ebpf, &cgroup, &mut hooks);
        // argv is read at sched_process_exec from offsets in the kernel's BTF: no syscall
        // tracepoint, so no process's syscalls take the traced path (exec.rs).
        hooks.push(status(argv::HOOK, argv::configure(&mut ebpf)));
        for (name, cat) in [
            ("sched_process_exec", "sched"),
            ("sched_process_exit", "sched"),
        ] {
            let r = match &tracefs {
                Ok(_) => attach_tracepoint(&mut ebpf, name, cat),
                Err(e) => Err(e.to_string()),
            };
            hooks.push(status(name, r));
        }
        let lineage = lineage::Lineage::attach(
            &mut ebpf,
            tracefs.as_ref().ok().map(|p| p.as_path()),
            &mut hooks,
        );
        if !hooks.iter().any(|h| h.attached) {
            return Err(AgentError::NothingAttached);
        }
        let ring = |ebpf: &mut Ebpf, name: &'static str| {
            RingBuf::try_from(take_map(ebpf, name)?).map_err(|e| AgentError::Map {
                name,
                reason: e.to_string(),
            })
        };
        let rings = Rings {
            events: ring(&mut ebpf, "EVENTS")?,
            decisions: ring(&mut ebpf, "DECISIONS")?,
        };
        let drops =
            PerCpuArray::try_from(take_map(&mut ebpf, "DROPS")?).map_err(|e| AgentError::Map {
                name: "DROPS",
                reason: e.to_string(),
            })?;
        let map = |e: aya::maps::MapError, name: &'static str| AgentError::Map {
            name,
            reason: e.to_string(),
        };
        let config =
            Array::try_from(take_map(&mut ebpf, "CONFIG")?).map_err(|e| map(e, "CONFIG"))?;
        let block_names = LpmTrie::try_from(take_map(&mut ebpf, "BLOCK_NAMES")?)
            .map_err(|e| map(e, "BLOCK_NAMES"))?;
        let block_nets4 = LpmTrie::try_from(take_map(&mut ebpf, "BLOCK_NETS4")?)
            .map_err(|e| map(e, "BLOCK_NETS4"))?;
        let block_nets6 = LpmTrie::try_from(take_map(&mut ebpf, "BLOCK_NETS6")?)
            .map_err(|e| map(e, "BLOCK_NETS6"))?;
        let flows =
            HashMap::try_from(take_map(&mut ebpf, "FLOWS")?).map_err(|e| map(e, "FLOWS"))?;
        let dns_dedup = dns_dedup::DnsDedup::new(take_map(&mut ebpf, "DNS_DEDUP")?)?;
        let shares = share::Shares::new(take_map(&mut ebpf, "SHARE_PROCS")?)?;
        Ok((
            Self {
                _ebpf: ebpf,
                config,
                base_config: base_config(opts),
                block_names,
                block_nets4,
                block_nets6,
                flows,
                drops,
                dns_dedup,
                shares,
                hooks,
                bytes,
                lineage,
            },
            rings,
        ))
    }

    /// Replaces what the kernel refuses (enforce mode); an empty list turns the filters off.
    pub fn set_blocklist(&mut self, b: &blocklist::Blocklist) -> Result<(), AgentError> {
        let err = |name: &'static str| {
            move |e: aya::maps::MapError| AgentError::Map {
                name,
                reason: e.to_string(),
            }
        };
        // Filters off first, so no half-updated list is ever consulted.
        self.config
            .set(0, self.base_config, 0)
            .map_err(err("CONFIG"))?;
        let old: Vec<Key<[u8; shadowai_common::QNAME_MAX]>> =
            self.block_names.keys().filter_map(Result::ok).collect();
        for k in old {
            let _ = self.block_names.remove(&k);
        }
        let old4: Vec<Key<[u8; 4]>> = self.block_nets4.keys().filter_map(Result::ok).collect();
        for k in old4 {
            let _ = self.block_nets4.remove(&k);
        }
        let old6: Vec<Key<[u8; 16]>> = self.block_nets6.keys().filter_map(Result::ok).collect();
        for k in old6 {
            let _ = self.block_nets6.remove(&k);
        }
        for (key, bits) in &b.names {
            self.block_names
                .insert(&Key::new(*bits, *key), 1, 0)
                .map_err(err("BLOCK_NAMES"))?;
        }
        for (net, len) in &b.nets4 {
            self.block_nets4
                .insert(&Key::new(*len, *net), 1, 0)
                .map_err(err("BLOCK_NETS4"))?;
        }
        for (net, len) in &b.nets6 {
            self.block_nets6
                .insert(&Key::new(*len, *net), 1, 0)
                .map_err(err("BLOCK_NETS6"))?;
        }
        let cfg = Config {
            block_names: b.names.len() as u64,
            block_nets: (b.nets4.len() + b.nets6.len()) as u64,
            urgent_hellos: u64::from(b.scoped),
            ..self.base_config
        };
        self.config.set(0, cfg, 0).map_err(err("CONFIG"))?;
        Ok(())
    }

    /// Marks a socket refused: the packet programs drop its later egress payload (a
    /// decision only userspace could make: a ClientHello spanning segments, a QUIC
    /// Initial, a rule scoped to users or groups). The socket is torn down separately.
    pub fn block_flow(&mut self, cookie: u64) -> Result<(), AgentError> {
        let st = FlowState {
            state: flow::BLOCKED,
            ..FlowState::default()
        };
        self.flows
            .insert(cookie, st, 0)
            .map_err(|e| AgentError::Map {
                name: "FLOWS",
                reason: e.to_string(),
            })
    }

    /// Lets a QUIC socket the agent decided to allow go on: its held-back ingress flows
    /// again and capture stops (see `flow::PENDING`).
    pub fn allow_flow(&mut self, cookie: u64) -> Result<(), AgentError> {
        let st = FlowState {
            state: flow::DONE,
            segs: flow::MAX_QUIC_PKTS,
            ..FlowState::default()
        };
        self.flows
            .insert(cookie, st, 0)
            .map_err(|e| AgentError::Map {
                name: "FLOWS",
                reason: e.to_string(),
            })
    }

    /// Drop counters summed over CPUs: (program, reason, count).
    pub fn drops(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for p in 0..prog::COUNT {
            for r in 0..drop::REASONS {
                let idx = p * drop::REASONS + r;
                let total = match self.drops.get(&idx, 0) {
                    Ok(v) => v.iter().sum(),
                    Err(_) => 0,
                };
                out.push((prog::NAMES[p as usize], drop::NAMES[r as usize], total));
            }
        }
        out
    }
}

/// `e` and its source, as a hook's status reports why it is unavailable.
fn with_source(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

fn status(name: &'static str, r: Result<Option<u32>, String>) -> HookStatus {
    match r {
        Ok(verified_insns) => {
            tracing::debug!(hook = name, verified_insns, "attached");
            HookStatus {
                name,
                attached: true,
                error: None,
                verified_insns,
            }
        }
        Err(e) => {
            tracing::warn!(hook = name, error = %e, "hook unavailable on this kernel; continuing without it");
            HookStatus {
                name,
                attached: false,
                error: Some(e),
                verified_insns: None,
            }
        }
    }
}

/// The verifier's processed-instruction count of a loaded program, where the kernel says.
fn verified(info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>) -> Option<u32> {
    info.ok().and_then(|i| i.verified_instruction_count())
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, AgentError> {
    ebpf.take_map(name).ok_or(AgentError::Map {
        name,
        reason: "missing from the eBPF object".into(),
    })
}

fn configure(ebpf: &mut Ebpf, opts: &SensorOptions) -> Result<(), AgentError> {
    let map_err = |name: &'static str| {
        move |e: aya::maps::MapError| AgentError::Map {
            name,
            reason: e.to_string(),
        }
    };
    let cfg = base_config(opts);
    {
        let m = ebpf.map_mut("CONFIG").ok_or(AgentError::Map {
            name: "CONFIG",
            reason: "missing".into(),
        })?;
        let mut arr: Array<_, Config> = Array::try_from(m).map_err(map_err("CONFIG"))?;
        arr.set(0, cfg, 0).map_err(map_err("CONFIG"))?;
    }
    let m = ebpf.map_mut("DNS_PORTS").ok_or(AgentError::Map {
        name: "DNS_PORTS",
        reason: "missing".into(),
    })?;
    let mut ports: Array<_, u64> = Array::try_from(m).map_err(map_err("DNS_PORTS"))?;
    let mut words = std::collections::BTreeMap::<u32, u64>::new();
    for p in &opts.dns_ports {
        let (word, mask) = dns_port_bit(*p);
        *words.entry(word).or_default() |= mask;
    }
    for (word, bits) in words {
        ports.set(word, bits, 0).map_err(map_err("DNS_PORTS"))?;
    }
    Ok(())
}

fn base_config(opts: &SensorOptions) -> Config {
    Config {
        wakeup_bytes: opts.wakeup_bytes,
        dedup_ns: u64::try_from(opts.dedup.as_nanos()).unwrap_or(u64::MAX),
        block_names: 0,
        block_nets: 0,
        urgent_hellos: 0,
    }
}

fn attach_sock_addr(
    ebpf: &mut Ebpf,
    name: &str,
    cgroup: &impl AsFd,
) -> Result<Option<u32>, String> {
    let prog: &mut CgroupSockAddr = ebpf
        .program_mut(name)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| e.to_string())?;
    prog.attach(cgroup, CgroupAttachMode::Single)
        .map_err(|e| e.to_string())?;
    Ok(verified(prog.info()))
}

fn attach_skb(
    ebpf: &mut Ebpf,
    name: &str,
    cgroup: &impl AsFd,
    ty: CgroupSkbAttachType,
) -> Result<Option<u32>, String> {
    let prog: &mut CgroupSkb = ebpf
        .program_mut(name)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| e.to_string())?;
    prog.attach(cgroup, ty, CgroupAttachMode::Single)
        .map_err(|e| e.to_string())?;
    Ok(verified(prog.info()))
}

fn attach_tracepoint(ebpf: &mut Ebpf, name: &str, category: &str) -> Result<Option<u32>, String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load().map_err(|e| e.to_string())?;
    prog.attach(category, name).map_err(|e| e.to_string())?;
    Ok(verified(prog.info()))
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; raising it needs
/// CAP_SYS_RESOURCE, which some hosts withhold. Newer kernels do not need it, so a refusal
/// is only logged.
fn bump_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "setrlimit(RLIMIT_MEMLOCK) refused; fine on kernels >= 5.11");
    }
}
