//! The `inventory_items` table: each host's AI agent sessions, MCP servers and local
//! runtimes as their agent last reported them, with first/last seen across reports. A
//! report only ever writes its own host's rows; each host keeps at most
//! [`MAX_ITEMS_PER_HOST`] items (those seen longest ago go first), so no agent can grow the
//! table without bound.

use shadowai_api::inventory::{InventoryItem, InventoryQuery, InventoryReport, ItemKind};

use super::StoreError;
use super::rows::{Backend, Row, V};
use super::sql::SqlStore;

/// Items kept per host.
pub const MAX_ITEMS_PER_HOST: i64 = 3072;

fn item_row(r: &Row) -> Result<InventoryItem, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "inventory_items",
        reason,
    };
    let kind_s = r.text(2)?;
    let kind = ItemKind::parse(&kind_s).ok_or_else(|| corrupt(format!("kind {kind_s:?}")))?;
    let flags = serde_json::from_str(&r.text(5)?).map_err(|e| corrupt(format!("flags: {e}")))?;
    let detail = serde_json::from_str(&r.text(9)?).map_err(|e| corrupt(format!("doc: {e}")))?;
    Ok(InventoryItem {
        host_id: r.text(0)?,
        hostname: r.text(1)?,
        kind,
        id: r.text(3)?,
        name: r.text(4)?,
        flags,
        first_seen_ms: r.i64(6)?,
        last_seen_ms: r.i64(7)?,
        ended: r.i64(8)? != 0,
        detail,
    })
}

impl<B: Backend> SqlStore<B> {
    /// Stores a host's report (items upserted; first seen kept, last seen advanced).
    pub(super) fn store_inventory(&self, r: &InventoryReport) -> Result<u64, StoreError> {
        let items = r.items();
        self.tx(|tx| {
            let mut n = 0;
            for it in &items {
                let flags = serde_json::to_string(&it.flags).map_err(|e| StoreError::Corrupt {
                    table: "inventory_items",
                    reason: format!("cannot encode flags: {e}"),
                })?;
                let doc = it.detail.to_string();
                n += tx.exec(
                    "INSERT INTO inventory_items (host_id, kind, item_id, hostname, name, flags, \
                     first_seen_ms, last_seen_ms, ended, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (host_id, kind, item_id) DO UPDATE SET hostname = excluded.hostname, \
                     name = excluded.name, flags = excluded.flags, ended = excluded.ended, doc = excluded.doc, \
                     first_seen_ms = CASE WHEN excluded.first_seen_ms < inventory_items.first_seen_ms \
                       THEN excluded.first_seen_ms ELSE inventory_items.first_seen_ms END, \
                     last_seen_ms = CASE WHEN excluded.last_seen_ms > inventory_items.last_seen_ms \
                       THEN excluded.last_seen_ms ELSE inventory_items.last_seen_ms END",
                    &[
                        it.host_id.as_str().into(),
                        it.kind.as_str().into(),
                        it.id.as_str().into(),
                        it.hostname.as_str().into(),
                        it.name.as_str().into(),
                        flags.into(),
                        it.first_seen_ms.into(),
                        it.last_seen_ms.into(),
                        i64::from(it.ended).into(),
                        doc.into(),
                    ],
                )?;
            }
            // Past the bound, the items seen longest ago go (ties at the cut go with them).
            let cut = tx.query(
                "inventory_items",
                "SELECT last_seen_ms FROM inventory_items WHERE host_id = $1 \
                 ORDER BY last_seen_ms DESC LIMIT 1 OFFSET $2",
                &[r.host_id.as_str().into(), V::from(MAX_ITEMS_PER_HOST)],
            )?;
            if let Some(t) = cut.first().map(|row| row.i64(0)).transpose()? {
                tx.exec(
                    "DELETE FROM inventory_items WHERE host_id = $1 AND last_seen_ms <= $2",
                    &[r.host_id.as_str().into(), t.into()],
                )?;
            }
            Ok(n)
        })
    }

    /// Items matching `q`, seen most recently first.
    pub(super) fn list_inventory(
        &self,
        q: &InventoryQuery,
    ) -> Result<Vec<InventoryItem>, StoreError> {
        let mut params: Vec<V> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        if let Some(h) = &q.host {
            params.push(h.into());
            conds.push(format!("(host_id = ${0} OR hostname = ${0})", params.len()));
        }
        if let Some(k) = q.kind {
            params.push(k.as_str().into());
            conds.push(format!("kind = ${}", params.len()));
        }
        if let Some(f) = q.flag {
            params.push(format!("%\"{}\"%", f.as_str()).into());
            conds.push(format!("flags LIKE ${}", params.len()));
        }
        let limit = i64::from(q.limit.unwrap_or(1000).clamp(1, 1000));
        params.push(limit.into());
        let sql = format!(
            "SELECT host_id, hostname, kind, item_id, name, flags, first_seen_ms, last_seen_ms, \
             ended, doc FROM inventory_items WHERE {} ORDER BY last_seen_ms DESC, host_id, item_id \
             LIMIT ${}",
            if conds.is_empty() {
                "1 = 1".to_string()
            } else {
                conds.join(" AND ")
            },
            params.len()
        );
        self.read_tx(|tx| {
            tx.query("inventory_items", &sql, &params)?
                .iter()
                .map(item_row)
                .collect()
        })
    }
}
