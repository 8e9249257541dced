//! Host identity and enrollment keys: a host id is bound to the SHA-256 of its host key on
//! first enrollment; enrollment secrets are keys with an expiry and a use limit.

use shadowai_api::{AgentInfo, EnrollmentKeyInfo};

use super::rows::{Backend, Row, Tx};
use super::sql::{AGENT_COLS, SqlStore, agent_row, audit_in, revoke_row};
use super::{EnrollAttempt, EnrollOutcome, NewEnrollmentKey, StoreError};

/// A refused takeover of the same host is audited at most this often (the counter and the
/// fleet view's flag see every one), so conflict spam cannot grow the audit log.
const CONFLICT_AUDIT_EVERY_MS: i64 = 3_600_000;

const KEY_COLS: &str = "id, note, created_by, created_ms, expires_ms, max_uses, uses, revoked_ms";

fn key_row(r: &Row) -> Result<EnrollmentKeyInfo, StoreError> {
    Ok(EnrollmentKeyInfo {
        id: r.i64(0)?,
        note: r.text(1)?,
        created_by: r.text(2)?,
        created_ms: r.i64(3)?,
        expires_ms: r.opt_i64(4)?,
        max_uses: r.opt_i64(5)?.map(|v| u64::try_from(v).unwrap_or(0)),
        uses: r.u64(6)?,
        revoked: r.opt_i64(7)?.is_some(),
    })
}

/// The binding of a host id.
struct Binding {
    key_sha256: String,
    agent_id: String,
    revoked: bool,
}

fn binding(tx: &mut dyn Tx, host_id: &str) -> Result<Option<Binding>, StoreError> {
    let rows = tx.query(
        "hosts",
        "SELECT key_sha256, agent_id, revoked_ms FROM hosts WHERE host_id = $1",
        &[host_id.into()],
    )?;
    rows.first()
        .map(|r| {
            Ok(Binding {
                key_sha256: r.text(0)?,
                agent_id: r.text(1)?,
                revoked: r.opt_i64(2)?.is_some(),
            })
        })
        .transpose()
}

/// The id of the usable key whose hash is `secret_hash`.
fn usable_key(tx: &mut dyn Tx, secret_hash: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
    let rows = tx.query(
        "enrollment_keys",
        "SELECT id FROM enrollment_keys WHERE key_hash = $1 AND revoked_ms IS NULL \
         AND (expires_ms IS NULL OR expires_ms > $2) AND (max_uses IS NULL OR uses < max_uses)",
        &[secret_hash.into(), now_ms.into()],
    )?;
    rows.first().map(|r| r.i64(0)).transpose()
}

/// Counts a refused claim of `host_id` and audits it unless one was audited within the hour.
fn record_conflict(
    tx: &mut dyn Tx,
    host_id: &str,
    bound: &Binding,
    via: &str,
    key_sha256: &str,
    peer: &str,
    now_ms: i64,
) -> Result<EnrollOutcome, StoreError> {
    let rows = tx.query(
        "hosts",
        "UPDATE hosts SET conflicts = conflicts + 1, last_conflict_ms = $1 WHERE host_id = $2 \
         RETURNING conflicts, last_conflict_audit_ms",
        &[now_ms.into(), host_id.into()],
    )?;
    let r = rows.first().ok_or(StoreError::NoRow {
        what: "UPDATE hosts … RETURNING",
    })?;
    let conflicts = r.u64(0)?;
    let last_audit = r.opt_i64(1)?;
    if last_audit.is_none_or(|t| now_ms.saturating_sub(t) >= CONFLICT_AUDIT_EVERY_MS) {
        tx.exec(
            "UPDATE hosts SET last_conflict_audit_ms = $1 WHERE host_id = $2",
            &[now_ms.into(), host_id.into()],
        )?;
        audit_in(
            tx,
            "system",
            "agent.identity_conflict",
            &format!("host:{host_id}"),
            serde_json::json!({
                "via": via,
                "bound_agent_id": bound.agent_id,
                "presented_key_sha256": key_sha256,
                "peer": peer,
                "conflicts_total": conflicts,
            }),
            now_ms,
        )?;
    }
    Ok(EnrollOutcome::Conflict { conflicts })
}

fn agent_info(tx: &mut dyn Tx, agent_id: &str) -> Result<AgentInfo, StoreError> {
    let rows = tx.query(
        "agents",
        &format!("SELECT {AGENT_COLS} FROM agents WHERE agent_id = $1"),
        &[agent_id.into()],
    )?;
    rows.first()
        .map(agent_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("agent {agent_id:?}"),
        })
}

impl<B: Backend> SqlStore<B> {
    pub(super) fn key_valid(&self, secret_hash: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.tx(|tx| Ok(usable_key(tx, secret_hash, now_ms)?.is_some()))
    }

    pub(super) fn host_enroll(
        &self,
        a: &EnrollAttempt,
        now_ms: i64,
    ) -> Result<EnrollOutcome, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let Some(key_id) = usable_key(tx, &a.secret_hash, now_ms)? else {
                return Ok(EnrollOutcome::BadSecret);
            };
            match binding(tx, &a.host_id)? {
                Some(b) if b.revoked => Ok(EnrollOutcome::Revoked),
                Some(b) if b.key_sha256 != a.key_sha256 => {
                    record_conflict(tx, &a.host_id, &b, "enroll", &a.key_sha256, &a.peer, now_ms)
                }
                Some(b) => {
                    tx.exec(
                        "UPDATE agents SET token_hash = $1, hostname = $2, agent_version = $3, \
                         revoked_ms = NULL WHERE agent_id = $4",
                        &[
                            a.token_hash.as_str().into(),
                            a.hostname.as_str().into(),
                            a.agent_version.as_str().into(),
                            b.agent_id.as_str().into(),
                        ],
                    )?;
                    audit_in(
                        tx,
                        &format!("agent:{}", b.agent_id),
                        "agent.enroll",
                        &format!("host:{}", a.host_id),
                        serde_json::json!({"hostname": a.hostname, "rebound": true,
                                           "enrollment_key": key_id}),
                        now_ms,
                    )?;
                    Ok(EnrollOutcome::Enrolled {
                        agent_id: b.agent_id,
                        rebound: true,
                    })
                }
                None => self.bind_new_host(tx, a, key_id, now_ms),
            }
        })
    }

    fn bind_new_host(
        &self,
        tx: &mut dyn Tx,
        a: &EnrollAttempt,
        key_id: i64,
        now_ms: i64,
    ) -> Result<EnrollOutcome, StoreError> {
        let bound = tx.query("hosts", "SELECT COUNT(*) FROM hosts", &[])?;
        let bound = bound.first().map(|r| r.u64(0)).transpose()?.unwrap_or(0);
        if bound >= a.max_hosts {
            return Ok(EnrollOutcome::HostLimit);
        }
        // Agents of this host enrolled before host keys existed lose their tokens.
        let replaced = tx.exec(
            "UPDATE agents SET revoked_ms = $1 WHERE host_id = $2 AND revoked_ms IS NULL",
            &[now_ms.into(), a.host_id.as_str().into()],
        )?;
        tx.exec(
            "INSERT INTO agents (agent_id, token_hash, host_id, hostname, grp, enrolled_ms, \
             agent_version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                a.new_agent_id.as_str().into(),
                a.token_hash.as_str().into(),
                a.host_id.as_str().into(),
                a.hostname.as_str().into(),
                a.group.clone().into(),
                now_ms.into(),
                a.agent_version.as_str().into(),
            ],
        )?;
        tx.exec(
            "INSERT INTO hosts (host_id, key_sha256, agent_id, bound_ms) VALUES ($1, $2, $3, $4)",
            &[
                a.host_id.as_str().into(),
                a.key_sha256.as_str().into(),
                a.new_agent_id.as_str().into(),
                now_ms.into(),
            ],
        )?;
        tx.exec(
            "UPDATE enrollment_keys SET uses = uses + 1 WHERE id = $1",
            &[key_id.into()],
        )?;
        audit_in(
            tx,
            &format!("agent:{}", a.new_agent_id),
            "agent.enroll",
            &format!("host:{}", a.host_id),
            serde_json::json!({"hostname": a.hostname, "group": a.group,
                               "replaced_agents": replaced, "enrollment_key": key_id}),
            now_ms,
        )?;
        Ok(EnrollOutcome::Enrolled {
            agent_id: a.new_agent_id.clone(),
            rebound: false,
        })
    }

    pub(super) fn host_reenroll(
        &self,
        host_id: &str,
        key_sha256: &str,
        token_hash: &str,
        peer: &str,
        now_ms: i64,
    ) -> Result<EnrollOutcome, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            match binding(tx, host_id)? {
                None => Ok(EnrollOutcome::UnknownHost),
                Some(b) if b.revoked => Ok(EnrollOutcome::Revoked),
                Some(b) if b.key_sha256 != key_sha256 => {
                    record_conflict(tx, host_id, &b, "reenroll", key_sha256, peer, now_ms)
                }
                Some(b) => {
                    tx.exec(
                        "UPDATE agents SET token_hash = $1, revoked_ms = NULL WHERE agent_id = $2",
                        &[token_hash.into(), b.agent_id.as_str().into()],
                    )?;
                    audit_in(
                        tx,
                        &format!("agent:{}", b.agent_id),
                        "agent.reenroll",
                        &format!("host:{host_id}"),
                        serde_json::json!({"peer": peer}),
                        now_ms,
                    )?;
                    Ok(EnrollOutcome::Enrolled {
                        agent_id: b.agent_id,
                        rebound: true,
                    })
                }
            }
        })
    }

    pub(super) fn agent_rotate_token(
        &self,
        actor: &str,
        agent_id: &str,
        reason: Option<&str>,
        dead_hash: &str,
        now_ms: i64,
    ) -> Result<AgentInfo, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let info = agent_info(tx, agent_id)?;
            if info.revoked {
                return Err(StoreError::InvalidState {
                    what: format!("agent {agent_id:?}"),
                    reason: "is revoked; release it first".into(),
                });
            }
            tx.exec(
                "UPDATE agents SET token_hash = $1 WHERE agent_id = $2",
                &[dead_hash.into(), agent_id.into()],
            )?;
            audit_in(
                tx,
                actor,
                "agent.rotate_token",
                &format!("agent:{agent_id}"),
                serde_json::json!({"host_id": info.host_id, "reason": reason}),
                now_ms,
            )?;
            Ok(info)
        })
    }

    pub(super) fn agent_release(
        &self,
        actor: &str,
        agent_id: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<AgentInfo, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let before = agent_info(tx, agent_id)?;
            let released = tx.exec("DELETE FROM hosts WHERE agent_id = $1", &[agent_id.into()])?;
            tx.exec(
                "UPDATE agents SET revoked_ms = $1 WHERE agent_id = $2 AND revoked_ms IS NULL",
                &[now_ms.into(), agent_id.into()],
            )?;
            audit_in(
                tx,
                actor,
                "agent.release",
                &format!("agent:{agent_id}"),
                serde_json::json!({"host_id": before.host_id, "reason": reason,
                                   "binding_cleared": released > 0}),
                now_ms,
            )?;
            agent_info(tx, agent_id)
        })
    }

    pub(super) fn key_create(
        &self,
        actor: &str,
        key: &NewEnrollmentKey,
        replace_all: bool,
        now_ms: i64,
    ) -> Result<EnrollmentKeyInfo, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let revoked = if replace_all {
                tx.exec(
                    "UPDATE enrollment_keys SET revoked_ms = $1 WHERE revoked_ms IS NULL",
                    &[now_ms.into()],
                )?
            } else {
                0
            };
            let info = insert_key(tx, actor, key, now_ms)?;
            audit_in(
                tx,
                actor,
                if replace_all {
                    "enrollment.rotate"
                } else {
                    "enrollment_key.create"
                },
                &format!("enrollment_key:{}", info.id),
                serde_json::json!({"note": info.note, "expires_ms": info.expires_ms,
                                   "max_uses": info.max_uses, "revoked_keys": revoked}),
                now_ms,
            )?;
            Ok(info)
        })
    }

    pub(super) fn key_seed(&self, key: &NewEnrollmentKey, now_ms: i64) -> Result<bool, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let n = tx.query(
                "enrollment_keys",
                "SELECT COUNT(*) FROM enrollment_keys",
                &[],
            )?;
            if n.first().map(|r| r.u64(0)).transpose()?.unwrap_or(0) > 0 {
                return Ok(false);
            }
            let info = insert_key(tx, "system", key, now_ms)?;
            audit_in(
                tx,
                "system",
                "enrollment_key.create",
                &format!("enrollment_key:{}", info.id),
                serde_json::json!({"note": info.note}),
                now_ms,
            )?;
            Ok(true)
        })
    }

    pub(super) fn key_list(&self) -> Result<Vec<EnrollmentKeyInfo>, StoreError> {
        self.tx(|tx| {
            tx.query(
                "enrollment_keys",
                &format!("SELECT {KEY_COLS} FROM enrollment_keys ORDER BY id"),
                &[],
            )?
            .iter()
            .map(key_row)
            .collect()
        })
    }

    pub(super) fn key_revoke(
        &self,
        actor: &str,
        id: i64,
        now_ms: i64,
    ) -> Result<EnrollmentKeyInfo, StoreError> {
        self.tx(|tx| {
            self.lock(tx)?;
            let info = revoke_row(
                tx,
                "enrollment_keys",
                ("id", id.into()),
                (KEY_COLS, key_row),
                &format!("enrollment key {id}"),
                now_ms,
            )?;
            audit_in(
                tx,
                actor,
                "enrollment_key.revoke",
                &format!("enrollment_key:{id}"),
                serde_json::json!({"note": info.note}),
                now_ms,
            )?;
            Ok(info)
        })
    }
}

fn insert_key(
    tx: &mut dyn Tx,
    actor: &str,
    key: &NewEnrollmentKey,
    now_ms: i64,
) -> Result<EnrollmentKeyInfo, StoreError> {
    let max_uses = key.max_uses.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    let rows = tx.query(
        "enrollment_keys",
        &format!(
            "INSERT INTO enrollment_keys (key_hash, note, created_by, created_ms, expires_ms, \
             max_uses) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KEY_COLS}"
        ),
        &[
            key.key_hash.as_str().into(),
            key.note.as_str().into(),
            actor.into(),
            now_ms.into(),
            key.expires_ms.into(),
            max_uses.into(),
        ],
    )?;
    rows.first()
        .map(key_row)
        .transpose()?
        .ok_or(StoreError::NoRow {
            what: "INSERT INTO enrollment_keys … RETURNING",
        })
}
