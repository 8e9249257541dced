//! Decoding an ingest body off the async workers: gzip inflated into memory when it is small
//! (an agent's batch), else as a stream under a hard cap, JSON parsed from memory or from that
//! stream with list and string caps enforced during the parse
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

/// Bodies that inflate to at most this many bytes are parsed from memory: serde_json's slice
/// reader runs several times faster than its stream reader (which takes one byte at a time
/// through `Read`, behind the string guard's scan). An agent's batch is a few hundred KB
/// (500 findings of ≈ 650 bytes). A larger body is inflated again as a stream, so one decode never holds
/// more inflated text than this (the strings it holds are still refused by their field's
/// limit before they are copied).
const IN_MEMORY_MAX: usize = 1 << 20;

/// The gzip body inflated into memory, if it inflates to at most `max` bytes (`None`: it is
/// longer, or its gzip trailer says so). The size the trailer claims (the inflated size
/// modulo 2^32) sizes the buffer, never past `max`; a body that claims less than it holds
/// is cut at `max + 1` bytes.
fn inflate_small(body: &[u8], max: usize) -> Option<std::io::Result<Vec<u8>>> {
    let claimed = body
        .last_chunk::<4>()
        .map_or(0, |t| u32::from_le_bytes(*t) as usize);
    if claimed > max {
        return None;
    }
    let mut out = Vec::with_capacity(claimed.min(max).saturating_add(1));
    let read = flate2::read::GzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out);
    match read {
        Ok(n) if n > max => None,
        Ok(_) => Some(Ok(out)),
        Err(e) => Some(Err(e)),
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
        Encoding::Gzip => match inflate_small(body, IN_MEMORY_MAX.min(inflated_max)) {
            Some(Ok(inflated)) => parse(&mut serde_json::Deserializer::from_slice(&inflated))?,
            Some(Err(e)) => return Err(bad(format!("request body: invalid gzip data: {e}"))),
            None => decode_stream(body, inflated_max)?,
        },
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

/// Parses a gzip body as it inflates, under the inflate cap and the raw string guard.
fn decode_stream(body: &[u8], inflated_max: usize) -> Result<PathResult, ApiError> {
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
    r
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(body: &[u8]) -> Result<IngestBatch, ApiError> {
        decode_batch(body, Encoding::Gzip, 32 << 20, 10_000, "h1")
    }

    #[test]
    fn small_bodies_inflate_into_memory_and_large_ones_do_not() {
        let small = vec![b' '; 1000];
        let got = inflate_small(&gzip(&small), 1000).unwrap().unwrap();
        assert_eq!(got, small);
        // One byte over the bound: left to the stream reader.
        assert!(inflate_small(&gzip(&[b' '; 1001]), 1000).is_none());
        // A trailer that claims less than the body holds: cut at the bound all the same.
        let mut lying = gzip(&[b' '; 50_000]);
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&10u32.to_le_bytes());
        assert!(inflate_small(&lying, 1000).is_none());
        // A trailer that claims more than the bound: not inflated at all.
        let mut big = gzip(b"{}");
        let n = big.len();
        big[n - 4..].copy_from_slice(&5000u32.to_le_bytes());
        assert!(inflate_small(&big, 1000).is_none());
    }

    #[test]
    fn a_batch_parses_alike_from_memory_and_from_the_stream() {
        let json = br#"{"batch_id":"b1","findings":[]}"#;
        let small = decode(&gzip(json)).unwrap();
        // Padded past the in-memory bound with whitespace: parsed as a stream.
        let mut padded = json.to_vec();
        padded.extend(std::iter::repeat_n(b' ', IN_MEMORY_MAX + 10));
        let streamed = decode(&gzip(&padded)).unwrap();
        assert_eq!(small.batch_id, streamed.batch_id);
        assert!(small.findings.is_empty() && streamed.findings.is_empty());
    }

    #[test]
    fn corrupt_gzip_is_refused_with_the_reason() {
        let mut body = gzip(br#"{"batch_id":"b1","findings":[]}"#);
        let n = body.len();
        body[n - 8] ^= 0xff; // the CRC
        let err = decode(&body).unwrap_err().to_string();
        assert!(err.contains("invalid gzip data"), "{err}");
        let err = decode(&body[..body.len() / 2]).unwrap_err().to_string();
        assert!(err.contains("invalid gzip data"), "{err}");
        let err = decode(&gzip(br#"{"batch_id":"b1","findings":[]} x"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("after the batch"), "{err}");
    }
}
