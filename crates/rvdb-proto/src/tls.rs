//! Optional TLS (rustls, ring) for every rvdb listener and for calls between rvdb services.
//!
//! One certificate and key per process ([`ServerTls`], from PEM files) serve all of its listeners: gRPC (node,
//! manager, gateway API), the gateway's HTTP (MCP, REST, metrics) and the metrics listener of nodes and
//! managers. Outgoing calls to `https://` URLs verify the peer against the CA bundle given by
//! [`set_client_ca`] (for a private CA or self-signed certificates), or the system's roots when none is given;
//! `http://` URLs stay plain text, so TLS is switched on by the URLs a deployment uses.

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A process's TLS identity, read once from PEM files.
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    rustls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

impl ServerTls {
    /// Reads and checks the certificate chain and private key (PEM).
    pub fn from_pem(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<ServerTls, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad certificate PEM: {e}"))?;
        if certs.is_empty() {
            return Err("the certificate file holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("bad private key PEM: {e}"))?;
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| format!("certificate and key do not make a TLS identity: {e}"))?;
        // The HTTP listeners speak HTTP/1.1 (gRPC listeners get their own config from tonic, with h2).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls { cert_pem, key_pem, rustls: Arc::new(config) })
    }

    /// For tonic servers.
    pub fn tonic(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// For HTTP listeners (axum over tokio-rustls).
    pub fn rustls(&self) -> Arc<rustls::ServerConfig> {
        self.rustls.clone()
    }
}

static CLIENT_CA: OnceLock<Vec<u8>> = OnceLock::new();

/// Trust this CA bundle (PEM) when dialling `https://` rvdb services (once per process).
pub fn set_client_ca(pem: Vec<u8>) -> Result<(), String> {
    let n = CertificateDer::pem_slice_iter(&pem).filter(Result::is_ok).count();
    if n == 0 {
        return Err("the CA file holds no certificate".into());
    }
    let _ = CLIENT_CA.set(pem);
    Ok(())
}

/// The client TLS settings for an `https://` endpoint.
pub(crate) fn client_config() -> tonic::transport::ClientTlsConfig {
    let config = tonic::transport::ClientTlsConfig::new();
    match CLIENT_CA.get() {
        Some(pem) => config.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        None => config.with_native_roots(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let err = ServerTls::from_pem(b"not pem".to_vec(), b"not pem".to_vec()).unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        assert!(set_client_ca(b"nothing".to_vec()).is_err());
    }
}
