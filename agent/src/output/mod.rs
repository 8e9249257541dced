//! Rendering events: OCSF 1.8 JSON lines and a human-readable line.

pub mod ocsf;
pub mod text;
