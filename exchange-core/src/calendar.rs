//! Working days: the calendar a request's clock runs on.
//!
//! Deadlines in government work are counted in working days: "the data authority reviews a
//! request within 2 working days". A working day is a weekday that is not a public holiday, or a
//! weekend day the state has made a working day to balance a holiday (China's 调休: in 2026,
//! Sunday 4 January is worked so that 1 to 3 January are off). Holidays and make-up days are
//! announced a year at a time, so the calendar holds them per year.
//!
//! Counting follows the usual rule for administrative periods: the day something arrives does
//! not count; the period starts on the next day and ends when its last working day ends, at
//! midnight in the calendar's time zone. A request made on Friday with 2 working days is due at
//! the end of the following Tuesday (Wednesday 00:00).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
pub use time::Date;
use time::{Month, OffsetDateTime, UtcOffset, Weekday};

use crate::UnixSeconds;

/// The `[calendar]` table of the registry's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// The time zone days are counted in, as an offset from UTC: `"+08:00"`.
    pub utc_offset: String,
    /// The days of the week off unless a year makes one a working day. Default Saturday, Sunday.
    #[serde(default = "default_weekend")]
    pub weekend: Vec<String>,
    /// Public holidays and make-up working days, a year at a time.
    #[serde(default)]
    pub year: Vec<YearConfig>,
}

/// One year's public holidays and make-up working days, as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YearConfig {
    /// The year the dates belong to.
    pub year: i32,
    /// Days off (a holiday that falls on a weekend may be listed too; it changes nothing).
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Weekend days that are working days this year (调休).
    #[serde(default)]
    pub workdays: Vec<String>,
}

fn default_weekend() -> Vec<String> {
    vec!["saturday".into(), "sunday".into()]
}

/// Days off in China in 2026 (State Council General Office notice of 4 November 2025). The
/// registry's default calendar; a deployment sets its own in `[calendar]`.
pub const CN_2026_HOLIDAYS: &[&str] = &[
    "2026-01-01",
    "2026-01-02",
    "2026-01-03", // New Year
    "2026-02-15",
    "2026-02-16",
    "2026-02-17",
    "2026-02-18",
    "2026-02-19",
    "2026-02-20",
    "2026-02-21",
    "2026-02-22",
    "2026-02-23", // Spring Festival
    "2026-04-04",
    "2026-04-05",
    "2026-04-06", // Qingming
    "2026-05-01",
    "2026-05-02",
    "2026-05-03",
    "2026-05-04",
    "2026-05-05", // Labour Day
    "2026-06-19",
    "2026-06-20",
    "2026-06-21", // Dragon Boat
    "2026-09-25",
    "2026-09-26",
    "2026-09-27", // Mid-Autumn
    "2026-10-01",
    "2026-10-02",
    "2026-10-03",
    "2026-10-04",
    "2026-10-05",
    "2026-10-06",
    "2026-10-07", // National Day
];

/// Weekend days worked in China in 2026, from the same notice.
pub const CN_2026_WORKDAYS: &[&str] = &[
    "2026-01-04",
    "2026-02-14",
    "2026-02-28",
    "2026-05-09",
    "2026-09-20",
    "2026-10-10",
];

impl Default for CalendarConfig {
    /// China's: UTC+8, Saturday and Sunday off, the 2026 holidays and make-up days.
    fn default() -> Self {
        Self {
            utc_offset: "+08:00".into(),
            weekend: default_weekend(),
            year: vec![YearConfig {
                year: 2026,
                holidays: CN_2026_HOLIDAYS.iter().map(|d| d.to_string()).collect(),
                workdays: CN_2026_WORKDAYS.iter().map(|d| d.to_string()).collect(),
            }],
        }
    }
}

/// A year's exceptions to the weekly pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Exceptions {
    holidays: BTreeSet<Date>,
    workdays: BTreeSet<Date>,
}

/// Which days are working days, checked and ready to count with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingCalendar {
    offset: UtcOffset,
    /// Days off, by `Weekday::number_days_from_monday`.
    weekend: [bool; 7],
    years: BTreeMap<i32, Exceptions>,
}

/// The most working days a deadline may be set to: a bound on counting, far beyond any rule.
pub const MAX_WORKING_DAYS: u32 = 366;

impl WorkingCalendar {
    /// Checks a configuration: every date well-formed and in its year, no day both a holiday and
    /// a make-up day, make-up days only on weekend days, each year listed once.
    pub fn from_config(config: &CalendarConfig) -> Result<Self, String> {
        let offset = parse_offset(&config.utc_offset)?;
        let mut weekend = [false; 7];
        for name in &config.weekend {
            let day = usize::from(parse_weekday(name)?.number_days_from_monday());
            if std::mem::replace(&mut weekend[day], true) {
                return Err(format!("calendar.weekend names {name} twice"));
            }
        }
        if weekend.iter().all(|off| *off) {
            return Err("calendar.weekend names every day of the week: leave at least one working day".into());
        }
        let mut years = BTreeMap::new();
        for year in &config.year {
            let mut days = Exceptions::default();
            for text in &year.holidays {
                days.holidays.insert(parse_date_in(text, year.year, "holidays")?);
            }
            for text in &year.workdays {
                let date = parse_date_in(text, year.year, "workdays")?;
                if !weekend[usize::from(date.weekday().number_days_from_monday())] {
                    return Err(format!(
                        "calendar year {}: workday {text} is a {}, already a working day; list only weekend days worked in place of a holiday",
                        year.year,
                        date.weekday()
                    ));
                }
                if days.holidays.contains(&date) {
                    return Err(format!(
                        "calendar year {}: {text} is listed both as a holiday and as a workday",
                        year.year
                    ));
                }
                days.workdays.insert(date);
            }
            if years.insert(year.year, days).is_some() {
                return Err(format!("calendar year {} is listed twice", year.year));
            }
        }
        Ok(Self { offset, weekend, years })
    }

    /// The years whose holidays are known; outside them only the weekly pattern applies.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// Whether `year`'s holidays are known.
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains_key(&year)
    }

    /// The calendar date at `at` in the calendar's time zone.
    pub fn date_at(&self, at: UnixSeconds) -> Date {
        let utc = OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        utc.to_offset(self.offset).date()
    }

    /// The time of day at `at` in the calendar's time zone, in minutes after midnight.
    pub fn minute_of_day(&self, at: UnixSeconds) -> u32 {
        let local = OffsetDateTime::from_unix_timestamp(at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(self.offset);
        u32::from(local.hour()) * 60 + u32::from(local.minute())
    }

    /// `at` as people read it in the calendar's time zone: `2026-12-03 09:30 +08:00`.
    pub fn local_text(&self, at: UnixSeconds) -> String {
        let local = OffsetDateTime::from_unix_timestamp(at)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(self.offset);
        let (h, m, _) = self.offset.as_hms();
        format!(
            "{} {:02}:{:02} {}{:02}:{:02}",
            local.date(),
            local.hour(),
            local.minute(),
            if h < 0 || m < 0 { '-' } else { '+' },
            h.unsigned_abs(),
            m.unsigned_abs()
        )
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: Date) -> bool {
        let exceptions = self.years.get(&date.year());
        if exceptions.is_some_and(|e| e.workdays.contains(&date)) {
            return true;
        }
        if exceptions.is_some_and(|e| e.holidays.contains(&date)) {
            return false;
        }
        !self.weekend[usize::from(date.weekday().number_days_from_monday())]
    }

    /// When a period of `working_days` started at `start` ends: midnight after its last working
    /// day, counting from the day after `start`'s date. `working_days` is at most
    /// [`MAX_WORKING_DAYS`]; 0 is due at the end of the day it started.
    pub fn due(&self, start: UnixSeconds, working_days: u32) -> UnixSeconds {
        let mut date = self.date_at(start);
        let mut left = working_days.min(MAX_WORKING_DAYS);
        while left > 0 {
            date = match date.next_day() {
                Some(next) => next,
                None => break,
            };
            if self.is_working_day(date) {
                left -= 1;
            }
        }
        self.end_of(date)
    }

    /// How many working days lie after `from`'s date up to and including `to`'s date: the
    /// working days a decision took (0 when decided on the day it arrived).
    pub fn working_days_between(&self, from: UnixSeconds, to: UnixSeconds) -> u32 {
        let (mut date, last) = (self.date_at(from), self.date_at(to));
        let mut count = 0;
        while date < last {
            date = match date.next_day() {
                Some(next) => next,
                None => break,
            };
            if self.is_working_day(date) {
                count += 1;
            }
        }
        count
    }

    /// Midnight at the start of `date`, in Unix seconds.
    pub fn start_of(&self, date: Date) -> UnixSeconds {
        date.midnight().assume_offset(self.offset).unix_timestamp()
    }

    /// Midnight at the end of `date`, in Unix seconds.
    pub fn end_of(&self, date: Date) -> UnixSeconds {
        let next = date.next_day().unwrap_or(date);
        next.midnight().assume_offset(self.offset).unix_timestamp()
    }
}

fn parse_offset(text: &str) -> Result<UtcOffset, String> {
    let bad = || format!("calendar.utc_offset {text:?} is not an offset from UTC like \"+08:00\"");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
    let hours: i8 = hours.parse().map_err(|_| bad())?;
    let minutes: i8 = minutes.parse().map_err(|_| bad())?;
    if !(0..=14).contains(&hours) || !(0..60).contains(&minutes) {
        return Err(bad());
    }
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| bad())
}

fn parse_weekday(name: &str) -> Result<Weekday, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        "sunday" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "calendar.weekend: {name:?} is not a day of the week (monday .. sunday)"
            ))
        }
    })
}

/// Parses `YYYY-MM-DD`, which must fall in `year` (a date of 2027 listed under 2026 is a typo).
fn parse_date_in(text: &str, year: i32, list: &str) -> Result<Date, String> {
    let date = parse_date(text)
        .ok_or_else(|| format!("calendar year {year}: {list} entry {text:?} is not a date like 2026-10-01"))?;
    if date.year() != year {
        return Err(format!(
            "calendar year {year}: {list} entry {text} belongs to {}",
            date.year()
        ));
    }
    Ok(date)
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{beijing, china};

    #[test]
    fn a_period_skips_the_weekend() {
        // Friday 2026-11-27, 2 working days: Monday 30th and Tuesday 1st; due when Tuesday ends.
        assert_eq!(
            china().due(beijing("2026-11-27", 16, 30), 2),
            beijing("2026-12-02", 0, 0)
        );
        // Monday's request: Tuesday and Wednesday.
        assert_eq!(china().due(beijing("2026-11-30", 9, 0), 2), beijing("2026-12-03", 0, 0));
    }

    #[test]
    fn a_period_skips_public_holidays() {
        // Wednesday 2026-09-30, 2 working days: 1 to 7 October are off, Thursday 8th and Friday 9th.
        assert_eq!(
            china().due(beijing("2026-09-30", 10, 0), 2),
            beijing("2026-10-10", 0, 0)
        );
    }

    #[test]
    fn a_make_up_working_day_counts() {
        // Friday 2026-10-09, 1 working day: Saturday 10 October is worked (调休).
        assert_eq!(
            china().due(beijing("2026-10-09", 10, 0), 1),
            beijing("2026-10-11", 0, 0)
        );
        // Wednesday 2025-12-31 with 2 working days: 1-3 January off, Sunday 4th worked, Monday 5th.
        assert_eq!(
            china().due(beijing("2025-12-31", 10, 0), 2),
            beijing("2026-01-06", 0, 0)
        );
        assert!(china().is_working_day(parse_date("2026-02-28").unwrap()));
        assert!(
            !china().is_working_day(parse_date("2026-02-23").unwrap()),
            "Monday in the Spring Festival"
        );
    }

    #[test]
    fn the_day_is_the_calendars_not_utcs() {
        // 23:30 UTC on Thursday 2026-11-26 is already Friday in Beijing: due Tuesday, not Monday.
        let thursday_late_utc = beijing("2026-11-27", 7, 30);
        assert_eq!(china().due(thursday_late_utc, 2), beijing("2026-12-02", 0, 0));
        // Zero working days: the end of the day it arrived.
        assert_eq!(
            china().due(beijing("2026-11-27", 16, 30), 0),
            beijing("2026-11-28", 0, 0)
        );
    }

    #[test]
    fn working_days_between_counts_what_a_decision_took() {
        let cal = china();
        let friday = beijing("2026-11-27", 16, 0);
        assert_eq!(cal.working_days_between(friday, beijing("2026-11-27", 17, 0)), 0);
        assert_eq!(
            cal.working_days_between(friday, beijing("2026-11-29", 12, 0)),
            0,
            "the weekend"
        );
        assert_eq!(cal.working_days_between(friday, beijing("2026-12-01", 12, 0)), 2);
        // The National Day week off, then Thursday 8th, Friday 9th and Saturday 10th (worked).
        assert_eq!(
            cal.working_days_between(beijing("2026-09-30", 9, 0), beijing("2026-10-10", 9, 0)),
            3
        );
    }

    #[test]
    fn years_without_holidays_use_the_weekly_pattern() {
        let cal = china();
        assert!(cal.covers(2026) && !cal.covers(2027));
        // 2027-01-01 is a Friday: a working day as far as this calendar knows.
        assert!(cal.is_working_day(parse_date("2027-01-01").unwrap()));
    }

    #[test]
    fn mistakes_in_the_calendar_are_refused_with_what_to_fix() {
        let refuse = |edit: &dyn Fn(&mut CalendarConfig)| {
            let mut config = CalendarConfig::default();
            edit(&mut config);
            WorkingCalendar::from_config(&config).unwrap_err()
        };
        let err = refuse(&|c| c.year[0].holidays.push("2027-01-01".into()));
        assert!(err.contains("2027-01-01 belongs to 2027"), "{err}");
        let err = refuse(&|c| c.year[0].holidays.push("2026-13-01".into()));
        assert!(err.contains("not a date"), "{err}");
        let err = refuse(&|c| c.year[0].workdays.push("2026-11-30".into()));
        assert!(err.contains("is a Monday, already a working day"), "{err}");
        let err = refuse(&|c| c.year[0].holidays.push("2026-02-14".into()));
        assert!(err.contains("both as a holiday and as a workday"), "{err}");
        let err = refuse(&|c| c.year.push(c.year[0].clone()));
        assert!(err.contains("listed twice"), "{err}");
        let err = refuse(&|c| c.utc_offset = "8".into());
        assert!(err.contains("like \"+08:00\""), "{err}");
        let err = refuse(&|c| c.weekend.push("caturday".into()));
        assert!(err.contains("not a day of the week"), "{err}");
    }
}
