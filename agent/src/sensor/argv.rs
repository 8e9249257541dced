//! Loader side of argv capture (`agent-ebpf/src/exec.rs`): finds where this kernel keeps a
//! process's argv (`task_struct.mm`, `mm_struct.arg_start` / `arg_end`) in its BTF and
//! writes the offsets to the exec program's `EXEC_CFG`. Reported as the `exec_argv` hook:
//! without it exec events carry the program and no argv, and the process table falls back
//! to /proc (which a short-lived process no longer has).

use std::path::Path;

use aya::Ebpf;
use aya::maps::{Array, MapData};

use super::btf_fields::{ArgvOffsets, VMLINUX};

/// The status name of argv capture in `shadowai_hook_attached`.
pub const HOOK: &str = "exec_argv";

/// Configures the exec program with this kernel's offsets; the map stays with the program
/// (taken out of the object only to write it). The error says what is missing.
pub fn configure(ebpf: &mut Ebpf) -> Result<Option<u32>, String> {
    let offsets = ArgvOffsets::of_kernel(Path::new(VMLINUX)).map_err(|e| super::with_source(&e))?;
    let mut cfg: Array<&mut MapData, u32> = ebpf
        .map_mut("EXEC_CFG")
        .ok_or("map EXEC_CFG missing from the object")?
        .try_into()
        .map_err(|e: aya::maps::MapError| e.to_string())?;
    for (i, v) in [offsets.task_mm, offsets.arg_start, offsets.arg_end]
        .into_iter()
        .enumerate()
    {
        cfg.set(i as u32, v, 0).map_err(|e| e.to_string())?;
    }
    tracing::debug!(?offsets, "argv offsets from the kernel's BTF");
    Ok(None)
}
