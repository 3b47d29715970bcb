//! "Which team can do this, here, now" (spec/ordination.md v2): navet's HealthcareService search parameters,
//! answered from the care map and handed to the ordinary search as the matching teams' identifiers, so paging,
//! `_include`, visibility and the access log are the search's own. The one hook is in `http/search.rs`.
//!
//! - `municipality` (token): SCB kommunkod (`1290`, or `urn:oid:1.2.752.129.2.2.1.17|1290`); a comma lists
//!   several.
//! - `coverage-area` (reference, the standard parameter): `Location/{id}` of a municipality Location.
//! - `available-at` (date): an instant with its offset, `2026-11-28T14:00:00+01:00`: teams working then
//!   (the staff role's hours for a physician visit). Coverage is judged on that day.
//! - `service-type` (the standard parameter): also decides the staff role for `available-at`.
//! - `patient-age` (number) and `main-need` (token: `psykiatri`, `hogspecialiserad`): eligibility.

use serde_json::Value;

use super::{CareMap, PatientFacts, Query, fhir::service_identifier};
use crate::error::ApiError;
use crate::store::{Actor, Store};

/// navet's own parameters (and the standard `coverage-area`, which the search table does not index).
pub const PARAMS: [&str; 5] = [
    "municipality",
    "available-at",
    "coverage-area",
    "patient-age",
    "main-need",
];

/// The CapabilityStatement entries of [`PARAMS`] (name, type, documentation).
pub const CAPABILITY: [(&str, &str, &str); 5] = [
    (
        "municipality",
        "token",
        "navet: teams whose coverage includes this municipality (SCB kommunkod), on the day of available-at",
    ),
    (
        "available-at",
        "date",
        "navet: teams working at this instant (Europe/Stockholm hours, vardagar/helgdagar, public holidays; a physician's hours for service-type=lakarbesok)",
    ),
    (
        "coverage-area",
        "reference",
        "Location of the municipality the team covers (standard HealthcareService-coverage-area)",
    ),
    (
        "patient-age",
        "number",
        "navet: teams whose eligibility admits a patient of this age in years (MTN: 18 and over)",
    ),
    (
        "main-need",
        "token",
        "navet: teams whose eligibility admits a patient with this main need (psykiatri, hogspecialiserad)",
    ),
];

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// A token's code: `system|code` or `code`.
fn code_of(v: &str) -> &str {
    v.rsplit_once('|').map(|(_, c)| c).unwrap_or(v)
}

/// Rewrites a HealthcareService search that uses the care-map parameters into one on the matching teams'
/// identifiers. Answers the pairs unchanged when it uses none.
pub async fn rewrite(
    care: &CareMap,
    store: &dyn Store,
    actor: &Actor,
    pairs: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, ApiError> {
    if !pairs.iter().any(|(k, _)| PARAMS.contains(&k.as_str())) {
        return Ok(pairs);
    }
    let mut municipalities: Vec<String> = Vec::new();
    let mut q = Query::default();
    let mut rest = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "municipality" => {
                for m in v.split(',') {
                    let code = code_of(m);
                    if code.len() != 4 || !code.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad(format!(
                            "municipality '{m}' is not a municipality code such as 1290"
                        )));
                    }
                    municipalities.push(code.to_owned());
                }
            }
            "coverage-area" => {
                for r in v.split(',') {
                    let id = r.strip_prefix("Location/").unwrap_or(r);
                    crate::fhir::ops::check_id(id)?;
                    let found = store.read(actor, "Location", id, None).await?;
                    let code = found
                        .and_then(|l| l.json)
                        .and_then(|j| serde_json::from_str::<Value>(&j).ok())
                        .and_then(|l| {
                            l.get("identifier")?.as_array()?.iter().find_map(|i| {
                                (i.get("system")?.as_str()? == super::fhir::MUNICIPALITY_SYSTEM)
                                    .then(|| i.get("value")?.as_str().map(str::to_owned))?
                            })
                        });
                    // A Location that is no municipality covers nothing: no team matches it.
                    municipalities.push(code.unwrap_or_else(|| "none".into()));
                }
            }
            "available-at" => {
                // A '+' sent unencoded arrives as a space.
                let text = v.replace(' ', "+");
                let ts: jiff::Timestamp = text.parse().map_err(|_| {
                    bad(format!(
                        "available-at '{v}' is not an instant with an offset such as 2026-11-28T14:00:00+01:00"
                    ))
                })?;
                q.at = Some(ts.to_zoned(care.tz.clone()));
            }
            "patient-age" => {
                let age: u32 = v
                    .parse()
                    .ok()
                    .filter(|a| *a <= 150)
                    .ok_or_else(|| bad(format!("patient-age '{v}' is not an age in years")))?;
                q.patient = PatientFacts {
                    age: Some(age),
                    ..q.patient
                };
            }
            "main-need" => q.patient.main_need = Some(code_of(&v).to_owned()),
            "service-type" => {
                q.service = Some(code_of(&v).to_owned());
                rest.push((k, v));
            }
            _ => rest.push((k, v)),
        }
    }
    let teams: Vec<(String, String)> = if municipalities.is_empty() {
        care.matching(&q)
            .into_iter()
            .map(service_identifier)
            .collect()
    } else {
        let mut all = Vec::new();
        for m in municipalities {
            let one = Query {
                municipality: Some(m),
                ..q.clone()
            };
            for t in care.matching(&one) {
                let id = service_identifier(t);
                if !all.contains(&id) {
                    all.push(id);
                }
            }
        }
        all
    };
    let identifiers = if teams.is_empty() {
        // Nothing matches: an identifier no resource has.
        "urn:navet:caremap|no-team".to_owned()
    } else {
        teams
            .iter()
            .map(|(s, v)| format!("{s}|{v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    rest.push(("identifier".into(), identifiers));
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_their_code() {
        assert_eq!(code_of("urn:oid:1.2.752.129.2.2.1.17|1290"), "1290");
        assert_eq!(code_of("1290"), "1290");
        assert_eq!(code_of("|"), "");
    }
}
