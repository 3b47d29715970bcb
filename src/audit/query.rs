//! `AuditEvent` search, answered from the auditor indexes (patient, HSA-id, client, time, outcome, action,
//! purpose) and nothing else. Every parameter navet takes is answered exactly; anything it cannot answer
//! exactly is refused with a reason, never answered with an empty Bundle ("nobody looked" must be true).
//!
//! Parameters (FHIR R4 AuditEvent search parameters, plus `purpose` from spec/timeline-and-audit.md):
//! - `patient=Patient/{id}` (or `{id}`), `patient:identifier=` / `patient.identifier=` `[system|]value`
//!   (the Patients carrying that identifier now, e.g. a personnummer);
//! - `agent=<HSA-id>` (user, care unit or principal), `agent:identifier=[system|]value` (HSA-ids under
//!   `urn:oid:1.2.752.29.4.19`, client ids under `urn:navet:client`);
//! - `date=[eq|ge|gt|le|lt|sa|eb]<date or instant>` (repeatable), `outcome=0|4|8|12`, `action=C|R|U|D|E`,
//!   `purpose=[system|]code`, `_id=a-17,c-3`. A comma means OR; repeated parameters AND.

use crate::audit::chain::Chain;
use crate::error::ApiError;
use crate::store::{Actor, Store};

/// What the indexes are asked: every condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Each group: the record carries at least one of these keys (`crate::audit::format::Entry::index_keys`).
    pub key_groups: Vec<Vec<String>>,
    pub ids: Option<Vec<(Chain, i64)>>,
    /// Recorded in `[from_us, to_us)`.
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub outcomes: Option<Vec<u8>>,
    pub actions: Option<Vec<u8>>,
    pub purposes: Option<Vec<String>>,
    /// Newest record first (history), instead of recorded order (search).
    pub newest_first: bool,
}

impl AuditQuery {
    /// Whether no record can match (an OR group with no member), so the store need not be asked.
    pub fn matches_nothing(&self) -> bool {
        self.key_groups.iter().any(Vec::is_empty)
            || self.ids.as_ref().is_some_and(Vec::is_empty)
            || matches!((self.from_us, self.to_us), (Some(f), Some(t)) if f >= t)
    }
}

/// A patient identifier to look up: the auditor knows the personnummer, the log names the Patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub query: AuditQuery,
    /// One group per `patient:identifier`/`patient.identifier` parameter, each value a `[system|]value`.
    pub patient_identifiers: Vec<Vec<String>>,
}

/// Parameters that shape the answer, not the match (the HTTP layer reads them).
pub const RESULT_PARAMETERS: [&str; 5] = ["_count", "_cursor", "_total", "_format", "_pretty"];

const HSA: &str = crate::domain::HSA_ID_SYSTEM;
const CLIENT: &str = super::view::CLIENT_SYSTEM;
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const NAVET_PURPOSE: &str = "urn:navet:purpose";

fn refuse(text: String) -> ApiError {
    ApiError::BadRequest(text)
}

fn values(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim)
}

/// Parses the search parameters (result parameters are skipped).
pub fn parse(pairs: &[(String, String)]) -> Result<Unresolved, ApiError> {
    let mut out = Unresolved {
        query: AuditQuery::default(),
        patient_identifiers: Vec::new(),
    };
    let q = &mut out.query;
    for (name, value) in pairs {
        if RESULT_PARAMETERS.contains(&name.as_str()) {
            continue;
        }
        if value.is_empty() {
            return Err(refuse(format!("{name} has no value")));
        }
        match name.as_str() {
            "_id" => {
                let ids = values(value).filter_map(Chain::parse_id).collect();
                intersect(&mut q.ids, ids);
            }
            "patient" => {
                let keys = values(value)
                    .map(patient_key)
                    .collect::<Result<Vec<_>, _>>()?;
                q.key_groups.push(keys);
            }
            "patient:identifier" | "patient.identifier" => {
                out.patient_identifiers
                    .push(values(value).map(str::to_owned).collect());
            }
            "agent" => {
                let keys = values(value)
                    .map(|v| {
                        crate::domain::HsaId::parse(v)
                            .map(|id| format!("h|{}", id.as_str()))
                            .map_err(|_| {
                                refuse(format!(
                                    "agent '{v}' is not an HSA-id: the log names its agents by identifier, so \
                                     agent= takes a bare HSA-id (user, care unit or principal); use \
                                     agent:identifier=system|value for other identifiers"
                                ))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                q.key_groups.push(keys);
            }
            "agent:identifier" => {
                let mut keys = Vec::new();
                for v in values(value) {
                    match v.split_once('|') {
                        Some((HSA, id)) => keys.push(format!("h|{id}")),
                        Some((CLIENT, id)) => keys.push(format!("c|{id}")),
                        // No record carries an agent identifier under another system (or none): an exact
                        // "no match" for this value.
                        Some(_) => {}
                        None => {
                            keys.push(format!("h|{v}"));
                            keys.push(format!("c|{v}"));
                        }
                    }
                }
                q.key_groups.push(keys);
            }
            "date" => {
                let (from, to) = date_bounds(value)?;
                if let Some(from) = from {
                    q.from_us = Some(q.from_us.map_or(from, |f| f.max(from)));
                }
                if let Some(to) = to {
                    q.to_us = Some(q.to_us.map_or(to, |t| t.min(to)));
                }
            }
            "outcome" => {
                let codes = values(value)
                    .map(|v| match v {
                        "0" => Ok(0),
                        "4" => Ok(4),
                        "8" => Ok(8),
                        "12" => Ok(12),
                        other => Err(refuse(format!(
                            "outcome '{other}' is not an AuditEvent outcome (0, 4, 8 or 12)"
                        ))),
                    })
                    .collect::<Result<Vec<u8>, _>>()?;
                intersect(&mut q.outcomes, codes);
            }
            "action" => {
                let codes = values(value)
                    .map(|v| match v {
                        "C" | "R" | "U" | "D" | "E" => Ok(v.as_bytes()[0]),
                        other => Err(refuse(format!(
                            "action '{other}' is not an AuditEvent action (C, R, U, D or E)"
                        ))),
                    })
                    .collect::<Result<Vec<u8>, _>>()?;
                intersect(&mut q.actions, codes);
            }
            "purpose" => {
                let codes = values(value)
                    .filter_map(|v| match v.split_once('|') {
                        None | Some(("", _)) => Some(v.rsplit('|').next().unwrap_or(v).to_owned()),
                        Some((ACT_REASON | NAVET_PURPOSE, code)) => Some(code.to_owned()),
                        Some(_) => None,
                    })
                    .collect();
                intersect(&mut q.purposes, codes);
            }
            other => {
                return Err(refuse(format!(
                    "AuditEvent search takes patient, patient:identifier, patient.identifier, agent, \
                     agent:identifier, date, outcome, action, purpose and _id; '{other}' cannot be answered \
                     exactly from the access log's indexes, so it is refused rather than ignored"
                )));
            }
        }
    }
    Ok(out)
}

/// Repeated parameters AND: the values both allow.
fn intersect<T: PartialEq>(slot: &mut Option<Vec<T>>, new: Vec<T>) {
    *slot = Some(match slot.take() {
        None => new,
        Some(old) => old.into_iter().filter(|v| new.contains(v)).collect(),
    });
}

fn patient_key(v: &str) -> Result<String, ApiError> {
    // `Patient/{id}`, `{id}`, or an absolute URL ending in `Patient/{id}`.
    let id = match v.rsplit_once("Patient/") {
        Some((_, id)) => id,
        None if !v.contains('/') => v,
        None => {
            return Err(refuse(format!("patient '{v}' is not a Patient reference")));
        }
    };
    if id.is_empty() || id.contains('/') {
        return Err(refuse(format!("patient '{v}' is not a Patient reference")));
    }
    Ok(format!("p|Patient/{id}"))
}

/// `[prefix]value` as a half-open range of microseconds.
fn date_bounds(value: &str) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let (prefix, rest) = match value.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt" | "sa" | "eb")) => (p, &value[2..]),
        Some("ne" | "ap") => {
            return Err(refuse(format!(
                "date prefix '{}' is not supported for AuditEvent (eq, ge, gt, le, lt, sa, eb are)",
                &value[..2]
            )));
        }
        _ => ("eq", value),
    };
    let range = crate::search::index::parse_date_range(rest)
        .ok_or_else(|| refuse(format!("date '{value}' is not a date or an instant")))?;
    // DateRange is inclusive, in ms; the records' times are µs.
    let lo = range.lo.saturating_mul(1000);
    let hi = range.hi.saturating_add(1).saturating_mul(1000);
    Ok(match prefix {
        "eq" => (Some(lo), Some(hi)),
        "ge" => (Some(lo), None),
        "gt" | "sa" => (Some(hi), None),
        "le" => (None, Some(hi)),
        _ => (None, Some(lo)), // lt, eb
    })
}

/// Looks the patient identifiers up (as navet: the log covers the whole record, whoever owns it) and adds
/// one OR group of `p|Patient/{id}` keys per parameter.
pub async fn resolve(
    store: &dyn Store,
    params: &crate::search::params::SearchParams,
    unresolved: Unresolved,
) -> Result<AuditQuery, ApiError> {
    let mut query = unresolved.query;
    for group in unresolved.patient_identifiers {
        let mut keys = Vec::new();
        for token in group {
            let parsed = crate::search::query::parse_query(
                params,
                "Patient",
                &[("identifier".to_owned(), token.clone())],
                false,
            )
            .map_err(|_| refuse(format!("'{token}' is not an identifier")))?;
            let mut offset = 0;
            loop {
                let page = store
                    .search(&Actor::system(), "Patient", parsed.clone(), offset, 100)
                    .await?;
                keys.extend(page.matches.iter().map(|p| format!("p|Patient/{}", p.id)));
                if !page.has_more {
                    break;
                }
                offset += 100;
            }
        }
        query.key_groups.push(keys);
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_parameter_becomes_an_index_condition() {
        let u = parse(&pairs(&[
            ("patient", "Patient/p1,p2"),
            ("agent", "SE2321000255-P0001"),
            (
                "agent:identifier",
                "urn:oid:1.2.752.29.4.19|SE2321000255-P0002,urn:navet:client|demo",
            ),
            ("date", "ge2026-01-01"),
            ("date", "lt2026-02-01"),
            ("outcome", "0,4"),
            ("outcome", "4"),
            (
                "purpose",
                "http://terminology.hl7.org/CodeSystem/v3-ActReason|ETREAT",
            ),
            ("patient:identifier", "191212121212"),
            ("_count", "5"),
        ]))
        .unwrap();
        let q = &u.query;
        assert_eq!(
            q.key_groups,
            [
                vec!["p|Patient/p1".to_owned(), "p|Patient/p2".to_owned()],
                vec!["h|SE2321000255-P0001".to_owned()],
                vec!["h|SE2321000255-P0002".to_owned(), "c|demo".to_owned()],
            ]
        );
        assert_eq!(q.from_us, Some(1_767_225_600_000_000));
        assert_eq!(q.to_us, Some(1_769_904_000_000_000));
        assert_eq!(q.outcomes, Some(vec![4]));
        assert_eq!(q.purposes, Some(vec!["ETREAT".to_owned()]));
        assert_eq!(u.patient_identifiers, [vec!["191212121212".to_owned()]]);
    }

    #[test]
    fn what_cannot_be_answered_exactly_is_refused() {
        for (k, v) in [
            ("agent", "Practitioner/x"),
            ("entity", "Patient/x"),
            ("patient:missing", "true"),
            ("outcome", "2"),
            ("date", "ne2026-01-01"),
            ("date", "yesterday"),
            ("patient", "Group/x"),
            ("action", "X"),
            ("patient", ""),
        ] {
            assert!(parse(&pairs(&[(k, v)])).is_err(), "{k}={v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_parameters_never_panic_the_parser(
            pairs in proptest::collection::vec(
                ("(patient|agent|agent:identifier|date|outcome|action|purpose|_id|[a-z:._]{0,12})", ".{0,40}"),
                0..6,
            )
        ) {
            let _ = parse(&pairs);
        }
    }

    #[test]
    fn an_identifier_under_a_system_navet_never_writes_matches_nothing() {
        let u = parse(&pairs(&[("agent:identifier", "urn:other|x")])).unwrap();
        assert!(u.query.matches_nothing());
        let u = parse(&pairs(&[
            ("date", "eq2026-01-01"),
            ("date", "eq2026-01-03"),
        ]))
        .unwrap();
        assert!(u.query.matches_nothing());
    }
}
