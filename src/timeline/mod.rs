//! The patient timeline (spec/timeline-and-audit.md "Timeline"): one list of what happened around a patient,
//! newest first by each entry's clinical time, from every source, showing only what the caller may see.
//!
//! - Which resources belong to the patient: the patient links ([`crate::fhir::participants::patients_in`],
//!   the FHIR R4 Patient compartment). Every linked resource except the Patient and the access log has one
//!   timeline row per patient, written with the version ([`clinical_time`]).
//! - Paging is keyset-based on (time, type, id), newest first: a cursor names the last entry of a page, so
//!   entries written while a client pages neither shift nor repeat the pages it has not read yet.
//! - Visibility is the store's one rule, inside the query: a page is never short because of hidden entries,
//!   and neither `total` nor the `next` link counts them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::search::index::parse_date_range;
use crate::store::StoredVersion;

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;

/// The element(s) holding each type's clinical time (spec/timeline-and-audit.md), first present wins.
const CLINICAL_TIME: [(&str, &[&str]); 10] = [
    ("ServiceRequest", &["authoredOn"]),
    ("MedicationRequest", &["authoredOn"]),
    ("Task", &["executionPeriod.start", "authoredOn"]),
    ("CarePlan", &["created", "period.start"]),
    ("Appointment", &["start"]),
    ("Encounter", &["period.start"]),
    (
        "MedicationAdministration",
        &["effectiveDateTime", "effectivePeriod.start"],
    ),
    ("Communication", &["sent"]),
    ("Consent", &["dateTime"]),
    ("EpisodeOfCare", &["period.start"]),
];

/// The types the timeline is made for (the spec's list); other patient-linked types appear too.
pub fn timeline_types() -> impl Iterator<Item = &'static str> {
    CLINICAL_TIME.iter().map(|(t, _)| *t)
}

/// A resource's clinical time in epoch milliseconds (the start of the instant range its element covers), or
/// `last_updated_ms` when the type has none listed or the element is absent, so no entry is lost.
pub fn clinical_time(resource_type: &str, value: &Value, last_updated_ms: i64) -> i64 {
    CLINICAL_TIME
        .iter()
        .find(|(t, _)| *t == resource_type)
        .and_then(|(_, paths)| {
            paths.iter().find_map(|path| {
                let mut v = value;
                for step in path.split('.') {
                    v = v.get(step)?;
                }
                parse_date_range(v.as_str()?).map(|r| r.lo)
            })
        })
        .unwrap_or(last_updated_ms)
}

/// Whether a resource type gets timeline rows: everything about a patient but the Patient itself and the log.
pub fn on_timeline(resource_type: &str) -> bool {
    resource_type != "Patient" && resource_type != crate::fhir::visibility::ACCESS_LOG_TYPE
}

/// A position in a timeline: its entries are ordered by (time, type, id), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineKey {
    pub time_ms: i64,
    pub resource_type: String,
    pub id: String,
}

impl TimelineKey {
    /// The opaque `_cursor` for the page after this entry.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "t{}|{}|{}",
            self.time_ms, self.resource_type, self.id
        ))
    }

    /// Parses a `_cursor`; `None` for anything navet did not issue. Parsing only: no slicing, no arithmetic.
    pub fn decode(cursor: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix('t')?;
        let mut parts = rest.splitn(3, '|');
        let time_ms = parts.next()?.parse::<i64>().ok()?;
        let resource_type = parts.next()?;
        let id = parts.next()?;
        let valid = crate::search::index::is_resource_type_name(resource_type)
            && crate::search::index::is_valid_id(id);
        valid.then(|| TimelineKey {
            time_ms,
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// What a timeline (or `$everything`) read asks the store for.
#[derive(Debug, Clone, Default)]
pub struct TimelineQuery {
    /// `Patient/{id}`.
    pub patient: String,
    /// Only these types (`None`: every type).
    pub types: Option<Vec<String>>,
    /// Clinical time at or after / before (epoch ms).
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Only resources changed at or after (`_since`, epoch ms).
    pub since_ms: Option<i64>,
    /// The page after this entry.
    pub after: Option<TimelineKey>,
    pub count: usize,
    /// Count every visible entry matching (`_total=accurate`).
    pub total: bool,
}

/// One page: entries newest first with their clinical time, whether more follow, and the total if asked.
#[derive(Debug, Clone, Default)]
pub struct TimelinePage {
    pub entries: Vec<(i64, StoredVersion)>,
    pub has_more: bool,
    pub total: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_type_takes_its_listed_element_and_falls_back_to_last_updated() {
        let task = serde_json::json!({"executionPeriod": {"start": "2026-12-01T08:00:00+01:00"},
                                      "authoredOn": "2026-11-30"});
        assert_eq!(clinical_time("Task", &task, 5), 1_796_108_400_000);
        let only_authored = serde_json::json!({"authoredOn": "2026-11-30T00:00:00Z"});
        assert_eq!(clinical_time("Task", &only_authored, 5), 1_795_996_800_000);
        assert_eq!(clinical_time("Task", &serde_json::json!({}), 5), 5);
        assert_eq!(
            clinical_time(
                "Observation",
                &serde_json::json!({"effectiveDateTime": "2026"}),
                7
            ),
            7
        );
    }

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let key = TimelineKey {
            time_ms: -3,
            resource_type: "Task".into(),
            id: "a-1.b".into(),
        };
        assert_eq!(TimelineKey::decode(&key.encode()), Some(key));
        for forged in ["", "x", "dDF8VGFza3w", &URL_SAFE_NO_PAD.encode("t1|task|x")] {
            assert_eq!(TimelineKey::decode(forged), None, "{forged}");
        }
    }

    proptest! {
        #[test]
        fn cursor_parsing_never_panics(text in ".{0,80}", bytes in prop::collection::vec(any::<u8>(), 0..60)) {
            let _ = TimelineKey::decode(&text);
            let _ = TimelineKey::decode(&URL_SAFE_NO_PAD.encode(&bytes));
        }
    }
}
