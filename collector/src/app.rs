//! Start-up: open the store, first-start bootstrap (enrollment secret, admin token, TLS),
//! then serve.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use shadowai_api::Role;

use crate::config::{Config, ConfigError, Database};
use crate::server::auth::{ENROLL_PREFIX, PERSON_PREFIX, hash_secret, new_secret};
use crate::server::error::ApiError;
use crate::server::metrics::Metrics;
use crate::server::ratelimit::RateLimiter;
use crate::server::tls::TlsError;
use crate::server::{AppState, FindingSink, now_ms};
use crate::store::{NewEnrollmentKey, Store, StoreError};

/// The collector's top-level error: everything start-up and the admin commands can hit.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("SIEM forwarders: {0}")]
    Siem(#[from] shadowai_siem::SiemError),
    #[error("alerts: {0}")]
    Alerts(#[from] crate::alerts::AlertConfigError),
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bundle_public_key {path}: {reason}")]
    BundleKey { path: String, reason: String },
    #[error("writing secret file {path}: {source}")]
    SecretFile {
        path: String,
        source: std::io::Error,
    },
}

/// Token re-issues per host id: one per 10 minutes after a burst of 5 (an agent needs one
/// after a 401; more is a loop or an abuse, and each is an audit entry).
const HOST_REISSUE_PER_SEC: f64 = 1.0 / 600.0;
const HOST_REISSUE_BURST: f64 = 5.0;

/// Where collectors before enrollment keys kept the hash of their one secret.
const LEGACY_ENROLL_KEY: &str = "enrollment_secret_sha256";

/// Creates the data directory (mode 0700) and opens the configured store.
pub fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, AppError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir_err = |source| AppError::DataDir {
        path: cfg.data_dir.display().to_string(),
        source,
    };
    if !cfg.data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.data_dir)
            .map_err(dir_err)?;
    }
    Ok(match &cfg.database {
        Database::Sqlite => Arc::new(crate::store::sqlite::open(
            &cfg.data_dir.join("collector.db"),
        )?),
        Database::Postgres { url, pool, ca } => {
            Arc::new(crate::store::postgres::open(url, *pool, ca.as_deref())?)
        }
    })
}

/// Secrets created on first start, to be shown once.
#[derive(Debug, Default)]
pub struct FirstStart {
    pub admin_token: Option<String>,
    pub enrollment_secret: Option<String>,
}

/// Ensures an enrollment key and at least one admin token exist.
///
/// The first enrollment key is seeded once: from a pre-keys database's stored secret, else
/// from `enrollment_secret` in the config, else generated (and shown once). After that the
/// keys in the database rule: rotation and revocation take effect at once and the config
/// value is no longer consulted.
pub fn bootstrap(store: &dyn Store, cfg: &Config) -> Result<FirstStart, AppError> {
    let mut first = FirstStart::default();
    let now = now_ms();
    let (hash, note, generated) = match (
        store.get_setting(LEGACY_ENROLL_KEY)?,
        &cfg.enrollment_secret,
    ) {
        (Some(h), _) => (h, "secret of the collector before enrollment keys", None),
        (None, Some(s)) => (
            hash_secret(s),
            "seeded from enrollment_secret in the config",
            None,
        ),
        (None, None) => {
            let s = new_secret(ENROLL_PREFIX)?;
            (hash_secret(&s), "generated on first start", Some(s))
        }
    };
    let seed = NewEnrollmentKey {
        key_hash: hash.clone(),
        note: note.to_owned(),
        expires_ms: None,
        max_uses: None,
    };
    if store.seed_enrollment_key(&seed, now)? {
        first.enrollment_secret = generated;
    } else if let Some(s) = &cfg.enrollment_secret
        && !store.enrollment_key_valid(&hash_secret(s), now)?
    {
        tracing::warn!(
            "enrollment_secret in the config is not a usable enrollment key (rotated or revoked); \
             it is ignored — the keys in the database decide"
        );
    }
    if store.list_tokens()?.is_empty() {
        let t = new_secret(PERSON_PREFIX)?;
        store.create_token(
            "system",
            "bootstrap-admin",
            Role::Admin,
            &hash_secret(&t),
            now_ms(),
        )?;
        store.append_audit(
            "system",
            "collector.bootstrap",
            "collector",
            serde_json::json!({"admin_token": "bootstrap-admin"}),
            now_ms(),
        )?;
        first.admin_token = Some(t);
    }
    Ok(first)
}

/// File (in the data directory) that receives the bootstrap admin token on first start.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File (in the data directory) that receives a new enrollment secret.
pub const ENROLL_SECRET_FILE: &str = "enroll.secret";

/// Writes a secret to `dir/name` with mode 0600 (temporary file, fsync, rename), so it
/// never reaches stdout or the journal. Returns the path.
pub fn write_secret(dir: &Path, name: &str, secret: &str) -> Result<std::path::PathBuf, AppError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let err = |source| AppError::SecretFile {
        path: path.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(secret.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(path)
}

/// Replaces every enrollment key with one new secret, at once (enrolled agents keep working;
/// hosts not yet enrolled need the new secret).
pub fn rotate_enrollment_secret(store: &dyn Store, actor: &str) -> Result<String, AppError> {
    let s = new_secret(ENROLL_PREFIX)?;
    let key = NewEnrollmentKey {
        key_hash: hash_secret(&s),
        note: "rotated with shadowai-collector rotate-enrollment-secret".to_owned(),
        expires_ms: None,
        max_uses: None,
    };
    store.create_enrollment_key(&format!("cli:{actor}"), &key, true, now_ms())?;
    Ok(s)
}

fn read_bundle_key(path: &Path) -> Result<shadowai_rules::keyset::KeySet, AppError> {
    shadowai_rules::keyset::KeySet::read(path).map_err(|e| AppError::BundleKey {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Loads the catalogue off the runtime; a failure is logged once and kept as the reason
/// policy routes give.
async fn load_catalogue(dir: &Path) -> Result<Arc<shadowai_rules::Catalogue>, String> {
    let d = dir.to_owned();
    let res = tokio::task::spawn_blocking(move || shadowai_rules::Catalogue::load_dir(&d))
        .await
        .map_err(|e| format!("loading task failed: {e}"))
        .and_then(|r| r.map_err(|e| e.to_string()));
    match res {
        Ok(c) => {
            tracing::info!(dir = %dir.display(), services = c.services.len(), "catalogue loaded");
            Ok(Arc::new(c))
        }
        Err(e) => {
            let reason = format!(
                "the collector's catalogue {} could not be loaded: {e}",
                dir.display()
            );
            tracing::error!(dir = %dir.display(), error = %e, "catalogue not loaded: proposals and bundle uploads will be refused");
            Err(reason)
        }
    }
}

/// A bound, bootstrapped collector, ready to serve.
pub struct Prepared {
    pub addr: SocketAddr,
    /// Seconds of canary silence that halt a rollout (0: never).
    rollout_halt_silent_secs: u64,
    pub first: FirstStart,
    /// Path of the server certificate (clients pin it), when serving TLS.
    pub cert: Option<std::path::PathBuf>,
    pub state: crate::server::SharedState,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Opens the store, bootstraps, loads or generates TLS material, binds the listener.
pub async fn prepare(cfg: Config) -> Result<Prepared, AppError> {
    cfg.validate("command line")?;
    // Opening may connect to PostgreSQL with a blocking client: not on a runtime thread.
    let store = {
        let c = cfg.clone();
        tokio::task::spawn_blocking(move || open_store(&c))
            .await
            .map_err(|e| ApiError::Internal {
                what: e.to_string(),
            })??
    };
    let first = {
        let s = store.clone();
        let c = cfg.clone();
        tokio::task::spawn_blocking(move || bootstrap(&*s, &c))
            .await
            .map_err(|e| ApiError::Internal {
                what: e.to_string(),
            })??
    };
    let (tls, cert) = if cfg.insecure_http {
        (None, None)
    } else {
        let (cert, key) = match (&cfg.tls.cert, &cfg.tls.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => crate::server::tls::ensure_self_signed(&cfg.data_dir, &cfg.tls.names)?,
        };
        (Some(crate::server::tls::acceptor(&cert, &key)?), Some(cert))
    };
    let bundle_key = cfg
        .bundle_public_key
        .as_deref()
        .map(read_bundle_key)
        .transpose()?;
    let catalogue = load_catalogue(&cfg.catalogue).await;
    let risk = catalogue
        .as_ref()
        .ok()
        .map(|c| Arc::new(crate::risk::RiskBook::new(c)));
    let sink: Option<Arc<dyn FindingSink>> = match crate::siem::start(&cfg.siem, risk.clone())? {
        Some(s) => Some(Arc::new(s)),
        None => None,
    };
    let metrics = Metrics::new();
    let scheme = if cfg.insecure_http { "http" } else { "https" };
    let ui_url = cfg
        .alerts
        .ui_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}/ui", cfg.listen));
    let alert_webhook = match &cfg.alerts.webhook {
        None => None,
        Some(w) => {
            let counters = crate::alerts::AlertCounters {
                sent: metrics.alerts_sent.clone(),
                send_failures: metrics.alert_send_failures.clone(),
                failed: metrics.alerts_failed.clone(),
                dropped: metrics.alerts_dropped.clone(),
            };
            Some(crate::alerts::AlertWebhook::start(
                w,
                ui_url.clone(),
                counters,
                store.clone(),
                cfg.alerts.outbox_cap,
            )?)
        }
    };
    // soc (issue 10): the audit chain head to the SIEM, an anchor outside the database.
    if let Some(sink) = &sink {
        tokio::spawn(crate::anchor::run(
            store.clone(),
            sink.clone(),
            crate::anchor::AnchorConfig {
                every: std::time::Duration::from_secs(cfg.alerts.audit_head_every_s),
                poll: std::time::Duration::from_millis(cfg.alerts.audit_head_poll_ms),
                collector: ui_url.clone(),
            },
            metrics.audit_heads_forwarded.clone(),
        ));
    }
    // The roll-up's background folder (issue 14), one per collector process.
    tokio::spawn(crate::rollup_folder::run(
        store.clone(),
        metrics.rollup_fold.clone(),
        crate::rollup_folder::FolderConfig::default(),
    ));
    // The SQLite log's checkpoints, off the writer (issue 14); returns at once on PostgreSQL.
    tokio::spawn(crate::wal_checkpointer::run(
        store.clone(),
        metrics.wal.clone(),
        crate::wal_checkpointer::CheckpointerConfig::default(),
    ));
    let state = Arc::new(AppState {
        store,
        metrics,
        limits: cfg.limits.clone(),
        limiter: RateLimiter::new(cfg.limits.rate_per_sec, cfg.limits.rate_burst),
        ip_limiter: RateLimiter::new(cfg.limits.ip_rate_per_sec, cfg.limits.ip_rate_burst),
        enroll_limiter: RateLimiter::new(
            cfg.limits.enroll_rate_per_sec,
            cfg.limits.enroll_rate_burst,
        ),
        host_limiter: RateLimiter::new(HOST_REISSUE_PER_SEC, HOST_REISSUE_BURST),
        group_warned: Default::default(),
        parse_permits: Arc::new(tokio::sync::Semaphore::new(cfg.limits.parse_concurrency)),
        read_permits: Arc::new(tokio::sync::Semaphore::new(cfg.limits.heavy_readers)),
        export_limiter: RateLimiter::new(
            cfg.limits.exports_per_min / 60.0,
            cfg.limits.exports_per_min.clamp(1.0, 10.0),
        ),
        bundle_key,
        sink,
        catalogue,
        alert_webhook,
        alert_policy: cfg.alerts.policy(),
        risk,
        overlay: crate::catalogue_overlay::OverlayCache::new(cfg.catalogue.clone()),
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| AppError::Listen {
        addr: cfg.listen,
        source,
    })?;
    Ok(Prepared {
        addr,
        rollout_halt_silent_secs: cfg.rollout_halt_silent_secs,
        first,
        cert,
        state,
        listener,
        tls,
    })
}

impl Prepared {
    /// The base URL clients use.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        // Always on: agents refusing a rollout's bundle halt it even when the silence
        // check is off (`rollout_halt_silent_secs = 0`).
        let guard = Some(tokio::spawn(crate::rollout_guard::run(
            self.state.store.clone(),
            std::time::Duration::from_secs(self.rollout_halt_silent_secs),
        )));
        let app = crate::server::router(self.state.clone());
        crate::server::conn::serve(self.listener, app, self.tls, self.state, shutdown).await;
        if let Some(g) = guard {
            g.abort();
        }
    }
}

/// Runs the server until SIGINT/SIGTERM. Prints the listening URL on stdout; first-start
/// secrets go to 0600 files in the data directory and only their paths are printed.
pub async fn run(cfg: Config) -> Result<(), AppError> {
    let data_dir = cfg.data_dir.clone();
    let p = prepare(cfg).await?;
    println!("shadowai-collector: listening on {}", p.url());
    if let Some(cert) = &p.cert {
        println!("shadowai-collector: TLS certificate: {}", cert.display());
    }
    if let Some(t) = &p.first.admin_token {
        let path = write_secret(&data_dir, ADMIN_TOKEN_FILE, t)?;
        println!(
            "shadowai-collector: bootstrap admin token written to {}",
            path.display()
        );
    }
    if let Some(s) = &p.first.enrollment_secret {
        let path = write_secret(&data_dir, ENROLL_SECRET_FILE, s)?;
        println!(
            "shadowai-collector: enrollment secret written to {}",
            path.display()
        );
    }
    tracing::info!(addr = %p.addr, tls = p.cert.is_some(), "collector listening");
    p.serve(shutdown_signal()).await;
    tracing::info!("collector stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
