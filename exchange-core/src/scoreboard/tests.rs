//! The scoreboard of a fixture history, figure by figure, against sums done by hand (in the
//! comments). The period is November 2026, the board made on 1 December at 10:00 Beijing time.

use super::*;
use crate::compat::CompatMode;
use crate::correction::CorrectionState;
use crate::department::Level;
use crate::grant::clock::{Appeal, Steps};
use crate::testing::{beijing, china};

fn department(id: &str) -> Department {
    Department {
        id: id.into(),
        name: id.into(),
        level: Level::Province,
        region_code: "320000".into(),
        parent_id: None,
        node_endpoint: None,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

fn dataset(id: &str, classification: Classification, frequency: &str, created: UnixSeconds) -> Dataset {
    Dataset {
        id: id.into(),
        title: id.into(),
        description: String::new(),
        domain: String::new(),
        classification,
        update_frequency: frequency.into(),
        steward: String::new(),
        key_field: "id".into(),
        tags: vec![],
        compatibility: CompatMode::Backward,
        latest_version: 1,
        created_at: created,
        updated_at: created,
        revision: 0,
    }
}

/// A grant of `consumer` on `dataset` asked at `created`, in `state`, with `steps`.
fn grant(consumer: &str, dataset: &str, created: UnixSeconds, state: GrantState, steps: Steps) -> Grant {
    Grant {
        id: format!("g-{consumer}-{created}"),
        consumer_id: consumer.into(),
        dataset_id: dataset.into(),
        fields: vec!["id".into()],
        clear_fields: vec![],
        row_filter: String::new(),
        purposes: vec!["p".into()],
        investigative_purposes: vec![],
        legal_basis: "law".into(),
        expires_at: beijing("2027-12-31", 0, 0),
        state,
        reason: String::new(),
        requested_by: String::new(),
        decided_by: String::new(),
        created_at: created,
        updated_at: created,
        revision: 0,
        steps,
    }
}

/// Steps of a request reviewed at `reviewed`, due at `due`, decided at `decided` (0: not yet).
fn steps(reviewed: UnixSeconds, due: UnixSeconds, decided: UnixSeconds) -> Steps {
    Steps {
        stage: (decided == 0).then_some(Stage::Decision),
        due_at: due,
        reviewed_at: reviewed,
        decided_at: decided,
        ..Steps::default()
    }
}

fn demand(provider: &str, state: DemandState, due: UnixSeconds) -> Demand {
    Demand {
        id: format!("d-{provider}"),
        consumer_id: "js.rsj".into(),
        provider_id: provider.into(),
        title: "t".into(),
        fields: vec!["f".into()],
        purpose: "p".into(),
        legal_basis: "law".into(),
        expires_at: 0,
        state,
        due_at: due,
        dataset_id: String::new(),
        grant_id: String::new(),
        reason: String::new(),
        requested_by: String::new(),
        decided_by: String::new(),
        decided_in_place: false,
        created_at: 0,
        updated_at: 0,
        revision: 0,
    }
}

fn correction(provider: &str, state: CorrectionState, due: UnixSeconds, answered: UnixSeconds) -> Correction {
    Correction {
        id: format!("c-{provider}-{due}"),
        consumer_id: "js.rsj".into(),
        provider_id: provider.into(),
        dataset_id: format!("{provider}/x"),
        key: "k".into(),
        fields: vec!["f".into()],
        sequence: 1,
        problem: "p".into(),
        evidence: "e".into(),
        grant_id: String::new(),
        state,
        due_at: due,
        corrected_sequence: 0,
        answer: String::new(),
        requested_by: String::new(),
        decided_by: String::new(),
        decided_in_place: false,
        created_at: 0,
        answered_at: answered,
        revision: 0,
    }
}

fn date(text: &str) -> Date {
    crate::calendar::parse_date(text).unwrap()
}

#[test]
fn a_fixture_history_scores_as_counted_by_hand() {
    let day = |d: &str| beijing(d, 0, 0);
    let now = beijing("2026-12-01", 10, 0);
    let departments: Vec<Department> = ["js.gongan", "js.scjg", "js.zrzy", "js.rsj", "js.tj"]
        .into_iter()
        .map(department)
        .collect();
    let datasets = vec![
        dataset(
            "js.gongan/population",
            Classification::Conditional,
            "daily",
            day("2026-10-01"),
        ),
        dataset(
            "js.gongan/households",
            Classification::Conditional,
            "weekly",
            day("2026-10-01"),
        ),
        dataset(
            "js.gongan/archive",
            Classification::NotShared,
            "irregular",
            day("2026-10-01"),
        ),
        dataset(
            "js.scjg/legal-persons",
            Classification::Unconditional,
            "daily",
            day("2026-10-01"),
        ),
        dataset("js.zrzy/places", Classification::Open, "monthly", day("2026-06-01")),
        // Registered after the period: not counted.
        dataset(
            "js.zrzy/parcels",
            Classification::Conditional,
            "",
            beijing("2026-12-01", 9, 0),
        ),
        dataset(
            "js.tj/statistics",
            Classification::Unconditional,
            "daily",
            day("2026-10-01"),
        ),
    ];
    let last_change: BTreeMap<String, UnixSeconds> = [
        // 2 hours ago: fresh (daily: 36 hours allowed).
        ("js.gongan/population", beijing("2026-12-01", 8, 0)),
        // 11 days ago: stale (weekly: 10.5 days allowed).
        ("js.gongan/households", beijing("2026-11-20", 10, 0)),
        ("js.scjg/legal-persons", beijing("2026-11-30", 20, 0)),
        ("js.tj/statistics", beijing("2026-12-01", 6, 0)),
        // js.zrzy/places never reported: unchanged since 1 June, stale.
    ]
    .into_iter()
    .map(|(id, at)| (id.to_string(), at))
    .collect();
    let population = "js.gongan/population";
    let households = "js.gongan/households";
    let grants = vec![
        // Reviewed Wed 4 Nov, due at the end of Wed 11 Nov, approved Fri 6 Nov: 2 working days,
        // on time, given.
        grant(
            "js.scjg",
            population,
            beijing("2026-11-03", 9, 0),
            GrantState::Approved,
            steps(
                beijing("2026-11-04", 10, 0),
                day("2026-11-12"),
                beijing("2026-11-06", 15, 0),
            ),
        ),
        // Reviewed Mon 9 Nov, due at the end of Mon 16 Nov, rejected Wed 18 Nov: 7 working days
        // (10-13, 16-18), late.
        grant(
            "js.rsj",
            population,
            beijing("2026-11-09", 9, 0),
            GrantState::Rejected,
            steps(
                beijing("2026-11-09", 11, 0),
                day("2026-11-17"),
                beijing("2026-11-18", 10, 0),
            ),
        ),
        // Waiting, due at the end of Wed 2 December: pending, not overdue.
        grant(
            "js.zrzy",
            households,
            beijing("2026-11-25", 9, 0),
            GrantState::Requested,
            steps(beijing("2026-11-25", 10, 0), day("2026-12-03"), 0),
        ),
        // Asked in October, waiting since: pending and overdue, not asked in the period.
        grant(
            "js.rsj",
            households,
            beijing("2026-10-10", 9, 0),
            GrantState::Requested,
            steps(beijing("2026-10-12", 9, 0), day("2026-10-20"), 0),
        ),
        // Asked and decided in October: outside the period.
        grant(
            "js.scjg",
            households,
            beijing("2026-10-20", 9, 0),
            GrantState::Approved,
            steps(
                beijing("2026-10-20", 10, 0),
                day("2026-10-28"),
                beijing("2026-10-22", 9, 0),
            ),
        ),
        // Approved at once on an unconditional dataset in November: asked and given.
        grant(
            "js.gongan",
            "js.scjg/legal-persons",
            beijing("2026-11-10", 9, 0),
            GrantState::Approved,
            Steps::default(),
        ),
        // ... and on 1 December: outside the period.
        grant(
            "js.rsj",
            "js.scjg/legal-persons",
            beijing("2026-12-01", 9, 0),
            GrantState::Approved,
            Steps::default(),
        ),
    ];
    let demands = vec![
        demand("js.zrzy", DemandState::Open, day("2026-11-20")),
        demand("js.gongan", DemandState::Answered, day("2026-11-20")),
    ];
    let corrections = vec![
        correction(
            "js.gongan",
            CorrectionState::Corrected,
            day("2026-11-13"),
            beijing("2026-11-12", 9, 0),
        ),
        correction(
            "js.gongan",
            CorrectionState::Confirmed,
            day("2026-11-19"),
            beijing("2026-11-20", 9, 0),
        ),
        correction("js.gongan", CorrectionState::Open, day("2026-12-05"), 0),
        correction(
            "js.scjg",
            CorrectionState::Rejected,
            day("2026-11-10"),
            beijing("2026-11-05", 9, 0),
        ),
    ];
    let reads: BTreeMap<String, Reads> = [
        (
            "js.gongan".to_string(),
            Reads {
                served: 1200,
                denied: 30,
            },
        ),
        ("js.scjg".to_string(), Reads { served: 400, denied: 0 }),
    ]
    .into();
    let history = History {
        departments: &departments,
        datasets: &datasets,
        grants: &grants,
        demands: &demands,
        corrections: &corrections,
        last_change: &last_change,
        reads: &reads,
    };
    let calendar = china();
    let period = Period::days(&calendar, date("2026-11-01"), date("2026-11-30")).unwrap();
    let board = scoreboard(&history, period, now, &calendar, &AlertConfig::default());
    let order: Vec<(&str, u32, Option<f64>)> = board.iter().map(|s| (s.department.as_str(), s.rank, s.score)).collect();
    // js.scjg and js.tj: every part that applies is whole, 100.0, sharing first place (by id).
    // js.gongan: freshness 1/2, decisions on time 1/2, corrections on time 1/2, nothing
    // overdue 1 - 1/3: (0.5 + 0.5 + 0.5 + 0.6667) / 4 = 0.5417, 54.2.
    // js.zrzy: freshness 0/1, nothing overdue 1 - 1/1 = 0: 0.0. js.rsj: nothing applies.
    assert_eq!(
        order,
        [
            ("js.scjg", 1, Some(100.0)),
            ("js.tj", 1, Some(100.0)),
            ("js.gongan", 3, Some(54.2)),
            ("js.zrzy", 4, Some(0.0)),
            ("js.rsj", 5, None),
        ]
    );
    let gongan = &board[2];
    assert_eq!(
        gongan.datasets,
        ByClass {
            unconditional: 0,
            conditional: 2,
            not_shared: 1,
            open: 0
        }
    );
    assert_eq!((gongan.judged, gongan.fresh), (2, 1), "archive is irregular");
    assert_eq!((gongan.requested, gongan.given), (3, 1));
    assert_eq!(
        (gongan.decided, gongan.decided_on_time, gongan.median_decision_days),
        (2, 1, Some(4.5)),
        "the median of 2 and 7 working days"
    );
    assert_eq!((gongan.pending, gongan.overdue), (3, 1), "two grants and a correction");
    assert_eq!((gongan.corrections_answered, gongan.corrections_on_time), (2, 1));
    assert_eq!(
        gongan.reads,
        Reads {
            served: 1200,
            denied: 30
        }
    );
    let scjg = &board[0];
    assert_eq!((scjg.requested, scjg.given, scjg.decided), (1, 1, 0));
    assert_eq!(scjg.median_decision_days, None);
    assert_eq!((scjg.corrections_answered, scjg.corrections_on_time), (1, 1));
    let zrzy = &board[3];
    assert_eq!(zrzy.datasets.open, 1, "parcels came after the period");
    assert_eq!((zrzy.judged, zrzy.fresh, zrzy.pending, zrzy.overdue), (1, 0, 1, 1));
}

#[test]
fn a_grant_given_on_appeal_counts_when_the_appeal_was_answered() {
    let mut g = grant(
        "js.scjg",
        "js.gongan/population",
        beijing("2026-10-01", 9, 0),
        GrantState::Approved,
        steps(0, beijing("2026-10-09", 0, 0), beijing("2026-10-08", 9, 0)),
    );
    g.steps.appeal = Some(Appeal {
        rejected_for: "no".into(),
        grounds: "yes".into(),
        appealed_by: String::new(),
        appealed_at: beijing("2026-10-09", 9, 0),
        due_at: beijing("2026-10-17", 0, 0),
        outcome: Some(AppealOutcome::Overturned),
        decided_by: String::new(),
        decided_at: beijing("2026-11-02", 9, 0),
        reason: "article 35".into(),
    });
    assert_eq!(given_at(&g), Some(beijing("2026-11-02", 9, 0)));
    assert!(Period::days(&china(), date("2026-11-02"), date("2026-11-01")).is_err());
}
