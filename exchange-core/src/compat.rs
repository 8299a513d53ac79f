//! Schema compatibility: may a dataset move from one schema version to the next?
//!
//! Everything rests on one relation, `sub(a, b)`: *every record valid under schema `a` is also
//! valid under schema `b`*. The modes are this relation in one or both directions:
//!
//! - BACKWARD (default): readers of the new version can read records written under the old one,
//!   `sub(old, new)`. FORWARD: records written under the new version are valid for readers of
//!   the old one, `sub(new, old)`. FULL: both. NONE: no check.
//! - The `_TRANSITIVE` variants check against every earlier version, not only the latest.
//!
//! [`subschema_problems`] is sound: it reports no problem only when it can prove the inclusion,
//! keyword by keyword at the same place in both schemas. Where it cannot (keywords it does not
//! reason about, such as `allOf` or `$ref`, that differ), it reports a problem saying so. The
//! rules are written for users in the README's "Schema compatibility rules".

use std::fmt;

use serde_json::{Map, Value};

use crate::closed_set::closed_set;
use crate::schema::{escape_pointer, value_is_valid};

closed_set! {
    /// A dataset's rule for new schema versions.
    #[derive(Default)]
    pub enum CompatMode ("compatibility", "compatibility mode") {
        /// New readers can read old records, checked against the latest version.
        #[default]
        Backward = "BACKWARD",
        /// As BACKWARD, against every earlier version.
        BackwardTransitive = "BACKWARD_TRANSITIVE",
        /// Old readers can read new records, checked against the latest version.
        Forward = "FORWARD",
        /// As FORWARD, against every earlier version.
        ForwardTransitive = "FORWARD_TRANSITIVE",
        /// BACKWARD and FORWARD against the latest version.
        Full = "FULL",
        /// BACKWARD and FORWARD against every earlier version.
        FullTransitive = "FULL_TRANSITIVE",
        /// Any valid schema is accepted.
        None = "NONE",
    }
}

impl CompatMode {
    fn backward(self) -> bool {
        matches!(
            self,
            CompatMode::Backward | CompatMode::BackwardTransitive | CompatMode::Full | CompatMode::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatMode::Forward | CompatMode::ForwardTransitive | CompatMode::Full | CompatMode::FullTransitive
        )
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatMode::BackwardTransitive | CompatMode::ForwardTransitive | CompatMode::FullTransitive
        )
    }
}

/// One reason why `sub(a, b)` could not be proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON pointer into the schemas where the two differ, e.g. `/properties/phone`.
    pub pointer: String,
    /// What differs, naming both sides.
    pub message: String,
}

/// Which inclusion failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Records of the earlier version would be refused by the candidate.
    Backward,
    /// Records of the candidate would be refused by the earlier version.
    Forward,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Backward => "BACKWARD",
            Direction::Forward => "FORWARD",
        })
    }
}

/// A rule a candidate version breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The earlier version it was checked against.
    pub against_version: u32,
    /// Which direction failed.
    pub direction: Direction,
    /// Where, as a JSON pointer into the schemas.
    pub pointer: String,
    /// What differs, naming the versions.
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(
            f,
            "{} against version {}: {pointer}: {}",
            self.direction, self.against_version, self.message
        )
    }
}

/// Checks a candidate version against the earlier ones (`previous`, ascending) under `mode`.
pub fn check(
    mode: CompatMode,
    candidate_version: u32,
    candidate: &Value,
    previous: &[(u32, &Value)],
) -> Vec<Incompatibility> {
    let against: &[(u32, &Value)] = if mode.transitive() {
        previous
    } else {
        previous.last().map(std::slice::from_ref).unwrap_or(&[])
    };
    let new_name = format!("version {candidate_version}");
    let mut found = Vec::new();
    for (version, old) in against {
        let old_name = format!("version {version}");
        let mut directions = Vec::new();
        if mode.backward() {
            directions.push((
                Direction::Backward,
                *old,
                candidate,
                old_name.as_str(),
                new_name.as_str(),
            ));
        }
        if mode.forward() {
            directions.push((
                Direction::Forward,
                candidate,
                *old,
                new_name.as_str(),
                old_name.as_str(),
            ));
        }
        for (direction, a, b, a_name, b_name) in directions {
            let mut ctx = Ctx {
                a: a_name,
                b: b_name,
                problems: Vec::new(),
            };
            ctx.sub(a, b, "");
            found.extend(ctx.problems.into_iter().map(|p| Incompatibility {
                against_version: *version,
                direction,
                pointer: p.pointer,
                message: p.message,
            }));
        }
    }
    found
}

/// Why it cannot be proven that every document valid under `a` is valid under `b`; empty when
/// it is proven. Messages call the schemas "the first schema" and "the second schema".
pub fn subschema_problems(a: &Value, b: &Value) -> Vec<Problem> {
    let mut ctx = Ctx {
        a: "the first schema",
        b: "the second schema",
        problems: Vec::new(),
    };
    ctx.sub(a, b, "");
    ctx.problems
}

/// Keywords that never change which documents are valid.
fn is_annotation(keyword: &str) -> bool {
    keyword.starts_with("x-")
        || matches!(
            keyword,
            "title"
                | "description"
                | "$comment"
                | "examples"
                | "default"
                | "deprecated"
                | "readOnly"
                | "writeOnly"
                | "$schema"
                | "$id"
        )
}

/// Whether a keyword's value has the JSON type the keyword needs.
type WellFormed = fn(&Value) -> bool;

/// Keywords the checker reasons about, with the JSON type each must have.
const KNOWN: &[(&str, WellFormed)] = &[
    ("type", |v| {
        v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    }),
    ("enum", Value::is_array),
    ("const", |_| true),
    ("format", Value::is_string),
    ("minLength", Value::is_u64),
    ("maxLength", Value::is_u64),
    ("pattern", Value::is_string),
    ("minimum", Value::is_number),
    ("maximum", Value::is_number),
    ("exclusiveMinimum", Value::is_number),
    ("exclusiveMaximum", Value::is_number),
    ("multipleOf", |v| v.as_f64().is_some_and(|m| m > 0.0)),
    ("properties", Value::is_object),
    ("required", |v| {
        v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    }),
    ("additionalProperties", |v| v.is_boolean() || v.is_object()),
    ("minProperties", Value::is_u64),
    ("maxProperties", Value::is_u64),
    ("items", |v| v.is_boolean() || v.is_object()),
    ("minItems", Value::is_u64),
    ("maxItems", Value::is_u64),
    ("uniqueItems", Value::is_boolean),
];

const TYPES: [&str; 7] = ["array", "boolean", "integer", "null", "number", "object", "string"];

struct Ctx<'n> {
    a: &'n str,
    b: &'n str,
    problems: Vec<Problem>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// A lower or upper numeric bound: the value and whether it is exclusive.
type Bound = Option<(f64, bool)>;

impl Ctx<'_> {
    fn problem(&mut self, pointer: &str, message: String) {
        self.problems.push(Problem {
            pointer: pointer.to_string(),
            message,
        });
    }

    fn sub(&mut self, a: &Value, b: &Value, at: &str) {
        let a = match a {
            Value::Bool(false) => return,
            Value::Bool(true) => &*EMPTY,
            Value::Object(map) => map,
            _ => {
                return self.problem(
                    at,
                    format!("cannot prove compatibility: {} is not a schema here", self.a),
                )
            }
        };
        let b = match b {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                return self.problem(at, format!("{} accepts no value here; {} does", self.b, self.a))
            }
            Value::Object(map) => map,
            _ => {
                return self.problem(
                    at,
                    format!("cannot prove compatibility: {} is not a schema here", self.b),
                )
            }
        };
        if !self.well_formed(a, b, at) {
            return;
        }
        self.unknown_keywords(a, b, at);
        if self.enums(a, b, at) {
            return;
        }
        let a_types = types(a);
        self.types(&a_types, &types(b), at);
        let admits = |t: &str| a_types.contains(&t.to_string());
        let b_types = types(b);
        let both = |t: &str| admits(t) && b_types.iter().any(|bt| bt == t || (t == "integer" && bt == "number"));
        if both("string") {
            self.strings(a, b, at);
        }
        if both("number") || both("integer") {
            self.numbers(a, b, at);
        }
        if both("object") {
            self.objects(a, b, at);
        }
        if both("array") {
            self.arrays(a, b, at);
        }
    }

    fn well_formed(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) -> bool {
        let mut ok = true;
        for (side, schema) in [(self.a, a), (self.b, b)] {
            for (keyword, valid) in KNOWN {
                if schema.get(*keyword).is_some_and(|v| !valid(v)) {
                    self.problems.push(Problem {
                        pointer: format!("{at}/{keyword}"),
                        message: format!("cannot prove compatibility: keyword \"{keyword}\" of {side} is malformed"),
                    });
                    ok = false;
                }
            }
        }
        ok
    }

    fn unknown_keywords(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        let mut keywords: Vec<&String> = a.keys().chain(b.keys()).collect();
        keywords.sort();
        keywords.dedup();
        for keyword in keywords {
            if is_annotation(keyword) || KNOWN.iter().any(|(k, _)| k == keyword) {
                continue;
            }
            if a.get(keyword) != b.get(keyword) {
                self.problem(
                    &format!("{at}/{}", escape_pointer(keyword)),
                    format!(
                        "cannot prove compatibility: keyword \"{keyword}\" differs between {} and {} (the checker requires keywords it does not reason about to be identical)",
                        self.a, self.b
                    ),
                );
            }
        }
    }

    /// Handles `enum` and `const`; returns true when that settled the comparison.
    fn enums(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) -> bool {
        if let Some(values) = allowed_values(a) {
            // A finite list: check each value against the whole of `b`, which is exact. Values the
            // rest of `a` refuses never occur, so they cannot break anything.
            let a_schema = Value::Object(a.clone());
            let b_schema = Value::Object(b.clone());
            let a_compiles = crate::schema::compile(&a_schema).is_ok();
            for value in values {
                let in_a = !a_compiles || value_is_valid(&a_schema, &value);
                if in_a && !value_is_valid(&b_schema, &value) {
                    let pointer = if a.contains_key("enum") { "enum" } else { "const" };
                    self.problem(
                        &format!("{at}/{pointer}"),
                        format!("{} allows the value {value}; {} does not", self.a, self.b),
                    );
                }
            }
            return true;
        }
        if let Some(values) = allowed_values(b) {
            let list: Vec<String> = values.iter().map(Value::to_string).collect();
            let pointer = if b.contains_key("enum") { "enum" } else { "const" };
            self.problem(
                &format!("{at}/{pointer}"),
                format!("{} limits values to [{}]; {} does not", self.b, list.join(", "), self.a),
            );
            return true;
        }
        false
    }

    fn types(&mut self, a: &[String], b: &[String], at: &str) {
        let refused: Vec<&String> = a
            .iter()
            .filter(|t| !(b.contains(t) || (*t == "integer" && b.iter().any(|x| x == "number"))))
            .collect();
        if !refused.is_empty() {
            self.problem(
                &format!("{at}/type"),
                format!(
                    "{} accepts type {}; {} accepts only {}",
                    self.a,
                    join_types(&refused),
                    self.b,
                    join_types(&b.iter().collect::<Vec<_>>())
                ),
            );
        }
    }

    fn strings(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        if let Some(format) = b.get("format").and_then(Value::as_str) {
            if a.get("format").and_then(Value::as_str) != Some(format) {
                self.problem(
                    &format!("{at}/format"),
                    format!(
                        "{} requires format \"{format}\"; {} {}",
                        self.b,
                        self.a,
                        describe_str(a, "format")
                    ),
                );
            }
        }
        let (a_min, b_min) = (uint(a, "minLength").unwrap_or(0), uint(b, "minLength").unwrap_or(0));
        if b_min > a_min {
            self.problem(
                &format!("{at}/minLength"),
                format!(
                    "{} requires at least {b_min} characters; {} allows {a_min}",
                    self.b, self.a
                ),
            );
        }
        if let Some(b_max) = uint(b, "maxLength") {
            match uint(a, "maxLength") {
                Some(a_max) if a_max <= b_max => {}
                a_max => self.problem(
                    &format!("{at}/maxLength"),
                    format!(
                        "{} allows at most {b_max} characters; {} allows {}",
                        self.b,
                        self.a,
                        limit(a_max)
                    ),
                ),
            }
        }
        if let Some(pattern) = b.get("pattern").and_then(Value::as_str) {
            if a.get("pattern").and_then(Value::as_str) != Some(pattern) {
                self.problem(
                    &format!("{at}/pattern"),
                    format!(
                        "{} requires pattern \"{pattern}\"; {} {}",
                        self.b,
                        self.a,
                        describe_str(a, "pattern")
                    ),
                );
            }
        }
    }

    fn numbers(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        for (lower, keyword) in [(true, "minimum"), (false, "maximum")] {
            let (a_bound, b_bound) = (bound(a, lower), bound(b, lower));
            let Some((b_value, b_exclusive)) = b_bound else {
                continue;
            };
            let tight_enough = a_bound.is_some_and(|(a_value, a_exclusive)| {
                let beyond = if lower { a_value > b_value } else { a_value < b_value };
                beyond || (a_value == b_value && (a_exclusive || !b_exclusive))
            });
            if !tight_enough {
                let op = match (lower, b_exclusive) {
                    (true, false) => ">=",
                    (true, true) => ">",
                    (false, false) => "<=",
                    (false, true) => "<",
                };
                let pointer_keyword = match (lower, b_exclusive) {
                    (true, true) => "exclusiveMinimum",
                    (false, true) => "exclusiveMaximum",
                    _ => keyword,
                };
                self.problem(
                    &format!("{at}/{pointer_keyword}"),
                    format!(
                        "{} requires values {op} {b_value}; {} allows {}",
                        self.b,
                        self.a,
                        show_bound(a_bound, lower)
                    ),
                );
            }
        }
        if let Some(b_step) = b.get("multipleOf").and_then(Value::as_f64) {
            let ok = a.get("multipleOf").and_then(Value::as_f64).is_some_and(|a_step| {
                let ratio = a_step / b_step;
                (ratio - ratio.round()).abs() < 1e-9 && ratio.round() >= 1.0
            });
            if !ok {
                self.problem(
                    &format!("{at}/multipleOf"),
                    format!(
                        "{} requires multiples of {b_step}; {} {}",
                        self.b,
                        self.a,
                        describe_num(a, "multipleOf")
                    ),
                );
            }
        }
    }

    fn objects(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        let a_props = a.get("properties").and_then(Value::as_object).unwrap_or(&EMPTY);
        let b_props = b.get("properties").and_then(Value::as_object).unwrap_or(&EMPTY);
        let a_extra = a.get("additionalProperties").unwrap_or(&Value::Bool(true));
        let b_extra = b.get("additionalProperties").unwrap_or(&Value::Bool(true));
        let a_required = strings(a, "required");
        for name in strings(b, "required") {
            if !a_required.contains(&name) {
                self.problem(
                    &format!("{at}/required"),
                    format!("{} requires property \"{name}\"; {} does not", self.b, self.a),
                );
            }
        }
        for (name, b_prop) in b_props {
            let pointer = format!("{at}/properties/{}", escape_pointer(name));
            match a_props.get(name) {
                Some(a_prop) => self.sub(a_prop, b_prop, &pointer),
                // Under `a`, an unlisted name takes `additionalProperties` (nothing when closed).
                None => {
                    let before = self.problems.len();
                    self.sub(a_extra, b_prop, &pointer);
                    if self.problems.len() > before && a_extra == &Value::Bool(true) {
                        self.problems.truncate(before);
                        self.problem(
                            &pointer,
                            format!(
                                "{} constrains property \"{name}\"; {} does not list it and allows any value for it (an open content model: additionalProperties is not false)",
                                self.b, self.a
                            ),
                        );
                    }
                }
            }
        }
        for (name, a_prop) in a_props {
            if b_props.contains_key(name) {
                continue;
            }
            let pointer = format!("{at}/properties/{}", escape_pointer(name));
            if b_extra == &Value::Bool(false) {
                if a_prop != &Value::Bool(false) {
                    self.problem(
                        &pointer,
                        format!(
                            "{} allows property \"{name}\"; {} does not list it and is closed (additionalProperties: false)",
                            self.a, self.b
                        ),
                    );
                }
            } else {
                self.sub(a_prop, b_extra, &pointer);
            }
        }
        if b_extra == &Value::Bool(false) && a_extra != &Value::Bool(false) {
            self.problem(
                &format!("{at}/additionalProperties"),
                format!(
                    "{} allows properties it does not list; {} does not (additionalProperties: false)",
                    self.a, self.b
                ),
            );
        } else {
            self.sub(a_extra, b_extra, &format!("{at}/additionalProperties"));
        }
        self.counts(a, b, at, "minProperties", "maxProperties", "properties");
    }

    fn arrays(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        if let Some(b_items) = b.get("items") {
            let a_items = a.get("items").unwrap_or(&Value::Bool(true));
            self.sub(a_items, b_items, &format!("{at}/items"));
        }
        self.counts(a, b, at, "minItems", "maxItems", "items");
        let unique = |s: &Map<String, Value>| s.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false);
        if unique(b) && !unique(a) {
            self.problem(
                &format!("{at}/uniqueItems"),
                format!("{} requires unique items; {} does not", self.b, self.a),
            );
        }
    }

    fn counts(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str, min: &str, max: &str, what: &str) {
        let (a_min, b_min) = (uint(a, min).unwrap_or(0), uint(b, min).unwrap_or(0));
        if b_min > a_min {
            self.problem(
                &format!("{at}/{min}"),
                format!("{} requires at least {b_min} {what}; {} allows {a_min}", self.b, self.a),
            );
        }
        if let Some(b_max) = uint(b, max) {
            match uint(a, max) {
                Some(a_max) if a_max <= b_max => {}
                a_max => self.problem(
                    &format!("{at}/{max}"),
                    format!(
                        "{} allows at most {b_max} {what}; {} allows {}",
                        self.b,
                        self.a,
                        limit(a_max)
                    ),
                ),
            }
        }
    }
}

/// The values a schema limits itself to through `enum` and `const`, if it does.
fn allowed_values(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    let listed = schema.get("enum").and_then(Value::as_array);
    match (listed, schema.get("const")) {
        (Some(values), Some(c)) => Some(values.iter().filter(|v| *v == c).cloned().collect()),
        (Some(values), None) => Some(values.clone()),
        (None, Some(c)) => Some(vec![c.clone()]),
        (None, None) => None,
    }
}

/// The JSON types a schema accepts by its `type` keyword; every type when it has none.
fn types(schema: &Map<String, Value>) -> Vec<String> {
    let mut found: Vec<String> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
        _ => TYPES.iter().map(|t| t.to_string()).collect(),
    };
    // "number" includes every integer.
    if found.iter().any(|t| t == "number") && !found.iter().any(|t| t == "integer") {
        found.push("integer".into());
    }
    found.sort();
    found.dedup();
    found
}

fn join_types(types: &[&String]) -> String {
    let mut shown: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    // "integer" beside "number" adds nothing for a reader.
    if shown.contains(&"number") {
        shown.retain(|t| *t != "integer");
    }
    if shown.len() == TYPES.len() - 1 {
        return "any type".into();
    }
    shown.join(" or ")
}

fn uint(schema: &Map<String, Value>, keyword: &str) -> Option<u64> {
    schema.get(keyword).and_then(Value::as_u64)
}

fn strings(schema: &Map<String, Value>, keyword: &str) -> Vec<String> {
    schema
        .get(keyword)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The tighter of `minimum`/`exclusiveMinimum` (lower) or `maximum`/`exclusiveMaximum`.
fn bound(schema: &Map<String, Value>, lower: bool) -> Bound {
    let (inclusive, exclusive) = if lower {
        ("minimum", "exclusiveMinimum")
    } else {
        ("maximum", "exclusiveMaximum")
    };
    let inc = schema.get(inclusive).and_then(Value::as_f64).map(|v| (v, false));
    let exc = schema.get(exclusive).and_then(Value::as_f64).map(|v| (v, true));
    match (inc, exc) {
        (Some(i), Some(e)) => {
            let e_tighter = if lower { e.0 >= i.0 } else { e.0 <= i.0 };
            Some(if e_tighter { e } else { i })
        }
        (i, e) => i.or(e),
    }
}

fn show_bound(bound: Bound, lower: bool) -> String {
    match (bound, lower) {
        (None, _) => "any value".into(),
        (Some((v, false)), true) => format!("values >= {v}"),
        (Some((v, true)), true) => format!("values > {v}"),
        (Some((v, false)), false) => format!("values <= {v}"),
        (Some((v, true)), false) => format!("values < {v}"),
    }
}

fn limit(max: Option<u64>) -> String {
    max.map_or("any number".into(), |m| m.to_string())
}

fn describe_str(schema: &Map<String, Value>, keyword: &str) -> String {
    match schema.get(keyword).and_then(Value::as_str) {
        Some(other) => format!("has \"{other}\""),
        None => "has none".into(),
    }
}

fn describe_num(schema: &Map<String, Value>, keyword: &str) -> String {
    match schema.get(keyword) {
        Some(other) => format!("has {other}"),
        None => "has none".into(),
    }
}

#[cfg(test)]
mod tests;
