//! Exports streamed in constant memory: the store is read a page at a time (each page under a
//! heavy-reader permit, so ingest keeps its share of the store between pages) and each page
//! is encoded and sent through a two-page channel; a store error mid-way aborts the response
//! (the client sees a cut connection, never a short file that looks complete).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use http_body::{Body, Frame};
use shadowai_api::{Finding, FindingQuery};
use tokio::sync::mpsc;

use super::SharedState;
use super::error::ApiError;
use crate::risk::RiskBook;

/// Findings read from the store per page.
const PAGE: u32 = 500;

/// How a page of findings becomes bytes.
#[derive(Clone, Copy)]
pub enum Format {
    Csv,
    OcsfJsonArray,
}

impl Format {
    fn head(self) -> Bytes {
        match self {
            Format::Csv => Bytes::from(format!("{}\r\n", crate::export::CSV_HEADER)),
            Format::OcsfJsonArray => Bytes::from_static(b"["),
        }
    }

    fn tail(self) -> Bytes {
        match self {
            Format::Csv => Bytes::new(),
            Format::OcsfJsonArray => Bytes::from_static(b"]"),
        }
    }

    fn page(self, rows: &[Finding], first: bool, risk: Option<&RiskBook>) -> Bytes {
        match self {
            Format::Csv => Bytes::from(crate::export::csv_rows(rows, risk)),
            Format::OcsfJsonArray => {
                let mut out = Vec::with_capacity(rows.len() * 1024);
                for (i, f) in rows.iter().enumerate() {
                    if !(first && i == 0) {
                        out.push(b',');
                    }
                    let r = risk.and_then(|b| b.get(&f.service_id)).map(|r| &**r);
                    let v = match risk {
                        Some(_) => shadowai_api::ocsf::finding_to_ocsf_with_risk(f, r),
                        None => shadowai_api::ocsf::finding_to_ocsf(f),
                    };
                    // Serialising a Value into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut out, &v);
                }
                Bytes::from(out)
            }
        }
    }
}

type Chunk = Result<Bytes, ApiError>;

/// A response body fed by the export task.
pub struct ChannelBody {
    rx: mpsc::Receiver<Chunk>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = ApiError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ApiError>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data)))
    }
}

/// Starts the export; `limit` findings at most, below `cursor` when given.
pub fn start(
    st: SharedState,
    q: FindingQuery,
    limit: u32,
    cursor: Option<i64>,
    format: Format,
) -> ChannelBody {
    let (tx, rx) = mpsc::channel::<Chunk>(2);
    tokio::spawn(async move {
        if let Err(e) = pump(&st, &q, limit, cursor, format, &tx).await {
            st.metrics.export_errors.inc();
            tracing::error!(error = %e, "export aborted");
            let _ = tx.send(Err(e)).await;
        }
    });
    ChannelBody { rx }
}

async fn pump(
    st: &SharedState,
    q: &FindingQuery,
    limit: u32,
    mut cursor: Option<i64>,
    format: Format,
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), ApiError> {
    // A closed channel means the client went away: stop quietly.
    if tx.send(Ok(format.head())).await.is_err() {
        return Ok(());
    }
    let mut left = limit;
    let mut first = true;
    while left > 0 {
        let n = left.min(PAGE);
        let permit =
            st.read_permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| ApiError::Internal {
                    what: format!("read permits closed: {e}"),
                })?;
        let q2 = q.clone();
        let risk = st.risk.clone();
        // Read and encode on the blocking pool: encoding a page is CPU work that must not
        // occupy an async worker (ingest and every other request run there).
        let (bytes, got, next) = st
            .db(move |s| {
                let (rows, next) = s.search(&q2, n, cursor)?;
                Ok((format.page(&rows, first, risk.as_deref()), rows.len(), next))
            })
            .await?;
        drop(permit);
        left = left.saturating_sub(u32::try_from(got).unwrap_or(u32::MAX));
        first &= got == 0;
        if tx.send(Ok(bytes)).await.is_err() {
            return Ok(());
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let _ = tx.send(Ok(format.tail())).await;
    Ok(())
}
