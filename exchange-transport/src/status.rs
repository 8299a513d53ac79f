//! The one mapping from core errors to gRPC statuses. The set of codes is small on purpose:
//! a caller can act on each.

use exchange_core::error::{PolicyError, SchemaError};
use exchange_core::CoreError;
use tonic::{Code, Status};

/// Maps a core error to the status a caller sees; the message is the error's own.
pub fn to_status(error: CoreError) -> Status {
    let code = match &error {
        CoreError::Invalid(_) => Code::InvalidArgument,
        CoreError::Schema(SchemaError::Invalid(_)) => Code::InvalidArgument,
        CoreError::Schema(SchemaError::Incompatible { .. }) => Code::FailedPrecondition,
        CoreError::Policy(PolicyError::Unauthenticated(_)) => Code::Unauthenticated,
        CoreError::Policy(PolicyError::Denied(_)) => Code::PermissionDenied,
        CoreError::NotFound(_) => Code::NotFound,
        CoreError::AlreadyExists(_) => Code::AlreadyExists,
        CoreError::FailedPrecondition(_) => Code::FailedPrecondition,
        CoreError::OutOfRange(_) => Code::OutOfRange,
        CoreError::Aborted(_) => Code::Aborted,
        CoreError::Store(_) => Code::Unavailable,
    };
    if code == Code::Unavailable {
        tracing::error!(%error, "storage failed");
    }
    Status::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exchange_core::ValidationError;

    #[test]
    fn codes_are_the_documented_ones() {
        let invalid = to_status(ValidationError::new("name", "must not be empty").into());
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(invalid.message(), "field \"name\": must not be empty");
        assert_eq!(to_status(CoreError::not_found("x")).code(), Code::NotFound);
        assert_eq!(
            to_status(PolicyError::Denied("no".into()).into()).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            to_status(PolicyError::Unauthenticated("no".into()).into()).code(),
            Code::Unauthenticated
        );
    }
}
