//! The server side of mutual TLS.
//!
//! The handshake asks every client for a certificate and checks that the client holds its private
//! key, but leaves the chain check to [`crate::auth::Authenticator`], which runs on every call.
//! That way a caller with no certificate, an expired one or one from another CA gets a gRPC
//! `UNAUTHENTICATED` status saying which, instead of a bare TLS alert that every gRPC client
//! reports as "transport error". No call is served before the chain check passes.

use std::io;
use std::path::Path;
use std::sync::Arc;

use futures_util::Stream;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring as provider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A TLS setup failure, naming the file or setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Where a server's (or a node's) TLS files are, as written in its TOML configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The exchange CA certificate (PEM): peer certificates must chain to it.
    pub ca: std::path::PathBuf,
    /// This server's certificate (PEM), with the DNS names or IPs clients dial (for a node: its
    /// `node` certificate, which it also presents to the registry).
    pub cert: std::path::PathBuf,
    /// This server's private key (PEM, mode 0600).
    pub key: std::path::PathBuf,
}

impl TlsConfig {
    /// Reads the three files.
    pub fn read(&self) -> Result<TlsFiles, TlsError> {
        TlsFiles::read(&self.ca, &self.cert, &self.key)
    }
}

/// The PEM material a server or client needs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The exchange CA certificate(s), PEM.
    pub ca_pem: String,
    /// This party's certificate chain, PEM.
    pub cert_pem: String,
    /// This party's private key, PEM.
    pub key_pem: String,
}

impl TlsFiles {
    /// Reads the three files, naming any that cannot be read.
    pub fn read(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| TlsError(format!("cannot read {}: {e}", p.display())));
        Ok(Self {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }
}

/// Parses PEM certificates, refusing input with none.
pub fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{what}: not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{what}: no certificate found in the PEM")));
    }
    Ok(certs)
}

/// The exchange CA as a root store.
pub fn root_store(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem, "CA certificate")? {
        roots.add(cert).map_err(|e| TlsError(format!("CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// The verifier that checks a client chain against the exchange CA (used per call, see module doc).
pub fn client_verifier(ca_pem: &str) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(root_store(ca_pem)?, Arc::new(provider::default_provider()))
        .build()
        .map_err(|e| TlsError(format!("CA certificate: {e}")))
}

/// Requests a client certificate and checks proof of key possession at the handshake; defers
/// the chain check to every call.
#[derive(Debug)]
struct DeferredChainCheck {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredChainCheck {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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

/// A rustls server configuration for gRPC (ALPN `h2`) with the deferred client check.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = parse_certs(&files.cert_pem, "server certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(files.key_pem.as_bytes()).map_err(|e| TlsError(format!("server key: {e}")))?;
    let verifier = Arc::new(DeferredChainCheck {
        inner: client_verifier(&files.ca_pem)?,
    });
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("server certificate and key do not match or are unusable: {e}")))?;
    // gRPC clients in other languages (grpcurl, grpc-go) insist on negotiating h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// How long a stopping server waits for open calls (a stream whose client stopped reading never
/// ends by itself) before it stops waiting and returns; the process then exits, closing them.
/// Every acknowledged write is already on disk, so that loses nothing. (A program that embeds a
/// server and goes on running keeps those connections until its runtime is dropped.)
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `serve` until it ends, or until [`SHUTDOWN_GRACE`] after `stopping` turns true, whichever
/// comes first; `closed` is the result when the grace runs out.
pub async fn serve_with_grace<T>(
    serve: impl std::future::Future<Output = T>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    closed: T,
) -> T {
    let grace_over = async move {
        if stopping.wait_for(|&s| s).await.is_err() {
            // The stop signal went away without stopping: only `serve` can end this.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        out = serve => out,
        () = grace_over => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "calls still open after the shutdown grace; no longer waiting for them");
            closed
        }
    }
}

/// Accepts TCP connections on `listener` and yields them once their TLS handshake completes.
/// Handshakes run concurrently and time out after ten seconds, so a slow or silent client cannot
/// hold up others; failed handshakes are logged and dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> {
    let acceptor = TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
