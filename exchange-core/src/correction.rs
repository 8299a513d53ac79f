//! Correction requests (疑义数据校核): a consumer that read a record questions it, and the
//! provider checks it.
//!
//! ```text
//! open ─▶ corrected (at change-feed sequence N of the record)
//!   ├──▶ confirmed (the record is right as it is)
//!   └──▶ rejected (with a reason: the request is not one to act on)
//! ```
//!
//! A consumer may question only a record it has been served under a grant it still holds, and
//! only fields it was served: the request names what the consumer has already read, so neither
//! it nor its answer says anything the grant does not show. The registry holds no records, so
//! "has been served" is read from the reading node's shipped audit events (the registry's
//! service looks them up; [`new_correction`] is given what they served).
//!
//! The provider answers within `grants.correction_days` working days (default 5); an open
//! request past its due date is overdue and waits for the data authority too, whose admins may
//! answer in the provider's place (recorded as such), as with grant requests and demands.

use serde::{Deserialize, Serialize};

use crate::calendar::WorkingCalendar;
use crate::catalog::check_field_name;
use crate::closed_set::closed_set;
use crate::error::{CoreError, ValidationError};
use crate::UnixSeconds;

closed_set! {
    /// Where a correction request stands.
    pub enum CorrectionState ("state", "correction state") {
        /// Waiting for the provider.
        Open = "open",
        /// The provider corrected the record: see `corrected_sequence`.
        Corrected = "corrected",
        /// The provider checked the record and it is right.
        Confirmed = "confirmed",
        /// The provider will not act on it, and says why.
        Rejected = "rejected",
    }
}

/// Longest text of a problem, evidence or answer, in characters.
pub const MAX_TEXT: usize = 2000;

/// What a consumer questions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorrectionRequest {
    /// The dataset of the record.
    pub dataset_id: String,
    /// The record's key.
    pub key: String,
    /// The fields that look wrong.
    pub fields: Vec<String>,
    /// The change-feed sequence of the record as it was read (each served record carries it).
    pub sequence: u64,
    /// What looks wrong, and what the consumer believes is right.
    pub problem: String,
    /// What the belief rests on: a document, a register, a case number.
    pub evidence: String,
}

/// A correction request as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    /// `c-000001`, unique in the registry.
    pub id: String,
    /// The department asking (the reader).
    pub consumer_id: String,
    /// The dataset's owner, asked to check.
    pub provider_id: String,
    pub dataset_id: String,
    pub key: String,
    pub fields: Vec<String>,
    /// The record's sequence as the consumer read it.
    pub sequence: u64,
    pub problem: String,
    pub evidence: String,
    /// The consumer's grant on the dataset when it asked.
    pub grant_id: String,
    pub state: CorrectionState,
    /// When the provider's answer is due.
    pub due_at: UnixSeconds,
    /// Corrected: the change-feed sequence of the change that corrected the record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub corrected_sequence: u64,
    /// The provider's answer in words (required when rejected).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub answer: String,
    /// Certificate URI of who asked.
    pub requested_by: String,
    /// Certificate URI of who answered.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decided_by: String,
    /// Answered by an admin of the data authority in the provider's place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decided_in_place: bool,
    pub created_at: UnixSeconds,
    /// When it was answered (0 while open).
    #[serde(default, skip_serializing_if = "is_zero_time")]
    pub answered_at: UnixSeconds,
    /// The registry revision of its last change.
    pub revision: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_time(t: &UnixSeconds) -> bool {
    *t == 0
}

/// What the consumer has been served of the record, read from the shipped audit events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Every field served of it, in any read.
    pub fields: Vec<String>,
    /// The dataset's last change-feed sequence, as its node last reported it (none when it has
    /// not reported): no record was read at a later one.
    pub latest_sequence: Option<u64>,
}

/// Checks that `sequence` (named in `field`) is one the dataset of `dataset_id` has reached, by
/// `latest`, its last sequence its node reported (not checked when it has not reported).
pub fn check_sequence(field: &str, sequence: u64, dataset_id: &str, latest: Option<u64>) -> Result<(), CoreError> {
    match latest {
        Some(latest) if sequence > latest => Err(CoreError::FailedPrecondition(format!(
            "{field} {sequence} is past the last change of {dataset_id} its node reported ({latest}): \
             name the sequence `exchange get --sequences` prints for the record (a node reports a \
             change within seconds; if it was published just now, try again shortly)"
        ))),
        _ => Ok(()),
    }
}

fn text(field: &str, value: &str, what: &str) -> Result<String, CoreError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_TEXT {
        return Err(ValidationError::new(field, format!("{what}, in at most {MAX_TEXT} characters")).into());
    }
    Ok(value.to_string())
}

/// Checks a correction request by `consumer_id` on a dataset of `provider_id`, holding
/// `grant_id`, and returns it open, due in `days` working days. `served` is what the consumer
/// was served of the record: a request about a record it was not served, or about fields it was
/// not served, is refused.
pub fn new_correction(
    (consumer_id, provider_id, grant_id): (&str, &str, &str),
    request: CorrectionRequest,
    served: &Served,
    requested_by: &str,
    (calendar, days): (&WorkingCalendar, u32),
    now: UnixSeconds,
) -> Result<Correction, CoreError> {
    if consumer_id == provider_id {
        return Err(ValidationError::new(
            "dataset_id",
            "a department corrects its own records by publishing them again",
        )
        .into());
    }
    if request.key.is_empty() {
        return Err(ValidationError::new("key", "name the record's key").into());
    }
    if request.fields.is_empty() {
        return Err(ValidationError::new("fields", "name at least one field that looks wrong").into());
    }
    let mut fields: Vec<String> = Vec::new();
    for field in &request.fields {
        check_field_name(field, "fields")?;
        if !fields.contains(field) {
            fields.push(field.clone());
        }
    }
    if request.sequence == 0 {
        return Err(ValidationError::new(
            "sequence",
            "give the record's sequence as you read it (every record served carries one)",
        )
        .into());
    }
    let problem = text("problem", &request.problem, "say what looks wrong")?;
    let evidence = text(
        "evidence",
        &request.evidence,
        "say what shows it (a document, a register, a case)",
    )?;
    if served.fields.is_empty() {
        return Err(CoreError::FailedPrecondition(format!(
            "no read by {consumer_id} of record {} of {} has reached the registry: question a record \
             you have been served (a node ships its reads within seconds; if you read it just now, \
             try again shortly)",
            request.key, request.dataset_id
        )));
    }
    check_sequence(
        "sequence",
        request.sequence,
        &request.dataset_id,
        served.latest_sequence,
    )?;
    let unserved: Vec<&str> = fields
        .iter()
        .filter(|f| !served.fields.contains(f))
        .map(String::as_str)
        .collect();
    if !unserved.is_empty() {
        return Err(ValidationError::new(
            "fields",
            format!(
                "{} never served to {consumer_id} from this record; question only fields you were served ({})",
                unserved.join(", "),
                served.fields.join(", ")
            ),
        )
        .into());
    }
    Ok(Correction {
        id: String::new(),
        consumer_id: consumer_id.to_string(),
        provider_id: provider_id.to_string(),
        dataset_id: request.dataset_id,
        key: request.key,
        fields,
        sequence: request.sequence,
        problem,
        evidence,
        grant_id: grant_id.to_string(),
        state: CorrectionState::Open,
        due_at: calendar.due(now, days),
        corrected_sequence: 0,
        answer: String::new(),
        requested_by: requested_by.to_string(),
        decided_by: String::new(),
        decided_in_place: false,
        created_at: now,
        answered_at: 0,
        revision: 0,
    })
}

/// How the provider answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Corrected by the change at this change-feed sequence.
    Corrected(u64),
    /// The record is right.
    Confirmed,
    /// Not acted on.
    Rejected,
}

impl Correction {
    /// Whether it is open past its due date (escalated to the data authority).
    pub fn is_overdue(&self, now: UnixSeconds) -> bool {
        self.state == CorrectionState::Open && now >= self.due_at
    }

    /// Refuses a request answered already.
    pub fn check_open(&self) -> Result<(), CoreError> {
        if self.state != CorrectionState::Open {
            return Err(CoreError::FailedPrecondition(format!(
                "correction {} is {} already",
                self.id, self.state
            )));
        }
        Ok(())
    }

    /// Answers it: `note` is optional except for a rejection. A correction must name a change
    /// after the version questioned.
    pub fn answer(
        &mut self,
        answer: Answer,
        note: &str,
        by: &str,
        by_admin: bool,
        now: UnixSeconds,
    ) -> Result<(), CoreError> {
        self.check_open()?;
        let note = note.trim();
        if note.chars().count() > MAX_TEXT {
            return Err(ValidationError::new("answer", format!("at most {MAX_TEXT} characters")).into());
        }
        self.state = match answer {
            Answer::Corrected(sequence) if sequence <= self.sequence => {
                return Err(ValidationError::new(
                    "corrected_sequence",
                    format!(
                        "{sequence} is not after the version questioned ({}): give the sequence of \
                         the change that corrected the record",
                        self.sequence
                    ),
                )
                .into());
            }
            Answer::Corrected(sequence) => {
                self.corrected_sequence = sequence;
                CorrectionState::Corrected
            }
            Answer::Confirmed => CorrectionState::Confirmed,
            Answer::Rejected if note.is_empty() => {
                return Err(ValidationError::new("answer", "say why the request is rejected").into());
            }
            Answer::Rejected => CorrectionState::Rejected,
        };
        self.answer = note.to_string();
        self.decided_by = by.to_string();
        self.decided_in_place = by_admin;
        self.answered_at = now;
        Ok(())
    }

    /// Whether it was answered by its due date.
    pub fn answered_on_time(&self) -> bool {
        self.state != CorrectionState::Open && self.answered_at < self.due_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{beijing, china};

    fn request() -> CorrectionRequest {
        CorrectionRequest {
            dataset_id: "js.gongan/population".into(),
            key: "320102199001011234".into(),
            fields: vec!["address".into(), "address".into()],
            sequence: 41,
            problem: "地址应为 玄武区北京东路41号".into(),
            evidence: "不动产权证 苏(2026)南京市不动产权第0012345号".into(),
        }
    }

    fn served() -> Served {
        Served {
            fields: vec!["id_number".into(), "name".into(), "address".into()],
            latest_sequence: Some(60),
        }
    }

    fn raise(edit: &dyn Fn(&mut CorrectionRequest), served: &Served) -> Result<Correction, CoreError> {
        let mut r = request();
        edit(&mut r);
        let calendar = china();
        let parties = ("js.scjg", "js.gongan", "g-000002");
        new_correction(parties, r, served, "c", (&calendar, 5), beijing("2026-09-29", 10, 0))
    }

    #[test]
    fn a_correction_is_due_in_five_working_days_and_answered_once() {
        // Tuesday 29 September: the 30th, then 1-7 October off, the 8th, 9th, Saturday the 10th
        // (a make-up working day) and Monday the 12th: due at the end of the 12th.
        let mut c = raise(&|_| {}, &served()).unwrap();
        assert_eq!(
            (c.state, c.due_at),
            (CorrectionState::Open, beijing("2026-10-13", 0, 0))
        );
        assert_eq!(c.fields, ["address"], "a field named twice is kept once");
        assert!(!c.is_overdue(beijing("2026-10-12", 23, 59)) && c.is_overdue(beijing("2026-10-13", 0, 0)));
        let err = c.clone().answer(Answer::Corrected(41), "", "p", false, 0).unwrap_err();
        assert!(
            err.to_string().contains("not after the version questioned (41)"),
            "{err}"
        );
        let err = c.clone().answer(Answer::Rejected, " ", "p", false, 0).unwrap_err();
        assert!(err.to_string().contains("say why"), "{err}");
        c.answer(Answer::Corrected(57), "", "p", false, beijing("2026-10-12", 9, 0))
            .unwrap();
        assert_eq!((c.state, c.corrected_sequence), (CorrectionState::Corrected, 57));
        assert!(c.answered_on_time() && !c.is_overdue(beijing("2026-12-01", 0, 0)));
        let err = c.answer(Answer::Confirmed, "", "p", false, 0).unwrap_err();
        assert!(err.to_string().contains("is corrected already"), "{err}");
    }

    #[test]
    fn a_correction_names_a_record_and_fields_the_consumer_was_served() {
        let refuse = |edit: &dyn Fn(&mut CorrectionRequest)| raise(edit, &served()).unwrap_err().to_string();
        assert!(refuse(&|r| r.key.clear()).contains("record's key"));
        let own = new_correction(
            ("js.gongan", "js.gongan", ""),
            request(),
            &served(),
            "c",
            (&china(), 5),
            0,
        );
        assert!(own.unwrap_err().to_string().contains("by publishing them again"));
        assert!(refuse(&|r| r.fields.clear()).contains("at least one field"));
        assert!(refuse(&|r| r.sequence = 0).contains("sequence as you read it"));
        let err = raise(&|r| r.sequence = 61, &served()).unwrap_err();
        assert!(matches!(err, CoreError::FailedPrecondition(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("past the last change of js.gongan/population its node reported (60)"),
            "{err}"
        );
        let unreported = Served {
            latest_sequence: None,
            ..served()
        };
        assert!(
            raise(&|r| r.sequence = 61, &unreported).is_ok(),
            "not checked without a report"
        );
        assert!(refuse(&|r| r.problem = " ".into()).contains("what looks wrong"));
        assert!(refuse(&|r| r.evidence = "x".repeat(MAX_TEXT + 1)).contains("what shows it"));
        let err = refuse(&|r| r.fields = vec!["address".into(), "phone".into()]);
        assert!(err.contains("phone never served to js.scjg"), "{err}");
        let err = raise(&|_| {}, &Served::default()).unwrap_err();
        assert!(matches!(err, CoreError::FailedPrecondition(_)), "{err:?}");
        assert!(err.to_string().contains("has reached the registry"), "{err}");
    }
}
