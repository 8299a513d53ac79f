//! Dataset schemas: JSON Schema draft 2020-12 with the domain formats registered and enforced.
//!
//! Every validator in the project is built by [`compile`], so every one knows `id-number-cn`,
//! `uscc` and `region-code` and checks formats (draft 2020-12 treats `format` as an annotation
//! unless told otherwise, so without this a wrong check digit would be stored).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SchemaError;
use crate::formats::FORMATS;
use crate::mask::Sensitivity;

/// The only `$schema` a dataset schema may declare (it may also declare none).
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The largest schema document accepted, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// A compiled validator for records.
pub type Validator = jsonschema::Validator;

/// Builds a validator with formats asserted, the domain formats registered and unknown formats
/// refused (a misspelt format would otherwise silently check nothing).
pub fn compile(schema: &Value) -> Result<Validator, SchemaError> {
    let mut options = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false);
    for (name, check) in FORMATS {
        options = options.with_format(*name, *check);
    }
    options.build(schema).map_err(|e| {
        let message =
            match e.to_string() {
                // The library suggests a setting our users do not have.
                m if m.starts_with("Unknown format: '") => format!(
                "unknown format \"{}\": use a standard format (date, date-time, email, ipv4, uri, ...) or one of {}",
                m.trim_start_matches("Unknown format: '").split('\'').next().unwrap_or_default(),
                FORMATS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
            ),
                m => m,
            };
        SchemaError::Invalid(vec![format!(
            "{}: {message}",
            pointer_or_root(e.instance_path().as_str())
        )])
    })
}

/// Every reason `record` is invalid, as (JSON pointer into the record, message). Messages name
/// the field and list every allowed value, where the library's would not.
pub fn record_errors(validator: &Validator, record: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for e in validator.iter_errors(record) {
        let at = e.instance_path().as_str().to_string();
        match e.kind() {
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    errors.push((
                        format!("{at}/{}", escape_pointer(name)),
                        format!("\"{name}\" is not a field of this dataset (its schema allows no other fields)"),
                    ));
                }
            }
            jsonschema::error::ValidationErrorKind::Enum { options } => {
                let allowed = match options.as_ref() {
                    Value::Array(values) => values.iter().map(Value::to_string).collect::<Vec<_>>().join(", "),
                    other => other.to_string(),
                };
                errors.push((at, format!("{} is not one of {allowed}", e.instance())));
            }
            _ => errors.push((at, e.to_string())),
        }
    }
    errors
}

/// Whether `value` is valid under `schema`, with the project's formats. A schema that does not
/// compile accepts nothing.
pub fn value_is_valid(schema: &Value, value: &Value) -> bool {
    compile(schema).is_ok_and(|v| v.is_valid(value))
}

/// What the registry keeps about a property of a dataset schema's top level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyInfo {
    /// Its JSON types, sorted (`["string"]`, `["null", "string"]`); empty when unconstrained.
    pub types: Vec<String>,
    /// Its `x-sensitivity` annotation, if any.
    pub sensitivity: Option<Sensitivity>,
}

/// An `x-sensitivity` annotation and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitiveField {
    /// JSON pointer to the annotated schema, e.g. `/properties/id_number`.
    pub pointer: String,
    /// The annotation, e.g. `id_number`, `name`, `phone`, `address`.
    pub sensitivity: Sensitivity,
}

/// A dataset schema that passed every check, with what the registry needs from it.
#[derive(Debug, Clone)]
pub struct DatasetSchema {
    /// The schema document.
    pub schema: Value,
    /// Top-level properties by name.
    pub properties: BTreeMap<String, PropertyInfo>,
    /// Top-level required properties.
    pub required: BTreeSet<String>,
    /// Every `x-sensitivity` annotation (only top-level properties may carry one).
    pub sensitive_fields: Vec<SensitiveField>,
}

/// Parses and checks a schema for a dataset whose key is `key_field`: valid JSON, a valid draft
/// 2020-12 schema (every error named by a JSON pointer), an object schema at the top, the key a
/// required string property, and every format known.
pub fn parse_dataset_schema(text: &str, key_field: &str) -> Result<DatasetSchema, SchemaError> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(invalid(
            "",
            format!("schema is {} bytes; the limit is {MAX_SCHEMA_BYTES}", text.len()),
        ));
    }
    let schema: Value = serde_json::from_str(text)
        .map_err(|e| invalid("", format!("not JSON: line {} column {}: {e}", e.line(), e.column())))?;
    check_dataset_schema(schema, key_field)
}

/// Reads a schema version stored earlier, when the rules for new versions may have been looser:
/// it is checked as before, except that an `x-sensitivity` anywhere but directly on a top-level
/// property (refused for new versions) fails closed: below a top-level property it masks that
/// whole property (every property, if the document has references that could reuse it);
/// anywhere else (in `$defs` behind a `$ref`, under `allOf`, ...) it masks every top-level
/// property, since which of them it reaches is not worked out.
pub fn load_stored_schema(text: &str, key_field: &str) -> Result<DatasetSchema, SchemaError> {
    let schema: Value = serde_json::from_str(text)
        .map_err(|e| invalid("", format!("not JSON: line {} column {}: {e}", e.line(), e.column())))?;
    let mut parsed = check_schema(schema, key_field, Unknown::MaskWhole)?;
    let misplaced: Vec<SensitiveField> = parsed
        .sensitive_fields
        .iter()
        .filter(|f| {
            !matches!(
                f.pointer.split('/').skip(1).collect::<Vec<_>>().as_slice(),
                ["properties", _]
            )
        })
        .cloned()
        .collect();
    // With references in the document, a subschema below one property may be used by another.
    let text_refers = ["\"$ref\"", "\"$dynamicRef\"", "\"$anchor\"", "\"$dynamicAnchor\""]
        .iter()
        .any(|k| text.contains(k));
    for field in misplaced {
        let reached: Vec<String> = match nested_under_property(&field.pointer) {
            Some(name) if !text_refers => vec![name],
            _ => parsed.properties.keys().cloned().collect(),
        };
        for name in reached {
            if let Some(info) = parsed.properties.get_mut(&name) {
                info.sensitivity.get_or_insert(field.sensitivity);
            }
        }
    }
    Ok(parsed)
}

/// The top-level property a pointer lies strictly below (`/properties/contact/properties/phone`
/// → `contact`), unescaped.
fn nested_under_property(pointer: &str) -> Option<String> {
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    match segments.as_slice() {
        ["properties", name, _, ..] => Some(name.replace("~1", "/").replace("~0", "~")),
        _ => None,
    }
}

/// [`parse_dataset_schema`] for an already parsed document.
pub fn check_dataset_schema(schema: Value, key_field: &str) -> Result<DatasetSchema, SchemaError> {
    let parsed = check_schema(schema, key_field, Unknown::Refuse)?;
    // Masking works on whole top-level fields; an annotation deeper down (inside an object, in
    // $defs behind a $ref) would be shown as sensitive yet served in clear.
    for field in &parsed.sensitive_fields {
        let segments: Vec<&str> = field.pointer.split('/').skip(1).collect();
        if !matches!(segments.as_slice(), ["properties", _]) {
            return Err(invalid(
                &format!("{}/x-sensitivity", field.pointer),
                "x-sensitivity is honoured only directly on a top-level property (/properties/<name>): annotate the top-level property that holds this value, and the whole of it is masked",
            ));
        }
    }
    Ok(parsed)
}

/// What an `x-sensitivity` value this build does not know means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// A new version is refused, so that a typo does not leave a field unmasked.
    Refuse,
    /// A stored version (written by a newer registry, say) masks the field whole, as `other`:
    /// mask more, never less, and keep serving.
    MaskWhole,
}

/// The sensitivity an `x-sensitivity` annotation names, `Err` when it names none this build
/// knows and `unknown` refuses those.
fn sensitivity_of(annotation: &Value, unknown: Unknown) -> Result<Sensitivity, ()> {
    match annotation.as_str().map(str::parse::<Sensitivity>) {
        Some(Ok(sensitivity)) => Ok(sensitivity),
        _ if unknown == Unknown::MaskWhole => Ok(Sensitivity::Other),
        _ => Err(()),
    }
}

/// The checks every schema version passes, new or stored.
fn check_schema(schema: Value, key_field: &str, unknown: Unknown) -> Result<DatasetSchema, SchemaError> {
    let Some(top) = schema.as_object() else {
        return Err(invalid("", "a dataset schema must be a JSON object"));
    };
    if let Some(declared) = top.get("$schema") {
        if declared.as_str() != Some(DRAFT_2020_12) {
            return Err(invalid(
                "/$schema",
                format!("only draft 2020-12 is supported: use \"{DRAFT_2020_12}\" or leave $schema out"),
            ));
        }
    }
    let meta = jsonschema::draft202012::meta::validator();
    let mut errors: Vec<String> = meta
        .iter_errors(&schema)
        .map(|e| {
            let at = pointer_or_root(e.instance_path().as_str());
            // "not valid under any of the schemas listed in the 'anyOf' keyword" hides the point.
            let segments: Vec<&str> = at.rsplit('/').take(2).collect();
            let at_type_keyword = matches!(segments.as_slice(), ["type", parent]
                if !matches!(*parent, "properties" | "$defs" | "definitions" | "patternProperties" | "dependentSchemas"));
            if at_type_keyword {
                return format!(
                    "{at}: {} is not a JSON Schema type: use one of \"string\", \"number\", \"integer\", \"boolean\", \"object\", \"array\", \"null\", or a list of them",
                    e.instance()
                );
            }
            format!("{at}: {e}")
        })
        .collect();
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        return Err(SchemaError::Invalid(errors));
    }
    if top.get("type").and_then(Value::as_str) != Some("object") {
        return Err(invalid(
            "/type",
            "a dataset schema's top level must be \"type\": \"object\"",
        ));
    }
    compile(&schema)?;

    let properties_schema = top.get("properties").and_then(Value::as_object);
    let mut properties = BTreeMap::new();
    for (name, prop) in properties_schema.into_iter().flatten() {
        properties.insert(
            name.clone(),
            PropertyInfo {
                types: types_of(prop),
                // A value refused here is reported below, by `collect_sensitive`.
                sensitivity: prop.get("x-sensitivity").and_then(|a| sensitivity_of(a, unknown).ok()),
            },
        );
    }
    let required: BTreeSet<String> = top
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();

    let key_pointer = format!("/properties/{}", escape_pointer(key_field));
    match properties.get(key_field) {
        None => {
            return Err(invalid(
                &key_pointer,
                format!("the key field \"{key_field}\" must be a property of the schema"),
            ))
        }
        Some(info) if info.types != ["string"] => {
            return Err(invalid(
                &format!("{key_pointer}/type"),
                format!("the key field \"{key_field}\" must have \"type\": \"string\""),
            ))
        }
        Some(_) => {}
    }
    if !required.contains(key_field) {
        return Err(invalid(
            "/required",
            format!("the key field \"{key_field}\" must be listed in \"required\""),
        ));
    }

    let mut sensitive_fields = Vec::new();
    collect_sensitive(&schema, String::new(), unknown, &mut sensitive_fields)?;
    Ok(DatasetSchema {
        schema,
        properties,
        required,
        sensitive_fields,
    })
}

fn collect_sensitive(
    value: &Value,
    pointer: String,
    unknown: Unknown,
    out: &mut Vec<SensitiveField>,
) -> Result<(), SchemaError> {
    match value {
        Value::Object(map) => {
            if let Some(s) = map.get("x-sensitivity") {
                match sensitivity_of(s, unknown) {
                    Ok(sensitivity) => out.push(SensitiveField {
                        pointer: pointer.clone(),
                        sensitivity,
                    }),
                    Err(()) => {
                        return Err(invalid(
                            &format!("{pointer}/x-sensitivity"),
                            format!("must be one of {}", Sensitivity::names()),
                        ))
                    }
                }
            }
            for (k, v) in map {
                // Values of `enum`, `const`, `default` and `examples` are data, not schemas.
                if matches!(k.as_str(), "enum" | "const" | "default" | "examples") {
                    continue;
                }
                collect_sensitive(v, format!("{pointer}/{}", escape_pointer(k)), unknown, out)?;
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_sensitive(v, format!("{pointer}/{i}"), unknown, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The sorted JSON types a schema allows by its `type` keyword; empty when it has none.
pub fn types_of(schema: &Value) -> Vec<String> {
    let mut types: Vec<String> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    types.sort();
    types.dedup();
    types
}

/// Escapes a property name for use in a JSON pointer (RFC 6901).
pub fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn pointer_or_root(pointer: &str) -> String {
    if pointer.is_empty() {
        "(root)".to_string()
    } else {
        pointer.to_string()
    }
}

fn invalid(pointer: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid(vec![format!("{}: {}", pointer_or_root(pointer), message.into())])
}

#[cfg(test)]
mod tests;
