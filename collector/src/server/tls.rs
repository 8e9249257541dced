//! TLS: a configured certificate, or one the collector generates for itself on first start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path}: no certificate found")]
    NoCert { path: String },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("generating the self-signed certificate: {source}")]
    Generate { source: rcgen::Error },
    #[error("TLS configuration: {source}")]
    Config { source: rustls::Error },
}

/// Where the generated certificate lives.
pub fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let d = data_dir.join("tls");
    (d.join("cert.pem"), d.join("key.pem"))
}

fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Generates a self-signed certificate for `names` (plus localhost and loopback IPs) into
/// DATA/tls/ unless one is there already. Returns (cert, key) paths.
pub fn ensure_self_signed(
    data_dir: &Path,
    names: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = generated_paths(data_dir);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            sans.push(h.to_owned());
        }
    }
    sans.extend(names.iter().cloned());
    sans.dedup();
    let ck =
        rcgen::generate_simple_self_signed(sans).map_err(|source| TlsError::Generate { source })?;
    write_private(&key, ck.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_private(&cert, ck.cert.pem().as_bytes(), 0o644)?;
    Ok((cert, key))
}

/// A rustls acceptor (ring provider, TLS 1.2+, HTTP/1.1 ALPN).
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|source| TlsError::Read {
            path: cert.display().to_string(),
            source,
        })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: cert.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.display().to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Read {
        path: key.display().to_string(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config { source })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Config { source })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
