//! Agent routes: enroll, ingest, heartbeat, bundle fetch.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shadowai_api::{BundleRefused, Finding, Heartbeat, HeartbeatAck, IngestAck};

use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::{JsonBody, RawBody, require_json};
use super::ingest_decode::{Encoding, decode_limited};
use super::metrics::ResultLabels;
use super::{SharedState, now_ms};
use crate::store::desired_version;

/// `[A-Za-z0-9._:-]{1,max}`.
pub fn check_ident(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(bad(format!(
            "{field}: must be 1..={max} characters, got {}",
            value.len()
        )));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(bad(format!(
            "{field}: character {c:?} is not allowed (use A-Z a-z 0-9 . _ : -)"
        )));
    }
    Ok(())
}

/// Free text: bounded length, no control characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(bad(format!("{field}: longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!("{field}: control characters are not allowed")));
    }
    Ok(())
}

fn check_list(
    field: &str,
    items: &[String],
    max_items: usize,
    max_len: usize,
) -> Result<(), ApiError> {
    if items.len() > max_items {
        return Err(bad(format!("{field}: more than {max_items} entries")));
    }
    for (i, s) in items.iter().enumerate() {
        check_text(&format!("{field}[{i}]"), s, max_len)?;
    }
    Ok(())
}

/// Events one finding may aggregate: sums over 2^31 findings stay inside i64, so reports
/// cannot overflow.
pub const MAX_COUNT: u64 = u32::MAX as u64;
/// Payload bytes one finding may carry per direction (1 TiB: more than a 100 Gbit/s link
/// moves in a 60 s window): a stored value fits in i64, and a sum needs 2^23 findings at the
/// bound before it could overflow.
pub const MAX_BYTES: u64 = 1 << 40;
/// 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

pub(super) fn check_finding(i: usize, f: &Finding, host_id: &str) -> Result<(), ApiError> {
    let p = |name: &str| format!("findings[{i}].{name}");
    check_ident(&p("id"), &f.id, 128)?;
    if f.host_id != host_id {
        return Err(ApiError::Forbidden {
            message: format!(
                "{}: {:?} is not this agent's host ({host_id:?}); an agent may only write its own host's data",
                p("host_id"),
                f.host_id
            ),
        });
    }
    check_text(&p("hostname"), &f.hostname, 253)?;
    check_text(&p("service_id"), &f.service_id, 128)?;
    if f.service_id.is_empty() {
        return Err(bad(format!("{}: must not be empty", p("service_id"))));
    }
    check_text(&p("service_name"), &f.service_name, 256)?;
    check_text(&p("vendor"), &f.vendor, 256)?;
    check_text(&p("category"), &f.category, 64)?;
    check_text(&p("rule"), &f.rule, 256)?;
    check_text(&p("user"), &f.user, 256)?;
    check_text(&p("process.exe"), &f.process.exe, 4096)?;
    check_text(&p("process.name"), &f.process.name, 64)?;
    for (name, v) in [
        ("process.exe_sha256", &f.process.exe_sha256),
        ("process.container_id", &f.process.container_id),
        ("process.systemd_unit", &f.process.systemd_unit),
    ] {
        if let Some(v) = v {
            check_text(&p(name), v, 256)?;
        }
    }
    if f.risk_score > 100 {
        return Err(bad(format!(
            "{}: must be 0..=100, got {}",
            p("risk_score"),
            f.risk_score
        )));
    }
    for (name, v) in [
        ("window_start_ms", f.window_start_ms),
        ("window_end_ms", f.window_end_ms),
        ("first_seen_ms", f.first_seen_ms),
        ("last_seen_ms", f.last_seen_ms),
    ] {
        if !(0..=MAX_TIME_MS).contains(&v) {
            return Err(bad(format!(
                "{}: must be 0..={MAX_TIME_MS} (Unix ms up to year 9999), got {v}",
                p(name)
            )));
        }
    }
    if f.window_start_ms < 0 || f.window_end_ms < f.window_start_ms {
        return Err(bad(format!(
            "{}: window must satisfy 0 <= start <= end, got {}..{}",
            p("window_start_ms"),
            f.window_start_ms,
            f.window_end_ms
        )));
    }
    if f.first_seen_ms < 0 || f.last_seen_ms < f.first_seen_ms {
        return Err(bad(format!(
            "{}: must satisfy 0 <= first_seen_ms <= last_seen_ms",
            p("last_seen_ms")
        )));
    }
    if f.count > MAX_COUNT {
        return Err(bad(format!(
            "{}: must be 0..={MAX_COUNT} per finding, got {}",
            p("count"),
            f.count
        )));
    }
    for (name, v) in [("bytes_out", f.bytes_out), ("bytes_in", f.bytes_in)] {
        if let Some(v) = v
            && v > MAX_BYTES
        {
            return Err(bad(format!(
                "{}: must be 0..={MAX_BYTES} (1 TiB) per finding, got {v}",
                p(name)
            )));
        }
    }
    check_list(&p("evidence.dns_names"), &f.evidence.dns_names, 64, 253)?;
    check_list(&p("evidence.sni"), &f.evidence.sni, 64, 253)?;
    check_list(&p("evidence.ips"), &f.evidence.ips, 64, 64)?;
    check_list(&p("evidence.protocols"), &f.evidence.protocols, 16, 16)?;
    if f.evidence.ports.len() > 64 {
        return Err(bad(format!(
            "{}: more than 64 entries",
            p("evidence.ports")
        )));
    }
    Ok(())
}

pub async fn ingest(
    caller: Caller,
    State(st): State<SharedState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<IngestAck>, ApiError> {
    caller.require(Cap::Agent)?;
    let agent = caller.agent()?.clone();
    let res = ingest_inner(&st, &agent, &headers, body).await;
    let result = match &res {
        Ok(a) if a.replayed => "replayed",
        Ok(_) => "accepted",
        Err(_) => "rejected",
    };
    st.metrics
        .ingest_batches
        .get_or_create(&ResultLabels { result })
        .inc();
    res.map(Json)
}

async fn ingest_inner(
    st: &SharedState,
    agent: &crate::store::AgentRecord,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Result<IngestAck, ApiError> {
    require_json(headers)?;
    let encoding = Encoding::parse(
        headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("(not text)")),
    )?;
    let batch = decode_limited(st, body, encoding, agent.host_id.clone()).await?;
    let agent_id = agent.agent_id.clone();
    let now = now_ms();
    let batch = std::sync::Arc::new(batch);
    let b2 = batch.clone();
    let policy = st.alert_policy.clone();
    let (ack, raised) = st
        .db(move |s| s.ingest_shared(&agent_id, b2, &policy, now))
        .await?;
    crate::alerts::raised(st, &agent.host_id, &batch.batch_id, raised);
    st.metrics.ingest_findings.inc_by(ack.accepted);
    st.metrics.ingest_duplicates.inc_by(ack.duplicates);
    if !ack.replayed
        && ack.accepted > 0
        && let Some(sink) = &st.sink
    {
        sink.forward(&batch.findings);
    }
    Ok(ack)
}

pub async fn heartbeat(
    caller: Caller,
    State(st): State<SharedState>,
    JsonBody(hb): JsonBody<Heartbeat>,
) -> Result<Json<HeartbeatAck>, ApiError> {
    caller.require(Cap::Agent)?;
    let agent = caller.agent()?.clone();
    check_text("agent_version", &hb.agent_version, 64)?;
    if let Some(v) = &hb.bundle_version {
        check_text("bundle_version", v, 64)?;
    }
    if let Some(e) = &hb.bundle_error {
        // Limits in characters on the agent's side; UTF-8 takes at most 4 bytes each.
        check_text(
            "bundle_error.version",
            &e.version,
            4 * BundleRefused::MAX_VERSION,
        )?;
        check_text(
            "bundle_error.reason",
            &e.reason,
            4 * BundleRefused::MAX_REASON,
        )?;
    }
    if let Some(g) = &hb.group {
        check_ident("group", g, 64)?;
        if agent.group.as_deref() != Some(g.as_str()) {
            // The group is the admin's: a heartbeat cannot move an agent into a canary ring.
            st.metrics.heartbeat_group_ignored.inc();
            warn_group_once(&st, &agent, g);
        }
    }
    let group = agent.group.clone();
    let now = now_ms();
    let id = agent.agent_id.clone();
    let rollouts = st
        .db(move |s| {
            s.record_heartbeat(&id, &hb, now)?;
            s.list_rollouts()
        })
        .await?;
    Ok(Json(HeartbeatAck {
        server_time_ms: now,
        desired_bundle_version: desired_version(&rollouts, &agent.agent_id, group.as_deref()),
    }))
}

/// Logs a refused heartbeat group once per agent (the set is bounded; cleared when full).
fn warn_group_once(st: &SharedState, agent: &crate::store::AgentRecord, group: &str) {
    const MAX_WARNED: usize = 10_000;
    let mut set = st.group_warned.lock().unwrap_or_else(|p| p.into_inner());
    if set.len() >= MAX_WARNED {
        set.clear();
    }
    if set.insert(agent.agent_id.clone()) {
        tracing::warn!(agent_id = %agent.agent_id, sent = group, assigned = ?agent.group,
            "heartbeat names another group than the assigned one; ignored (groups are set by admins)");
    }
}

pub async fn bundle(
    caller: Caller,
    State(st): State<SharedState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Cap::Agent)?;
    let agent = caller.agent()?.clone();
    let rollouts = st.db(|s| s.list_rollouts()).await?;
    let Some(version) = desired_version(&rollouts, &agent.agent_id, agent.group.as_deref()) else {
        return Err(ApiError::NotFound {
            message: "no bundle is rolled out to this agent yet".into(),
        });
    };
    let v = version.clone();
    let info = st
        .db(move |s| s.bundle_info(&v))
        .await?
        .ok_or_else(|| ApiError::Internal {
            what: format!("rolled-out bundle {version:?} is missing"),
        })?;
    let etag = format!("\"{}\"", info.sha256);
    let version_header = HeaderValue::from_str(&info.version).map_err(|_| ApiError::Internal {
        what: "bundle version is not a valid header value".into(),
    })?;
    let etag_header = HeaderValue::from_str(&etag).map_err(|_| ApiError::Internal {
        what: "bundle hash is not a valid header value".into(),
    })?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    if matches {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_header),
                (
                    header::HeaderName::from_static("x-shadowai-bundle-version"),
                    version_header,
                ),
            ],
        )
            .into_response());
    }
    let v = info.version.clone();
    let (_, bytes) = st
        .db(move |s| s.bundle(&v))
        .await?
        .ok_or_else(|| ApiError::Internal {
            what: format!("rolled-out bundle {:?} is missing", info.version),
        })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::ETAG, etag_header),
            (
                header::HeaderName::from_static("x-shadowai-bundle-version"),
                version_header,
            ),
        ],
        bytes,
    )
        .into_response())
}
