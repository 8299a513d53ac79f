//! `exchange pki`: create an exchange CA and issue certificates.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Subcommand;
use exchange_core::identity::{Principal, Role};
use exchange_transport::pki::{Ca, CertSpec};

/// PKI commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a CA in DIR (ca.pem, ca-key.pem with mode 0600, trust-domain). Refuses to overwrite one.
    Init {
        /// Directory for the CA files.
        #[arg(long)]
        dir: PathBuf,
        /// Trust domain of the identities it will issue (the host part of the spiffe:// URI).
        #[arg(long, default_value = "exchange.local")]
        trust_domain: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Issue a certificate for a department and role: spiffe://<trust-domain>/dept/<dept>/<role>.
    Issue {
        /// The CA directory (from `pki init`).
        #[arg(long)]
        dir: PathBuf,
        /// Department id, e.g. js.gongan.
        #[arg(long)]
        dept: String,
        /// What the certificate is for.
        #[arg(long, value_parser = crate::output::one_of::<Role>())]
        role: Role,
        /// File name stem (default <dept>-<role>): writes <name>.pem and <name>-key.pem (0600).
        #[arg(long)]
        name: Option<String>,
        /// Where to write (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A DNS name the holder serves TLS on (nodes); repeat for more.
        #[arg(long)]
        dns: Vec<String>,
        /// An IP address the holder serves TLS on (nodes); repeat for more.
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Issue a registry's server certificate: its DNS names and IPs, and the identity
    /// spiffe://<trust-domain>/registry that nodes and the CLI check before trusting it.
    Server {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// File name stem: writes <name>.pem and <name>-key.pem (0600).
        #[arg(long, default_value = "registry")]
        name: String,
        /// Where to write (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A DNS name clients dial; repeat for more.
        #[arg(long, required_unless_present = "ip")]
        dns: Vec<String>,
        /// An IP address clients dial; repeat for more.
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

/// Runs a PKI command.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init {
            dir,
            trust_domain,
            days,
        } => {
            let ca = Ca::generate(&trust_domain, days)?;
            ca.save(&dir)?;
            println!("created CA for trust domain {trust_domain} in {}", dir.display());
            println!(
                "keep {} secret: whoever holds it can mint identities",
                dir.join("ca-key.pem").display()
            );
        }
        Command::Issue {
            dir,
            dept,
            role,
            name,
            out,
            dns,
            ip,
            days,
        } => {
            exchange_core::department::check_department_id(&dept)?;
            let ca = Ca::load(&dir)?;
            let principal = Principal::new(dept.clone(), role);
            let uri = principal.uri(&ca.trust_domain);
            let issued = ca.issue(&CertSpec::for_principal(principal, days).serving(dns, ip))?;
            let name = name.unwrap_or_else(|| format!("{dept}-{role}"));
            let (cert, key) = issued.save(out.as_ref().unwrap_or(&dir), &name)?;
            println!(
                "issued {uri}\n  certificate: {}\n  key:         {} (mode 0600)",
                cert.display(),
                key.display()
            );
        }
        Command::Server {
            dir,
            name,
            out,
            dns,
            ip,
            days,
        } => {
            let ca = Ca::load(&dir)?;
            let spec = CertSpec {
                common_name: name.clone(),
                ..CertSpec::for_registry(days)
            };
            // (The common name is only a label; the identity is the URI.)
            let issued = ca.issue(&spec.serving(dns, ip))?;
            let (cert, key) = issued.save(out.as_ref().unwrap_or(&dir), &name)?;
            println!(
                "issued registry certificate {}\n  certificate: {}\n  key:         {} (mode 0600)",
                exchange_core::identity::registry_uri(&ca.trust_domain),
                cert.display(),
                key.display()
            );
        }
    }
    Ok(())
}
