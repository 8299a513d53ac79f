use serde_json::json;

use super::*;

fn person_schema() -> Value {
    json!({
        "$schema": DRAFT_2020_12,
        "type": "object",
        "additionalProperties": false,
        "required": ["id_number", "name"],
        "properties": {
            "id_number": {"type": "string", "format": "id-number-cn", "x-sensitivity": "id_number"},
            "name": {"type": "string", "x-sensitivity": "name"},
            "birth_date": {"type": "string", "format": "date"},
            "age": {"type": ["integer", "null"]},
            "address": {
                "type": "object",
                "x-sensitivity": "address",
                "properties": {"line": {"type": "string"}}
            }
        }
    })
}

/// Asserts that checking `schema` with key `key` fails with a message containing `fragment`.
fn check_refused(schema: Value, key: &str, fragment: &str) {
    match check_dataset_schema(schema, key) {
        Err(SchemaError::Invalid(errors)) => {
            assert!(
                errors.iter().any(|e| e.contains(fragment)),
                "{errors:?} lacks {fragment}"
            )
        }
        other => panic!("expected refusal containing {fragment}, got {other:?}"),
    }
}

#[test]
fn accepts_a_dataset_schema_and_reads_its_properties() {
    let parsed = check_dataset_schema(person_schema(), "id_number").unwrap();
    assert_eq!(parsed.properties["age"].types, ["integer", "null"]);
    assert_eq!(
        parsed.properties["name"].sensitivity.map(Sensitivity::as_str),
        Some("name")
    );
    assert!(parsed.required.contains("id_number"));
    let pointers: Vec<&str> = parsed.sensitive_fields.iter().map(|s| s.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        ["/properties/address", "/properties/id_number", "/properties/name"]
    );
}

#[test]
fn refuses_invalid_schemas_naming_the_pointer() {
    let mut bad_type = person_schema();
    bad_type["properties"]["age"]["type"] = json!("integr");
    check_refused(bad_type, "id_number", "/properties/age/type");
    let mut bad_required = person_schema();
    bad_required["required"] = json!("id_number");
    check_refused(bad_required, "id_number", "/required");
    check_refused(json!([1, 2]), "id_number", "must be a JSON object");
    check_refused(json!({"type": "array"}), "id_number", "/type");
    let mut old_draft = person_schema();
    old_draft["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    check_refused(old_draft, "id_number", "/$schema");
    let mut bad_regex = person_schema();
    bad_regex["properties"]["name"]["pattern"] = json!("([a-z");
    check_refused(bad_regex, "id_number", "/properties/name");
}

#[test]
fn refuses_a_key_that_is_not_a_required_string() {
    check_refused(person_schema(), "passport", "/properties/passport");
    check_refused(person_schema(), "age", "/properties/age/type");
    check_refused(person_schema(), "birth_date", "/required");
}

#[test]
fn refuses_unknown_formats_and_sensitivities() {
    let mut typo = person_schema();
    typo["properties"]["id_number"]["format"] = json!("id-number");
    check_refused(typo, "id_number", "id-number");
    let mut bad = person_schema();
    bad["properties"]["name"]["x-sensitivity"] = json!("secret");
    check_refused(bad, "id_number", "/properties/name/x-sensitivity");
    // Only a top-level property can be masked, so only there may the annotation stand.
    let mut nested = person_schema();
    nested["properties"]["contact"] = json!({
        "type": "object",
        "properties": {"phone": {"type": "string", "x-sensitivity": "phone"}}
    });
    check_refused(
        nested,
        "id_number",
        "/properties/contact/properties/phone/x-sensitivity",
    );
    let mut in_defs = person_schema();
    in_defs["$defs"] = json!({"idn": {"type": "string", "x-sensitivity": "id_number"}});
    check_refused(in_defs, "id_number", "/$defs/idn/x-sensitivity");
}

#[test]
fn refuses_text_that_is_not_json_with_its_position() {
    match parse_dataset_schema("{\"type\": \"object\",\n \"properties\": }", "id") {
        Err(SchemaError::Invalid(e)) => assert!(e[0].contains("line 2"), "{e:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn formats_are_enforced_on_records() {
    let validator = compile(&person_schema()).unwrap();
    let good = json!({"id_number": "11010519491231002X", "name": "张三", "birth_date": "1949-12-31"});
    assert!(validator.is_valid(&good));
    let mut bad_check_digit = good.clone();
    bad_check_digit["id_number"] = json!("110105194912310021");
    assert!(
        !validator.is_valid(&bad_check_digit),
        "wrong ID check digit must be refused"
    );
    let mut bad_date = good.clone();
    bad_date["birth_date"] = json!("1990-02-30");
    assert!(!validator.is_valid(&bad_date), "an impossible date must be refused");
}

#[test]
fn schema_errors_say_what_to_write_instead() {
    let mut typo = person_schema();
    typo["properties"]["age"]["type"] = json!("integr");
    check_refused(
        typo,
        "id_number",
        "/properties/age/type: \"integr\" is not a JSON Schema type: use one of",
    );
    let mut unknown = person_schema();
    unknown["properties"]["birth_date"]["format"] = json!("chinese-date");
    check_refused(
        unknown,
        "id_number",
        "unknown format \"chinese-date\": use a standard format",
    );
    // A property that happens to be called "type" is not the type keyword.
    let mut named_type = person_schema();
    named_type["properties"]["type"] = json!({"type": "string", "minLength": "x"});
    check_refused(named_type, "id_number", "/properties/type/minLength");
}

#[test]
fn record_errors_point_at_the_field_and_list_every_allowed_value() {
    let mut schema = person_schema();
    schema["properties"]["status"] = json!({"enum": ["active", "suspended", "revoked", "cancelled", "merged"]});
    let validator = compile(&schema).unwrap();
    let record = json!({"id_number": "11010519491231002X", "name": "张三", "status": "closed", "fax": "1", "tel": "2"});
    let errors = record_errors(&validator, &record);
    assert!(
        errors.contains(&(
            "/status".to_string(),
            "\"closed\" is not one of \"active\", \"suspended\", \"revoked\", \"cancelled\", \"merged\"".to_string()
        )),
        "{errors:?}"
    );
    for field in ["fax", "tel"] {
        assert!(
            errors
                .iter()
                .any(|(p, m)| p == &format!("/{field}") && m.contains("is not a field of this dataset")),
            "{errors:?}"
        );
    }
}

#[test]
fn a_stored_version_with_a_nested_annotation_still_loads_and_masks_the_whole_property() {
    let mut nested = person_schema();
    nested["properties"]["contact"] = json!({
        "type": "object",
        "properties": {"phone": {"type": "string", "x-sensitivity": "phone"}}
    });
    // Refused as a new version...
    assert!(check_dataset_schema(nested.clone(), "id_number").is_err());
    // ...but a version stored before that rule loads, with the whole "contact" masked.
    let loaded = load_stored_schema(&nested.to_string(), "id_number").unwrap();
    assert_eq!(
        loaded.properties["contact"].sensitivity.map(Sensitivity::as_str),
        Some("phone")
    );
    assert_eq!(
        loaded.properties["name"].sensitivity.map(Sensitivity::as_str),
        Some("name")
    );
    assert_eq!(
        loaded.properties["birth_date"].sensitivity, None,
        "only contact is reached"
    );

    // An annotation behind a $ref could reach any property: every one is masked.
    let mut in_defs = person_schema();
    in_defs["$defs"] = json!({"ph": {"type": "string", "x-sensitivity": "phone"}});
    in_defs["properties"]["mobile"] = json!({"$ref": "#/$defs/ph"});
    let loaded = load_stored_schema(&in_defs.to_string(), "id_number").unwrap();
    for (name, info) in &loaded.properties {
        assert!(info.sensitivity.is_some(), "{name} would leave in clear");
    }
    assert_eq!(
        loaded.properties["name"].sensitivity.map(Sensitivity::as_str),
        Some("name"),
        "its own kept"
    );

    // Below a property, but reused by another through a $ref: every property is masked too.
    let mut reused = person_schema();
    reused["properties"]["contact"] = json!({
        "type": "object",
        "properties": {"phone": {"type": "string", "x-sensitivity": "phone"}}
    });
    reused["properties"]["mobile"] = json!({"$ref": "#/properties/contact/properties/phone"});
    let loaded = load_stored_schema(&reused.to_string(), "id_number").unwrap();
    assert!(loaded.properties["mobile"].sensitivity.is_some());
}

#[test]
fn a_sensitivity_this_build_does_not_know_is_refused_when_new_and_masked_whole_when_stored() {
    let mut newer = person_schema();
    newer["properties"]["fingerprint"] = json!({"type": "string", "x-sensitivity": "biometric"});
    // A typo in a new version must not leave a field unmasked.
    let err = check_dataset_schema(newer.clone(), "id_number")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/properties/fingerprint/x-sensitivity"), "{err}");
    assert!(err.contains("must be one of id_number, name"), "{err}");
    // Stored by a newer registry that knows "biometric": this build masks the field whole.
    let loaded = load_stored_schema(&newer.to_string(), "id_number").unwrap();
    assert_eq!(loaded.properties["fingerprint"].sensitivity, Some(Sensitivity::Other));
    // Stored forms read it the same way.
    let field: SensitiveField =
        serde_json::from_str(r#"{"pointer":"/properties/fingerprint","sensitivity":"biometric"}"#).unwrap();
    assert_eq!(field.sensitivity, Sensitivity::Other);
}
