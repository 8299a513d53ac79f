//! A tonic channel to a registry or node over mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use tonic::transport::{Channel, Endpoint};

use crate::tls::{parse_certs, root_store, TlsError, TlsFiles};

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://host:port`.
    pub endpoint: String,
    /// The exchange CA, and this client's certificate and key (PEM). The key may be empty for a
    /// client that presents no certificate (only useful to see the refusal).
    pub tls: TlsFiles,
    /// The identity URI the server's certificate must name besides the host, e.g. the
    /// registry's `spiffe://<trust-domain>/registry`; `None` checks the host name only.
    pub server_identity: Option<String>,
}

/// Connects, failing with a message naming the endpoint.
pub async fn connect(config: &ClientConfig) -> Result<Channel, TlsError> {
    let uri: tonic::transport::Uri = config
        .endpoint
        .parse()
        .map_err(|e| TlsError(format!("\"{}\" is not a URL: {e}", config.endpoint)))?;
    if uri.scheme_str() != Some("https") {
        return Err(TlsError(format!(
            "\"{}\" must start with https:// (the exchange speaks mutual TLS only)",
            config.endpoint
        )));
    }
    let host = uri.host().unwrap_or("localhost").to_string();
    // Our own rustls configuration rather than tonic's TLS settings, which cannot express the
    // identity check.
    let verifier = ServerVerifier::new(&config.tls.ca_pem, config.server_identity.clone())?;
    let refusal = verifier.refusal.clone();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut tls = if config.tls.cert_pem.is_empty() {
        builder.with_no_client_auth()
    } else {
        let certs = parse_certs(&config.tls.cert_pem, "the client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(config.tls.key_pem.as_bytes())
            .map_err(|e| TlsError(format!("the client key: {e}")))?;
        builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| TlsError(format!("the client certificate and key: {e}")))?
    };
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    // "[::1]" in a URL is the address ::1 to TLS.
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let name = ServerName::try_from(bare).map_err(|e| TlsError(format!("host {host}: {e}")))?;
    let address = format!("{host}:{}", uri.port_u16().unwrap_or(443));
    // The TLS is ours, so tonic must not add its own: it is given an http:// URI.
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| TlsError(format!("\"{}\": {e}", config.endpoint)))?
        .connect_timeout(Duration::from_secs(5));
    endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let (connector, name, address) = (connector.clone(), name.clone(), address.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(address).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| {
            // rustls reports our refusal in Debug form deep in the chain; say it plainly.
            let why = match refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(wrong) => wrong.to_string(),
                None => source_chain(&e),
            };
            TlsError(format!("cannot connect to {}: {why}", config.endpoint))
        })
}

/// The WebPKI check against the exchange CA (host name included), then, when one is expected:
/// does the certificate name that identity?
#[derive(Debug)]
struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: Option<String>,
    /// The last refusal, for the error message.
    refusal: Arc<std::sync::Mutex<Option<WrongIdentity>>>,
}

/// Why a server with a valid certificate was still refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the server's certificate names {found}, not {expected}: it is not the server this client must reach")]
struct WrongIdentity {
    found: String,
    expected: String,
}

impl ServerVerifier {
    fn new(ca_pem: &str, expected: Option<String>) -> Result<Self, TlsError> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(root_store(ca_pem)?, Arc::new(provider::default_provider()))
                .build()
                .map_err(|e| TlsError(format!("the CA certificate: {e}")))?;
        Ok(Self {
            inner,
            expected,
            refusal: Arc::default(),
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let Some(expected) = &self.expected else {
            return Ok(verified);
        };
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let uris = crate::auth::san_uris(&cert);
        if uris.contains(expected) {
            return Ok(verified);
        }
        let found = if uris.is_empty() {
            "no identity URI".to_string()
        } else {
            uris.join(", ")
        };
        let wrong = WrongIdentity {
            found,
            expected: expected.clone(),
        };
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(wrong.clone());
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
            Arc::new(wrong),
        ))))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        // Wrappers often repeat their source's text; say each thing once.
        let text = e.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    message
}
