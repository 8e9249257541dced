//! shadowai-collector: fleet ingest, storage, SOC reports, approvals and the audit trail.

pub mod store;
