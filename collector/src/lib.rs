//! shadowai-collector: fleet ingest, storage, SOC reports, approvals and the audit trail.
//!
//! The binary (`src/main.rs`) is a thin CLI over [`app`]; the HTTP API is described in
//! `collector/API.md`.

pub mod alerts;
pub mod anchor;
pub mod app;
pub mod bundles;
pub mod catalogue_entry;
pub mod catalogue_impact;
pub mod catalogue_overlay;
pub mod compose;
pub mod config;
pub mod discovery_draft;
pub mod export;
pub mod identity;
pub mod impact;
pub mod risk;
pub mod rollout_agents;
pub mod rollout_guard;
pub mod rollup_folder;
pub mod server;
pub mod siem;
pub mod store;
pub mod wal_checkpointer;
