//! Identity from the verified peer certificate, on every call (Architecture Invariant: no
//! identity from request fields).
//!
//! [`Authenticator`] is a tonic interceptor: it checks the client chain against the exchange CA,
//! reads the principal from the SAN URI, asks the server whether the department is a member, and
//! puts the [`Principal`] in the request's extensions for the handler. A refusal is
//! `UNAUTHENTICATED` (no, expired, foreign or malformed certificate) or `PERMISSION_DENIED`
//! (a well-formed identity of a department that is not a member).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use exchange_core::error::PolicyError;
use exchange_core::identity::Principal;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, Error as TlsError};
use rustls_pki_types::{CertificateDer, UnixTime};
use tonic::{Request, Status};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// Decides whether a principal's department is a member; servers supply it. A refusal is a
/// `PolicyError`; a failure to find out (storage) is reported as what it is.
pub type Membership = Arc<dyn Fn(&Principal) -> Result<(), exchange_core::CoreError> + Send + Sync>;

/// Verified chains are cached by end-entity certificate so that a busy connection pays for the
/// signature checks once, not per call. Bounded; cleared when full.
const CACHE_LIMIT: usize = 10_000;

#[derive(Clone)]
struct Verified {
    principal: Principal,
    not_before: i64,
    not_after: i64,
}

struct Inner {
    verifier: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
    membership: Membership,
    cache: RwLock<HashMap<Vec<u8>, Verified>>,
}

/// The per-call identity check; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

/// What the authenticator found: the principal and its certificate's expiry.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who is calling.
    pub principal: Principal,
    /// When the caller's certificate expires, Unix seconds.
    pub not_after: i64,
}

impl Authenticator {
    /// Checks chains against `ca_pem`, identities in `trust_domain`, members with `membership`.
    pub fn new(ca_pem: &str, trust_domain: &str, membership: Membership) -> Result<Self, crate::tls::TlsError> {
        Ok(Self {
            inner: Arc::new(Inner {
                verifier: crate::tls::client_verifier(ca_pem)?,
                trust_domain: trust_domain.to_string(),
                membership,
                cache: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// The trust domain identities must be in.
    pub fn trust_domain(&self) -> &str {
        &self.inner.trust_domain
    }

    /// Authenticates the peer certificate chain of a call.
    pub fn authenticate(&self, peer_certs: Option<&[CertificateDer<'static>]>) -> Result<Authenticated, Status> {
        let certs = match peer_certs {
            Some(certs) if !certs.is_empty() => certs,
            _ => {
                return Err(crate::status::to_status(PolicyError::Unauthenticated(
                    "no client certificate: the exchange serves mutual TLS only; present a certificate issued by the exchange CA"
                        .into(),
                )))
            }
        };
        let verified = self.verify_chain(certs).map_err(crate::status::to_status)?;
        if !verified.principal.role.is_exchange_wide() {
            (self.inner.membership)(&verified.principal).map_err(crate::status::to_status)?;
        }
        Ok(Authenticated {
            principal: verified.principal,
            not_after: verified.not_after,
        })
    }

    fn verify_chain(&self, certs: &[CertificateDer<'static>]) -> Result<Verified, PolicyError> {
        let end_entity = &certs[0];
        let now = exchange_core::now();
        {
            let cache = self.inner.cache.read().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.get(end_entity.as_ref()) {
                if hit.not_before <= now && now < hit.not_after {
                    return Ok(hit.clone());
                }
            }
        }
        self.inner
            .verifier
            .verify_client_cert(end_entity, &certs[1..], UnixTime::now())
            .map_err(|e| PolicyError::Unauthenticated(explain(e)))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|e| PolicyError::Unauthenticated(format!("client certificate cannot be parsed: {e}")))?;
        let uris = san_uris(&parsed);
        let principal = Principal::from_uris(uris.iter().map(String::as_str), &self.inner.trust_domain)?;
        let verified = Verified {
            principal,
            not_before: parsed.validity().not_before.timestamp(),
            not_after: parsed.validity().not_after.timestamp(),
        };
        let mut cache = self.inner.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(end_entity.as_ref().to_vec(), verified.clone());
        Ok(verified)
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let certs = request.peer_certs();
        let authenticated = self
            .authenticate(certs.as_deref().map(Vec::as_slice))
            .inspect_err(|status| {
                tracing::warn!(code = ?status.code(), reason = status.message(), "caller refused");
            })?;
        request.extensions_mut().insert(authenticated);
        Ok(request)
    }
}

/// The principal the interceptor put on a request. A handler reached without it is a wiring
/// bug, reported as UNAUTHENTICATED rather than served.
pub fn caller<T>(request: &Request<T>) -> Result<Authenticated, Status> {
    request.extensions().get::<Authenticated>().cloned().ok_or_else(|| {
        crate::status::to_status(PolicyError::Unauthenticated(
            "call reached a handler without an authenticated identity".into(),
        ))
    })
}

/// The SAN URIs of the first certificate of a PEM text.
fn pem_uris(cert_pem: &str) -> Option<Vec<String>> {
    let der = crate::tls::parse_certs(cert_pem, "certificate")
        .ok()?
        .into_iter()
        .next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(san_uris(&cert))
}

/// The trust domain of the spiffe:// identity in a PEM certificate, if it has one.
pub fn trust_domain_of(cert_pem: &str) -> Option<String> {
    pem_uris(cert_pem)?.iter().find_map(|uri| {
        let rest = uri.strip_prefix("spiffe://")?;
        Some(rest.split('/').next()?.to_string())
    })
}

/// The principal a PEM certificate names, if it names one (what a client presents).
pub fn principal_of(cert_pem: &str) -> Option<exchange_core::identity::Principal> {
    let trust_domain = trust_domain_of(cert_pem)?;
    let uris = pem_uris(cert_pem)?;
    exchange_core::identity::Principal::from_uris(uris.iter().map(String::as_str), &trust_domain).ok()
}

/// The URIs among a certificate's subject alternative names.
pub fn san_uris(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

fn explain(error: TlsError) -> String {
    match error {
        TlsError::InvalidCertificate(e) => match e {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "client certificate has expired; ask the data authority for a new one".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "client certificate is not valid yet (check the clocks)".to_string()
            }
            CertificateError::UnknownIssuer => "client certificate was not issued by this exchange's CA".to_string(),
            CertificateError::BadSignature => {
                "client certificate was not issued by this exchange's CA (its signature does not verify against it)"
                    .to_string()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "client certificate is not valid for client authentication (extended key usage clientAuth missing)"
                    .to_string()
            }
            other => format!("client certificate rejected: {other:?}"),
        },
        other => format!("client certificate rejected: {other}"),
    }
}
