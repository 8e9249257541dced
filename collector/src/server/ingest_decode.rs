//! Decoding an ingest body off the async workers: gzip inflated as a stream under a hard cap,
//! JSON parsed from that stream with list caps enforced during the parse
//! (`shadowai_api::bounded`), then every finding validated. At most
//! `limits.parse_concurrency` bodies are decoded at once; others wait briefly, then get 503.

use std::io::{BufReader, Read};
use std::time::Duration;

use axum::body::Bytes;
use shadowai_api::IngestBatch;

use super::SharedState;
use super::agent_routes::{check_finding, check_ident};
use super::error::{ApiError, bad};

/// How long an ingest waits for a decode slot before 503.
const PARSE_WAIT: Duration = Duration::from_secs(5);

/// Refuses to yield more than `left` bytes (an error, not a silent truncation).
struct Capped<R> {
    inner: R,
    left: u64,
    hit: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.hit = true;
            return Err(std::io::Error::other("inflated size limit reached"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    pub fn parse(header: Option<&str>) -> Result<Encoding, ApiError> {
        match header.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("identity") => Ok(Encoding::Identity),
            Some("gzip" | "x-gzip") => Ok(Encoding::Gzip),
            Some(other) => Err(ApiError::UnsupportedMediaType {
                message: format!("Content-Encoding {other:?} is not supported (use gzip or none)"),
            }),
        }
    }
}

/// Inflates (if gzip), parses and validates a batch. Blocking: run it off the runtime.
pub fn decode_batch(
    body: &[u8],
    encoding: Encoding,
    inflated_max: usize,
    findings_max: usize,
    host_id: &str,
) -> Result<IngestBatch, ApiError> {
    let parsed = match encoding {
        Encoding::Identity => serde_json::from_slice::<IngestBatch>(body),
        Encoding::Gzip => {
            let mut capped = Capped {
                inner: flate2::read::GzDecoder::new(body),
                left: inflated_max as u64,
                hit: false,
            };
            let r = serde_json::from_reader(BufReader::new(&mut capped));
            if capped.hit {
                return Err(ApiError::PayloadTooLarge {
                    message: format!(
                        "request body inflates to more than {inflated_max} bytes (limits.inflated_bytes)"
                    ),
                });
            }
            r
        }
    };
    let batch = parsed.map_err(|e| {
        if e.is_io() {
            bad(format!("request body: invalid gzip data: {e}"))
        } else {
            bad(format!("request body: {e}"))
        }
    })?;
    check_ident("batch_id", &batch.batch_id, 128)?;
    if batch.findings.len() > findings_max {
        return Err(ApiError::PayloadTooLarge {
            message: format!(
                "batch has {} findings; at most {findings_max} per batch (limits.findings_per_batch)",
                batch.findings.len()
            ),
        });
    }
    for (i, f) in batch.findings.iter().enumerate() {
        check_finding(i, f, host_id)?;
    }
    Ok(batch)
}

/// [`decode_batch`] on the blocking pool, at most `limits.parse_concurrency` at once.
pub async fn decode_limited(
    st: &SharedState,
    body: Bytes,
    encoding: Encoding,
    host_id: String,
) -> Result<IngestBatch, ApiError> {
    let permit =
        match tokio::time::timeout(PARSE_WAIT, st.parse_permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => {
                st.metrics.ingest_busy.inc();
                return Err(ApiError::Busy {
                    message: "every ingest decode slot is busy (limits.parse_concurrency); retry"
                        .into(),
                    retry_after_s: 1,
                });
            }
        };
    let (inflated, findings) = (st.limits.inflated_bytes, st.limits.findings_per_batch);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decode_batch(&body, encoding, inflated, findings, &host_id)
    })
    .await
    .map_err(|e| ApiError::Internal {
        what: format!("decode task failed: {e}"),
    })?
}
