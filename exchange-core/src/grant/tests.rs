use serde_json::json;

use super::*;
use crate::schema::check_dataset_schema;

const DAY: i64 = 86_400;
const NOW: i64 = 1_800_000_000;

fn dataset(classification: Classification) -> Dataset {
    crate::testing::population(classification)
}

fn schema() -> DatasetSchema {
    check_dataset_schema(
        json!({
            "type": "object",
            "required": ["id_number"],
            "properties": {
                "id_number": {"type": "string"},
                "name": {"type": "string", "x-sensitivity": "name"},
                "region_code": {"type": "string"},
                "age": {"type": "integer"}
            }
        }),
        "id_number",
    )
    .unwrap()
}

fn request() -> GrantRequest {
    GrantRequest {
        consumer_id: "js.scjg".into(),
        dataset_id: "js.gongan/population".into(),
        fields: vec!["name".into()],
        clear_fields: vec![],
        row_filter: String::new(),
        purposes: vec!["business-licensing".into()],
        investigative_purposes: vec![],
        legal_basis: "《优化营商环境条例》第三十七条".into(),
        expires_at: NOW + 30 * DAY,
    }
}

const LIMITS: GrantLimits = GrantLimits {
    max_duration_secs: 365 * DAY,
};

fn grant(classification: Classification, request: GrantRequest) -> Result<Grant, CoreError> {
    new_grant(
        request,
        &dataset(classification),
        &schema(),
        LIMITS,
        "spiffe://t/dept/js.scjg/node",
        NOW,
    )
}

#[test]
fn classification_decides_the_first_state() {
    assert_eq!(
        grant(Classification::Unconditional, request()).unwrap().state,
        GrantState::Approved
    );
    assert_eq!(
        grant(Classification::Open, request()).unwrap().state,
        GrantState::Approved
    );
    assert_eq!(
        grant(Classification::Conditional, request()).unwrap().state,
        GrantState::Requested
    );
    let err = grant(Classification::NotShared, request()).unwrap_err();
    assert!(matches!(err, CoreError::FailedPrecondition(_)), "{err}");
    assert!(err.to_string().contains("not_shared"));
}

#[test]
fn sensitive_fields_in_clear_wait_for_the_owner_whatever_the_class() {
    let mut in_clear = request();
    in_clear.clear_fields = vec!["name".into()];
    for class in [Classification::Unconditional, Classification::Open] {
        let g = grant(class, in_clear.clone()).unwrap();
        assert_eq!(g.state, GrantState::Requested, "{class}");
        assert!(g.reason.contains("name asked in clear"), "{}", g.reason);
    }
    // A field without x-sensitivity is never masked: asking for it in clear is refused, so no
    // approval covers a field that becomes sensitive later.
    let mut plain = request();
    plain.fields = vec!["name".into(), "region_code".into()];
    plain.clear_fields = vec!["region_code".into()];
    let err = grant(Classification::Unconditional, plain).unwrap_err();
    assert!(
        err.to_string().contains("\"region_code\" has no x-sensitivity"),
        "{err}"
    );
}

#[test]
fn the_key_is_always_granted_and_fields_must_exist() {
    let g = grant(Classification::Conditional, request()).unwrap();
    assert_eq!(g.fields, ["id_number", "name"]);
    let mut r = request();
    r.fields = vec!["passport".into()];
    let err = grant(Classification::Conditional, r).unwrap_err();
    assert!(err.to_string().contains("\"passport\" is not a property"), "{err}");
}

/// Asserts a request changed by `change` is refused naming `field`.
fn check_refused(change: impl FnOnce(&mut GrantRequest), field: &str) {
    let mut r = request();
    change(&mut r);
    match grant(Classification::Conditional, r) {
        Err(CoreError::Invalid(e)) => assert_eq!(e.field, field, "{e}"),
        other => panic!("expected refusal of {field}, got {other:?}"),
    }
}

#[test]
fn bad_requests_name_the_field() {
    check_refused(|r| r.purposes.clear(), "purposes");
    check_refused(|r| r.purposes = vec!["Business Licensing".into()], "purposes");
    check_refused(|r| r.legal_basis = " ".into(), "legal_basis");
    check_refused(|r| r.expires_at = NOW - 1, "expires_at");
    check_refused(|r| r.expires_at = NOW + 400 * DAY, "expires_at");
    check_refused(|r| r.row_filter = "region_code = ".into(), "row_filter");
    check_refused(|r| r.row_filter = "age = \"3\"".into(), "row_filter");
    check_refused(|r| r.clear_fields = vec!["region_code".into()], "clear_fields");
    check_refused(|r| r.consumer_id = "js.gongan".into(), "consumer_id");
}

#[test]
fn row_filters_are_stored_canonically() {
    let mut r = request();
    r.row_filter = "region_code starts with '3201'".into();
    let g = grant(Classification::Conditional, r).unwrap();
    let reparsed: Filter = g.row_filter.parse().unwrap();
    assert_eq!(reparsed.to_string(), g.row_filter);
}

#[test]
fn expiry_is_read_not_stored() {
    let g = grant(Classification::Unconditional, request()).unwrap();
    assert_eq!(g.state_at(NOW + 30 * DAY - 1), GrantState::Approved);
    assert_eq!(g.state_at(NOW + 30 * DAY), GrantState::Expired);
    assert!(!g.is_in_force(NOW + 31 * DAY));
}

#[test]
fn the_state_machine() {
    let mut g = grant(Classification::Conditional, request()).unwrap();
    let err = g.decide(GrantState::Revoked, "admin", "", NOW).unwrap_err();
    assert!(
        matches!(err, CoreError::Invalid(_)),
        "a revocation needs a reason: {err}"
    );
    g.decide(GrantState::Approved, "owner", "ok", NOW).unwrap();
    assert!(g.is_in_force(NOW));
    let err = g
        .decide(GrantState::Rejected, "owner", "changed mind", NOW)
        .unwrap_err();
    assert!(err.to_string().contains("cannot reject grant"), "{err}");
    g.decide(GrantState::Revoked, "owner", "case closed", NOW).unwrap();
    assert_eq!(g.state_at(NOW), GrantState::Revoked);
    let err = g.decide(GrantState::Approved, "owner", "", NOW).unwrap_err();
    assert!(err.to_string().contains("because it is revoked"), "{err}");

    let mut expired = grant(Classification::Conditional, request()).unwrap();
    let err = expired
        .decide(GrantState::Approved, "owner", "", NOW + 31 * DAY)
        .unwrap_err();
    assert!(err.to_string().contains("because it is expired"), "{err}");
}

#[test]
fn broken_grants_name_vanished_and_retyped_fields() {
    let mut r = request();
    r.fields = vec!["name".into(), "age".into(), "region_code".into()];
    let g = grant(Classification::Conditional, r).unwrap();
    let new = check_dataset_schema(
        json!({
            "type": "object",
            "required": ["id_number"],
            "properties": {
                "id_number": {"type": "string"},
                "region_code": {"type": "string"},
                "age": {"type": "string"}
            }
        }),
        "id_number",
    )
    .unwrap();
    let broken = g.broken_by(&schema(), &new);
    let reasons: Vec<&str> = broken.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "field \"name\" would be removed",
            "field \"age\" changes type from integer to string"
        ]
    );
}

#[test]
fn investigative_purposes_are_among_the_grants_purposes() {
    let mut r = request();
    r.purposes = vec!["business-licensing".into(), "fraud-investigation".into()];
    r.investigative_purposes = vec!["fraud-investigation".into()];
    let g = grant(Classification::Conditional, r.clone()).unwrap();
    assert_eq!(g.investigative_purposes, ["fraud-investigation"]);
    r.investigative_purposes = vec!["tax-audit".into()];
    let err = grant(Classification::Conditional, r).unwrap_err().to_string();
    assert!(
        err.contains("investigative_purposes") && err.contains("not one of the grant's purposes"),
        "{err}"
    );
}
