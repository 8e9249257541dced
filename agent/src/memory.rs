//! Keeping the daemon's resident memory small (target ≤ 30 MB steady, BENCHMARKS.md).
//!
//! Most of the agent's heap is transient: loading the eBPF object parses the kernel's BTF
//! (several MB) and building the rule engine parses the catalogue; both are freed once
//! done, but glibc keeps freed pages mapped unless asked to give them back, and gives each
//! thread that allocates an arena of its own (up to 8 per core), each holding freed pages
//! of its own. So the daemon caps the arenas before it starts its threads and returns free
//! heap pages to the kernel once it has started and after each window it writes.
//!
//! It also pins glibc's mmap threshold at [`MMAP_THRESHOLD`]. By default glibc raises the
//! threshold each time a large mmapped block is freed (up to 32 MiB), so after the BTF
//! parse every later large allocation — the spool's page table, its metrics histograms,
//! the drain buffers — came from the heap, inside pages the parse had dirtied, where a
//! zeroed allocation is written in full. Measured on the release agent, idle 6 s after
//! start (`/proc/PID/status`): RSS 31.0 → 25.4 MiB, the heap's resident pages 8.4 → 2.3
//! MiB, peak (VmHWM) 34.8 → 29.2 MiB. A large block now costs an mmap and a munmap; the
//! daemon makes them per window and per drain, never per event.
//! All are glibc calls; elsewhere they do nothing.

/// Arenas glibc may create: the daemon's threads mostly wait, so two are plenty.
pub const ARENAS: i32 = 2;

/// Blocks of this size and larger are mmapped, and unmapped when freed (glibc's initial
/// threshold, kept fixed).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Caps glibc's malloc arenas and pins its mmap threshold; call before the daemon starts
/// threads. False when the C library refused either (the agent runs on, with its default).
pub fn limit_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only reads its two integer arguments.
        unsafe {
            let arenas = libc::mallopt(libc::M_ARENA_MAX, ARENAS) == 1;
            let threshold = libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1;
            arenas && threshold
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Returns free heap pages to the kernel (they stop counting in RSS). Costs a walk of the
/// heap's free lists: call it after bursts (start, a written window), not per event.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers; 0 = keep no extra padding.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
