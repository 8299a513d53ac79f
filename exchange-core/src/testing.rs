//! Fixtures shared by the unit tests of several modules.

use crate::calendar::{parse_date, CalendarConfig, WorkingCalendar};
use crate::catalog::{Classification, Dataset};
use crate::compat::CompatMode;
use crate::UnixSeconds;

/// `js.gongan/population`, keyed by `id_number`, at schema version 1.
pub(crate) fn population(classification: Classification) -> Dataset {
    Dataset {
        id: "js.gongan/population".into(),
        title: "人口".into(),
        description: String::new(),
        domain: "population".into(),
        classification,
        update_frequency: "daily".into(),
        steward: String::new(),
        key_field: "id_number".into(),
        tags: vec![],
        compatibility: CompatMode::Backward,
        latest_version: 1,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

/// Held by tests that set or depend on the process's file-creation mask, which is one for all
/// the tests running at once.
pub(crate) static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The default calendar: China's, 2026.
pub(crate) fn china() -> WorkingCalendar {
    WorkingCalendar::from_config(&CalendarConfig::default()).unwrap()
}

/// Unix seconds of `date` (YYYY-MM-DD) at `hh:mm` Beijing time.
pub(crate) fn beijing(date: &str, hh: u8, mm: u8) -> UnixSeconds {
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap();
    parse_date(date)
        .unwrap()
        .with_hms(hh, mm, 0)
        .unwrap()
        .assume_offset(offset)
        .unix_timestamp()
}
