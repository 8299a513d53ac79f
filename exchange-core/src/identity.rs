//! Who is calling. A principal is a department plus a role, read only from the SAN URI of a
//! verified client certificate: `spiffe://<trust-domain>/dept/<department-id>/<role>`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::closed_set::closed_set;
use crate::department::check_department_id;
use crate::error::PolicyError;

closed_set! {
    /// What a principal is for; its name is the last segment of the certificate URI.
    pub enum Role ("role", "role") {
        /// The data authority's administrators: may do everything in the registry.
        Admin = "admin",
        /// Reads everything, changes nothing.
        Auditor = "auditor",
        /// A department's exchange node.
        Node = "node",
        /// A department's business system.
        System = "system",
    }
}

impl Role {
    /// Admins and auditors act for the data authority across the whole exchange, so their
    /// department need not be a registered member; nodes and systems act for their department.
    pub fn is_exchange_wide(self) -> bool {
        matches!(self, Role::Admin | Role::Auditor)
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The caller's department id, e.g. `js.gongan`.
    pub department: String,
    /// The caller's role.
    pub role: Role,
}

impl Principal {
    /// A principal for `department` acting as `role`.
    pub fn new(department: impl Into<String>, role: Role) -> Self {
        Self {
            department: department.into(),
            role,
        }
    }

    /// The certificate URI naming this principal in `trust_domain`.
    pub fn uri(&self, trust_domain: &str) -> String {
        format!("spiffe://{trust_domain}/dept/{}/{}", self.department, self.role)
    }
}

/// The identity in a registry's server certificate, which nodes and the CLI check: a
/// department's certificate that also names the registry's host cannot pose as the registry.
pub fn registry_uri(trust_domain: &str) -> String {
    format!("spiffe://{trust_domain}/registry")
}

impl Principal {
    /// Reads a principal from the certificate SAN URIs. Exactly one URI must name a principal in
    /// `trust_domain`; the message of a refusal says what was found instead.
    pub fn from_uris<'a>(
        uris: impl IntoIterator<Item = &'a str>,
        trust_domain: &str,
    ) -> Result<Principal, PolicyError> {
        let prefix = format!("spiffe://{trust_domain}/dept/");
        let mut seen = Vec::new();
        let mut found = None;
        for uri in uris {
            seen.push(uri.to_string());
            let Some(rest) = uri.strip_prefix(&prefix) else {
                continue;
            };
            let principal = parse_dept_role(rest)
                .map_err(|why| PolicyError::Unauthenticated(format!("certificate URI \"{uri}\": {why}")))?;
            if found.replace(principal).is_some() {
                return Err(PolicyError::Unauthenticated(
                    "certificate names more than one exchange identity".into(),
                ));
            }
        }
        found.ok_or_else(|| {
            PolicyError::Unauthenticated(if seen.is_empty() {
                format!(
                    "certificate has no SAN URI; expected spiffe://{trust_domain}/dept/<department>/<role>"
                )
            } else {
                format!(
                    "certificate URI {} is not in trust domain \"{trust_domain}\"; expected spiffe://{trust_domain}/dept/<department>/<role>",
                    seen.join(", ")
                )
            })
        })
    }
}

fn parse_dept_role(rest: &str) -> Result<Principal, String> {
    let mut parts = rest.split('/');
    let (Some(dept), Some(role), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected /dept/<department>/<role>".into());
    };
    check_department_id(dept).map_err(|e| e.message)?;
    Ok(Principal::new(dept, role.parse::<Role>().map_err(|e| e.message)?))
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.department, self.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uris: &[&str], expected: Result<(&str, Role), &str>) {
        let got = Principal::from_uris(uris.iter().copied(), "exchange.local");
        match (got, expected) {
            (Ok(p), Ok((dept, role))) => assert_eq!(p, Principal::new(dept, role)),
            (Err(e), Err(fragment)) => {
                assert!(e.to_string().contains(fragment), "{e} lacks {fragment}")
            }
            (got, expected) => panic!("{uris:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn reads_department_and_role_from_the_uri() {
        check(
            &["spiffe://exchange.local/dept/js.gongan/node"],
            Ok(("js.gongan", Role::Node)),
        );
        check(
            &["https://example.org", "spiffe://exchange.local/dept/js.dsj/admin"],
            Ok(("js.dsj", Role::Admin)),
        );
    }

    #[test]
    fn refuses_what_is_not_an_exchange_identity() {
        check(&[], Err("no SAN URI"));
        check(
            &["spiffe://other.domain/dept/js.gongan/node"],
            Err("not in trust domain"),
        );
        check(
            &["spiffe://exchange.local/dept/js.gongan/superuser"],
            Err("\"superuser\" is not a role; use one of admin, auditor, node, system"),
        );
        check(
            &["spiffe://exchange.local/dept/js.gongan/node/extra"],
            Err("expected /dept/"),
        );
        check(&["spiffe://exchange.local/dept/JS GA/node"], Err("lowercase segments"));
        check(
            &[
                "spiffe://exchange.local/dept/js.a/node",
                "spiffe://exchange.local/dept/js.b/node",
            ],
            Err("more than one"),
        );
    }

    #[test]
    fn uri_round_trips() {
        let p = Principal::new("js.nj.gongan", Role::System);
        check(&[&p.uri("exchange.local")], Ok(("js.nj.gongan", Role::System)));
    }
}
