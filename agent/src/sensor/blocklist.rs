//! What the kernel's enforcement filters hold, in the kernel's own key forms. The daemon
//! decides what to block (`run::enforce`); this module only knows how the kernel wants it.

/// The kernel filters' contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blocklist {
    /// Reversed-name keys and prefix lengths (bits) for `BLOCK_NAMES`.
    pub names: Vec<([u8; shadowai_common::QNAME_MAX], u32)>,
    /// (network, prefix length).
    pub nets4: Vec<([u8; 4], u32)>,
    pub nets6: Vec<([u8; 16], u32)>,
    /// Ids of the services blocked, for the log.
    pub services: Vec<String>,
    /// Ids of services blocked host-wide but lifted for some users or groups: decided per
    /// process (never in the filters above), for the log.
    pub per_process: Vec<String>,
    /// Some block depends on the process (users, unix groups): the kernel wakes the agent
    /// for every ClientHello so it can decide per process.
    pub scoped: bool,
}

/// The kernel filter's key for `name` as a blocked suffix (see `shadowai_common`); `None`
/// for a name that is not a valid DNS name or is too long for the filter.
pub fn name_key(name: &str) -> Option<([u8; shadowai_common::QNAME_MAX], u32)> {
    let name = name.trim_end_matches('.');
    shadowai_common::qname_suffix_key(name.split('.').map(str::as_bytes))
}
