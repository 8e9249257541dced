//! shadowai-agent: eBPF sensing, decoding, attribution and output.
//!
//! Pipeline (see ARCHITECTURE.md): [`sensor`] (kernel programs, ring buffer) →
//! [`correlate`] (decode with `shadowai-decode`, join to processes from [`enrich`], name
//! addresses from the DNS cache) → [`event::Event`] → [`output`] (OCSF JSON, text).

pub mod admin;
pub mod correlate;
pub mod enrich;
pub mod error;
pub mod event;
pub mod inventory;
pub mod live;
pub mod memory;
pub mod metrics;
pub mod output;
pub mod replay;
pub mod run;
pub mod sensor;
pub mod watch;

pub use error::AgentError;
