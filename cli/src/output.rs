//! Output for people (aligned tables) and for scripts (`--json`, proto3 JSON).

use unicode_width::UnicodeWidthStr as _;

/// A table printed with columns aligned by display width (Chinese characters are two columns).
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.width()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.width());
                }
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(width - cell.width() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if self.rows.is_empty() {
            out.push_str("(none)\n");
        }
        out
    }

    pub(crate) fn print(&self) {
        print!("{}", self.render());
    }
}

/// Prints a message as pretty proto3 JSON.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Formats Unix seconds as an RFC 3339 UTC time, or "-" for zero.
pub(crate) fn time(secs: i64) -> String {
    if secs == 0 {
        return "-".to_string();
    }
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// A due date for a table: its time, marked OVERDUE once the server says it is past.
pub(crate) fn due(secs: i64, overdue: bool) -> String {
    match overdue {
        true => format!("{} OVERDUE", time(secs)),
        false => time(secs),
    }
}

/// Unix milliseconds as RFC 3339 (audit events are stamped to the millisecond).
pub(crate) fn time_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Turns a gRPC status into an error a person reads: the code in words, then the message.
pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    // The server does not know the call at all: the URL points at the wrong kind of server.
    if status.code() == tonic::Code::Unimplemented && status.message().is_empty() {
        return anyhow::anyhow!(
            "that server does not serve this call: is --node pointing at a department's node and --registry at the registry (or the profile's URLs)?"
        );
    }
    let code = format!("{:?}", status.code());
    let mut words = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    anyhow::anyhow!("{words}: {}", status.message())
}

/// A flag parser for a closed set: help and errors list its values, taken from the type.
pub(crate) fn one_of<T>() -> impl clap::builder::TypedValueParser<Value = T>
where
    T: exchange_core::ClosedSet + std::str::FromStr<Err = exchange_core::ValidationError>,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(T::all().iter().map(|v| v.name())).try_map(|s| s.parse::<T>())
}

/// An API enum value by the name people type and tables print (the core type's), `-` when
/// unset and `?` when this build does not know it.
pub(crate) fn name_of<T: std::fmt::Display>(value: Result<Option<T>, exchange_core::ValidationError>) -> String {
    match value {
        Ok(Some(value)) => value.to_string(),
        Ok(None) => "-".into(),
        Err(_) => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_by_display_width() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["js.gongan".into(), "江苏省公安厅".into()]);
        table.row(vec!["x.y".into(), "b".into()]);
        assert_eq!(
            table.render(),
            "ID         NAME\njs.gongan  江苏省公安厅\nx.y        b\n"
        );
    }
}
