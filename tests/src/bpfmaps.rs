//! An agent's kernel maps, read with bpftool (Debian: bpftool; `.ci/deps/usage.sh` installs
//! it): which map of a given name the agent under test holds, and what is in it.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{bpf_ids_of, sh};

/// The id of the map called `name` that process `pid` (an agent) holds open; other agents
/// may be running, with maps of the same name.
pub fn map_of(pid: u32, name: &str) -> Result<u64> {
    let held = bpf_ids_of(pid, "map_id");
    let maps: Value =
        serde_json::from_str(&sh(Command::new("bpftool").args(["map", "show", "-j"]))?)
            .context("bpftool map show -j")?;
    let mine: Vec<u64> = maps
        .as_array()
        .context("bpftool map show -j: not a list")?
        .iter()
        .filter(|m| m["name"] == name)
        .filter_map(|m| m["id"].as_u64())
        .filter(|id| held.contains(id))
        .collect();
    match mine[..] {
        [id] => Ok(id),
        _ => bail!(
            "{} maps named {name} among the maps pid {pid} holds ({held:?}): {mine:?}",
            mine.len()
        ),
    }
}

/// Bytes of one value of a bpftool JSON record (`"value": ["0x01", …]`).
pub fn value_bytes(record: &Value) -> Result<Vec<u8>> {
    record["value"]
        .as_array()
        .with_context(|| format!("no value in {record}"))?
        .iter()
        .map(|b| {
            let hex = b.as_str().with_context(|| format!("a value byte {b}"))?;
            u8::from_str_radix(hex.trim_start_matches("0x"), 16)
                .with_context(|| format!("a value byte {hex:?}"))
        })
        .collect()
}

/// Every value of map `id` (an array's, in index order), as bytes.
pub fn map_values(id: u64) -> Result<Vec<Vec<u8>>> {
    let out = sh(Command::new("bpftool").args(["map", "dump", "id", &id.to_string(), "-j"]))?;
    let records: Value = serde_json::from_str(&out).context("bpftool map dump -j")?;
    records
        .as_array()
        .context("bpftool map dump -j: not a list")?
        .iter()
        .map(value_bytes)
        .collect()
}
