//! Who may do what, as plain functions of the verified principal: every permission the registry
//! and the nodes check, except reading records, which grants decide (`policy::authorize`).
//!
//! - `admin`: everything at the registry; reads no records.
//! - `auditor`: reads everything at the registry (and checks schemas), changes nothing; reads
//!   no records.
//! - a department's `node`: also announces where it serves.
//! - a department's `node` or `system`: registers and updates the datasets it owns, publishes
//!   their schema versions and records, requests grants for itself, decides grants on its own
//!   datasets, withdraws its own grants, appeals their rejection, and sees the grants it holds
//!   or gives.
//! - `admin` also reviews requests for the data authority and answers appeals.
//! - a node's status: its own department, an admin or an auditor.
//! - alerts: admins and auditors see them; admins acknowledge them.

use crate::error::PolicyError;
use crate::identity::{Principal, Role};

fn deny(message: String) -> Result<(), PolicyError> {
    Err(PolicyError::Denied(message))
}

fn acts_for(p: &Principal, department: &str) -> bool {
    matches!(p.role, Role::Node | Role::System) && p.department == department
}

/// Changing the member list is the data authority's job.
pub fn manage_departments(p: &Principal) -> Result<(), PolicyError> {
    match p.role {
        Role::Admin => Ok(()),
        _ => deny(format!("{p} may not register or change departments; only an admin may")),
    }
}

/// Announcing where a department's node serves: that node itself (admins use an update).
pub fn announce_node(p: &Principal) -> Result<(), PolicyError> {
    match p.role {
        Role::Node => Ok(()),
        _ => deny(format!(
            "{p} may not announce a node endpoint; only a department's node announces its own (an admin sets it with a department update)"
        )),
    }
}

/// Shipping a department's audit ledger to the registry: that department's node only.
pub fn ship_ledger(p: &Principal) -> Result<(), PolicyError> {
    match p.role {
        Role::Node => Ok(()),
        _ => deny(format!(
            "{p} may not ship an audit ledger; only a department's node ships its own"
        )),
    }
}

/// Reading the audit events shipped to the registry: admins and auditors.
pub fn read_shipped_events(p: &Principal) -> Result<(), PolicyError> {
    match p.role.is_exchange_wide() {
        true => Ok(()),
        false => deny(format!(
            "{p} may not read shipped audit events; only admins and auditors may"
        )),
    }
}

/// Seeing the sharing scoreboard: everyone in the exchange (how departments serve one another
/// is no secret among them).
pub fn see_scoreboard(_p: &Principal) -> Result<(), PolicyError> {
    Ok(())
}

/// Seeing the early warning's alerts: admins and auditors.
pub fn see_alerts(p: &Principal) -> Result<(), PolicyError> {
    match p.role.is_exchange_wide() {
        true => Ok(()),
        false => deny(format!("{p} may not see alerts; only admins and auditors may")),
    }
}

/// Acknowledging an alert: the data authority's admins.
pub fn acknowledge_alert(p: &Principal) -> Result<(), PolicyError> {
    match p.role {
        Role::Admin => Ok(()),
        _ => deny(format!("{p} may not acknowledge alerts; only an admin may")),
    }
}

/// The access report of a record of a dataset `owner` owns: its owner's node or system, an
/// admin or an auditor.
pub fn access_report(p: &Principal, owner: &str) -> Result<(), PolicyError> {
    if acts_for(p, owner) || p.role.is_exchange_wide() {
        return Ok(());
    }
    deny(format!(
        "{p} may not see who read {owner}'s records; only {owner} itself, an admin or an auditor may"
    ))
}

/// Registering or changing a dataset, or publishing its schema: its owner or an admin.
pub fn manage_dataset(p: &Principal, owner: &str) -> Result<(), PolicyError> {
    if p.role == Role::Admin || acts_for(p, owner) {
        return Ok(());
    }
    deny(match p.role {
        Role::Auditor => format!("{p} is an auditor: auditors read everything and change nothing"),
        _ => format!("{p} may not change datasets owned by {owner}; only {owner}'s node or system, or an admin, may"),
    })
}

/// Checking whether a schema would be accepted, without publishing it: whoever may publish it,
/// and auditors (who review changes and change nothing).
pub fn check_schema(p: &Principal, owner: &str) -> Result<(), PolicyError> {
    if p.role == Role::Auditor {
        return Ok(());
    }
    manage_dataset(p, owner)
}

/// Publishing records to a dataset (on its owner's node): the owner's node or system. Admins
/// and auditors never write a department's data.
pub fn publish_records(p: &Principal, dataset_id: &str) -> Result<(), PolicyError> {
    let owner = crate::catalog::owner_of(dataset_id);
    if acts_for(p, owner) {
        return Ok(());
    }
    deny(format!(
        "{p} may not publish to {dataset_id}; only {owner}'s system or node may"
    ))
}

/// Seeing the status of `node_department`'s node (how much it holds and how busy it is): that
/// department, an admin or an auditor.
pub fn see_node_status(p: &Principal, node_department: &str) -> Result<(), PolicyError> {
    if p.department == node_department || p.role.is_exchange_wide() {
        return Ok(());
    }
    deny(format!(
        "{p} may not see the status of {node_department}'s node; only {node_department} itself, an admin or an auditor may"
    ))
}

/// Reading the whole of `department`'s audit ledger (an export, what the registry holds of it):
/// that department, an admin or an auditor.
pub fn see_node_ledger(p: &Principal, department: &str) -> Result<(), PolicyError> {
    if p.department == department || p.role.is_exchange_wide() {
        return Ok(());
    }
    deny(format!(
        "{p} may not read {department}'s audit ledger; only {department} itself, an admin or an auditor may"
    ))
}

/// Seeing an audit event of `node_department`'s ledger (with its proof): the department whose
/// read it records (`reader`), the node's own department, an admin or an auditor. Others learn
/// nothing of it, not even whether it exists.
pub fn see_audit_event(p: &Principal, node_department: &str, reader: &str) -> Result<(), PolicyError> {
    if p.department == reader || p.department == node_department || p.role.is_exchange_wide() {
        return Ok(());
    }
    deny(format!(
        "{p} may not see this audit event of {node_department}'s ledger; only the department that read, \
         {node_department} itself, an admin or an auditor may"
    ))
}

/// Requesting a grant for `consumer`: that department's node or system, or an admin.
pub fn request_grant(p: &Principal, consumer: &str) -> Result<(), PolicyError> {
    if p.role == Role::Admin || acts_for(p, consumer) {
        return Ok(());
    }
    deny(match p.role {
        Role::Auditor => format!("{p} is an auditor: auditors read everything and change nothing"),
        _ => format!("{p} may request grants only for its own department, not for {consumer}"),
    })
}

/// Approving or rejecting a grant on a dataset `owner` owns: the owner or an admin.
pub fn decide_grant(p: &Principal, owner: &str) -> Result<(), PolicyError> {
    if p.role == Role::Admin || acts_for(p, owner) {
        return Ok(());
    }
    deny(format!(
        "{p} may not decide grants on {owner}'s datasets; only {owner}'s node or system, or an admin, may"
    ))
}

/// Reviewing a request for the data authority, and answering appeals: admins.
pub fn review_grant(p: &Principal) -> Result<(), PolicyError> {
    match p.role {
        Role::Admin => Ok(()),
        _ => deny(format!(
            "{p} may not review requests or answer appeals; only the data authority's admins may"
        )),
    }
}

/// Appealing a rejection: the consumer's node or system.
pub fn appeal_grant(p: &Principal, consumer: &str) -> Result<(), PolicyError> {
    if acts_for(p, consumer) {
        return Ok(());
    }
    deny(format!(
        "{p} may not appeal this rejection; only {consumer} (the consumer), through its node or system, may"
    ))
}

/// Raising a request of `consumer`'s (a data demand, a correction request): its node or
/// system. `what` says what it would do, as in "ask for data".
pub fn raise_request(p: &Principal, consumer: &str, what: &str) -> Result<(), PolicyError> {
    if acts_for(p, consumer) {
        return Ok(());
    }
    deny(format!(
        "{p} may not {what} for {consumer}; only {consumer}'s node or system may"
    ))
}

/// Answering a request addressed to `provider` (a data demand, a correction request): its node
/// or system, or an admin (in its place). `what` names the requests, as in "demands".
pub fn answer_request(p: &Principal, provider: &str, what: &str) -> Result<(), PolicyError> {
    if p.role == Role::Admin || acts_for(p, provider) {
        return Ok(());
    }
    deny(format!(
        "{p} may not answer {what} addressed to {provider}; only {provider}'s node or system, or an admin, may"
    ))
}

/// Revoking a grant: the dataset owner, the consumer (withdrawing its own grant) or an admin.
pub fn revoke_grant(p: &Principal, owner: &str, consumer: &str) -> Result<(), PolicyError> {
    if p.role == Role::Admin || acts_for(p, owner) || acts_for(p, consumer) {
        return Ok(());
    }
    deny(format!(
        "{p} may not revoke this grant; only {owner} (the owner), {consumer} (the consumer) or an admin may"
    ))
}

/// Seeing a grant (or a data demand) between a provider and a consumer: either of them, an
/// admin or an auditor.
pub fn see_grant(p: &Principal, owner: &str, consumer: &str) -> bool {
    p.role.is_exchange_wide() || p.department == owner || p.department == consumer
}

/// Watching a department's datasets and grants: that department, an admin or an auditor.
pub fn watch(p: &Principal, department: Option<&str>) -> Result<(), PolicyError> {
    match department {
        _ if p.role.is_exchange_wide() => Ok(()),
        Some(d) if acts_for(p, d) => Ok(()),
        Some(d) => deny(format!("{p} may watch only its own department, not {d}")),
        None => deny(format!(
            "{p} may not watch every department; only an admin or auditor may"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(dept: &str, role: Role) -> Principal {
        Principal::new(dept, role)
    }

    #[test]
    fn who_may_manage_a_dataset() {
        let owner = "js.gongan";
        assert!(manage_dataset(&p("js.dsj", Role::Admin), owner).is_ok());
        assert!(manage_dataset(&p(owner, Role::Node), owner).is_ok());
        assert!(manage_dataset(&p(owner, Role::System), owner).is_ok());
        let err = manage_dataset(&p(owner, Role::Auditor), owner).unwrap_err();
        assert!(err.to_string().contains("change nothing"), "{err}");
        let err = manage_dataset(&p("js.scjg", Role::Node), owner).unwrap_err();
        assert!(err.to_string().contains("only js.gongan"), "{err}");
    }

    #[test]
    fn who_may_check_schemas_publish_records_and_see_a_node() {
        let owner = "js.gongan";
        assert!(check_schema(&p("js.dsj", Role::Auditor), owner).is_ok());
        assert!(check_schema(&p(owner, Role::System), owner).is_ok());
        assert!(check_schema(&p("js.scjg", Role::System), owner).is_err());
        let dataset = "js.gongan/population";
        assert!(publish_records(&p(owner, Role::Node), dataset).is_ok());
        assert!(publish_records(&p(owner, Role::System), dataset).is_ok());
        for other in [
            p("js.dsj", Role::Admin),
            p(owner, Role::Auditor),
            p("js.scjg", Role::System),
        ] {
            let err = publish_records(&other, dataset).unwrap_err();
            assert!(err.to_string().contains("only js.gongan's system or node may"), "{err}");
        }
        assert!(see_node_status(&p(owner, Role::System), owner).is_ok());
        assert!(see_node_status(&p("js.dsj", Role::Auditor), owner).is_ok());
        assert!(see_node_status(&p("js.scjg", Role::Node), owner).is_err());
    }

    #[test]
    fn who_may_decide_and_revoke() {
        let (owner, consumer) = ("js.gongan", "js.scjg");
        assert!(decide_grant(&p(owner, Role::System), owner).is_ok());
        assert!(decide_grant(&p(consumer, Role::System), owner).is_err());
        assert!(decide_grant(&p("js.dsj", Role::Auditor), owner).is_err());
        assert!(revoke_grant(&p(consumer, Role::Node), owner, consumer).is_ok());
        assert!(revoke_grant(&p("js.rsj", Role::Node), owner, consumer).is_err());
        assert!(request_grant(&p(consumer, Role::Node), consumer).is_ok());
        assert!(request_grant(&p(consumer, Role::Node), "js.rsj").is_err());
    }

    #[test]
    fn only_admins_manage_departments_and_only_the_exchange_wide_watch_everything() {
        assert!(manage_departments(&p("js.dsj", Role::Admin)).is_ok());
        assert!(manage_departments(&p("js.dsj", Role::Auditor)).is_err());
        assert!(manage_departments(&p("js.gongan", Role::Node)).is_err());
        assert!(announce_node(&p("js.gongan", Role::Node)).is_ok());
        assert!(announce_node(&p("js.gongan", Role::System)).is_err());
        assert!(announce_node(&p("js.dsj", Role::Admin)).is_err());
        assert!(watch(&p("js.dsj", Role::Auditor), None).is_ok());
        assert!(watch(&p("js.gongan", Role::Node), Some("js.gongan")).is_ok());
        assert!(watch(&p("js.gongan", Role::Node), Some("js.scjg")).is_err());
        assert!(watch(&p("js.gongan", Role::Node), None).is_err());
        assert!(see_grant(&p("js.dsj", Role::Auditor), "a.b", "c.d"));
        assert!(!see_grant(&p("js.rsj", Role::Node), "a.b", "c.d"));
    }
}
