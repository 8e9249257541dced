//! One rustls client configuration (ring provider) for HTTPS and syslog over TLS.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::SiemError;
use crate::config::TlsConfig;

/// Builds the client config: the Mozilla roots when `public_roots`, plus every certificate of
/// `ca_file`. A config that would trust nothing is refused.
pub fn client_config(cfg: &TlsConfig, forwarder: &str) -> Result<rustls::ClientConfig, SiemError> {
    let mut roots = RootCertStore::empty();
    if cfg.public_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = &cfg.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| SiemError::CaFile {
                forwarder: forwarder.to_owned(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(SiemError::CaFile {
                forwarder: forwarder.to_owned(),
                path: path.clone(),
                reason: "no CERTIFICATE block in the file".to_owned(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| SiemError::CaFile {
                forwarder: forwarder.to_owned(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(SiemError::InvalidConfig {
            forwarder: forwarder.to_owned(),
            field: "tls",
            reason: "public_roots is off and no ca_file is given: nothing would be trusted"
                .to_owned(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SiemError::Tls {
            forwarder: forwarder.to_owned(),
            source: e,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
