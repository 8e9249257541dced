//! Inventory routes (issue 12): agents report their host's AI agent sessions, MCP servers
//! and local runtimes (`POST /api/v1/inventory`, only for their own host); people list them
//! fleet-wide or per host (`GET /api/v1/inventory`) and export them as CSV or OCSF.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use shadowai_api::inventory::{InventoryAck, InventoryItem, InventoryQuery, InventoryReport};

use super::SharedState;
use super::agent_routes::{check_ident, check_text};
use super::auth::{Caller, Cap};
use super::error::{ApiError, bad};
use super::extract::{JsonBody, QueryParams};
use crate::export::cell;

fn check_all(field: &str, v: &[String], max: usize) -> Result<(), ApiError> {
    for (i, s) in v.iter().enumerate() {
        check_text(&format!("{field}[{i}]"), s, max)?;
    }
    Ok(())
}

/// Every text of a report: bounded, no control characters (lists are bounded by the
/// wire types already).
fn check_report(r: &InventoryReport, host_id: &str) -> Result<(), ApiError> {
    if r.host_id != host_id {
        return Err(ApiError::Forbidden {
            message: format!(
                "host_id: {:?} is not this agent's host ({host_id:?}); an agent may only report its own host",
                r.host_id
            ),
        });
    }
    check_text("hostname", &r.hostname, 253)?;
    for (i, s) in r.sessions.iter().enumerate() {
        let p = |n: &str| format!("sessions[{i}].{n}");
        check_ident(&p("id"), &s.session.id, 128)?;
        check_ident(&p("kind"), &s.session.kind, 64)?;
        for (n, v) in [("name", &s.name), ("user", &s.user), ("exe", &s.exe)] {
            check_text(&p(n), v, 4096)?;
        }
        for (n, v) in [
            ("cwd", &s.cwd),
            ("tenant", &s.tenant),
            ("version", &s.session.version),
        ] {
            if let Some(v) = v {
                check_text(&p(n), v, 4096)?;
            }
        }
        check_all(&p("argv"), &s.argv, 4096)?;
        check_all(&p("destinations"), &s.destinations, 253)?;
        check_all(&p("off_catalogue"), &s.off_catalogue, 253)?;
    }
    for (i, m) in r.mcp_servers.iter().enumerate() {
        let p = |n: &str| format!("mcp_servers[{i}].{n}");
        check_text(&p("id"), &m.id, 256)?;
        for (n, v) in [("transport", &m.transport), ("launcher", &m.launcher)] {
            check_text(&p(n), v, 64)?;
        }
        if let Some(v) = &m.package {
            check_text(&p("package"), v, 4096)?;
        }
        check_all(&p("argv"), &m.argv, 4096)?;
        check_all(&p("destinations"), &m.destinations, 253)?;
    }
    for (i, rt) in r.runtimes.iter().enumerate() {
        let p = |n: &str| format!("runtimes[{i}].{n}");
        check_text(&p("id"), &rt.id, 256)?;
        for (n, v) in [
            ("kind", &rt.kind),
            ("name", &rt.name),
            ("matched_by", &rt.matched_by),
        ] {
            check_text(&p(n), v, 64)?;
        }
        for (n, v) in [("exe", &rt.exe), ("user", &rt.user)] {
            check_text(&p(n), v, 4096)?;
        }
        check_all(&p("pull_hosts"), &rt.pull_hosts, 253)?;
        check_all(&p("clients"), &rt.clients, 4096)?;
        for (j, l) in rt.listeners.iter().enumerate() {
            l.addr.parse::<std::net::IpAddr>().map_err(|_| {
                bad(format!(
                    "{}: {:?} is not an address",
                    p(&format!("listeners[{j}].addr")),
                    l.addr
                ))
            })?;
        }
    }
    Ok(())
}

pub async fn report(
    caller: Caller,
    State(st): State<SharedState>,
    JsonBody(r): JsonBody<InventoryReport>,
) -> Result<Json<InventoryAck>, ApiError> {
    caller.require(Cap::Agent)?;
    let agent = caller.agent()?.clone();
    check_report(&r, &agent.host_id)?;
    let items = st.db(move |s| s.put_inventory(&r)).await?;
    Ok(Json(InventoryAck { items }))
}

fn check_query(q: &InventoryQuery) -> Result<(), ApiError> {
    if let Some(h) = &q.host {
        check_text("query parameter `host`", h, 253)?;
    }
    if let Some(l) = q.limit
        && !(1..=1000).contains(&l)
    {
        return Err(bad(format!(
            "query parameter `limit`: must be 1..=1000, got {l}"
        )));
    }
    Ok(())
}

pub async fn list(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<InventoryQuery>,
) -> Result<Json<Vec<InventoryItem>>, ApiError> {
    caller.require(Cap::Read)?;
    check_query(&q)?;
    Ok(Json(st.db(move |s| s.inventory(&q)).await?))
}

/// CSV: one row per item, flags `;`-separated.
pub fn csv(items: &[InventoryItem]) -> String {
    let mut out = String::from(
        "host_id,hostname,kind,id,name,flags,first_seen_ms,last_seen_ms,ended,user,detail\n",
    );
    for it in items {
        let flags: Vec<&str> = it.flags.iter().map(|f| f.as_str()).collect();
        let user = it.detail["user"].as_str().unwrap_or("");
        let row = [
            cell(&it.host_id),
            cell(&it.hostname),
            cell(it.kind.as_str()),
            cell(&it.id),
            cell(&it.name),
            cell(&flags.join(";")),
            it.first_seen_ms.to_string(),
            it.last_seen_ms.to_string(),
            it.ended.to_string(),
            cell(user),
            cell(&it.detail.to_string()),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// OCSF 1.8 Detection Finding (2004) per flagged item, an Inventory Info-like record
/// (Discovery: Software Inventory Info, 5020) per unflagged one.
pub fn ocsf(items: &[InventoryItem]) -> serde_json::Value {
    let v: Vec<serde_json::Value> = items
        .iter()
        .map(|it| {
            let flags: Vec<&str> = it.flags.iter().map(|f| f.as_str()).collect();
            let device = serde_json::json!({"uid": it.host_id, "hostname": it.hostname, "type_id": 0});
            let product = serde_json::json!({"name": it.name, "uid": it.id, "feature": {"name": it.kind.as_str()}});
            if flags.is_empty() {
                serde_json::json!({
                    "category_uid": 5, "class_uid": 5020, "type_uid": 502001, "activity_id": 1,
                    "severity_id": 1, "time": it.last_seen_ms,
                    "metadata": {"version": "1.8.0", "product": {"name": "shadowai", "vendor_name": "shadowai"}},
                    "device": device,
                    "package": {"name": it.name, "uid": it.id, "type": it.kind.as_str()},
                    "unmapped": {"shadowai_inventory": it.detail, "first_seen_ms": it.first_seen_ms, "ended": it.ended},
                })
            } else {
                serde_json::json!({
                    "category_uid": 2, "class_uid": 2004, "type_uid": 200401, "activity_id": 1,
                    "severity_id": 3, "status_id": 1, "time": it.last_seen_ms,
                    "metadata": {"version": "1.8.0", "product": {"name": "shadowai", "vendor_name": "shadowai"}},
                    "finding_info": {"uid": format!("{}/{}/{}", it.host_id, it.kind.as_str(), it.id),
                        "title": format!("{} {}: {}", it.kind.as_str(), it.name, flags.join(", ")),
                        "types": flags, "first_seen_time": it.first_seen_ms, "last_seen_time": it.last_seen_ms,
                        "product": product},
                    "device": device,
                    "unmapped": {"shadowai_inventory": it.detail, "ended": it.ended},
                })
            }
        })
        .collect();
    serde_json::Value::Array(v)
}

pub async fn export_csv(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<InventoryQuery>,
) -> Result<Response, ApiError> {
    caller.require(Cap::Export)?;
    check_query(&q)?;
    let items = st.db(move |s| s.inventory(&q)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"shadowai-inventory.csv\"",
            ),
        ],
        csv(&items),
    )
        .into_response())
}

pub async fn export_ocsf(
    caller: Caller,
    State(st): State<SharedState>,
    QueryParams(q): QueryParams<InventoryQuery>,
) -> Result<Response, ApiError> {
    caller.require(Cap::Export)?;
    check_query(&q)?;
    let items = st.db(move |s| s.inventory(&q)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"shadowai-inventory.ocsf.json\"",
            ),
        ],
        ocsf(&items).to_string(),
    )
        .into_response())
}
