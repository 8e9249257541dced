//! Loader side of the lineage program (`agent-ebpf/src/lineage.rs`): finds where this
//! kernel's `sched_process_fork` record keeps `child_pid`, attaches the program and answers
//! "who forked this pid" from its map — for processes /proc no longer shows.

use std::path::Path;

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData};

use super::HookStatus;

/// The hook's name (program and tracepoint).
pub const HOOK: &str = "sched_process_fork";

/// Why lineage is not recorded on this host.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("reading {path}")]
    Format {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no `child_pid` field of 4 bytes")]
    NoChildPid { path: String },
}

/// The kernel's child → parent map.
pub struct Lineage {
    parents: HashMap<MapData, u32, u32>,
    _cfg: Array<MapData, u32>,
}

/// Offset of `pid_t child_pid` in a tracepoint `format` text.
pub fn child_pid_offset(format: &str) -> Option<u32> {
    format.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("field:pid_t child_pid;")?;
        let mut off = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                off = v.trim().parse::<u32>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.trim().parse::<u32>().ok();
            }
        }
        (size == Some(4)).then_some(off).flatten()
    })
}

fn offset(tracefs: &Path) -> Result<u32, LineageError> {
    let path = tracefs.join("events/sched/sched_process_fork/format");
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| LineageError::Format {
        path: shown.clone(),
        source,
    })?;
    child_pid_offset(&text).ok_or(LineageError::NoChildPid { path: shown })
}

impl Lineage {
    /// Configures and attaches the program (reported in `hooks`); `None` when it cannot
    /// run here (no tracefs, an unknown record layout, a refused program).
    pub fn attach(
        ebpf: &mut Ebpf,
        tracefs: Option<&Path>,
        hooks: &mut Vec<HookStatus>,
    ) -> Option<Self> {
        let r = Self::try_attach(ebpf, tracefs);
        let (lineage, status) = match r {
            Ok((l, insns)) => (Some(l), Ok(insns)),
            Err(e) => (None, Err(e)),
        };
        hooks.push(super::status(HOOK, status));
        lineage
    }

    fn try_attach(ebpf: &mut Ebpf, tracefs: Option<&Path>) -> Result<(Self, Option<u32>), String> {
        let tracefs = tracefs.ok_or("tracefs unavailable")?;
        let off = offset(tracefs).map_err(|e| super::with_source(&e))?;
        let mut cfg: Array<MapData, u32> = ebpf
            .take_map("LINEAGE_CFG")
            .ok_or("map LINEAGE_CFG missing from the object")?
            .try_into()
            .map_err(|e: aya::maps::MapError| e.to_string())?;
        cfg.set(0, off, 0).map_err(|e| e.to_string())?;
        let insns = super::attach_tracepoint(ebpf, HOOK, "sched")?;
        let parents: HashMap<MapData, u32, u32> = ebpf
            .take_map("LINEAGE")
            .ok_or("map LINEAGE missing from the object")?
            .try_into()
            .map_err(|e: aya::maps::MapError| e.to_string())?;
        Ok((Self { parents, _cfg: cfg }, insns))
    }

    /// The thread group that forked `pid`, if the kernel recorded it (bounded LRU: old
    /// forks are forgotten first). One map lookup, no file I/O.
    pub fn parent_of(&self, pid: u32) -> Option<u32> {
        self.parents
            .get(&pid, 0)
            .ok()
            .filter(|&p| p != 0 && p != pid)
    }
}

#[cfg(test)]
mod tests {
    use super::child_pid_offset;

    #[test]
    fn finds_child_pid_in_old_and_new_layouts() {
        let new = "format:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(child_pid_offset(new), Some(20));
        let old = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(child_pid_offset(old), Some(44));
        assert_eq!(
            child_pid_offset("field:pid_t child_pid;\toffset:20;\tsize:8;"),
            None
        );
        assert_eq!(child_pid_offset("nothing here"), None);
    }
}
