//! Decoding an ingest body off the async workers: gzip inflated as a stream under a hard cap,
//! JSON parsed from that stream with list and string caps enforced during the parse
//! (`shadowai_api::bounded`; an inflated string is also cut off by its raw length before the
//! parser's scratch buffer can grow past [`RAW_STRING_MAX`]), then every finding validated.
//! Errors name the field (`findings[2].process.exe: …`). At most
//! `limits.parse_concurrency` bodies are decoded at once; others wait briefly, then get 503.

use std::io::{BufReader, Read};
use std::time::Duration;

use axum::body::Bytes;
use shadowai_api::IngestBatch;

use super::SharedState;
use super::agent_routes::{check_finding, check_ident};
use super::error::{ApiError, bad};
use super::extract::body_error;

type PathResult = Result<IngestBatch, serde_path_to_error::Error<serde_json::Error>>;

/// Parses one batch and checks nothing but whitespace follows it.
fn parse<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
) -> Result<PathResult, ApiError> {
    let r = serde_path_to_error::deserialize::<_, IngestBatch>(&mut *de);
    if r.is_ok() {
        de.end()
            .map_err(|e| bad(format!("request body: after the batch: {e}")))?;
    }
    Ok(r)
}

/// How long an ingest waits for a decode slot before 503.
const PARSE_WAIT: Duration = Duration::from_secs(5);

/// Longest raw (still escaped) JSON string an inflated ingest body may hold: the longest
/// string field (4096 bytes) written entirely as `\uXXXX` escapes takes 6 bytes per byte
/// at most.
pub const RAW_STRING_MAX: usize = 6 * 4096;

/// Fails the read once a JSON string in the stream runs past `max` raw bytes, so the JSON
/// parser reading from it never buffers a longer one.
struct StringGuard<R> {
    inner: R,
    max: usize,
    in_str: bool,
    escaped: bool,
    run: usize,
    hit: bool,
}

impl<R: Read> Read for StringGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if !self.in_str {
                if b == b'"' {
                    self.in_str = true;
                    self.run = 0;
                }
                continue;
            }
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_str = false;
                continue;
            }
            self.run += 1;
            if self.run > self.max {
                self.hit = true;
                return Err(std::io::Error::other("string length limit reached"));
            }
        }
        Ok(n)
    }
}

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
        Encoding::Identity => parse(&mut serde_json::Deserializer::from_slice(body))?,
        Encoding::Gzip => {
            let mut guard = StringGuard {
                inner: Capped {
                    inner: flate2::read::GzDecoder::new(body),
                    left: inflated_max as u64,
                    hit: false,
                },
                max: RAW_STRING_MAX,
                in_str: false,
                escaped: false,
                run: 0,
                hit: false,
            };
            let r = parse(&mut serde_json::Deserializer::from_reader(BufReader::new(
                &mut guard,
            )));
            if guard.inner.hit {
                return Err(ApiError::PayloadTooLarge {
                    message: format!(
                        "request body inflates to more than {inflated_max} bytes (limits.inflated_bytes)"
                    ),
                });
            }
            if guard.hit {
                let path = match r {
                    Ok(Err(e)) => format!("{}: ", e.path()),
                    Ok(Ok(_)) | Err(_) => String::new(),
                };
                return Err(bad(format!(
                    "request body: {path}a string longer than {RAW_STRING_MAX} raw bytes; no field allows that many"
                )));
            }
            r?
        }
    };
    let batch = parsed.map_err(|e| {
        if e.inner().is_io() {
            bad(format!("request body: invalid gzip data: {}", e.inner()))
        } else {
            body_error(&e)
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
