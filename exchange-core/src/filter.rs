//! The row-filter language of grants and queries: equality, prefix and IN over top-level string
//! fields, joined by AND. Small on purpose: it can be checked against a schema, printed back
//! canonically, and evaluated without surprises.
//!
//! ```text
//! filter := cond ( AND cond )*
//! cond   := field "=" string | field IN "(" string ("," string)* ")" | field STARTS WITH string
//! field  := [A-Za-z_][A-Za-z0-9_]*
//! string := "..." | '...'          backslash escapes \" \' \\
//! ```
//!
//! Keywords are case-insensitive. A missing or non-string field never matches.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// The longest filter text accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// The most conditions one filter may have.
pub const MAX_CONDITIONS: usize = 32;
/// The most values one IN list may have.
pub const MAX_IN_VALUES: usize = 256;

/// A conjunction of conditions; empty matches every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The conditions, all of which must hold.
    pub conds: Vec<Cond>,
}

/// One condition on a top-level string field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `field = "value"`
    Eq {
        /// The field.
        field: String,
        /// The value it must equal.
        value: String,
    },
    /// `field IN ("a", "b")`
    In {
        /// The field.
        field: String,
        /// The values it may equal.
        values: Vec<String>,
    },
    /// `field STARTS WITH "prefix"`
    StartsWith {
        /// The field.
        field: String,
        /// The prefix it must start with.
        prefix: String,
    },
}

impl Cond {
    /// The field the condition is on.
    pub fn field(&self) -> &str {
        match self {
            Cond::Eq { field, .. } | Cond::In { field, .. } | Cond::StartsWith { field, .. } => field,
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Cond::Eq { value: v, .. } => value == v,
            Cond::In { values, .. } => values.iter().any(|v| v == value),
            Cond::StartsWith { prefix, .. } => value.starts_with(prefix.as_str()),
        }
    }
}

/// Why a filter does not parse: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {offset}: {message}")]
pub struct FilterError {
    /// Character offset (0-based) where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl Filter {
    /// The fields the filter refers to, in order, with repeats.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.conds.iter().map(Cond::field)
    }

    /// Whether a record satisfies every condition.
    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        self.conds.iter().all(|c| {
            record
                .get(c.field())
                .and_then(Value::as_str)
                .is_some_and(|v| c.matches(v))
        })
    }

    /// Both filters at once (a grant's filter ANDed with a request's).
    pub fn and(&self, other: &Filter) -> Filter {
        Filter {
            conds: self.conds.iter().chain(&other.conds).cloned().collect(),
        }
    }

    /// Whether the filter has no condition (matches everything).
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }
}

fn quote(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Filter {
    /// The canonical text: upper-case keywords, double quotes, single spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cond) in self.conds.iter().enumerate() {
            if i > 0 {
                f.write_str(" AND ")?;
            }
            match cond {
                Cond::Eq { field, value } => {
                    write!(f, "{field} = ")?;
                    quote(value, f)?;
                }
                Cond::In { field, values } => {
                    write!(f, "{field} IN (")?;
                    for (j, v) in values.iter().enumerate() {
                        if j > 0 {
                            f.write_str(", ")?;
                        }
                        quote(v, f)?;
                    }
                    f.write_str(")")?;
                }
                Cond::StartsWith { field, prefix } => {
                    write!(f, "{field} STARTS WITH ")?;
                    quote(prefix, f)?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_FILTER_BYTES {
            return Err(FilterError {
                offset: 0,
                message: format!(
                    "a filter may be at most {MAX_FILTER_BYTES} bytes; this one is {}",
                    text.len()
                ),
            });
        }
        let mut p = Parser {
            chars: text.chars().collect(),
            pos: 0,
        };
        let mut conds = vec![p.cond()?];
        loop {
            p.skip_spaces();
            if p.at_end() {
                break;
            }
            let at = p.pos;
            if !p.keyword("AND") {
                return Err(p.error_at(at, "expected AND or the end of the filter"));
            }
            if conds.len() == MAX_CONDITIONS {
                return Err(p.error_at(at, &format!("a filter may have at most {MAX_CONDITIONS} conditions")));
            }
            conds.push(p.cond()?);
        }
        Ok(Filter { conds })
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error_at(&self, offset: usize, message: &str) -> FilterError {
        FilterError {
            offset,
            message: message.to_string(),
        }
    }

    fn word(&mut self) -> Option<String> {
        self.skip_spaces();
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            _ => return None,
        }
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        Some(self.chars[start..self.pos].iter().collect())
    }

    /// Consumes `kw` (case-insensitive, as a whole word) if it is next.
    fn keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        match self.word() {
            Some(w) if w.eq_ignore_ascii_case(kw) => true,
            _ => {
                self.pos = save;
                false
            }
        }
    }

    fn expect_char(&mut self, c: char, what: &str) -> Result<(), FilterError> {
        self.skip_spaces();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error_at(self.pos, what))
        }
    }

    fn string(&mut self, after: &str) -> Result<String, FilterError> {
        self.skip_spaces();
        let start = self.pos;
        let quote = match self.peek() {
            Some(q @ ('"' | '\'')) => q,
            _ => return Err(self.error_at(start, &format!("expected a quoted string after {after}"))),
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error_at(start, "this string is never closed")),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ ('"' | '\'' | '\\')) => out.push(c),
                        _ => return Err(self.error_at(self.pos, "only \\\", \\' and \\\\ are escapes")),
                    }
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
            self.pos += 1;
        }
    }

    fn cond(&mut self) -> Result<Cond, FilterError> {
        self.skip_spaces();
        let at = self.pos;
        let field = self
            .word()
            .ok_or_else(|| self.error_at(at, "expected a field name (letters, digits and _)"))?;
        if ["AND", "IN", "STARTS", "WITH"]
            .iter()
            .any(|k| field.eq_ignore_ascii_case(k))
        {
            return Err(self.error_at(at, &format!("expected a field name, found the keyword {field}")));
        }
        self.skip_spaces();
        let op_at = self.pos;
        if self.peek() == Some('=') {
            self.pos += 1;
            let value = self.string("\"=\"")?;
            return Ok(Cond::Eq { field, value });
        }
        if self.keyword("IN") {
            self.expect_char('(', "expected ( after IN")?;
            let mut values = vec![self.string("(")?];
            loop {
                self.skip_spaces();
                match self.peek() {
                    Some(',') => {
                        self.pos += 1;
                        if values.len() == MAX_IN_VALUES {
                            return Err(
                                self.error_at(self.pos, &format!("an IN list may have at most {MAX_IN_VALUES} values"))
                            );
                        }
                        values.push(self.string("\",\"")?);
                    }
                    Some(')') => {
                        self.pos += 1;
                        return Ok(Cond::In { field, values });
                    }
                    _ => return Err(self.error_at(self.pos, "expected , or ) in the IN list")),
                }
            }
        }
        if self.keyword("STARTS") {
            if !self.keyword("WITH") {
                self.skip_spaces();
                return Err(self.error_at(self.pos, "expected WITH after STARTS"));
            }
            let prefix = self.string("STARTS WITH")?;
            return Ok(Cond::StartsWith { field, prefix });
        }
        Err(self.error_at(op_at, &format!("expected =, IN or STARTS WITH after \"{field}\"")))
    }
}

#[cfg(test)]
mod tests;
