//! The exchange PKI: one CA, and certificates whose SAN URI names a department and a role
//! (`spiffe://<trust-domain>/dept/<department>/<role>`). Servers also get DNS and IP SANs.
//!
//! Private keys are written with mode 0600. In production an existing CA can issue the same
//! certificates; see the README's PKI section for the profile they must follow.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use exchange_core::identity::Principal;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::{Duration, OffsetDateTime};

/// A PKI failure, with the file involved when there is one.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error("{0}")]
    Cert(String),
}

fn cert_err(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Cert(format!("{what}: {e}"))
}

/// File names inside a PKI directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key.
pub const CA_KEY: &str = "ca-key.pem";
/// The trust domain the CA was created for.
pub const TRUST_DOMAIN: &str = "trust-domain";

/// A CA able to issue certificates.
pub struct Ca {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    key: KeyPair,
    /// The trust domain of the identities it issues.
    pub trust_domain: String,
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Subject common name, for people reading the certificate.
    pub common_name: String,
    /// The principal it names, if it is a client identity.
    pub principal: Option<Principal>,
    /// DNS names it serves, if it is a server.
    pub dns_names: Vec<String>,
    /// IP addresses it serves, if it is a server.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether it is a registry's certificate, naming `spiffe://<trust-domain>/registry`.
    pub registry: bool,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
}

impl CertSpec {
    /// A certificate for `principal`, valid from now for `days` days. A node's certificate also
    /// serves TLS, so add its DNS names or IPs with [`CertSpec::serving`].
    pub fn for_principal(principal: Principal, days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: principal.to_string(),
            principal: Some(principal),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            registry: false,
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(days),
        }
    }

    /// A server certificate for a registry, valid from now for `days` days.
    pub fn for_server(common_name: &str, days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.to_string(),
            principal: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            registry: false,
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(days),
        }
    }

    /// A registry's server certificate (common name `registry`), naming the registry identity
    /// that nodes and the CLI check; add its DNS names or IPs with [`CertSpec::serving`].
    pub fn for_registry(days: i64) -> Self {
        Self {
            registry: true,
            ..Self::for_server("registry", days)
        }
    }

    /// Adds the DNS names and IP addresses the holder serves TLS on.
    pub fn serving(mut self, dns_names: Vec<String>, ip_addresses: Vec<IpAddr>) -> Self {
        self.dns_names = dns_names;
        self.ip_addresses = ip_addresses;
        self
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Ca {
    /// Creates a new CA for `trust_domain`, valid for `days` days.
    pub fn generate(trust_domain: &str, days: i64) -> Result<Ca, PkiError> {
        let key = KeyPair::generate().map_err(cert_err("generating the CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("CA parameters"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Exchange CA ({trust_domain})"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(days);
        let cert = params.self_signed(&key).map_err(cert_err("signing the CA"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
            trust_domain: trust_domain.to_string(),
        })
    }

    /// Loads a CA from a directory made by [`Ca::save`] (or holding an existing CA's `ca.pem`,
    /// `ca-key.pem` and `trust-domain`).
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let cert_pem = read(&dir.join(CA_CERT))?;
        let key_pem = read(&dir.join(CA_KEY))?;
        let trust_domain = read(&dir.join(TRUST_DOMAIN))?.trim().to_string();
        let key = KeyPair::from_pem(&key_pem).map_err(cert_err("reading the CA key"))?;
        Ok(Ca {
            cert_pem,
            key,
            trust_domain,
        })
    }

    /// Writes `ca.pem`, `ca-key.pem` (0600) and `trust-domain` into `dir`, refusing to overwrite
    /// an existing CA (that would orphan every certificate it issued).
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let key_path = dir.join(CA_KEY);
        if key_path.exists() {
            return Err(PkiError::Cert(format!(
                "{} already exists; refusing to replace an existing CA",
                key_path.display()
            )));
        }
        write_public(&dir.join(CA_CERT), &self.cert_pem)?;
        write_private(&key_path, &self.key.serialize_pem())?;
        write_public(&dir.join(TRUST_DOMAIN), &format!("{}\n", self.trust_domain))
    }

    /// Issues a certificate.
    pub fn issue(&self, spec: &CertSpec) -> Result<Issued, PkiError> {
        let key = KeyPair::generate().map_err(cert_err("generating a key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("parameters"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.clone());
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if let Some(principal) = &spec.principal {
            let uri = principal.uri(&self.trust_domain);
            params.subject_alt_names.push(SanType::URI(
                uri.clone().try_into().map_err(cert_err("the identity URI"))?,
            ));
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        if spec.registry {
            let uri = exchange_core::identity::registry_uri(&self.trust_domain);
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().map_err(cert_err("the registry URI"))?));
        }
        for dns in &spec.dns_names {
            params.subject_alt_names.push(SanType::DnsName(
                dns.clone().try_into().map_err(cert_err("a DNS name"))?,
            ));
        }
        for ip in &spec.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        if !spec.dns_names.is_empty() || !spec.ip_addresses.is_empty() {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(cert_err("reading the CA"))?;
        let cert = params.signed_by(&key, &issuer).map_err(cert_err("signing"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes `<name>.pem` and `<name>-key.pem` (0600) into `dir` and returns their paths.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        write_public(&cert, &self.cert_pem)?;
        write_private(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

/// Reads a whole file, naming it on failure.
pub fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    fs::write(path, contents).map_err(io(path))
}

/// Writes a private key readable by its owner only. The mode is set when the file is created,
/// so the key is never readable by others, not even briefly.
fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // An existing file keeps its old mode through open(); force it.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    file.write_all(contents.as_bytes()).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use exchange_core::identity::Role;

    #[test]
    fn issues_certificates_naming_the_principal_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("exchange.test", 30).unwrap();
        ca.save(dir.path()).unwrap();
        assert!(ca.save(dir.path()).is_err(), "must not overwrite a CA");
        let ca = Ca::load(dir.path()).unwrap();
        assert_eq!(ca.trust_domain, "exchange.test");
        let issued = ca
            .issue(&CertSpec::for_principal(Principal::new("js.gongan", Role::Node), 30))
            .unwrap();
        let (cert, key) = issued.save(dir.path(), "gongan-node").unwrap();
        let der = x509_parser::pem::parse_x509_pem(read(&cert).unwrap().as_bytes())
            .unwrap()
            .1;
        let parsed = der.parse_x509().unwrap();
        let uris = crate::auth::san_uris(&parsed);
        assert_eq!(uris, ["spiffe://exchange.test/dept/js.gongan/node"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for path in [key, dir.path().join(CA_KEY)] {
                let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
            }
        }
    }
}
