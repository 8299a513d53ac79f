//! One table-driven test per rule. `check(old, new, backward, forward)` asserts whether the
//! change from `old` to `new` is BACKWARD compatible (`sub(old, new)`) and FORWARD compatible
//! (`sub(new, old)`).

use serde_json::{json, Value};

use super::*;

#[track_caller]
fn check(old: Value, new: Value, backward: bool, forward: bool) {
    let b = subschema_problems(&old, &new);
    let f = subschema_problems(&new, &old);
    assert_eq!(b.is_empty(), backward, "BACKWARD {old} -> {new}: {b:?}");
    assert_eq!(f.is_empty(), forward, "FORWARD {old} -> {new}: {f:?}");
}

/// Wraps property schemas in a top-level object schema.
fn obj(properties: Value, required: &[&str], additional: Option<bool>) -> Value {
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    if let Some(additional) = additional {
        schema["additionalProperties"] = json!(additional);
    }
    schema
}

#[test]
fn type_widening_and_narrowing() {
    check(
        json!({"type": "string"}),
        json!({"type": ["string", "null"]}),
        true,
        false,
    );
    check(json!({"type": "integer"}), json!({"type": "number"}), true, false);
    check(json!({"type": "number"}), json!({"type": "integer"}), false, true);
    check(json!({"type": "string"}), json!({"type": "integer"}), false, false);
    check(json!({"type": "string"}), json!({}), true, false);
    check(
        json!({"type": ["integer", "string"]}),
        json!({"type": ["string", "integer"]}),
        true,
        true,
    );
}

#[test]
fn optional_to_required_and_back() {
    let p = json!({"id": {"type": "string"}, "phone": {"type": "string"}});
    check(
        obj(p.clone(), &["id"], Some(false)),
        obj(p.clone(), &["id", "phone"], Some(false)),
        false,
        true,
    );
    check(
        obj(p.clone(), &["id", "phone"], Some(false)),
        obj(p, &["id"], Some(false)),
        true,
        false,
    );
}

#[test]
fn adding_and_removing_properties_in_a_closed_model() {
    let without = obj(json!({"id": {"type": "string"}}), &["id"], Some(false));
    let with_optional = obj(
        json!({"id": {"type": "string"}, "phone": {"type": "string"}}),
        &["id"],
        Some(false),
    );
    let with_required = obj(
        json!({"id": {"type": "string"}, "phone": {"type": "string"}}),
        &["id", "phone"],
        Some(false),
    );
    // Adding an optional property to a closed model: old records never have it.
    check(without.clone(), with_optional.clone(), true, false);
    // Adding a required property: old records lack it.
    check(without.clone(), with_required, false, false);
    // Removing a property from a closed model: old records that have it are refused.
    check(with_optional, without, false, true);
}

#[test]
fn adding_and_removing_properties_in_an_open_model() {
    let without = obj(json!({"id": {"type": "string"}}), &["id"], None);
    let with_optional = obj(
        json!({"id": {"type": "string"}, "phone": {"type": "string"}}),
        &["id"],
        None,
    );
    // Open: old records may hold "phone" with any value, so constraining it is not BACKWARD.
    check(without.clone(), with_optional.clone(), false, true);
    // Removing a property from an open model: it falls back to "anything".
    check(with_optional, without, true, false);
    // Closing an open model breaks BACKWARD; opening a closed one breaks FORWARD.
    let closed = obj(json!({"id": {"type": "string"}}), &["id"], Some(false));
    let open = obj(json!({"id": {"type": "string"}}), &["id"], None);
    check(open.clone(), closed.clone(), false, true);
    check(closed, open, true, false);
}

#[test]
fn partially_open_models() {
    // additionalProperties as a schema: unlisted properties must be strings.
    let partial =
        json!({"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": {"type": "string"}});
    let with_phone = json!({"type": "object", "properties": {"id": {"type": "string"}, "phone": {"type": "string"}}, "additionalProperties": {"type": "string"}});
    check(partial.clone(), with_phone.clone(), true, true);
    let with_age = json!({"type": "object", "properties": {"id": {"type": "string"}, "age": {"type": "integer"}}, "additionalProperties": {"type": "string"}});
    check(partial, with_age, false, false);
}

#[test]
fn enums_and_const() {
    check(
        json!({"type": "string", "enum": ["a", "b"]}),
        json!({"type": "string", "enum": ["a", "b", "c"]}),
        true,
        false,
    );
    check(
        json!({"type": "string"}),
        json!({"type": "string", "enum": ["a"]}),
        false,
        true,
    );
    check(json!({"const": "a"}), json!({"enum": ["a", "b"]}), true, false);
    check(json!({"enum": ["a", 1]}), json!({"type": "string"}), false, false);
    // Values the rest of the old schema refused never occurred, so they break nothing.
    check(
        json!({"type": "string", "enum": ["a", 1]}),
        json!({"type": "string", "enum": ["a"]}),
        true,
        true,
    );
}

#[test]
fn formats() {
    check(
        json!({"type": "string"}),
        json!({"type": "string", "format": "date"}),
        false,
        true,
    );
    check(
        json!({"type": "string", "format": "date"}),
        json!({"type": "string", "format": "date-time"}),
        false,
        false,
    );
    check(
        json!({"type": "string", "format": "uscc"}),
        json!({"type": "string", "format": "uscc"}),
        true,
        true,
    );
}

#[test]
fn string_bounds_and_patterns() {
    check(
        json!({"type": "string", "maxLength": 10}),
        json!({"type": "string", "maxLength": 20}),
        true,
        false,
    );
    check(
        json!({"type": "string"}),
        json!({"type": "string", "maxLength": 20}),
        false,
        true,
    );
    check(
        json!({"type": "string", "minLength": 2}),
        json!({"type": "string", "minLength": 1}),
        true,
        false,
    );
    check(
        json!({"type": "string", "pattern": "^a"}),
        json!({"type": "string", "pattern": "^a"}),
        true,
        true,
    );
    check(
        json!({"type": "string", "pattern": "^a"}),
        json!({"type": "string", "pattern": "^[ab]"}),
        false,
        false,
    );
    check(
        json!({"type": "string", "pattern": "^a"}),
        json!({"type": "string"}),
        true,
        false,
    );
}

#[test]
fn numeric_bounds() {
    check(
        json!({"type": "number", "minimum": 0}),
        json!({"type": "number", "minimum": -1}),
        true,
        false,
    );
    check(
        json!({"type": "number", "minimum": 0}),
        json!({"type": "number", "exclusiveMinimum": 0}),
        false,
        true,
    );
    check(
        json!({"type": "number", "exclusiveMaximum": 10}),
        json!({"type": "number", "maximum": 10}),
        true,
        false,
    );
    check(
        json!({"type": "number"}),
        json!({"type": "number", "maximum": 100}),
        false,
        true,
    );
    check(
        json!({"type": "integer", "minimum": 1, "maximum": 5}),
        json!({"type": "integer", "minimum": 1, "maximum": 5}),
        true,
        true,
    );
}

#[test]
fn multiple_of() {
    check(
        json!({"type": "number", "multipleOf": 10}),
        json!({"type": "number", "multipleOf": 5}),
        true,
        false,
    );
    check(
        json!({"type": "number", "multipleOf": 5}),
        json!({"type": "number", "multipleOf": 10}),
        false,
        true,
    );
    check(
        json!({"type": "number"}),
        json!({"type": "number", "multipleOf": 0.5}),
        false,
        true,
    );
}

#[test]
fn nested_objects_report_the_nested_pointer() {
    let old = obj(
        json!({"address": {"type": "object", "properties": {"zip": {"type": "string"}}}}),
        &[],
        None,
    );
    let new = obj(
        json!({"address": {"type": "object", "properties": {"zip": {"type": "integer"}}}}),
        &[],
        None,
    );
    check(old.clone(), new.clone(), false, false);
    let problems = subschema_problems(&old, &new);
    assert_eq!(problems[0].pointer, "/properties/address/properties/zip/type");
    assert_eq!(
        problems[0].message,
        "the first schema accepts type string; the second schema accepts only integer"
    );
}

#[test]
fn arrays() {
    let items = |t: &str| json!({"type": "array", "items": {"type": t}});
    check(items("integer"), items("number"), true, false);
    check(json!({"type": "array"}), items("string"), false, true);
    check(
        json!({"type": "array", "maxItems": 3}),
        json!({"type": "array", "maxItems": 5}),
        true,
        false,
    );
    check(
        json!({"type": "array", "minItems": 1}),
        json!({"type": "array", "minItems": 2}),
        false,
        true,
    );
    check(
        json!({"type": "array"}),
        json!({"type": "array", "uniqueItems": true}),
        false,
        true,
    );
}

#[test]
fn annotations_are_ignored() {
    let old =
        json!({"type": "string", "title": "姓名", "description": "a", "x-sensitivity": "name", "examples": ["x"]});
    let new =
        json!({"type": "string", "title": "名字", "$comment": "b", "x-sensitivity": "address", "deprecated": true});
    check(old, new, true, true);
}

#[test]
fn unknown_keywords_must_be_identical() {
    let any_of = json!({"anyOf": [{"type": "string"}, {"type": "null"}]});
    check(any_of.clone(), any_of.clone(), true, true);
    let other = json!({"anyOf": [{"type": "string"}]});
    check(any_of.clone(), other.clone(), false, false);
    let problems = subschema_problems(&any_of, &other);
    assert_eq!(problems[0].pointer, "/anyOf");
    assert!(problems[0]
        .message
        .starts_with("cannot prove compatibility: keyword \"anyOf\" differs"));
}

#[test]
fn boolean_schemas() {
    check(json!(true), json!({}), true, true);
    check(json!(false), json!({"type": "string"}), true, false);
    check(json!({"type": "string"}), json!(false), false, true);
}

#[test]
fn malformed_input_is_reported_not_panicked_on() {
    for bad in [
        json!({"required": 5}),
        json!({"type": 7}),
        json!({"properties": []}),
        json!({"minLength": -1}),
        json!({"multipleOf": 0}),
        json!([1, 2]),
        json!("string"),
    ] {
        let problems = subschema_problems(&bad, &json!({"type": "object", "required": ["a"]}));
        assert!(!problems.is_empty(), "{bad}");
        assert!(
            problems.iter().any(|p| p.message.contains("cannot prove")),
            "{bad}: {problems:?}"
        );
    }
}

fn versions() -> (Value, Value, Value) {
    let v1 = obj(
        json!({"id": {"type": "string"}, "a": {"type": "string"}}),
        &["id"],
        Some(false),
    );
    // v2 drops "a": fine FORWARD from v1, but not BACKWARD.
    let v2 = obj(json!({"id": {"type": "string"}}), &["id"], Some(false));
    // v3 adds an optional "b" to the closed v2: BACKWARD against v2, but v1's records with "a"
    // are still refused, so not BACKWARD against v1.
    let v3 = obj(
        json!({"id": {"type": "string"}, "b": {"type": "string"}}),
        &["id"],
        Some(false),
    );
    (v1, v2, v3)
}

#[test]
fn modes_check_the_right_directions() {
    let (_, v2, v3) = versions();
    let previous = [(2, &v2)];
    assert!(check_modes(CompatMode::Backward, &v3, &previous).is_empty());
    let forward = check_modes(CompatMode::Forward, &v3, &previous);
    assert_eq!(forward.len(), 1);
    assert_eq!(forward[0].direction, Direction::Forward);
    assert_eq!(
        forward[0].to_string(),
        "FORWARD against version 2: /properties/b: version 3 allows property \"b\"; version 2 does not list it and is closed (additionalProperties: false)"
    );
    assert_eq!(check_modes(CompatMode::Full, &v3, &previous).len(), 1);
    assert!(check_modes(CompatMode::None, &json!({"type": "string"}), &previous).is_empty());
}

fn check_modes(mode: CompatMode, candidate: &Value, previous: &[(u32, &Value)]) -> Vec<Incompatibility> {
    super::check(mode, 3, candidate, previous)
}

#[test]
fn transitive_modes_check_every_earlier_version() {
    let (v1, v2, v3) = versions();
    let previous = [(1, &v1), (2, &v2)];
    assert!(
        check_modes(CompatMode::Backward, &v3, &previous).is_empty(),
        "only v2 is checked"
    );
    let transitive = check_modes(CompatMode::BackwardTransitive, &v3, &previous);
    assert_eq!(transitive.len(), 1, "{transitive:?}");
    assert_eq!(transitive[0].against_version, 1);
    assert_eq!(transitive[0].pointer, "/properties/a");
    assert!(super::check(CompatMode::FullTransitive, 3, &v3, &previous).len() >= 2);
    assert!(
        super::check(CompatMode::Backward, 1, &v1, &[]).is_empty(),
        "the first version has nothing to break"
    );
}

#[test]
fn mode_names_parse_and_print() {
    for mode in CompatMode::ALL {
        assert_eq!(mode.as_str().parse::<CompatMode>().unwrap(), mode);
    }
    assert!("SIDEWAYS"
        .parse::<CompatMode>()
        .unwrap_err()
        .message
        .contains("BACKWARD_TRANSITIVE"));
}
