//! Stored data outlives the code that wrote it: the core types the registry and the nodes keep
//! (departments, datasets, schema versions, grants, demands, correction requests, alerts,
//! ledger entries) must decode from every form any release wrote. `fixtures/stored/<date>/` holds each
//! type as the code of that date writes it; a set is never changed or removed once committed. A set holds the types whose stored form
//! changed that day (`<date>.<n>` for a second change on one date); a type's newest form is in
//! the newest set that has it.
//!
//! The rule (ARCHITECTURE.md, "stored types evolve"): a field added to a stored type gets
//! `#[serde(default)]` (or `default = "..."`) with a default that means what the old data
//! meant; no stored field or value name is renamed or removed. Adding a field breaks
//! [`the_newest_set_is_what_this_code_writes`]: add a new set, and give every older set's
//! expected value the default the old data reads with.

use crate::catalog::{Classification, Dataset, SchemaVersion};
use crate::compat::CompatMode;
use crate::department::{Department, Level};
use crate::grant::{Grant, GrantState};
use crate::ledger::{self, AuditEvent, Decision};
use crate::mask::Sensitivity;
use crate::schema::SensitiveField;

/// The set of 2026-12-01, the first: what every type looked like then.
mod set_2026_12_01 {
    use super::*;

    pub(super) const DEPARTMENT: &[u8] = include_bytes!("../fixtures/stored/2026-12-01/department.json");
    pub(super) const DATASET: &[u8] = include_bytes!("../fixtures/stored/2026-12-01/dataset.json");
    pub(super) const SCHEMA_VERSION: &[u8] = include_bytes!("../fixtures/stored/2026-12-01/schema_version.json");
    pub(super) const GRANT: &[u8] = include_bytes!("../fixtures/stored/2026-12-01/grant.json");
    pub(super) const LEDGER: &[u8] = include_bytes!("../fixtures/stored/2026-12-01/audit.ledger");

    pub(super) fn department() -> Department {
        Department {
            id: "js.nj.gongan".into(),
            name: "南京市公安局".into(),
            level: Level::City,
            region_code: "320100".into(),
            parent_id: Some("js.gongan".into()),
            node_endpoint: Some("https://node.nj-gongan.example:7401".into()),
            created_at: 1_796_000_000,
            updated_at: 1_796_000_100,
            revision: 12,
        }
    }

    pub(super) fn dataset() -> Dataset {
        Dataset {
            id: "js.gongan/population".into(),
            title: "人口基础信息".into(),
            description: "户籍人口的基础信息".into(),
            domain: "population".into(),
            classification: Classification::Conditional,
            update_frequency: "daily".into(),
            steward: "人口管理处".into(),
            key_field: "id_number".into(),
            tags: vec!["人口".into(), "户籍".into()],
            compatibility: CompatMode::BackwardTransitive,
            latest_version: 2,
            created_at: 1_796_000_200,
            updated_at: 1_796_000_300,
            revision: 15,
        }
    }

    pub(super) fn schema_version() -> SchemaVersion {
        SchemaVersion {
            dataset_id: "js.gongan/population".into(),
            version: 2,
            schema_json: r#"{"type":"object","required":["id_number"],"properties":{"id_number":{"type":"string","x-sensitivity":"id_number"},"name":{"type":"string","x-sensitivity":"name"}}}"#.into(),
            sensitive_fields: vec![
                SensitiveField {
                    pointer: "/properties/id_number".into(),
                    sensitivity: Sensitivity::IdNumber,
                },
                SensitiveField {
                    pointer: "/properties/name".into(),
                    sensitivity: Sensitivity::Name,
                },
            ],
            created_at: 1_796_000_250,
        }
    }

    pub(super) fn grant() -> Grant {
        Grant {
            id: "g-000042".into(),
            consumer_id: "js.scjg".into(),
            dataset_id: "js.gongan/population".into(),
            fields: vec!["id_number".into(), "name".into(), "birth_date".into()],
            clear_fields: vec!["name".into()],
            row_filter: "household_register_region STARTS WITH \"3201\"".into(),
            purposes: vec!["business-licensing".into()],
            investigative_purposes: vec![],
            legal_basis: "《优化营商环境条例》".into(),
            expires_at: 1_803_776_000,
            state: GrantState::Revoked,
            reason: "case closed".into(),
            requested_by: "spiffe://exchange.example/dept/js.scjg/system".into(),
            decided_by: "spiffe://exchange.example/dept/js.gongan/system".into(),
            created_at: 1_796_000_400,
            updated_at: 1_796_000_500,
            revision: 17,
            steps: Default::default(),
        }
    }

    pub(super) fn events() -> Vec<AuditEvent> {
        vec![
            AuditEvent {
                time_ms: 1_796_000_600_123,
                node: "js.gongan".into(),
                principal: "spiffe://exchange.example/dept/js.scjg/system".into(),
                department: "js.scjg".into(),
                operation: "get".into(),
                dataset: "js.gongan/population".into(),
                schema_version: 2,
                fields: vec!["id_number".into(), "name".into()],
                keys: vec!["320102198801010012".into()],
                count: 1,
                purpose: "business-licensing".into(),
                case_id: "case-42".into(),
                decision: Decision::Allow,
                reason: "grant g-000042 for purpose business-licensing".into(),
                grant_id: "g-000042".into(),
                served_sha256: String::new(),
                withheld_until: 0,
            },
            AuditEvent {
                time_ms: 1_796_000_600_456,
                node: "js.gongan".into(),
                principal: "spiffe://exchange.example/dept/js.rsj/node".into(),
                department: "js.rsj".into(),
                operation: "query".into(),
                dataset: "js.gongan/population".into(),
                schema_version: 0,
                fields: vec!["phone".into()],
                keys: vec![],
                count: 0,
                purpose: "social-assistance-review".into(),
                case_id: String::new(),
                decision: Decision::Deny,
                reason: "no grant: js.rsj holds no grant on js.gongan/population; request one from the registry".into(),
                grant_id: String::new(),
                served_sha256: String::new(),
                withheld_until: 0,
            },
        ]
    }

    #[test]
    fn every_type_decodes_as_written() {
        assert_eq!(serde_json::from_slice::<Department>(DEPARTMENT).unwrap(), department());
        assert_eq!(serde_json::from_slice::<Dataset>(DATASET).unwrap(), dataset());
        let version: SchemaVersion = serde_json::from_slice(SCHEMA_VERSION).unwrap();
        let expected = schema_version();
        assert_eq!(
            (
                version.dataset_id,
                version.version,
                version.schema_json,
                version.created_at
            ),
            (
                expected.dataset_id,
                expected.version,
                expected.schema_json,
                expected.created_at
            )
        );
        assert_eq!(version.sensitive_fields, expected.sensitive_fields);
        assert_eq!(serde_json::from_slice::<Grant>(GRANT).unwrap(), grant());
        // The first ledger form is read (chain verified) to migrate it: its events, as stored.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("audit.ledger"), LEDGER).unwrap();
        let stored = ledger::v1_events(&dir.path().join("audit.ledger")).unwrap();
        let events: Vec<AuditEvent> = stored.iter().map(|e| serde_json::from_slice(e).unwrap()).collect();
        assert_eq!(events, self::events());
    }
}

/// A ledger's `events` file of `events`: each one's leaf, then a newline.
fn events_file(events: &[AuditEvent]) -> Vec<u8> {
    let mut file = Vec::new();
    for event in events {
        file.extend(ledger::encode(event).unwrap());
        file.push(b'\n');
    }
    file
}

/// The events an `events` file holds.
fn events_of(file: &[u8]) -> Vec<AuditEvent> {
    file.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// The set of 2026-12-01.2: the ledger became a Merkle log (`ledger/events`, one event a line)
/// and events gained `served_sha256`.
mod set_2026_12_01_2 {
    use super::*;

    pub(super) const LEDGER_EVENTS: &[u8] = include_bytes!("../fixtures/stored/2026-12-01.2/ledger/events");

    pub(super) fn events() -> Vec<AuditEvent> {
        let mut events = super::set_2026_12_01::events();
        events[0].served_sha256 = "5d41402abc4b2a76b9719d911017c592ae0b3a5fb7e1d4c8c2bb6a9a0e3b3d1a".into();
        events
    }

    /// The events file those events make.
    pub(super) fn ledger_events() -> Vec<u8> {
        super::events_file(&events())
    }

    #[test]
    fn every_type_decodes_as_written() {
        assert_eq!(super::events_of(LEDGER_EVENTS), self::events());
    }
}

/// The set of 2026-12-01.3: grants gained investigative purposes and events `withheld_until`
/// (both left out of the encoding while empty, so the earlier sets' forms are still written).
mod set_2026_12_01_3 {
    use super::*;

    pub(super) const GRANT: &[u8] = include_bytes!("../fixtures/stored/2026-12-01.3/grant.json");
    pub(super) const LEDGER_EVENTS: &[u8] = include_bytes!("../fixtures/stored/2026-12-01.3/ledger/events");

    pub(super) fn grant() -> Grant {
        let mut grant = super::set_2026_12_01::grant();
        grant.purposes.push("fraud-investigation".into());
        grant.investigative_purposes = vec!["fraud-investigation".into()];
        grant
    }

    pub(super) fn events() -> Vec<AuditEvent> {
        let mut events = super::set_2026_12_01_2::events();
        events[0].purpose = "fraud-investigation".into();
        events[0].withheld_until = 1_799_000_000;
        events
    }

    pub(super) fn ledger_events() -> Vec<u8> {
        super::events_file(&events())
    }

    #[test]
    fn every_type_decodes_as_written() {
        assert_eq!(serde_json::from_slice::<Grant>(GRANT).unwrap(), grant());
        assert_eq!(super::events_of(LEDGER_EVENTS), self::events());
    }
}

/// The set of 2026-12-02: grants gained their steps (the review, the due date, a decision in
/// the owner's place, the appeal, the demand answered), flattened into the grant and left out
/// while empty.
mod set_2026_12_02 {
    use super::*;
    use crate::grant::{Appeal, AppealOutcome, Stage, Steps};

    pub(super) const GRANT: &[u8] = include_bytes!("../fixtures/stored/2026-12-02/grant.json");
    pub(super) const REQUESTED: &[u8] = include_bytes!("../fixtures/stored/2026-12-02/grant-requested.json");

    /// Rejected by its owner, appealed, and approved on appeal.
    pub(super) fn grant() -> Grant {
        let mut grant = super::set_2026_12_01_3::grant();
        grant.state = GrantState::Approved;
        grant.reason = "approved on appeal: article 35 applies".into();
        grant.decided_by = "spiffe://exchange.example/dept/js.dsj/admin".into();
        grant.steps = Steps {
            stage: None,
            due_at: 1_796_400_000,
            reviewed_by: "spiffe://exchange.example/dept/js.dsj/admin".into(),
            reviewed_at: 1_796_000_450,
            decided_in_place: false,
            decided_at: 0,
            appeal: Some(Appeal {
                rejected_for: "names are not needed to register a company".into(),
                grounds: "article 35 names the legal representative".into(),
                appealed_by: "spiffe://exchange.example/dept/js.scjg/system".into(),
                appealed_at: 1_796_000_480,
                due_at: 1_796_600_000,
                outcome: Some(AppealOutcome::Overturned),
                decided_by: "spiffe://exchange.example/dept/js.dsj/admin".into(),
                decided_at: 1_796_000_500,
                reason: "article 35 applies".into(),
            }),
            demand_id: String::new(),
        };
        grant
    }

    /// Waiting at the data authority's review, made from a data demand.
    pub(super) fn requested() -> Grant {
        let mut grant = super::set_2026_12_01_3::grant();
        grant.state = GrantState::Requested;
        grant.reason = String::new();
        grant.steps.stage = Some(Stage::Review);
        grant.steps.due_at = 1_796_200_000;
        grant.steps.demand_id = "d-000003".into();
        grant
    }

    #[test]
    fn every_type_decodes_as_written() {
        assert_eq!(serde_json::from_slice::<Grant>(GRANT).unwrap(), grant());
        assert_eq!(serde_json::from_slice::<Grant>(REQUESTED).unwrap(), requested());
    }
}

/// The set of 2026-12-02.2: the first forms of data demands and correction requests (one
/// answered, one open: the fields left out while empty).
mod set_2026_12_02_2 {
    use crate::correction::{Correction, CorrectionState};
    use crate::demand::{Demand, DemandState};

    pub(super) const DEMAND: &[u8] = include_bytes!("../fixtures/stored/2026-12-02.2/demand.json");
    pub(super) const CORRECTION: &[u8] = include_bytes!("../fixtures/stored/2026-12-02.2/correction.json");
    pub(super) const CORRECTION_OPEN: &[u8] = include_bytes!("../fixtures/stored/2026-12-02.2/correction-open.json");

    /// Answered with a dataset, in the provider's place.
    pub(super) fn demand() -> Demand {
        Demand {
            id: "d-000003".into(),
            consumer_id: "js.scjg".into(),
            provider_id: "js.zrzy".into(),
            title: "不动产登记信息".into(),
            fields: vec!["parcel_code".into(), "owner_name".into()],
            purpose: "business-licensing".into(),
            legal_basis: "《优化营商环境条例》".into(),
            expires_at: 1_810_000_000,
            state: DemandState::Answered,
            due_at: 1_796_900_000,
            dataset_id: "js.zrzy/real-estate".into(),
            grant_id: "g-000009".into(),
            reason: String::new(),
            requested_by: "spiffe://exchange.example/dept/js.scjg/system".into(),
            decided_by: "spiffe://exchange.example/dept/js.dsj/admin".into(),
            decided_in_place: true,
            created_at: 1_796_000_600,
            updated_at: 1_796_950_000,
            revision: 40,
        }
    }

    /// Corrected by the owner.
    pub(super) fn correction() -> Correction {
        Correction {
            state: CorrectionState::Corrected,
            corrected_sequence: 57,
            answer: "户籍信息已更正".into(),
            decided_by: "spiffe://exchange.example/dept/js.gongan/system".into(),
            answered_at: 1_796_300_000,
            revision: 44,
            ..open()
        }
    }

    /// Waiting for the owner.
    pub(super) fn open() -> Correction {
        Correction {
            id: "c-000001".into(),
            consumer_id: "js.scjg".into(),
            provider_id: "js.gongan".into(),
            dataset_id: "js.gongan/population".into(),
            key: "320102199001010011".into(),
            fields: vec!["name".into()],
            sequence: 41,
            problem: "姓名应为 张山".into(),
            evidence: "户口簿 第0012345号".into(),
            grant_id: "g-000002".into(),
            state: CorrectionState::Open,
            due_at: 1_796_400_000,
            corrected_sequence: 0,
            answer: String::new(),
            requested_by: "spiffe://exchange.example/dept/js.scjg/system".into(),
            decided_by: String::new(),
            decided_in_place: false,
            created_at: 1_796_000_700,
            answered_at: 0,
            revision: 43,
        }
    }

    #[test]
    fn every_type_decodes_as_written() {
        assert_eq!(serde_json::from_slice::<Demand>(DEMAND).unwrap(), demand());
        assert_eq!(serde_json::from_slice::<Correction>(CORRECTION).unwrap(), correction());
        assert_eq!(serde_json::from_slice::<Correction>(CORRECTION_OPEN).unwrap(), open());
    }
}

/// The set of 2026-12-03: the first form of alerts (one acknowledged, one open: the fields left
/// out while empty).
mod set_2026_12_03 {
    use crate::alert::{Alert, AlertRule, AlertState};

    pub(super) const ALERT: &[u8] = include_bytes!("../fixtures/stored/2026-12-03/alert.json");
    pub(super) const ALERT_OPEN: &[u8] = include_bytes!("../fixtures/stored/2026-12-03/alert-open.json");

    /// Raised for denied reads, acknowledged by an admin.
    pub(super) fn alert() -> Alert {
        Alert {
            id: "a-000007".into(),
            rule: AlertRule::DeniedReads,
            key: "denied_reads/js.scjg/498889".into(),
            department: "js.scjg".into(),
            subject: "js.scjg".into(),
            dataset_id: "js.gongan/population".into(),
            grant_id: String::new(),
            summary: "js.scjg had 20 reads denied in the hour from 2026-12-01 09:00 +08:00".into(),
            observed: 20,
            threshold: 20,
            window_from_ms: 1_796_000_400_000,
            window_to_ms: 1_796_004_000_000,
            raised_at_ms: 1_796_001_234_567,
            state: AlertState::Acknowledged,
            acknowledged_by: "spiffe://exchange.example/dept/js.dsj/admin".into(),
            acknowledged_at_ms: 1_796_002_000_000,
            note: "一次系统升级后用途填写错误，已修正".into(),
        }
    }

    /// A node gone silent, open.
    pub(super) fn open() -> Alert {
        Alert {
            id: "a-000008".into(),
            rule: AlertRule::NodeSilent,
            key: "node_silent/js.gongan/1796000000".into(),
            department: "js.gongan".into(),
            subject: "js.gongan".into(),
            dataset_id: String::new(),
            summary: "js.gongan's node has not reported to the registry since 2026-12-01 09:33 +08:00 (31 minutes)"
                .into(),
            observed: 31,
            threshold: 30,
            window_from_ms: 1_796_000_000_000,
            window_to_ms: 1_796_001_860_000,
            raised_at_ms: 1_796_001_860_000,
            state: AlertState::Open,
            acknowledged_by: String::new(),
            acknowledged_at_ms: 0,
            note: String::new(),
            ..alert()
        }
    }

    #[test]
    fn every_type_decodes_as_written() {
        assert_eq!(serde_json::from_slice::<Alert>(ALERT).unwrap(), alert());
        assert_eq!(serde_json::from_slice::<Alert>(ALERT_OPEN).unwrap(), open());
    }
}

/// The set of 2026-12-03.2: a grant keeps when its owner decided it (`decided_at`).
mod set_2026_12_03_2 {
    use crate::grant::{Grant, GrantState};

    pub(super) const GRANT: &[u8] = include_bytes!("../fixtures/stored/2026-12-03.2/grant.json");

    /// Reviewed, then approved by its owner at the decision step.
    pub(super) fn grant() -> Grant {
        let mut grant = super::set_2026_12_02::requested();
        grant.state = GrantState::Approved;
        grant.reason = "identity check".into();
        grant.decided_by = "spiffe://exchange.example/dept/js.gongan/system".into();
        grant.steps.stage = None;
        grant.steps.due_at = 1_796_400_000;
        grant.steps.reviewed_by = "spiffe://exchange.example/dept/js.dsj/admin".into();
        grant.steps.reviewed_at = 1_796_000_450;
        grant.steps.decided_at = 1_796_090_000;
        grant.updated_at = 1_796_090_000;
        grant
    }

    #[test]
    fn every_type_decodes_as_written() {
        assert_eq!(serde_json::from_slice::<Grant>(GRANT).unwrap(), grant());
    }
}

/// What today's code writes, byte for byte, must be the newest set: a type whose stored form
/// changed needs a new set (see the module documentation).
#[test]
fn the_newest_set_is_what_this_code_writes() {
    use set_2026_12_01 as newest;
    let check = |name: &str, today: Vec<u8>, fixture: &[u8]| {
        assert!(
            today == fixture,
            "{name}: this code writes a form the newest fixture set does not have; add a set with:\n{}",
            String::from_utf8_lossy(&today)
        );
    };
    // Compact serde JSON, as the servers write them.
    let json = |v: serde_json::Result<Vec<u8>>| v.unwrap();
    check(
        "department.json",
        json(serde_json::to_vec(&newest::department())),
        newest::DEPARTMENT,
    );
    check(
        "dataset.json",
        json(serde_json::to_vec(&newest::dataset())),
        newest::DATASET,
    );
    check(
        "schema_version.json",
        json(serde_json::to_vec(&newest::schema_version())),
        newest::SCHEMA_VERSION,
    );
    check("grant.json", json(serde_json::to_vec(&newest::grant())), newest::GRANT);
    check(
        "ledger/events",
        set_2026_12_01_2::ledger_events(),
        set_2026_12_01_2::LEDGER_EVENTS,
    );
    check(
        "2026-12-01.3/grant.json",
        json(serde_json::to_vec(&set_2026_12_01_3::grant())),
        set_2026_12_01_3::GRANT,
    );
    check(
        "2026-12-02/grant.json",
        json(serde_json::to_vec(&set_2026_12_02::grant())),
        set_2026_12_02::GRANT,
    );
    check(
        "2026-12-02/grant-requested.json",
        json(serde_json::to_vec(&set_2026_12_02::requested())),
        set_2026_12_02::REQUESTED,
    );
    check(
        "2026-12-03.2/grant.json",
        json(serde_json::to_vec(&set_2026_12_03_2::grant())),
        set_2026_12_03_2::GRANT,
    );
    check(
        "2026-12-03/alert.json",
        json(serde_json::to_vec(&set_2026_12_03::alert())),
        set_2026_12_03::ALERT,
    );
    check(
        "2026-12-03/alert-open.json",
        json(serde_json::to_vec(&set_2026_12_03::open())),
        set_2026_12_03::ALERT_OPEN,
    );
    check(
        "2026-12-02.2/demand.json",
        json(serde_json::to_vec(&set_2026_12_02_2::demand())),
        set_2026_12_02_2::DEMAND,
    );
    check(
        "2026-12-02.2/correction.json",
        json(serde_json::to_vec(&set_2026_12_02_2::correction())),
        set_2026_12_02_2::CORRECTION,
    );
    check(
        "2026-12-02.2/correction-open.json",
        json(serde_json::to_vec(&set_2026_12_02_2::open())),
        set_2026_12_02_2::CORRECTION_OPEN,
    );
    check(
        "2026-12-01.3/ledger/events",
        set_2026_12_01_3::ledger_events(),
        set_2026_12_01_3::LEDGER_EVENTS,
    );
}
