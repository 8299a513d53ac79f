//! The one mapping from core errors to gRPC statuses. The set of codes is small on purpose:
//! a caller can act on each.

use exchange_core::error::{PolicyError, SchemaError};
use exchange_core::policy::Denial;
use exchange_core::CoreError;
use tonic::{Code, Status};

/// Maps a core error (or any error that is one: a store, ledger, policy or validation error) to
/// the status a caller sees; the message is the error's own.
pub fn to_status(error: impl Into<CoreError>) -> Status {
    let error = error.into();
    let code = match &error {
        CoreError::Invalid(_) => Code::InvalidArgument,
        CoreError::Schema(SchemaError::Invalid(_)) => Code::InvalidArgument,
        CoreError::Schema(SchemaError::Incompatible { .. }) => Code::FailedPrecondition,
        CoreError::Policy(PolicyError::Unauthenticated(_)) => Code::Unauthenticated,
        CoreError::Policy(PolicyError::Denied(_)) => Code::PermissionDenied,
        CoreError::Denied(Denial::NoPurpose | Denial::UnknownField { .. }) => Code::InvalidArgument,
        CoreError::Denied(_) => Code::PermissionDenied,
        CoreError::NotFound(_) => Code::NotFound,
        CoreError::AlreadyExists(_) => Code::AlreadyExists,
        CoreError::FailedPrecondition(_) => Code::FailedPrecondition,
        CoreError::OutOfRange(_) => Code::OutOfRange,
        CoreError::Aborted(_) => Code::Aborted,
        CoreError::Unavailable(_) | CoreError::Store(_) | CoreError::Audit(_) => Code::Unavailable,
    };
    match &error {
        CoreError::Store(e) => tracing::error!(error = %e, "storage failed"),
        CoreError::Audit(e) => tracing::error!(error = %e, "audit ledger failed"),
        _ => {}
    }
    Status::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exchange_core::ValidationError;

    #[test]
    fn codes_are_the_documented_ones() {
        let invalid = to_status(ValidationError::new("name", "must not be empty"));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(invalid.message(), "field \"name\": must not be empty");
        assert_eq!(to_status(CoreError::not_found("x")).code(), Code::NotFound);
        assert_eq!(
            to_status(PolicyError::Denied("no".into())).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            to_status(PolicyError::Unauthenticated("no".into())).code(),
            Code::Unauthenticated
        );
        assert_eq!(to_status(Denial::NoPurpose).code(), Code::InvalidArgument);
        let denied = to_status(Denial::NotShared {
            dataset: "a.b/c".into(),
        });
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("never served"), "{}", denied.message());
        let audit = to_status(exchange_core::ledger::LedgerError::Broken {
            path: "/d/audit.ledger".into(),
            why: "disk full".into(),
        });
        assert_eq!(audit.code(), Code::Unavailable);
        assert!(
            audit
                .message()
                .starts_with("audit ledger /d/audit.ledger could not be written (disk full)"),
            "{}",
            audit.message()
        );
    }
}
