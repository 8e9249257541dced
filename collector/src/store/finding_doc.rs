//! A finding's `doc` in `findings`: only what no column holds (issue 14).
//!
//! Every field of a finding but its rule, evidence, naming, session, flags, `truncated` and
//! two process fields (`exe_sha256`, `systemd_unit`) has a column of its own. The doc used
//! to repeat all of them, ≈ 650 bytes a finding of which the columns already held ≈ 450:
//! ≈ 15 % of a SQLite ingest went to writing, paging and checkpointing that copy
//! (BENCHMARKS.md, "Ingest, ninth wave"). A doc in this form starts with `{"form":2`; a
//! doc without it is a whole finding (rows stored before, and bulk loads), read as before.
//!
//! [`encode`] names every field of [`Finding`] and [`ProcessRef`] (no `..`): a field added to
//! either does not compile until it is given a column or a place in the doc.

use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};
use shadowai_api::{Evidence, Finding, Flag, Naming, ProcessRef, SessionRef};

use super::StoreError;
use super::rows::Row;

/// The mark of a doc that holds only what the columns do not.
const FORM: u8 = 2;
const PREFIX: &str = "{\"form\":2,";

#[derive(Serialize)]
struct RestOut<'a> {
    form: u8,
    rule: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    systemd_unit: Option<&'a str>,
    evidence: &'a Evidence,
    #[serde(skip_serializing_if = "Option::is_none")]
    naming: Option<&'a Naming>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a SessionRef>,
    #[serde(skip_serializing_if = "<[Flag]>::is_empty")]
    flags: &'a [Flag],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

#[derive(Deserialize)]
struct RestIn {
    #[expect(dead_code, reason = "the form is matched on the text's prefix")]
    form: u8,
    rule: String,
    #[serde(default)]
    exe_sha256: Option<String>,
    #[serde(default)]
    systemd_unit: Option<String>,
    evidence: Evidence,
    #[serde(default)]
    naming: Option<Naming>,
    #[serde(default)]
    session: Option<SessionRef>,
    #[serde(default)]
    flags: Vec<Flag>,
    #[serde(default)]
    truncated: bool,
}

/// The doc of `f`: the fields no column of `findings` holds.
pub(super) fn encode(f: &Finding) -> serde_json::Result<String> {
    // Every field named: the columns' fields are written by `push_finding_values`.
    let Finding {
        id: _,
        host_id: _,
        hostname: _,
        window_start_ms: _,
        window_end_ms: _,
        service_id: _,
        service_name: _,
        vendor: _,
        category: _,
        risk_score: _,
        verdict: _,
        action: _,
        rule,
        process,
        user: _,
        uid: _,
        count: _,
        first_seen_ms: _,
        last_seen_ms: _,
        evidence,
        layer: _,
        policy_version: _,
        bytes_out: _,
        bytes_in: _,
        naming,
        session,
        flags,
        truncated,
    } = f;
    let ProcessRef {
        exe: _,
        name: _,
        exe_sha256,
        container_id: _,
        systemd_unit,
    } = process;
    serde_json::to_string(&RestOut {
        form: FORM,
        rule,
        exe_sha256: exe_sha256.as_deref(),
        systemd_unit: systemd_unit.as_deref(),
        evidence,
        naming: naming.as_ref(),
        session: session.as_ref(),
        flags,
        truncated: *truncated,
    })
}

/// The columns a search reads beside `seq` and `doc` (in [`decode`]'s order).
pub(super) const READ_COLUMNS: &str = "id, host_id, hostname, window_start_ms, window_end_ms, \
     service_id, service_name, vendor, category, risk_score, verdict, action, user_name, uid, \
     exe, process_name, container_id, count, first_seen_ms, last_seen_ms, layer, \
     policy_version, bytes_out, bytes_in";

fn corrupt(seq: i64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table: "findings",
        reason: format!("row of seq {seq}: {what}"),
    }
}

/// A stored enum's text (verdict, action, layer) as its type.
fn parsed<'de, T: Deserialize<'de>>(seq: i64, col: &str, s: &'de str) -> Result<T, StoreError> {
    T::deserialize(s.into_deserializer())
        .map_err(|e: serde::de::value::Error| corrupt(seq, format!("{col} {s:?}: {e}")))
}

fn int<T: TryFrom<i64>>(seq: i64, col: &str, v: i64) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| corrupt(seq, format!("{col} {v} is out of range")))
}

/// The finding of a row `seq, doc, READ_COLUMNS…`.
pub(super) fn decode(r: &Row) -> Result<Finding, StoreError> {
    let seq = r.i64(0)?;
    let doc = r.text(1)?;
    if !doc.starts_with(PREFIX) {
        return serde_json::from_str(&doc)
            .map_err(|e| corrupt(seq, format!("doc is not a finding: {e}")));
    }
    let rest: RestIn = serde_json::from_str(&doc)
        .map_err(|e| corrupt(seq, format!("doc is not a finding's rest: {e}")))?;
    let c = 2;
    let opt_u64 = |i: usize, col: &str| -> Result<Option<u64>, StoreError> {
        r.opt_i64(i)?.map(|v| int(seq, col, v)).transpose()
    };
    Ok(Finding {
        id: r.text(c)?,
        host_id: r.text(c + 1)?,
        hostname: r.text(c + 2)?,
        window_start_ms: r.i64(c + 3)?,
        window_end_ms: r.i64(c + 4)?,
        service_id: r.text(c + 5)?,
        service_name: r.text(c + 6)?,
        vendor: r.text(c + 7)?,
        category: r.text(c + 8)?,
        risk_score: int(seq, "risk_score", r.i64(c + 9)?)?,
        verdict: parsed(seq, "verdict", &r.text(c + 10)?)?,
        action: parsed(seq, "action", &r.text(c + 11)?)?,
        rule: rest.rule,
        user: r.text(c + 12)?,
        uid: int(seq, "uid", r.i64(c + 13)?)?,
        process: ProcessRef {
            exe: r.text(c + 14)?,
            name: r.text(c + 15)?,
            exe_sha256: rest.exe_sha256,
            container_id: r.opt_text(c + 16)?,
            systemd_unit: rest.systemd_unit,
        },
        count: int(seq, "count", r.i64(c + 17)?)?,
        first_seen_ms: r.i64(c + 18)?,
        last_seen_ms: r.i64(c + 19)?,
        evidence: rest.evidence,
        layer: r
            .opt_text(c + 20)?
            .map(|l| parsed(seq, "layer", &l))
            .transpose()?,
        policy_version: r.opt_text(c + 21)?,
        bytes_out: opt_u64(c + 22, "bytes_out")?,
        bytes_in: opt_u64(c + 23, "bytes_in")?,
        naming: rest.naming,
        session: rest.session,
        flags: rest.flags,
        truncated: rest.truncated,
    })
}
