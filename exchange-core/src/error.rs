//! Error types. Each area has its own small enum; `CoreError` gathers them for the services,
//! which map it to a deliberate, small set of gRPC codes in one place.

use crate::compat::Incompatibility;
use crate::ledger::LedgerError;
use crate::policy::Denial;
use crate::store::StoreError;

/// A request field that is missing or malformed. Displays as `field "x": what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field \"{field}\": {message}")]
pub struct ValidationError {
    /// The request field at fault, e.g. `region_code` or `department.parent_id`.
    pub field: String,
    /// What is wrong with it and, where possible, what would be right.
    pub message: String,
}

impl ValidationError {
    /// A validation error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a schema cannot be published.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    /// The document is not a usable JSON Schema for a dataset; each entry names a JSON pointer.
    #[error("invalid schema: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The schema is valid but breaks the dataset's compatibility mode.
    #[error("schema version {version} is incompatible ({mode}): {}", join(.problems))]
    Incompatible {
        /// The version number it would have had.
        version: u32,
        /// The dataset's compatibility mode.
        mode: String,
        /// Every rule it breaks.
        problems: Vec<Incompatibility>,
    },
}

fn join(problems: &[Incompatibility]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a principal may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The caller's certificate could not be turned into a principal.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed.
    #[error("{0}")]
    Denied(String),
}

/// Every error the core can return, for the services to map to status codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreError {
    /// Bad input: INVALID_ARGUMENT.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A schema that cannot be published: INVALID_ARGUMENT or FAILED_PRECONDITION.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// UNAUTHENTICATED or PERMISSION_DENIED.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A read refused on a node: PERMISSION_DENIED, or INVALID_ARGUMENT for a request that
    /// names no purpose or a field the dataset does not have.
    #[error(transparent)]
    Denied(#[from] Denial),
    /// The named thing does not exist: NOT_FOUND.
    #[error("{0}")]
    NotFound(String),
    /// The named thing exists already: ALREADY_EXISTS.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the current state forbids it (e.g. approving a revoked grant):
    /// FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The thing changed since the caller read it: ABORTED (read it again and retry).
    #[error("{0}")]
    Aborted(String),
    /// A position past the end, e.g. a Watch from a revision the registry never reached:
    /// OUT_OF_RANGE.
    #[error("{0}")]
    OutOfRange(String),
    /// The server cannot do it now (it is stopping, or the system has no randomness): UNAVAILABLE;
    /// try again later.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed: UNAVAILABLE; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit ledger could not be written: UNAVAILABLE; nothing that needed the event was
    /// served.
    #[error(transparent)]
    Audit(#[from] LedgerError),
}

impl CoreError {
    /// Shorthand for a not-found error.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }
}
