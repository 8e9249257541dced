//! HTTP sinks: the OCSF webhook and Splunk HEC, both over one reqwest client each (rustls,
//! ring). A 2xx answer is success; 408, 429 and 5xx (and transport errors) are retried;
//! any other status is a permanent failure of that batch (a bad token stays bad).

use std::time::Duration;

use crate::event::SiemEvent;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use serde_json::{Value, json};

use crate::SiemError;
use crate::config::{HecConfig, TlsConfig, WebhookConfig};
use crate::forwarder::SendError;

/// Path of the HEC JSON event endpoint.
pub const HEC_EVENT_PATH: &str = "/services/collector/event";

const USER_AGENT: &str = concat!("shadowai-collector/", env!("CARGO_PKG_VERSION"));
/// Bytes of an error response body kept for the error message.
const BODY_EXCERPT: usize = 200;

fn client(
    tls: &TlsConfig,
    timeout_ms: u64,
    headers: HeaderMap,
    forwarder: &str,
) -> Result<reqwest::Client, SiemError> {
    let tls = crate::tls::client_config(tls, forwarder)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_millis(timeout_ms))
        .connect_timeout(Duration::from_millis(timeout_ms))
        .user_agent(USER_AGENT)
        .default_headers(headers)
        .build()
        .map_err(|e| SiemError::HttpClient {
            forwarder: forwarder.to_owned(),
            source: e,
        })
}

fn bad_header(forwarder: &str, what: &str) -> SiemError {
    SiemError::InvalidConfig {
        forwarder: forwarder.to_owned(),
        field: "headers",
        reason: format!("{what} is not a valid HTTP header"),
    }
}

/// POSTs `[ocsf, ocsf, …]` (application/json) to the configured URL.
pub struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl WebhookSink {
    pub fn new(cfg: &WebhookConfig) -> Result<Self, SiemError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let n =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad_header(&cfg.name, name))?;
            let mut v = HeaderValue::from_str(&value.0).map_err(|_| bad_header(&cfg.name, name))?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let url = parse_url(&cfg.name, &cfg.url)?;
        Ok(WebhookSink {
            client: client(&cfg.tls, cfg.delivery.timeout_ms, headers, &cfg.name)?,
            url,
        })
    }

    /// The request body for a batch.
    pub fn body<E: SiemEvent>(batch: &[E]) -> Vec<u8> {
        let events: Vec<Value> = batch.iter().map(SiemEvent::ocsf).collect();
        Value::Array(events).to_string().into_bytes()
    }

    pub async fn send<E: SiemEvent>(&self, batch: &[E]) -> Result<(), SendError> {
        post(&self.client, &self.url, Self::body(batch)).await
    }
}

/// POSTs HEC event objects, one per line, to `<url>/services/collector/event`.
pub struct HecSink {
    client: reqwest::Client,
    url: reqwest::Url,
    cfg: HecConfig,
}

impl HecSink {
    pub fn new(cfg: &HecConfig) -> Result<Self, SiemError> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", cfg.token.0)).map_err(|_| {
            SiemError::InvalidConfig {
                forwarder: cfg.name.clone(),
                field: "token",
                reason: "is not usable in an Authorization header".to_owned(),
            }
        })?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let base = parse_url(&cfg.name, &cfg.url)?;
        let url = base
            .join(HEC_EVENT_PATH)
            .map_err(|e| SiemError::InvalidConfig {
                forwarder: cfg.name.clone(),
                field: "url",
                reason: e.to_string(),
            })?;
        Ok(HecSink {
            client: client(&cfg.tls, cfg.delivery.timeout_ms, headers, &cfg.name)?,
            url,
            cfg: cfg.clone(),
        })
    }

    /// One HEC event object: `time` in epoch seconds (millisecond precision), the agent's
    /// host, source/sourcetype/index from the config, and the OCSF object as `event`.
    pub fn event<E: SiemEvent>(cfg: &HecConfig, f: &E) -> Value {
        let mut v = json!({
            "time": f.time_ms() as f64 / 1000.0,
            "host": f.hostname(),
            "source": cfg.source,
            "sourcetype": cfg.sourcetype,
            "event": f.ocsf(),
        });
        if let (Some(index), Some(obj)) = (&cfg.index, v.as_object_mut()) {
            obj.insert("index".into(), json!(index));
        }
        v
    }

    /// The request body for a batch: event objects separated by newlines.
    pub fn body<E: SiemEvent>(cfg: &HecConfig, batch: &[E]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, f) in batch.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(Self::event(cfg, f).to_string().as_bytes());
        }
        out
    }

    pub async fn send<E: SiemEvent>(&self, batch: &[E]) -> Result<(), SendError> {
        post(&self.client, &self.url, Self::body(&self.cfg, batch)).await
    }
}

fn parse_url(forwarder: &str, url: &str) -> Result<reqwest::Url, SiemError> {
    reqwest::Url::parse(url).map_err(|e| SiemError::InvalidConfig {
        forwarder: forwarder.to_owned(),
        field: "url",
        reason: e.to_string(),
    })
}

async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: Vec<u8>,
) -> Result<(), SendError> {
    let response = client
        .post(url.clone())
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::retry(format!("POST {url}: {}", error_chain(&e))))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(BODY_EXCERPT).collect();
    let message = format!("POST {url}: HTTP {status}: {excerpt}");
    let retryable = status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error();
    if retryable {
        Err(SendError {
            message,
            retryable: true,
            retry_after,
        })
    } else {
        Err(SendError::permanent(message))
    }
}

/// reqwest's Display hides the cause ("error sending request"); show the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
