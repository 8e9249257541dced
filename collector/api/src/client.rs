//! A typed async client for every collector route (agent, CLI and tests use it).
//!
//! TLS is rustls (ring provider, via reqwest) with *manual* roots: the caller adds the CA
//! (the collector's self-generated certificate, or the organisation's CA bundle) with
//! [`ClientBuilder::ca_pem`]. Plain `http://` URLs are accepted for loopback development only;
//! the collector refuses plain HTTP anywhere else. Proxies from the environment
//! (`HTTPS_PROXY`, `NO_PROXY`, …) are honoured, except for a collector on this host
//! (`localhost`, 127.0.0.0/8, `::1`): a proxy would reach its own loopback, not ours.

use std::io::Write;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::AuditEntry;
use crate::wire::*;

/// What went wrong talking to the collector.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid collector URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid CA certificate PEM: {source}")]
    InvalidCa { source: reqwest::Error },
    #[error("building the HTTP client: {source}")]
    Build { source: reqwest::Error },
    #[error("{method} {route}: transport error: {source}")]
    Transport {
        method: Method,
        route: String,
        source: reqwest::Error,
    },
    #[error("{method} {route}: HTTP {status} {code}: {message}")]
    Status {
        method: Method,
        route: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{method} {route}: response is not the expected JSON: {source}")]
    Decode {
        method: Method,
        route: String,
        source: serde_json::Error,
    },
    #[error("encoding the request body: {source}")]
    Encode { source: std::io::Error },
}

impl ClientError {
    /// The HTTP status when the collector answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result of [`Client::fetch_bundle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleFetch {
    /// The ETag sent is still current.
    NotModified,
    /// No rollout targets this agent.
    NoBundle,
    Bundle {
        bytes: Vec<u8>,
        etag: String,
        version: String,
    },
}

pub struct ClientBuilder {
    base: String,
    token: Option<String>,
    ca: Vec<reqwest::Certificate>,
    timeout: Duration,
    error: Option<ClientError>,
}

impl ClientBuilder {
    /// Adds trusted root(s) from PEM (one certificate or a bundle).
    pub fn ca_pem(mut self, pem: &[u8]) -> Self {
        match reqwest::Certificate::from_pem_bundle(pem) {
            Ok(certs) if !certs.is_empty() => self.ca.extend(certs),
            Ok(_) => {
                if let Err(source) = reqwest::Certificate::from_pem(pem) {
                    self.error = Some(ClientError::InvalidCa { source });
                }
            }
            Err(source) => self.error = Some(ClientError::InvalidCa { source }),
        }
        self
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let base = self.base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| ClientError::InvalidUrl {
            url: base.clone(),
            reason: e.to_string(),
        })?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(ClientError::InvalidUrl {
                url: base,
                reason: "scheme must be https (or http for loopback development)".into(),
            });
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .timeout(self.timeout)
            // The collector closes idle keep-alive connections after `limits.header_timeout_s`
            // (10 s by default); reusing one it already closed fails with IncompleteMessage.
            .pool_idle_timeout(std::time::Duration::from_secs(5))
            .user_agent(concat!("shadowai-api/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&url) {
            b = b.no_proxy();
        }
        for c in self.ca {
            b = b.add_root_certificate(c);
        }
        let http = b.build().map_err(|source| ClientError::Build { source })?;
        Ok(Client {
            http,
            base,
            token: self.token,
        })
    }
}

/// A URL whose host is this machine: `localhost`, 127.0.0.0/8 or `::1` (where plain HTTP
/// is allowed, and no proxy is used).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// A collector client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `base` is e.g. `https://collector.example:8443`.
    pub fn builder(base: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base.into(),
            token: None,
            ca: Vec::new(),
            timeout: Duration::from_secs(30),
            error: None,
        }
    }

    /// The same client with another bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.into()),
        }
    }

    fn request(&self, method: Method, route: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{}", self.base, route));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    async fn send(
        &self,
        method: Method,
        route: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = rb.send().await.map_err(|source| ClientError::Transport {
            method: method.clone(),
            route: route.to_owned(),
            source,
        })?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => (
                "http".to_owned(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
            ),
        };
        Err(ClientError::Status {
            method,
            route: route.to_owned(),
            status: status.as_u16(),
            code,
            message,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.send(method.clone(), route, rb).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                method: method.clone(),
                route: route.to_owned(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method,
            route: route.to_owned(),
            source,
        })
    }

    async fn get<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        route: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        let rb = self.request(Method::GET, route).query(query);
        self.json(Method::GET, route, rb).await
    }

    async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let rb = self.request(Method::POST, route).json(body);
        self.json(Method::POST, route, rb).await
    }

    /// POSTs `{"note": …}` (revoke, rotate, release, approve, reject, rollback).
    async fn post_note<T: DeserializeOwned>(
        &self,
        route: &str,
        note: Option<&str>,
    ) -> Result<T, ClientError> {
        let body = NoteRequest {
            note: note.map(str::to_owned),
        };
        self.post(route, &body).await
    }

    async fn text<Q: Serialize + ?Sized>(
        &self,
        route: &str,
        query: &Q,
    ) -> Result<String, ClientError> {
        let rb = self.request(Method::GET, route).query(query);
        let resp = self.send(Method::GET, route, rb).await?;
        resp.text().await.map_err(|source| ClientError::Transport {
            method: Method::GET,
            route: route.to_owned(),
            source,
        })
    }

    pub async fn healthz(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/healthz", &()).await
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("/api/v1/whoami", &()).await
    }

    // ---- agent side ----

    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.post("/api/v1/enroll", req).await
    }

    /// A fresh token for an enrolled host, proven by its per-host key (see [`ReenrollRequest`]).
    pub async fn reenroll(&self, req: &ReenrollRequest) -> Result<EnrollResponse, ClientError> {
        self.post("/api/v1/reenroll", req).await
    }

    /// Uploads a batch gzip-compressed. Returns only when the collector committed it.
    pub async fn ingest(&self, batch: &IngestBatch) -> Result<IngestAck, ClientError> {
        let route = "/api/v1/ingest";
        let json = serde_json::to_vec(batch).map_err(|e| ClientError::Encode {
            source: std::io::Error::other(e),
        })?;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&json)
            .map_err(|source| ClientError::Encode { source })?;
        let body = enc
            .finish()
            .map_err(|source| ClientError::Encode { source })?;
        let rb = self
            .request(Method::POST, route)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_ENCODING, "gzip")
            .body(body);
        self.json(Method::POST, route, rb).await
    }

    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatAck, ClientError> {
        self.post("/api/v1/heartbeat", hb).await
    }

    /// Reports unknown names (agent token).
    pub async fn report_discovery(
        &self,
        r: &crate::discovery::DiscoveryReport,
    ) -> Result<crate::discovery::DiscoveryAck, ClientError> {
        self.post("/api/v1/discovery/report", r).await
    }

    /// Unknown names seen across the fleet, most widespread first.
    pub async fn discovery(&self) -> Result<Vec<crate::discovery::CandidateView>, ClientError> {
        self.get("/api/v1/discovery", &()).await
    }

    /// Proposes a catalogue entry (usually promoted from a discovery candidate).
    pub async fn propose_catalogue_entry(
        &self,
        req: &crate::discovery::CatalogueProposalRequest,
    ) -> Result<crate::discovery::CatalogueProposal, ClientError> {
        self.post("/api/v1/discovery/proposals", req).await
    }

    /// Catalogue proposals, newest first.
    pub async fn catalogue_proposals(
        &self,
        status: Option<ProposalStatus>,
    ) -> Result<Vec<crate::discovery::CatalogueProposal>, ClientError> {
        let q: Vec<(&str, &str)> = status.map(|s| ("status", s.as_str())).into_iter().collect();
        self.get("/api/v1/discovery/proposals", &q).await
    }

    /// What a catalogue proposal would name, computed now.
    pub async fn catalogue_proposal_impact(
        &self,
        id: i64,
    ) -> Result<crate::discovery::CatalogueImpact, ClientError> {
        self.get(&format!("/api/v1/discovery/proposals/{id}/impact"), &())
            .await
    }

    /// Approves (`approve`) or rejects a catalogue proposal (a different person).
    pub async fn decide_catalogue_proposal(
        &self,
        id: i64,
        approve: bool,
        note: Option<&str>,
    ) -> Result<crate::discovery::CatalogueProposal, ClientError> {
        let verb = if approve { "approve" } else { "reject" };
        self.post_note(&format!("/api/v1/discovery/proposals/{id}/{verb}"), note)
            .await
    }

    /// Reports this host's inventory of AI agents, MCP servers and runtimes.
    pub async fn inventory_report(
        &self,
        r: &crate::inventory::InventoryReport,
    ) -> Result<crate::inventory::InventoryAck, ClientError> {
        self.post("/api/v1/inventory", r).await
    }

    /// The fleet's inventory items matching `q`.
    pub async fn inventory(
        &self,
        q: &crate::inventory::InventoryQuery,
    ) -> Result<Vec<crate::inventory::InventoryItem>, ClientError> {
        self.get("/api/v1/inventory", q).await
    }

    /// Fetches the bundle meant for this agent; pass the last ETag to get `NotModified`.
    pub async fn fetch_bundle(&self, etag: Option<&str>) -> Result<BundleFetch, ClientError> {
        let route = "/api/v1/bundle";
        let mut rb = self.request(Method::GET, route);
        if let Some(e) = etag {
            rb = rb.header(header::IF_NONE_MATCH, format!("\"{e}\""));
        }
        let resp = match self.send(Method::GET, route, rb).await {
            Ok(r) => r,
            Err(ClientError::Status { status: 404, .. }) => return Ok(BundleFetch::NoBundle),
            Err(e) => return Err(e),
        };
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(BundleFetch::NotModified);
        }
        let header_str = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_matches('"')
                .to_owned()
        };
        let etag = header_str("etag");
        let version = header_str("x-shadowai-bundle-version");
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                method: Method::GET,
                route: route.to_owned(),
                source,
            })?;
        Ok(BundleFetch::Bundle {
            bytes: bytes.to_vec(),
            etag,
            version,
        })
    }

    // ---- SOC ----

    pub async fn findings(&self, q: &FindingQuery) -> Result<FindingsPage, ClientError> {
        self.get("/api/v1/findings", q).await
    }

    pub async fn services_report(
        &self,
        q: &FindingQuery,
    ) -> Result<Vec<ServiceReport>, ClientError> {
        self.get("/api/v1/reports/services", q).await
    }

    pub async fn trend(&self, q: &FindingQuery) -> Result<Vec<TrendPoint>, ClientError> {
        self.get("/api/v1/reports/trend", q).await
    }

    // ---- soc: issue 15 reports ----

    /// Findings grouped by `q.by` (user, host, process, group), one page.
    pub async fn group_report(&self, q: &FindingQuery) -> Result<crate::GroupPage, ClientError> {
        self.get("/api/v1/reports/groups", q).await
    }

    /// Top uploaders to unsanctioned or blocked services, grouped by `q.by`.
    pub async fn uploaders(&self, q: &FindingQuery) -> Result<crate::GroupPage, ClientError> {
        self.get("/api/v1/reports/uploaders", q).await
    }

    pub async fn facets(&self, q: &FindingQuery) -> Result<crate::Facets, ClientError> {
        self.get("/api/v1/reports/facets", q).await
    }

    /// Risk breakdowns of services from the collector's catalogue.
    pub async fn risk(&self, services: &[&str]) -> Result<Vec<crate::ServiceRisk>, ClientError> {
        self.get("/api/v1/risk", &[("services", services.join(","))])
            .await
    }

    pub async fn alerts(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<crate::AlertPage, ClientError> {
        let mut q = vec![("limit", limit.to_string())];
        if let Some(b) = before {
            q.push(("before", b.to_string()));
        }
        self.get("/api/v1/alerts", &q).await
    }

    /// soc: every alert and notice with its webhook delivery state.
    pub async fn outbox(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<crate::OutboxPage, ClientError> {
        let mut q = vec![("limit", limit.to_string())];
        if let Some(b) = before {
            q.push(("before", b.to_string()));
        }
        self.get("/api/v1/alerts/outbox", &q).await
    }

    pub async fn export_csv(&self, q: &FindingQuery) -> Result<String, ClientError> {
        self.text("/api/v1/exports/findings.csv", q).await
    }

    pub async fn export_ocsf(
        &self,
        q: &FindingQuery,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        self.get("/api/v1/exports/findings.ocsf.json", q).await
    }

    // ---- fleet ----

    pub async fn agents(&self) -> Result<Vec<AgentInfo>, ClientError> {
        self.get("/api/v1/agents", &()).await
    }

    pub async fn revoke_agent(
        &self,
        agent_id: &str,
        reason: Option<&str>,
    ) -> Result<AgentInfo, ClientError> {
        self.post_note(&format!("/api/v1/agents/{agent_id}/revoke"), reason)
            .await
    }

    /// Revokes only the agent's current token (say it leaked): the host stays enrolled and
    /// its agent, on its next 401, re-enrolls with its per-host key (`/api/v1/reenroll`).
    /// Contrast [`Client::revoke_agent`], which refuses re-enrollment until a release.
    pub async fn rotate_agent_token(
        &self,
        agent_id: &str,
        reason: Option<&str>,
    ) -> Result<AgentInfo, ClientError> {
        self.post_note(&format!("/api/v1/agents/{agent_id}/rotate-token"), reason)
            .await
    }

    /// Lifts a revocation or an identity conflict: clears the host's key binding so that the
    /// host may enroll anew with the enrollment secret (audited; admin only).
    pub async fn release_agent(
        &self,
        agent_id: &str,
        reason: Option<&str>,
    ) -> Result<AgentInfo, ClientError> {
        self.post_note(&format!("/api/v1/agents/{agent_id}/release"), reason)
            .await
    }

    // ---- enrollment keys (admin) ----

    /// Creates an enrollment secret (shown once in the answer).
    pub async fn create_enrollment_key(
        &self,
        req: &EnrollmentKeyRequest,
    ) -> Result<EnrollmentKeyCreated, ClientError> {
        self.post("/api/v1/enrollment-keys", req).await
    }

    pub async fn enrollment_keys(&self) -> Result<Vec<EnrollmentKeyInfo>, ClientError> {
        self.get("/api/v1/enrollment-keys", &()).await
    }

    /// Revokes an enrollment key at once (already enrolled hosts keep working).
    pub async fn revoke_enrollment_key(&self, id: i64) -> Result<EnrollmentKeyInfo, ClientError> {
        self.post(
            &format!("/api/v1/enrollment-keys/{id}/revoke"),
            &NoteRequest::default(),
        )
        .await
    }

    // ---- policy and approvals ----

    pub async fn proposals(
        &self,
        status: Option<ProposalStatus>,
    ) -> Result<Vec<Proposal>, ClientError> {
        let q: Vec<(&str, &str)> = status.map(|s| ("status", s.as_str())).into_iter().collect();
        self.get("/api/v1/proposals", &q).await
    }

    pub async fn propose(&self, req: &ProposalRequest) -> Result<Proposal, ClientError> {
        self.post("/api/v1/proposals", req).await
    }

    pub async fn approve(&self, id: i64, note: Option<&str>) -> Result<Proposal, ClientError> {
        self.post_note(&format!("/api/v1/proposals/{id}/approve"), note)
            .await
    }

    pub async fn reject(&self, id: i64, note: Option<&str>) -> Result<Proposal, ClientError> {
        self.post_note(&format!("/api/v1/proposals/{id}/reject"), note)
            .await
    }

    pub async fn policy(&self) -> Result<Vec<PolicyEntry>, ClientError> {
        self.get("/api/v1/policy", &()).await
    }

    // ---- bundles and rollouts ----

    pub async fn bundles(&self) -> Result<Vec<BundleInfo>, ClientError> {
        self.get("/api/v1/bundles", &()).await
    }

    pub async fn upload_bundle(
        &self,
        version: &str,
        note: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<BundleInfo, ClientError> {
        let route = "/api/v1/bundles";
        let mut q = vec![("version", version)];
        if let Some(n) = note {
            q.push(("note", n));
        }
        let rb = self
            .request(Method::POST, route)
            .query(&q)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.json(Method::POST, route, rb).await
    }

    pub async fn rollouts(&self) -> Result<Vec<Rollout>, ClientError> {
        self.get("/api/v1/rollouts", &()).await
    }

    pub async fn start_rollout(&self, req: &RolloutRequest) -> Result<Rollout, ClientError> {
        self.post("/api/v1/rollouts", req).await
    }

    /// Widens a rollout to `percent` of the agents (100: all).
    pub async fn advance_rollout(&self, id: i64, percent: u8) -> Result<Rollout, ClientError> {
        self.post(
            &format!("/api/v1/rollouts/{id}/advance"),
            &AdvanceRequest {
                percent: Some(percent),
            },
        )
        .await
    }

    pub async fn rollback_rollout(
        &self,
        id: i64,
        reason: Option<&str>,
    ) -> Result<Rollout, ClientError> {
        self.post_note(&format!("/api/v1/rollouts/{id}/rollback"), reason)
            .await
    }

    // ---- policy document and catalogue (publish) ----

    /// The collector's catalogue: every service, with its facts.
    pub async fn catalogue(&self) -> Result<shadowai_rules::Catalogue, ClientError> {
        self.get("/api/v1/catalogue", &()).await
    }

    /// The policy in force, composed, in `mode` (`enforce` or `monitor`).
    pub async fn policy_document(
        &self,
        mode: shadowai_rules::Mode,
    ) -> Result<crate::wire::PolicyDocument, ClientError> {
        let m = match mode {
            shadowai_rules::Mode::Enforce => "enforce",
            shadowai_rules::Mode::Monitor => "monitor",
        };
        self.get("/api/v1/policy/document", &[("mode", m)]).await
    }

    /// What approving a proposal would change, and who uses the services today.
    pub async fn proposal_impact(
        &self,
        id: i64,
    ) -> Result<crate::wire::ProposalImpact, ClientError> {
        self.get(&format!("/api/v1/proposals/{id}/impact"), &())
            .await
    }

    /// The stored bytes of an uploaded bundle (to re-sign its content in a rollback).
    pub async fn bundle_file(&self, version: &str) -> Result<Vec<u8>, ClientError> {
        let route = "/api/v1/bundles/{version}/file";
        let rb = self.request(Method::GET, &format!("/api/v1/bundles/{version}/file"));
        let resp = self.send(Method::GET, route, rb).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                method: Method::GET,
                route: route.to_owned(),
                source,
            })?;
        Ok(bytes.to_vec())
    }

    /// How many agents each stage of a rollout reaches, with warnings.
    pub async fn rollout_agents(&self, id: i64) -> Result<crate::wire::RolloutAgents, ClientError> {
        self.get(&format!("/api/v1/rollouts/{id}/agents"), &())
            .await
    }

    // ---- audit ----

    pub async fn audit(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditEntry>, ClientError> {
        self.get(
            "/api/v1/audit",
            &[
                ("after_seq", after_seq.to_string()),
                ("limit", limit.to_string()),
            ],
        )
        .await
    }

    pub async fn audit_export(&self) -> Result<Vec<AuditEntry>, ClientError> {
        self.get("/api/v1/audit/export", &()).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::is_loopback;

    #[test]
    fn only_this_hosts_addresses_are_loopback() {
        let lo = |u: &str| is_loopback(&reqwest::Url::parse(u).unwrap());
        for u in [
            "https://localhost:8443",
            "https://LOCALHOST",
            "https://127.0.0.1:8443",
            "https://127.9.9.9",
            "https://[::1]:8443",
        ] {
            assert!(lo(u), "{u}");
        }
        for u in [
            "https://collector.example",
            "https://localhost.example",
            "https://10.0.0.1",
            "https://[::2]",
        ] {
            assert!(!lo(u), "{u}");
        }
    }
}
