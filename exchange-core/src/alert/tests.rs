//! Each rule fires on the pattern it watches for and stays quiet without it.

use super::*;
use crate::catalog::Classification;
use crate::testing::{beijing, china};

/// A read shipped by js.gongan's node, by `consumer`, at `at` (Unix seconds).
fn read(consumer: &str, at: UnixSeconds, decision: Decision, keys: &[String]) -> String {
    serde_json::json!({
        "time_ms": at * 1000,
        "node": "js.gongan",
        "principal": format!("spiffe://t/dept/{consumer}/system"),
        "department": consumer,
        "operation": "query",
        "dataset": "js.gongan/population",
        "schema_version": 1,
        "fields": ["name"],
        "keys": keys,
        "count": keys.len(),
        "purpose": "business-licensing",
        "case_id": "",
        "decision": decision,
        "reason": "",
        "grant_id": if decision == Decision::Allow { "g-000002" } else { "" },
    })
    .to_string()
}

fn keys(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("3201021990010{i:05}")).collect()
}

/// Feeds `events` to fresh windows under `config`, each consumer's earlier days given by
/// `history`; returns what was raised.
fn run(config: &AlertConfig, events: &[String], history: &[u64]) -> Vec<Alert> {
    let calendar = china();
    let hours = config.check().unwrap();
    let mut windows = Windows::default();
    let mut raised = Vec::new();
    for event in events {
        let event: Read<'_> = serde_json::from_str(event).unwrap();
        raised.extend(windows.observe(config, hours, &calendar, &event, &mut |_, _| history.to_vec()));
    }
    raised
}

fn rules(raised: &[Alert]) -> Vec<AlertRule> {
    raised.iter().map(|a| a.rule).collect()
}

const MORNING: i64 = 1_796_000_000 - 1_796_000_000 % 3600 + 3600; // a whole hour

#[test]
fn denied_reads_alert_once_an_hour_at_the_limit() {
    let config = AlertConfig::default();
    let denials = |n: usize, start: i64, every: i64| -> Vec<String> {
        (0..n)
            .map(|i| read("js.scjg", start + i as i64 * every, Decision::Deny, &[]))
            .collect()
    };
    let raised = run(&config, &denials(25, MORNING, 60), &[]);
    assert_eq!(
        rules(&raised),
        [AlertRule::DeniedReads],
        "one alert at the 20th, none after"
    );
    let alert = &raised[0];
    assert_eq!(
        (alert.department.as_str(), alert.observed, alert.threshold),
        ("js.scjg", 20, 20)
    );
    assert_eq!(alert.window_from_ms, MORNING * 1000);
    assert!(
        alert.summary.contains("--consumer js.scjg --decision deny"),
        "{}",
        alert.summary
    );
    // Quiet: 19 in an hour, or 30 spread over hours at fewer than 20 each.
    assert!(run(&config, &denials(19, MORNING, 60), &[]).is_empty());
    assert!(run(&config, &denials(30, MORNING, 300), &[]).is_empty(), "12 an hour");
    // The owner's own reads are not sharing.
    let own: Vec<String> = (0..30)
        .map(|i| read("js.gongan", MORNING + i, Decision::Deny, &[]))
        .collect();
    assert!(run(&config, &own, &[]).is_empty());
}

#[test]
fn read_volume_alerts_when_a_grant_passes_its_hourly_limit() {
    let config = AlertConfig {
        records_per_hour: 1_000,
        distinct_factor: 0,
        ..AlertConfig::default()
    };
    let pages = |n: usize, every: i64| -> Vec<String> {
        (0..n)
            .map(|i| {
                read(
                    "js.scjg",
                    MORNING + i as i64 * every,
                    Decision::Allow,
                    &keys(i * 100, 100),
                )
            })
            .collect()
    };
    let raised = run(&config, &pages(12, 60), &[]);
    assert_eq!(rules(&raised), [AlertRule::ReadVolume]);
    assert_eq!(
        (raised[0].grant_id.as_str(), raised[0].observed, raised[0].threshold),
        ("g-000002", 1_000, 1_000)
    );
    assert!(run(&config, &pages(9, 60), &[]).is_empty(), "900 records");
    assert!(run(&config, &pages(12, 600), &[]).is_empty(), "600 an hour");
}

#[test]
fn distinct_records_alert_against_the_consumers_usual() {
    let config = AlertConfig {
        records_per_hour: 0,
        distinct_min: 100,
        ..AlertConfig::default()
    };
    // 600 distinct records in a day, usually 100: more than 5 times.
    let day: Vec<String> = (0..6)
        .map(|i| {
            read(
                "js.scjg",
                MORNING + i * 60,
                Decision::Allow,
                &keys(i as usize * 100, 100),
            )
        })
        .collect();
    let raised = run(&config, &day, &[90, 110, 100]);
    assert_eq!(rules(&raised), [AlertRule::DistinctRecords]);
    assert_eq!((raised[0].observed, raised[0].threshold), (600, 500));
    // Quiet: the same records read again and again, a usual as large, or no usual yet.
    let same: Vec<String> = (0..6)
        .map(|i| read("js.scjg", MORNING + i * 60, Decision::Allow, &keys(0, 100)))
        .collect();
    assert!(run(&config, &same, &[90, 110, 100]).is_empty());
    assert!(run(&config, &day, &[150, 150, 150]).is_empty(), "limit 750");
    assert!(run(&config, &day, &[100, 100]).is_empty(), "two days are no usual");
    // Never below distinct_min, however small the usual.
    assert_eq!(usual(&[1, 2, 3], 3), Some(2));
    assert!(run(&config, &day[..1], &[1, 2, 3]).is_empty(), "100 is not above 100");
}

#[test]
fn reads_outside_the_reading_hours_alert_once_a_day_per_consumer() {
    let config = AlertConfig {
        reading_hours: "07:00-22:00".into(),
        round_the_clock: vec!["js.gajt".into()],
        ..AlertConfig::default()
    };
    let at = |day: &str, hh: u8, consumer: &str| read(consumer, beijing(day, hh, 30), Decision::Allow, &keys(0, 1));
    let night = [
        at("2026-12-03", 23, "js.scjg"),
        at("2026-12-03", 23, "js.scjg"),
        at("2026-12-04", 2, "js.scjg"),
    ];
    let raised = run(&config, &night, &[]);
    assert_eq!(rules(&raised), [AlertRule::OffHours, AlertRule::OffHours], "once a day");
    assert!(
        raised[0].summary.contains("2026-12-03 23:30 +08:00"),
        "{}",
        raised[0].summary
    );
    assert_eq!(raised[0].window_from_ms, beijing("2026-12-03", 0, 0) * 1000);
    let day = [at("2026-12-03", 7, "js.scjg"), at("2026-12-03", 21, "js.scjg")];
    assert!(run(&config, &day, &[]).is_empty());
    assert!(
        run(&config, &[at("2026-12-03", 23, "js.gajt")], &[]).is_empty(),
        "round the clock"
    );
    let off = AlertConfig::default();
    assert!(run(&off, &night, &[]).is_empty(), "no reading hours, no rule");
    // A night shift's hours run past midnight.
    let shift = ReadingHours::parse("20:00-08:00").unwrap();
    assert!(shift.contains(23 * 60) && shift.contains(60) && !shift.contains(12 * 60));
    for bad in ["7-22", "07:00", "07:00-07:00", "25:00-07:00", "07:60-08:00"] {
        assert!(ReadingHours::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_dataset_is_stale_past_its_frequency_and_its_grace() {
    let config = AlertConfig::default();
    let mut dataset = crate::testing::population(Classification::Conditional);
    let changed = beijing("2026-12-01", 9, 0);
    let stale =
        |dataset: &Dataset, hours: i64| stale_dataset(&config, &china(), dataset, changed, changed + hours * 3600);
    assert!(stale(&dataset, 36).is_none(), "daily: stale after 36 hours");
    let alert = stale(&dataset, 37).unwrap();
    assert_eq!(
        (alert.rule, alert.department.as_str(), alert.key.as_str()),
        (
            AlertRule::StaleDataset,
            "js.gongan",
            format!("stale_dataset/js.gongan/population/{changed}").as_str()
        )
    );
    assert!(
        alert.summary.contains("declared daily, stale after 36 hours"),
        "{}",
        alert.summary
    );
    dataset.update_frequency = "irregular".into();
    assert!(stale(&dataset, 10_000).is_none());
    dataset.update_frequency = String::new();
    assert!(stale(&dataset, 10_000).is_none(), "no frequency declared");
}

#[test]
fn a_node_is_silent_after_its_minutes_and_lagging_past_its_events() {
    let config = AlertConfig::default();
    let seen = beijing("2026-12-03", 9, 0);
    assert!(node_silent(&config, &china(), "js.gongan", seen, seen + 30 * 60).is_none());
    let alert = node_silent(&config, &china(), "js.gongan", seen, seen + 31 * 60).unwrap();
    assert_eq!(
        (alert.rule, alert.observed, alert.threshold),
        (AlertRule::NodeSilent, 31, 30)
    );
    assert!(node_lagging(&config, "js.gongan", 19_999, 10_000, 0).is_none());
    let alert = node_lagging(&config, "js.gongan", 20_000, 10_000, 0).unwrap();
    assert_eq!((alert.key.as_str(), alert.observed), ("node_lagging/js.gongan", 10_000));
    let off = AlertConfig {
        node_silent_minutes: 0,
        node_lag_events: 0,
        ..config
    };
    assert!(node_silent(&off, &china(), "js.gongan", seen, seen + 86_400).is_none());
    assert!(node_lagging(&off, "js.gongan", 1_000_000, 0, 0).is_none());
    let refused = refused_ledger("js.gongan", "its history changed", seen, 42);
    assert_eq!(refused.key, format!("refused_ledger/js.gongan/{seen}"));
}

#[test]
fn requests_past_their_due_date_alert_and_name_who_they_wait_for() {
    use crate::correction::{new_correction, CorrectionRequest, Served};
    use crate::demand::{new_demand, DemandRequest};
    let calendar = china();
    let asked = beijing("2026-12-01", 9, 0);
    let demand = new_demand(
        "js.scjg",
        DemandRequest {
            provider_id: "js.zrzy".into(),
            title: "不动产登记信息".into(),
            fields: vec!["parcel_code".into()],
            purpose: "business-licensing".into(),
            legal_basis: "《优化营商环境条例》".into(),
            expires_at: beijing("2027-06-30", 0, 0),
        },
        "c",
        (
            &calendar,
            10,
            crate::grant::GrantLimits {
                max_duration_secs: 365 * 86_400,
            },
        ),
        asked,
    )
    .unwrap();
    assert!(overdue_demand(&calendar, &demand, demand.due_at - 1).is_none());
    let alert = overdue_demand(&calendar, &demand, demand.due_at + 86_400).unwrap();
    assert_eq!(
        (alert.rule, alert.department.as_str(), alert.subject.as_str()),
        (AlertRule::Overdue, "js.zrzy", demand.id.as_str())
    );
    assert!(alert.summary.contains("waits for js.zrzy"), "{}", alert.summary);
    let mut answered = demand.clone();
    answered.state = DemandState::Refused;
    assert!(overdue_demand(&calendar, &answered, demand.due_at + 86_400).is_none());

    let correction = new_correction(
        ("js.scjg", "js.gongan", "g-000002"),
        CorrectionRequest {
            dataset_id: "js.gongan/population".into(),
            key: "320102199001011234".into(),
            fields: vec!["name".into()],
            sequence: 41,
            problem: "姓名应为 张山".into(),
            evidence: "户口簿".into(),
        },
        &Served {
            fields: vec!["name".into()],
            latest_sequence: None,
        },
        "c",
        (&calendar, 5),
        asked,
    )
    .unwrap();
    assert!(overdue_correction(&calendar, &correction, correction.due_at - 1).is_none());
    let alert = overdue_correction(&calendar, &correction, correction.due_at).unwrap();
    assert_eq!(
        (alert.department.as_str(), alert.grant_id.as_str()),
        ("js.gongan", "g-000002")
    );
}

#[test]
fn a_grant_overdue_at_review_waits_for_the_data_authority() {
    let calendar = china();
    let asked = beijing("2026-12-01", 9, 0);
    let schema = crate::schema::check_dataset_schema(
        serde_json::json!({
            "type": "object",
            "required": ["id_number"],
            "properties": {"id_number": {"type": "string"}, "name": {"type": "string"}}
        }),
        "id_number",
    )
    .unwrap();
    let mut grant = crate::grant::new_grant(
        crate::grant::GrantRequest {
            consumer_id: "js.scjg".into(),
            dataset_id: "js.gongan/population".into(),
            fields: vec!["name".into()],
            clear_fields: vec![],
            row_filter: String::new(),
            purposes: vec!["business-licensing".into()],
            investigative_purposes: vec![],
            legal_basis: "《优化营商环境条例》".into(),
            expires_at: asked + 300 * 86_400,
        },
        &crate::testing::population(Classification::Conditional),
        &schema,
        crate::grant::GrantLimits {
            max_duration_secs: 365 * 86_400,
        },
        "spiffe://t/dept/js.scjg/system",
        asked,
    )
    .unwrap();
    grant.start_clock(&crate::grant::Clocks::default(), &calendar, asked);
    assert!(overdue_grant(&calendar, &grant, grant.steps.due_at - 1).is_none());
    let alert = overdue_grant(&calendar, &grant, grant.steps.due_at).unwrap();
    assert_eq!(alert.department, "", "the review is the data authority's");
    assert!(
        alert.summary.contains("waits for the data authority"),
        "{}",
        alert.summary
    );
    assert_eq!(alert.key, format!("overdue/grant/{}/{}", grant.id, grant.steps.due_at));
}

#[test]
fn forgotten_windows_count_again() {
    let config = AlertConfig::default();
    let calendar = china();
    let mut windows = Windows::default();
    for i in 0..5 {
        let event = read("js.scjg", MORNING + i, Decision::Deny, &[]);
        let event: Read<'_> = serde_json::from_str(&event).unwrap();
        windows.observe(&config, None, &calendar, &event, &mut |_, _| Vec::new());
    }
    assert_eq!(windows.denied.len(), 1);
    windows.forget_before(&calendar, (MORNING + 7200) * 1000);
    assert!(windows.denied.is_empty() && windows.distinct.is_empty());
}
