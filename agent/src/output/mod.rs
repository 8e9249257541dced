//! Rendering events: OCSF 1.8 JSON lines and a human-readable line.

mod cmdline;
mod json;
pub mod ocsf;
#[cfg(test)]
mod ocsf_tests;
pub mod text;
