//! The exchange's pure logic: what a department, dataset, schema version and grant are, the rules
//! they obey, who may do what, and the storage they live in. Nothing here knows gRPC, prost or
//! sockets (Architecture Invariant: core logic knows no transport); the services in `registry`
//! and `exchange-node` are thin skins over it.
//!
//! # Layout
//! - `clock`: the time, given to whatever decides by it (a manual clock in tests).
//! - `closed_set`: the `closed_set!` macro every named enum is declared with (one name per value
//!   for serde, `Display`, `FromStr` and the list of values).
//! - `identity`: principals (department + role) and the SPIFFE-style certificate URI they come from.
//! - `alert`: early warning: the rules over shipped reads and the registry's state, and alerts.
//! - `audit_index`: the registry's store of shipped audit events and its indexes, for auditors.
//! - `authz`: who may do what, as plain functions over a principal.
//! - `department`: members of the exchange, their levels and region codes.
//! - `catalog`: datasets, classifications, compatibility modes.
//! - `schema`: compiling JSON Schemas with the domain formats enforced; key and sensitivity rules.
//! - `compat`: whether a new schema version is compatible with earlier ones.
//! - `formats`: the domain string formats (`id-number-cn`, `uscc`, `region-code`).
//! - `filter`: the row-filter predicate language of grants and queries.
//! - `grant`: grant requests, the state machine and expiry; `grant::clock`, who acts next and by
//!   when, and appeals.
//! - `demand`: data demands, a consumer asking for data no dataset offers yet.
//! - `correction`: correction requests, a consumer questioning a record it was served.
//! - `calendar`: working days (weekends, public holidays, make-up working days) and due dates.
//! - `scoreboard`: the sharing scoreboard: each department's figures over a period, and the
//!   ranking.
//! - `policy`: read authorization on a node: grant, purpose, fields, masking, row filter.
//! - `mask`: masking of sensitive values.
//! - `ledger`: the hash-chained audit ledger and its verification.
//! - `tlog`: transparency-log formats: RFC 6962 Merkle proofs, C2SP checkpoints, keys, proof files.
//! - `datadir`: data directories private to the server's user (umask, modes).
//! - `store`: the `Store` trait, its sled and in-memory engines, and their conformance suite.
//! - `error`: the error types, one enum per area.

pub mod alert;
pub mod audit_index;
pub mod authz;
pub mod calendar;
pub mod catalog;
pub mod clock;
mod closed_set;
pub mod compat;
pub mod correction;
pub mod datadir;
pub mod demand;
pub mod department;
pub mod error;
pub mod filter;
pub mod formats;
pub mod grant;
pub mod identity;
pub mod ledger;
pub mod mask;
pub mod policy;
pub mod schema;
pub mod scoreboard;
pub mod store;
#[cfg(test)]
mod stored_fixtures;
#[cfg(test)]
mod testing;
pub mod tlog;

pub use closed_set::ClosedSet;
pub use error::{CoreError, ValidationError};

/// Seconds since the Unix epoch, the one time unit stored and sent.
pub type UnixSeconds = i64;

/// The system's time in Unix seconds, for code that decides nothing by it (the command line
/// turning `90d` into a date). Servers read a [`clock::Clock`] they are given.
pub fn now() -> UnixSeconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
