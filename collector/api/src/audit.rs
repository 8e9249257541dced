//! The hash-chained audit log: entry type, canonical bytes, and offline verification.
//!
//! `hash = hex(SHA-256(prev_hash ‖ "\n" ‖ canonical_json({seq, ts_ms, actor, action, target,
//! details})))`, where canonical JSON has object keys sorted and no whitespace. The first entry's
//! `prev_hash` is [`GENESIS_HASH`]. Changing, removing, reordering or inserting any entry breaks
//! the chain at (or right after) that entry.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3, … without gaps.
    pub seq: i64,
    pub ts_ms: i64,
    /// Person (token name), `agent:<id>` or `system`.
    pub actor: String,
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Where and why an audit log does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit entry #{index} (0-based position in the log) fails verification: {reason}")]
pub struct AuditError {
    pub index: usize,
    pub reason: AuditFailure,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditFailure {
    #[error("seq is {found}, expected {expected}")]
    Sequence { expected: i64, found: i64 },
    #[error("prev_hash {found} does not match the previous entry's hash {expected}")]
    PrevHash { expected: String, found: String },
    #[error("hash {found} does not match the entry's content (computed {computed})")]
    Hash { computed: String, found: String },
}

/// Canonical JSON: object keys sorted (recursively), no insignificant whitespace.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash an entry with these fields must carry.
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    ts_ms: i64,
    actor: &str,
    action: &str,
    target: &str,
    details: &serde_json::Value,
) -> String {
    let body = serde_json::json!({
        "seq": seq,
        "ts_ms": ts_ms,
        "actor": actor,
        "action": action,
        "target": target,
        "details": details,
    });
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical_json(&body).as_bytes());
    hex::encode(h.finalize())
}

impl AuditEntry {
    /// Builds the entry that follows `prev` (or the first one when `prev` is `None`).
    pub fn next(
        prev: Option<(&str, i64)>,
        ts_ms: i64,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> AuditEntry {
        let (prev_hash, prev_seq) = prev.unwrap_or((GENESIS_HASH, 0));
        let seq = prev_seq + 1;
        let hash = entry_hash(prev_hash, seq, ts_ms, actor, action, target, &details);
        AuditEntry {
            seq,
            ts_ms,
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            details,
            prev_hash: prev_hash.to_owned(),
            hash,
        }
    }
}

/// Verifies a whole exported log, from its first entry (seq 1) on.
pub fn verify(entries: &[AuditEntry]) -> Result<(), AuditError> {
    let mut expected_prev = GENESIS_HASH.to_owned();
    for (index, e) in entries.iter().enumerate() {
        let expected_seq = index as i64 + 1;
        if e.seq != expected_seq {
            return Err(AuditError {
                index,
                reason: AuditFailure::Sequence {
                    expected: expected_seq,
                    found: e.seq,
                },
            });
        }
        if e.prev_hash != expected_prev {
            return Err(AuditError {
                index,
                reason: AuditFailure::PrevHash {
                    expected: expected_prev,
                    found: e.prev_hash.clone(),
                },
            });
        }
        let computed = entry_hash(
            &e.prev_hash,
            e.seq,
            e.ts_ms,
            &e.actor,
            &e.action,
            &e.target,
            &e.details,
        );
        if computed != e.hash {
            return Err(AuditError {
                index,
                reason: AuditFailure::Hash {
                    computed,
                    found: e.hash.clone(),
                },
            });
        }
        expected_prev = e.hash.clone();
    }
    Ok(())
}

/// A head of the chain seen earlier (`SEQ:HASH`), kept outside the collector. A log that
/// still verifies after someone with database access rewrote or truncated it fails here:
/// rewriting any entry up to `seq` changes the hash at `seq`, truncating removes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Checkpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected SEQ:HASH"))?;
        let seq: i64 = seq
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{s:?}: SEQ must be a number >= 1"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("{s:?}: HASH must be 64 lower-case hex digits"));
        }
        Ok(Checkpoint {
            seq,
            hash: hash.to_owned(),
        })
    }
}

/// How a verified log contradicts a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointFailure {
    #[error("the log ends at seq {last} but entry {seq} was seen before: it was truncated")]
    Truncated { seq: i64, last: i64 },
    #[error(
        "entry {seq} now has hash {found}, but {expected} was seen before: the log was rewritten"
    )]
    Rewritten {
        seq: i64,
        expected: String,
        found: String,
    },
}

/// Checks a verified log (seq 1, 2, …) against a checkpoint.
pub fn check_checkpoint(entries: &[AuditEntry], cp: &Checkpoint) -> Result<(), CheckpointFailure> {
    let found = usize::try_from(cp.seq - 1)
        .ok()
        .and_then(|i| entries.get(i))
        .filter(|e| e.seq == cp.seq);
    match found {
        None => Err(CheckpointFailure::Truncated {
            seq: cp.seq,
            last: entries.last().map_or(0, |e| e.seq),
        }),
        Some(e) if e.hash != cp.hash => Err(CheckpointFailure::Rewritten {
            seq: cp.seq,
            expected: cp.hash.clone(),
            found: e.hash.clone(),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap or expect is a failed test"
)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.hash.as_str(), e.seq));
            let e = AuditEntry::next(
                prev,
                1_000 + i as i64,
                "alice",
                "proposal.create",
                &format!("proposal:{i}"),
                json!({"b": 1, "a": [i, "x"]}),
            );
            out.push(e);
        }
        out
    }

    #[test]
    fn intact_chain_verifies_and_survives_json_roundtrip() {
        let c = chain(5);
        verify(&c).unwrap();
        let text = serde_json::to_string_pretty(&c).unwrap();
        let back: Vec<AuditEntry> = serde_json::from_str(&text).unwrap();
        verify(&back).unwrap();
        verify(&[]).unwrap();
    }

    #[test]
    fn tampered_content_fails_at_that_entry() {
        let mut c = chain(5);
        c[2].actor = "mallory".into();
        let err = verify(&c).unwrap_err();
        assert_eq!(err.index, 2);
        assert!(matches!(err.reason, AuditFailure::Hash { .. }), "{err}");

        let mut c = chain(5);
        c[3].details = json!({"b": 2, "a": [3, "x"]});
        assert_eq!(verify(&c).unwrap_err().index, 3);
    }

    #[test]
    fn rehashed_entry_breaks_the_next_link() {
        let mut c = chain(5);
        c[1].target = "proposal:99".into();
        c[1].hash = entry_hash(
            &c[1].prev_hash,
            c[1].seq,
            c[1].ts_ms,
            &c[1].actor,
            &c[1].action,
            &c[1].target,
            &c[1].details,
        );
        let err = verify(&c).unwrap_err();
        assert_eq!(err.index, 2);
        assert!(matches!(err.reason, AuditFailure::PrevHash { .. }));
    }

    #[test]
    fn removed_or_reordered_entries_fail() {
        let mut c = chain(5);
        c.remove(1);
        let err = verify(&c).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(matches!(err.reason, AuditFailure::Sequence { .. }));

        let mut c = chain(5);
        c.swap(3, 4);
        assert_eq!(verify(&c).unwrap_err().index, 3);
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v = json!({"z": {"b": 1, "a": 2}, "a": [{"y": 1, "x": 2}]});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":[{"x":2,"y":1}],"z":{"a":2,"b":1}}"#
        );
    }

    /// Someone with database access rewrites entry 2 and recomputes every hash after it:
    /// the chain verifies, the checkpoint taken before does not; nor does a truncated log.
    #[test]
    fn a_rechained_or_truncated_log_fails_its_checkpoint() {
        let c = chain(5);
        let cp: Checkpoint = format!("4:{}", c[3].hash).parse().unwrap();
        check_checkpoint(&c, &cp).unwrap();
        let mut forged: Vec<AuditEntry> = Vec::new();
        for (i, e) in c.iter().enumerate() {
            let actor = if i == 1 { "mallory" } else { e.actor.as_str() };
            let prev = forged.last().map(|x| (x.hash.as_str(), x.seq));
            forged.push(AuditEntry::next(
                prev,
                e.ts_ms,
                actor,
                &e.action,
                &e.target,
                e.details.clone(),
            ));
        }
        verify(&forged).unwrap();
        assert!(matches!(
            check_checkpoint(&forged, &cp),
            Err(CheckpointFailure::Rewritten { seq: 4, .. })
        ));
        assert_eq!(
            check_checkpoint(&c[..3], &cp),
            Err(CheckpointFailure::Truncated { seq: 4, last: 3 })
        );
        for bad in [
            "4",
            "x:ab",
            "0:00",
            &format!("4:{}", c[3].hash.to_uppercase()),
        ] {
            assert!(bad.parse::<Checkpoint>().is_err(), "{bad}");
        }
    }
}
