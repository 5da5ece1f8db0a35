//! TLS wherever a network is crossed: ARI over `https://` and `wss://`, and the simulated
//! Asterisk served over TLS for the tests. One stack, rustls on the `ring` provider, for every
//! connection; PostgreSQL gets rustls through sqlx (`sslmode`, `sslrootcert` in its URL).
//!
//! Trusted roots are the Mozilla set (`webpki-roots`) plus, for a private CA, the certificates
//! of the `tls_ca_file` setting. A `https://` URL never falls back to plain HTTP.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS_CA_FILE {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks).
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

/// The client side of every TLS connection to Asterisk: the Mozilla roots, plus `ca_file`'s
/// certificates when set.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let ca_error = |reason: String| TlsError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        for cert in read_certificates(path).map_err(ca_error)? {
            roots
                .add(cert)
                .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server configuration from PEM files (the simulated Asterisk's `--tls-cert`/`--tls-key`).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates(cert).map_err(|reason| TlsError::Certificate {
        path: cert.display().to_string(),
        reason,
    })?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok(Arc::new(config))
}

/// A TCP listener whose connections are TLS sessions, for `axum::serve`. A failed handshake
/// drops that connection only.
pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            };
            // Small websocket frames must not wait on Nagle and delayed ACKs.
            let _ = tcp.set_nodelay(true);
            // A peer that never completes its handshake must not hold up the next ones.
            let handshake = self.acceptor.accept(tcp);
            match tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let error = client_config(Some(&path)).expect_err("refused");
        let text = error.to_string();
        assert!(
            text.contains("TLS_CA_FILE") && text.contains("ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn the_default_roots_build_a_client() {
        assert!(client_config(None).is_ok());
    }
}
