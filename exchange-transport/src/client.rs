//! A tonic channel to a registry or node over mutual TLS.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::tls::{TlsError, TlsFiles};

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://host:port`.
    pub endpoint: String,
    /// The exchange CA, and this client's certificate and key (PEM). The key may be empty for a
    /// client that presents no certificate (only useful to see the refusal).
    pub tls: TlsFiles,
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
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&config.tls.ca_pem))
        .domain_name(host);
    if !config.tls.cert_pem.is_empty() {
        tls = tls.identity(Identity::from_pem(&config.tls.cert_pem, &config.tls.key_pem));
    }
    let endpoint = Endpoint::from(uri)
        .tls_config(tls)
        .map_err(|e| TlsError(format!("TLS settings for {}: {e}", config.endpoint)))?
        .connect_timeout(Duration::from_secs(5));
    endpoint
        .connect()
        .await
        .map_err(|e| TlsError(format!("cannot connect to {}: {}", config.endpoint, source_chain(&e))))
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    message
}
