//! Keeping the daemon's resident memory small (target ≤ 30 MB steady, BENCHMARKS.md).
//!
//! Most of the agent's heap is transient: loading the eBPF object parses the kernel's BTF
//! (several MB) and building the rule engine parses the catalogue; both are freed once
//! done, but glibc keeps freed pages mapped unless asked to give them back, and gives each
//! thread that allocates an arena of its own (up to 8 per core), each holding freed pages
//! of its own. So the daemon caps the arenas before it starts its threads and returns free
//! heap pages to the kernel once it has started and after each window it writes.
//! Both are glibc calls; elsewhere they do nothing.

/// Arenas glibc may create: the daemon's threads mostly wait, so two are plenty.
pub const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas; call before the daemon starts threads. False when the C
/// library refused (the agent runs on, with its default).
pub fn limit_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only reads its two integer arguments.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) == 1 }
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
