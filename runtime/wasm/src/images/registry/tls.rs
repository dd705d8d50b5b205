//! TLS for one registry endpoint: the node's CA bundle plus the endpoint's `ca_file`, an
//! optional client certificate, or (`insecure_skip_verify`) no verification at all.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use skiff_runtime_core::registries::Endpoint;

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node's trusted CAs, read once.
pub(crate) fn native_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the node's CA bundle");
        }
        let (_, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "unparsable certificates in the node's CA bundle");
        }
        roots
    })
}

fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse_pem_certs(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The certificates of a PEM document; at least one.
pub(crate) fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate".to_string());
    }
    Ok(certs)
}

/// The rustls client configuration for `endpoint`.
pub(super) fn client_config(endpoint: &Endpoint) -> Result<rustls::ClientConfig, String> {
    let tls = endpoint.config.tls.clone().unwrap_or_default();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = native_roots().clone();
        if let Some(ca) = &tls.ca_file {
            for cert in read_pem_certs(ca)? {
                roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_pem_certs(cert)?;
            let bytes =
                std::fs::read(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
            let key_der: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut bytes.as_slice())
                    .map_err(|e| format!("{}: {e}", key.display()))?
                    .ok_or_else(|| format!("{} holds no PEM private key", key.display()))?;
            builder.with_client_auth_cert(certs, key_der).map_err(|e| e.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    // ALPN is set by the connector (h2, http/1.1).
    Ok(config)
}

/// `insecure_skip_verify`: accepts any certificate (signatures are still checked so the
/// handshake is well-formed).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
