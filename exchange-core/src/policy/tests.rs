use serde_json::json;

use super::*;
use crate::schema::check_dataset_schema;

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
                "id_number": {"type": "string", "x-sensitivity": "id_number"},
                "name": {"type": "string", "x-sensitivity": "name"},
                "phone": {"type": "string", "x-sensitivity": "phone"},
                "region_code": {"type": "string"}
            }
        }),
        "id_number",
    )
    .unwrap()
}

fn grant(id: &str, state: GrantState) -> Grant {
    Grant {
        id: id.into(),
        consumer_id: "js.scjg".into(),
        dataset_id: "js.gongan/population".into(),
        fields: vec!["id_number".into(), "name".into(), "region_code".into()],
        clear_fields: vec![],
        row_filter: "region_code STARTS WITH \"3201\"".into(),
        purposes: vec!["business-licensing".into()],
        investigative_purposes: vec![],
        legal_basis: "law".into(),
        expires_at: NOW + 1000,
        state,
        reason: "case closed".into(),
        requested_by: String::new(),
        decided_by: String::new(),
        created_at: NOW - 10,
        updated_at: NOW - 5,
        revision: 1,
        steps: Default::default(),
    }
}

fn consumer() -> Principal {
    Principal::new("js.scjg", Role::System)
}

fn read(principal: &Principal, grants: &[Grant], fields: &[&str], purpose: &str) -> Result<ReadPlan, Denial> {
    let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    let filter = Filter::default();
    let refs: Vec<&Grant> = grants.iter().collect();
    authorize(
        principal,
        &dataset(Classification::Conditional),
        &schema(),
        &refs,
        &ReadRequest {
            fields: &fields,
            purpose,
            filter: &filter,
        },
        NOW,
    )
}

#[test]
fn a_grant_in_force_allows_its_fields_masked_and_filtered() {
    let plan = read(
        &consumer(),
        &[grant("g-1", GrantState::Approved)],
        &["name"],
        "business-licensing",
    )
    .unwrap();
    assert_eq!(plan.grant_id.as_deref(), Some("g-1"));
    assert_eq!(plan.fields, ["id_number", "name"], "the key always leads");
    assert_eq!(plan.masked.get("name").map(|s| s.as_str()), Some("name"));
    assert_eq!(plan.masked.get("id_number").map(|s| s.as_str()), Some("id_number"));
    assert_eq!(plan.filter.to_string(), "region_code STARTS WITH \"3201\"");
    let all = read(
        &consumer(),
        &[grant("g-1", GrantState::Approved)],
        &[],
        "business-licensing",
    )
    .unwrap();
    assert_eq!(
        all.fields,
        ["id_number", "name", "region_code"],
        "no fields asked: every granted field"
    );
}

#[test]
fn clear_fields_are_not_masked() {
    let mut g = grant("g-1", GrantState::Approved);
    g.clear_fields = vec!["name".into()];
    g.decided_by = "spiffe://exchange.test/dept/js.gongan/system".into();
    let plan = read(&consumer(), &[g.clone()], &["name"], "business-licensing").unwrap();
    assert!(!plan.masked.contains_key("name"));
    assert!(plan.masked.contains_key("id_number"));
    // Approved by its class alone, the same grant gets no field in clear that is sensitive now
    // (it was not when approved, or the request would have waited for the owner).
    g.decided_by = crate::grant::AUTO_APPROVER.into();
    let plan = read(&consumer(), &[g], &["name"], "business-licensing").unwrap();
    assert!(plan.masked.contains_key("name"));
}

#[test]
fn the_owner_reads_everything_in_clear() {
    let owner = Principal::new("js.gongan", Role::Node);
    let plan = read(&owner, &[], &[], "internal-audit").unwrap();
    assert_eq!(plan.grant_id, None);
    assert!(plan.masked.is_empty());
    assert_eq!(plan.fields.len(), 4);
}

/// Asserts the read is denied with a message containing `fragment`.
fn check_denied(principal: &Principal, grants: &[Grant], fields: &[&str], purpose: &str, fragment: &str) {
    match read(principal, grants, fields, purpose) {
        Err(denial) => assert!(denial.to_string().contains(fragment), "{denial} lacks {fragment}"),
        Ok(plan) => panic!("expected denial {fragment}, got {plan:?}"),
    }
}

#[test]
fn each_denial_reason() {
    let approved = grant("g-1", GrantState::Approved);
    check_denied(
        &consumer(),
        &[],
        &[],
        "business-licensing",
        "no grant: js.scjg holds no grant",
    );
    check_denied(
        &consumer(),
        &[grant("g-1", GrantState::Revoked)],
        &[],
        "business-licensing",
        "g-1 on js.gongan/population was revoked: case closed",
    );
    let mut expired = approved.clone();
    expired.expires_at = NOW;
    check_denied(
        &consumer(),
        &[expired],
        &[],
        "business-licensing",
        "g-1 on js.gongan/population expired",
    );
    check_denied(
        &consumer(),
        &[grant("g-1", GrantState::Requested)],
        &[],
        "business-licensing",
        "is requested, not approved",
    );
    check_denied(
        &consumer(),
        std::slice::from_ref(&approved),
        &[],
        "tax-audit",
        "purpose \"tax-audit\" not granted",
    );
    check_denied(
        &consumer(),
        std::slice::from_ref(&approved),
        &["phone"],
        "business-licensing",
        "field \"phone\" not granted",
    );
    check_denied(
        &consumer(),
        std::slice::from_ref(&approved),
        &["passport"],
        "business-licensing",
        "not a property",
    );
    check_denied(
        &consumer(),
        std::slice::from_ref(&approved),
        &[],
        "",
        "no purpose stated",
    );
    check_denied(
        &Principal::new("js.dsj", Role::Admin),
        std::slice::from_ref(&approved),
        &[],
        "x",
        "may not read records",
    );
}

#[test]
fn not_shared_is_never_served_to_others() {
    let g = grant("g-1", GrantState::Approved);
    let filter = Filter::default();
    let denial = authorize(
        &consumer(),
        &dataset(Classification::NotShared),
        &schema(),
        &[&g],
        &ReadRequest {
            fields: &[],
            purpose: "business-licensing",
            filter: &filter,
        },
        NOW,
    )
    .unwrap_err();
    assert!(matches!(denial, Denial::NotShared { .. }));
}

#[test]
fn a_revoked_grant_does_not_hide_another_in_force() {
    let mut second = grant("g-2", GrantState::Approved);
    second.purposes = vec!["social-assistance-review".into()];
    let grants = [grant("g-1", GrantState::Revoked), second];
    let plan = read(&consumer(), &grants, &[], "social-assistance-review").unwrap();
    assert_eq!(plan.grant_id.as_deref(), Some("g-2"));
}

#[test]
fn the_request_filter_is_anded_with_the_grant_filter() {
    let g = grant("g-1", GrantState::Approved);
    let request_filter: Filter = "name = \"张三\"".parse().unwrap();
    let plan = authorize(
        &consumer(),
        &dataset(Classification::Conditional),
        &schema(),
        &[&g],
        &ReadRequest {
            fields: &[],
            purpose: "business-licensing",
            filter: &request_filter,
        },
        NOW,
    )
    .unwrap();
    assert_eq!(
        plan.filter.to_string(),
        "region_code STARTS WITH \"3201\" AND name = \"张三\""
    );
}

#[test]
fn a_request_filter_reads_only_granted_fields_and_tests_masked_ones_for_equality_only() {
    let decide = |grant: &Grant, filter: &str| {
        let filter: Filter = filter.parse().unwrap();
        authorize(
            &consumer(),
            &dataset(Classification::Conditional),
            &schema(),
            &[grant],
            &ReadRequest {
                fields: &["region_code".to_string()],
                purpose: "business-licensing",
                filter: &filter,
            },
            NOW,
        )
    };
    let g = grant("g-1", GrantState::Approved);
    // Filtering on a field outside the grant would reveal it a guess at a time.
    assert_eq!(
        decide(&g, "phone STARTS WITH \"1381\"").unwrap_err().to_string(),
        "field \"phone\" not granted on js.gongan/population for purpose \"business-licensing\"; granted fields: id_number, name, region_code"
    );
    assert!(matches!(
        decide(&g, "nickname = \"x\"").unwrap_err(),
        Denial::UnknownField { field, .. } if field == "nickname"
    ));
    // A prefix of a masked field would undo the mask; equality only confirms what one knows.
    assert_eq!(
        decide(&g, "id_number STARTS WITH \"320102\"").unwrap_err(),
        Denial::ProbeOnMasked {
            field: "id_number".into(),
            grant: "g-1".into()
        }
    );
    assert!(decide(&g, "id_number = \"320102199001010012\" AND name = \"张三\"").is_ok());
    // An IN list on a masked field would test hundreds of guesses at once.
    assert!(matches!(
        decide(&g, "name IN (\"张三\", \"李四\")").unwrap_err(),
        Denial::ProbeOnMasked { field, .. } if field == "name"
    ));
    assert!(decide(&g, "region_code STARTS WITH \"320102\"").is_ok());
    // In clear under the grant, a prefix is fine.
    let mut clear = grant("g-1", GrantState::Approved);
    clear.clear_fields = vec!["id_number".into()];
    assert!(decide(&clear, "id_number STARTS WITH \"320102\"").is_ok());
}

#[test]
fn fields_spread_over_two_grants_are_explained_not_denied_as_ungranted() {
    let first = grant("g-1", GrantState::Approved);
    let mut second = grant("g-4", GrantState::Approved);
    second.fields = vec!["id_number".into(), "phone".into()];
    let grants = [first, second];
    // Each alone is served, by the grant that has it.
    assert_eq!(
        read(&consumer(), &grants, &["phone"], "business-licensing")
            .unwrap()
            .grant_id
            .as_deref(),
        Some("g-4")
    );
    assert_eq!(
        read(&consumer(), &grants, &["name"], "business-licensing")
            .unwrap()
            .grant_id
            .as_deref(),
        Some("g-1")
    );
    // Together, the refusal says why, instead of claiming phone is not granted.
    let denial = read(&consumer(), &grants, &["phone", "name"], "business-licensing").unwrap_err();
    assert_eq!(
        denial.to_string(),
        "no single grant on js.gongan/population for purpose \"business-licensing\" covers phone, name together: g-1 has id_number, name, region_code; g-4 has id_number, phone; read them in separate requests or request a grant with all of them"
    );
    // A field in neither lists what the grants for the purpose do give.
    let denial = read(&consumer(), &grants, &["age"], "business-licensing").unwrap_err();
    assert!(
        matches!(denial, Denial::UnknownField { .. }),
        "age is not in this schema: {denial}"
    );
}

#[test]
fn a_read_is_withheld_only_for_an_investigative_purpose_and_not_for_ever() {
    let mut g = grant("g-1", GrantState::Approved);
    g.purposes.push("fraud-investigation".into());
    g.investigative_purposes = vec!["fraud-investigation".into()];
    assert!(check_withhold(Some(&g), "fraud-investigation", NOW + 86_400, NOW).is_ok());
    let err = check_withhold(Some(&g), "business-licensing", NOW + 86_400, NOW)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not mark purpose \"business-licensing\" as investigative"),
        "{err}"
    );
    assert!(
        check_withhold(None, "fraud-investigation", NOW + 86_400, NOW).is_err(),
        "the owner's reads are never withheld"
    );
    assert!(
        check_withhold(Some(&g), "fraud-investigation", NOW, NOW).is_err(),
        "ahead only"
    );
    assert!(check_withhold(Some(&g), "fraud-investigation", NOW + MAX_WITHHOLD_SECS + 1, NOW).is_err());
}
