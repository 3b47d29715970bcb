//! Intake of orders (spec/ordination.md v2 "How it arrives"), inside the write's own transaction: every
//! ServiceRequest of category `punktinsats` or `bedomning` that a write stored is checked against
//! `profiles/ordination-rules.toml` and the care map, the team found, the visits planned and the work created
//! ([`super::work`]). Any failing element refuses the whole write with 422 (the job rolls back, nothing is
//! stored), each element named by FHIRPath.
//!
//! - `draft` (avisering): the coordinating team is named as performer (so it sees the notice); nothing is
//!   planned until the order is `active`.
//! - `active`: planned once (the first visit's Task has a stable id, so a second activation plans nothing).
//! - `revoked` / `entered-in-error`: the remaining Tasks are cancelled, and their itACiH visits.
//! - A repeat of the same order (same identifier) is a conditional create ([`implicit_condition`]): it finds
//!   the stored one and creates nothing.
//! - A drug order without its MedicationRequest yet (separate creates, ServiceRequest first) is accepted with
//!   a warning and planned when the MedicationRequest (`basedOn` it) arrives.

use jiff::civil::{Date, Time};
use serde_json::Value;

use super::plan::{OrderFacts, Plan, PlanError};
use super::rules::VisitRule;
use super::{MAIN_NEED_SYSTEM, MUNICIPALITY_EXTENSION};
use crate::caremap::PatientFacts;
use crate::domain::HSA_ID_SYSTEM;
use crate::error::{ApiError, ElementIssue};
use crate::fhir::FhirContext;
use crate::fhir::ops::{self, Condition, Prepared, WriteStatus};
use crate::store::{StoredVersion, WriteTx};

/// One version a write stored, with its Bundle entry index (for FHIRPath locations) when in a Bundle.
#[derive(Debug, Clone, Copy)]
pub struct Written<'a> {
    pub entry: Option<usize>,
    pub version: &'a StoredVersion,
    pub status: WriteStatus,
}

/// What intake adds to the write's answer.
#[derive(Debug, Default)]
pub struct AfterWrite {
    /// Warning texts per position in the written list.
    pub warnings: Vec<(usize, String)>,
    /// A written version intake replaced with a newer one (performer, medical responsibility recorded).
    pub replaced: Vec<(usize, StoredVersion)>,
    /// Resources intake created (Tasks, Communications): for the access-log record.
    pub created: Vec<StoredVersion>,
}

/// Checks and plans every order a write stored. Call inside the write's job, after its entries.
pub fn after_writes(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    written: &[Written<'_>],
) -> Result<AfterWrite, ApiError> {
    let mut out = AfterWrite::default();
    let mut issues = Vec::new();
    let mut done: Vec<String> = Vec::new();
    for (pos, w) in written.iter().enumerate() {
        let v = w.version;
        if v.deleted || !matches!(w.status, WriteStatus::Created | WriteStatus::Updated) {
            continue;
        }
        let sr_id = match v.resource_type.as_str() {
            "ServiceRequest" => Some((pos, v.id.clone())),
            // A MedicationRequest that arrives after its order (separate creates) plans that order.
            "MedicationRequest" => json_of(v)
                .as_ref()
                .and_then(|mr| {
                    literal_refs(mr.get("basedOn"), "ServiceRequest")
                        .into_iter()
                        .next()
                })
                .filter(|id| {
                    !written
                        .iter()
                        .any(|o| o.version.resource_type == "ServiceRequest" && &o.version.id == id)
                })
                .map(|id| (usize::MAX, id)),
            _ => None,
        };
        let Some((sr_pos, sr_id)) = sr_id else {
            continue;
        };
        if done.contains(&sr_id) {
            continue;
        }
        done.push(sr_id.clone());
        let sr = if sr_pos == usize::MAX {
            match tx.current("ServiceRequest", &sr_id)? {
                Some(c) if !c.deleted => c,
                _ => continue,
            }
        } else {
            v.clone()
        };
        let Some(value) = json_of(&sr) else { continue };
        if !is_order(ctx, &value) {
            continue;
        }
        let entry = (sr_pos != usize::MAX).then_some(w.entry).flatten();
        match handle(ctx, tx, &sr, &value, entry, written) {
            Ok(result) => {
                let at = if sr_pos == usize::MAX { pos } else { sr_pos };
                out.warnings
                    .extend(result.warnings.into_iter().map(|t| (at, t)));
                if let Some(newer) = result.replaced
                    && sr_pos != usize::MAX
                {
                    out.replaced.push((sr_pos, newer));
                }
                out.created.extend(result.created);
            }
            Err(HandleError::Invalid(mut found)) => issues.append(&mut found),
            Err(HandleError::Api(e)) => return Err(e),
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Invalid(issues))
    }
}

/// [`after_writes`] for the entries of a transaction (`in_bundle`: FHIRPath locations name the entry) or a
/// batch entry: replaced versions and warnings go into the entry results; answers what intake wrote.
pub fn after_entries(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    results: &mut [crate::fhir::bundle::EntryResult],
    in_bundle: bool,
) -> Result<Vec<StoredVersion>, ApiError> {
    let written: Vec<Written<'_>> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let o = r.outcome.as_ref()?;
            Some(Written {
                entry: in_bundle.then_some(i),
                version: &o.version,
                status: o.status,
            })
        })
        .collect();
    if !written.iter().any(|w| {
        matches!(
            w.version.resource_type.as_str(),
            "ServiceRequest" | "MedicationRequest"
        )
    }) {
        return Ok(Vec::new());
    }
    // Positions in `written` are entry indices only when every entry wrote something; map them back.
    let index: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.outcome.is_some())
        .map(|(i, _)| i)
        .collect();
    let after = after_writes(ctx, tx, &written)?;
    for (pos, newer) in after.replaced {
        if let Some(o) = index
            .get(pos)
            .and_then(|i| results.get_mut(*i))
            .and_then(|r| r.outcome.as_mut())
        {
            o.version = newer;
        }
    }
    for (pos, text) in after.warnings {
        if let Some(r) = index.get(pos).and_then(|i| results.get_mut(*i)) {
            r.warnings.push(text);
        }
    }
    Ok(after.created)
}

/// [`after_writes`] for a single create or update: the (possibly replaced) outcome, warnings, and what
/// intake wrote.
pub fn after_single(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    mut outcome: ops::WriteOutcome,
) -> Result<(ops::WriteOutcome, Vec<String>, Vec<StoredVersion>), ApiError> {
    if !matches!(
        outcome.version.resource_type.as_str(),
        "ServiceRequest" | "MedicationRequest"
    ) {
        return Ok((outcome, Vec::new(), Vec::new()));
    }
    let written = [Written {
        entry: None,
        version: &outcome.version,
        status: outcome.status,
    }];
    let after = after_writes(ctx, tx, &written)?;
    if let Some((_, newer)) = after.replaced.into_iter().next() {
        outcome.version = newer;
    }
    Ok((
        outcome,
        after.warnings.into_iter().map(|(_, w)| w).collect(),
        after.created,
    ))
}

/// A POST of a ServiceRequest or MedicationRequest with an identifier and no condition of its own is a
/// conditional create on its first identifier: the same order sent twice is stored once.
/// Only an order's resources: a ServiceRequest of navet's categories, or a MedicationRequest `basedOn` a
/// ServiceRequest or sent with an order (`with_order`, in the same transaction).
pub fn implicit_condition(
    ctx: &FhirContext,
    prepared: &Prepared,
    with_order: bool,
) -> Result<Option<Condition>, ApiError> {
    let ty = prepared.resource.resource_type();
    let value = prepared.resource.value();
    let applies = match ty {
        "ServiceRequest" => is_order(ctx, value),
        "MedicationRequest" => {
            with_order || !literal_refs(value.get("basedOn"), "ServiceRequest").is_empty()
        }
        _ => false,
    };
    if !applies {
        return Ok(None);
    }
    let first = prepared
        .resource
        .value()
        .get("identifier")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let (Some(system), Some(value)) = (
        first.and_then(|i| i.get("system")).and_then(Value::as_str),
        first.and_then(|i| i.get("value")).and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    // Characters that would change the query's meaning leave it to the identifier check to refuse.
    if system.contains(['|', ',', '&', '$']) || value.contains([',', '&', '$']) {
        return Ok(None);
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("identifier", &format!("{system}|{value}"))
        .finish();
    Condition::parse(ctx, ty, &query).map(Some)
}

fn json_of(v: &StoredVersion) -> Option<Value> {
    v.json.as_deref().and_then(|j| serde_json::from_str(j).ok())
}

/// Whether a prepared resource is an order (a ServiceRequest of navet's categories).
pub fn is_order_resource(ctx: &FhirContext, prepared: &Prepared) -> bool {
    prepared.resource.resource_type() == "ServiceRequest"
        && is_order(ctx, prepared.resource.value())
}

/// A ServiceRequest of one of navet's order categories.
fn is_order(ctx: &FhirContext, sr: &Value) -> bool {
    let rules = &ctx.ordination.rules;
    codings(sr.get("category"))
        .any(|(s, c)| s == rules.category_system && rules.categories.iter().any(|k| k == c))
}

/// (system, code) of every Coding inside a CodeableConcept or a list of them.
fn codings(v: Option<&Value>) -> impl Iterator<Item = (&str, &str)> {
    let concepts: Vec<&Value> = match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => Vec::new(),
    };
    concepts
        .into_iter()
        .flat_map(|c| {
            c.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| {
            Some((
                c.get("system").and_then(Value::as_str)?,
                c.get("code").and_then(Value::as_str)?,
            ))
        })
}

/// The ids of literal `Type/id` references to `ty` in a Reference or a list of them.
fn literal_refs(v: Option<&Value>, ty: &str) -> Vec<String> {
    let items: Vec<&Value> = match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|r| r.get("reference").and_then(Value::as_str))
        .filter_map(|r| r.strip_prefix(ty)?.strip_prefix('/').map(str::to_owned))
        .filter(|id| ops::check_id(id).is_ok())
        .collect()
}

/// The HSA-id a Reference names: a logical HSA identifier, or a literal Organization (or HealthcareService
/// / PractitionerRole, through their organization) with one.
pub(crate) fn hsa_of_reference(
    tx: &mut dyn WriteTx,
    reference: &Value,
) -> Result<Option<String>, ApiError> {
    if let Some(id) = reference.get("identifier")
        && id.get("system").and_then(Value::as_str) == Some(HSA_ID_SYSTEM)
    {
        return Ok(id.get("value").and_then(Value::as_str).map(str::to_owned));
    }
    for ty in ["Organization", "HealthcareService", "PractitionerRole"] {
        if let Some(id) = literal_refs(Some(reference), ty).into_iter().next() {
            let Some(found) = tx.current(ty, &id)?.as_ref().and_then(json_of) else {
                return Ok(None);
            };
            if ty == "Organization" {
                return Ok(hsa_identifier(&found));
            }
            let org = found
                .get(if ty == "HealthcareService" {
                    "providedBy"
                } else {
                    "organization"
                })
                .cloned();
            return match org {
                Some(o) => hsa_of_reference(tx, &o),
                None => Ok(None),
            };
        }
    }
    Ok(None)
}

/// The principal kind (`kommun`, `sjukhus`, …) of an HSA-id: its Organization's `type` in navet's
/// principal-kind system.
pub(crate) fn principal_kind(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    hsa: &str,
) -> Result<Option<String>, ApiError> {
    let Some(id) = organization_id(ctx, tx, hsa)? else {
        return Ok(None);
    };
    let org = tx.current("Organization", &id)?.as_ref().and_then(json_of);
    Ok(org.and_then(|o| {
        codings(o.get("type"))
            .find(|(s, _)| *s == PRINCIPAL_KIND_SYSTEM)
            .map(|(_, c)| c.to_owned())
    }))
}

/// Code system of principal kinds on Organization.type (the demo seed's).
pub const PRINCIPAL_KIND_SYSTEM: &str = "http://navet.example/CodeSystem/principal-kind";

/// The stored Organization with this HSA-id.
pub(crate) fn organization_id(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    hsa: &str,
) -> Result<Option<String>, ApiError> {
    let pairs = vec![("identifier".to_owned(), format!("{HSA_ID_SYSTEM}|{hsa}"))];
    let query = crate::search::query::parse_query(&ctx.params, "Organization", &pairs, false)
        .map_err(|_| ApiError::internal("an HSA-id query did not parse"))?;
    Ok(tx.search_ids("Organization", &query, 1)?.into_iter().next())
}

/// The position of the extension with `url` in a resource's top-level `extension` list.
fn extension_index(v: &Value, url: &str) -> Option<usize> {
    v.get("extension")?
        .as_array()?
        .iter()
        .position(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// The HSA-id of the kommun principal of `municipality`: a stored Organization of principal kind `kommun`
/// carrying that municipality (as the demo seed and the configured directory write them).
fn kommun_of(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    municipality: &str,
) -> Result<Option<String>, ApiError> {
    let pairs = vec![("type".to_owned(), format!("{PRINCIPAL_KIND_SYSTEM}|kommun"))];
    let query = crate::search::query::parse_query(&ctx.params, "Organization", &pairs, false)
        .map_err(|_| ApiError::internal("a principal-kind query did not parse"))?;
    // A region has a few hundred kommuner at most.
    for id in tx.search_ids("Organization", &query, 500)? {
        let Some(org) = tx.current("Organization", &id)?.as_ref().and_then(json_of) else {
            continue;
        };
        let serves = org
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|e| {
                e.get("url").and_then(Value::as_str) == Some(MUNICIPALITY_EXTENSION)
                    && e.pointer("/valueCoding/code").and_then(Value::as_str) == Some(municipality)
            });
        if serves && let Some(hsa) = hsa_identifier(&org) {
            return Ok(Some(hsa));
        }
    }
    Ok(None)
}

fn hsa_identifier(v: &Value) -> Option<String> {
    v.get("identifier")
        .and_then(Value::as_array)?
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(HSA_ID_SYSTEM))
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .map(str::to_owned)
}

enum HandleError {
    Invalid(Vec<ElementIssue>),
    Api(ApiError),
}

impl From<ApiError> for HandleError {
    fn from(e: ApiError) -> Self {
        HandleError::Api(e)
    }
}

impl From<crate::store::StoreError> for HandleError {
    fn from(e: crate::store::StoreError) -> Self {
        HandleError::Api(e.into())
    }
}

struct Handled {
    warnings: Vec<String>,
    replaced: Option<StoredVersion>,
    created: Vec<StoredVersion>,
}

/// Everything planning and the work need, read from a checked order.
#[derive(Debug, Clone)]
pub struct Order {
    pub sr_id: String,
    pub patient_id: String,
    /// The patient's personnummer / samordningsnummer (for itACiH).
    pub national_id: Option<String>,
    pub facts: OrderFacts,
    pub category: String,
    /// The orderer's principal (owner of the order).
    pub orderer: String,
    /// The requester Reference as written.
    pub requester: Value,
    /// The ordering physician's HSA-id, when found.
    pub ordinator: Option<String>,
    /// Who holds medical responsibility (HSA-id), explicit or the listed vårdcentral.
    pub responsible: Option<String>,
    pub listed_vc: Option<String>,
    pub medication: Option<Medication>,
    /// (v2) The kommun (HSA-id) whose home-care nurse is invited: the patient has kommunal hemsjukvård.
    pub home_care_kommun: Option<String>,
    /// navet reason codes (REASON_SYSTEM), for the kontaktorsak.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Medication {
    pub id: String,
    pub name: Option<String>,
    pub dose: Option<String>,
    /// Route code as written (e.g. SNOMED CT 47625008 intravenous, or `IV`).
    pub route: Option<String>,
}

fn handle(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    sr: &StoredVersion,
    value: &Value,
    entry: Option<usize>,
    written: &[Written<'_>],
) -> Result<Handled, HandleError> {
    let rules = &ctx.ordination.rules;
    let at = |path: &str| match entry {
        Some(i) => format!("Bundle.entry[{i}].resource.{path}"),
        None => format!("ServiceRequest.{path}"),
    };
    let mut issues: Vec<ElementIssue> = Vec::new();
    let mut issue = |path: String, message: String| issues.push(ElementIssue { path, message });
    let status = value.get("status").and_then(Value::as_str).unwrap_or("");
    if matches!(status, "revoked" | "entered-in-error") {
        let created = super::work::revoke(ctx, tx, &sr.id)?;
        return Ok(Handled {
            warnings: Vec::new(),
            replaced: None,
            created,
        });
    }
    if status == "completed" {
        return Ok(Handled {
            warnings: Vec::new(),
            replaced: None,
            created: Vec::new(),
        });
    }
    if value.get("intent").and_then(Value::as_str) != Some("order") {
        issue(
            at("intent"),
            "an order to a mobile team has intent 'order'".into(),
        );
    }
    let category = codings(value.get("category"))
        .find(|(s, _)| *s == rules.category_system)
        .map(|(_, c)| c.to_owned())
        .unwrap_or_default();
    // Identifiers: each needs an absolute system and a value (they make a repeat recognisable).
    let identifiers = value.get("identifier").and_then(Value::as_array);
    match identifiers {
        None => issue(
            at("identifier"),
            "an order needs an identifier (system and value) so that a repeat is recognised".into(),
        ),
        Some(list) => {
            for (i, id) in list.iter().enumerate() {
                let system = id.get("system").and_then(Value::as_str).unwrap_or("");
                let val = id.get("value").and_then(Value::as_str).unwrap_or("");
                let absolute = system.starts_with("urn:")
                    || system.starts_with("http://")
                    || system.starts_with("https://");
                if !absolute || system.contains('|') {
                    issue(
                        at(&format!("identifier[{i}].system")),
                        "an identifier system is an absolute URI (urn:, http: or https:)".into(),
                    );
                }
                if val.trim().is_empty() || val.len() > 256 || val.contains(',') {
                    issue(
                        at(&format!("identifier[{i}].value")),
                        "an identifier value is 1 to 256 characters without commas".into(),
                    );
                }
            }
        }
    }
    // The intervention.
    let intervention = codings(value.get("code"))
        .find_map(|(s, c)| rules.intervention_code(s, c))
        .cloned();
    if intervention.is_none() {
        issue(
            at("code"),
            format!(
                "the code is not an intervention of {} (profiles/ordination-rules.toml)",
                rules.intervention_system
            ),
        );
    }
    // The patient.
    let patient_id = literal_refs(value.get("subject"), "Patient")
        .into_iter()
        .next();
    let patient = match &patient_id {
        Some(id) => tx
            .current("Patient", id)?
            .filter(|p| !p.deleted)
            .as_ref()
            .and_then(json_of),
        None => None,
    };
    if patient.is_none() {
        issue(at("subject"), "the subject is not a known Patient (give a reference to a stored Patient, or Patient?identifier=…)".into());
    }
    let municipality = patient.as_ref().and_then(|p| {
        p.get("extension")?
            .as_array()?
            .iter()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(MUNICIPALITY_EXTENSION))?
            .pointer("/valueCoding/code")?
            .as_str()
            .map(str::to_owned)
    });
    if patient.is_some() && municipality.is_none() {
        issue(
            at("subject"),
            "the patient's municipality is not known (Patient extension municipality)".into(),
        );
    }
    let national_id = patient.as_ref().and_then(|p| {
        p.get("identifier")?.as_array()?.iter().find_map(|i| {
            let parsed = crate::domain::patient_identifier::from_fhir(
                i.get("system")?.as_str()?,
                i.get("value")?.as_str()?,
            )
            .ok()??;
            match parsed {
                crate::domain::PatientIdentifier::National(n) => Some(n),
                _ => None,
            }
        })
    });
    // The requester: the physician, as a PractitionerRole (or Practitioner) with HSA-ids.
    let requester = value.get("requester").cloned().unwrap_or(Value::Null);
    let requester_ok = requester.get("identifier").is_some()
        || ["PractitionerRole", "Practitioner"]
            .iter()
            .any(|t| !literal_refs(Some(&requester), t).is_empty());
    if !requester_ok {
        issue(
            at("requester"),
            "the requester is the ordering physician: a PractitionerRole or Practitioner reference"
                .into(),
        );
    }
    let ordinator = ordinator_of(tx, &requester)?;
    // The period: first and last day.
    let period = value.get("occurrencePeriod");
    let first_day = period
        .and_then(|p| p.get("start"))
        .and_then(Value::as_str)
        .and_then(day_of);
    let mut last_day = period
        .and_then(|p| p.get("end"))
        .and_then(Value::as_str)
        .and_then(day_of);
    // The MedicationRequest: linked by supportingInfo, or basedOn the order in the same write.
    let mut mr_ids = literal_refs(value.get("supportingInfo"), "MedicationRequest");
    for w in written {
        if w.version.resource_type == "MedicationRequest"
            && w.version
                .json
                .as_deref()
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
                .is_some_and(|mr| {
                    literal_refs(mr.get("basedOn"), "ServiceRequest").contains(&sr.id)
                })
            && !mr_ids.contains(&w.version.id)
        {
            mr_ids.push(w.version.id.clone());
        }
    }
    let mut medication = None;
    let mut per_day = None;
    let mut first_time = None;
    let mut warnings = Vec::new();
    let needs_mr = intervention
        .as_ref()
        .is_some_and(|i| i.visits == VisitRule::Doses);
    if let Some(mr_id) = mr_ids.first() {
        let mr_entry = written
            .iter()
            .find(|w| w.version.resource_type == "MedicationRequest" && &w.version.id == mr_id)
            .and_then(|w| w.entry);
        let mr_at = |path: &str| match (mr_entry, entry) {
            (Some(i), _) => format!("Bundle.entry[{i}].resource.{path}"),
            (None, None) | (None, Some(_)) => format!("MedicationRequest.{path}"),
        };
        match tx
            .current("MedicationRequest", mr_id)?
            .filter(|m| !m.deleted)
            .as_ref()
            .and_then(json_of)
        {
            None => issue(
                at("supportingInfo"),
                format!("MedicationRequest/{mr_id} is not stored"),
            ),
            Some(mr) => {
                if patient_id.is_some()
                    && literal_refs(mr.get("subject"), "Patient").first() != patient_id.as_ref()
                {
                    issue(
                        mr_at("subject"),
                        "the MedicationRequest is for another patient than the order".into(),
                    );
                }
                let timing = mr.pointer("/dosageInstruction/0/timing/repeat");
                let base = "dosageInstruction[0].timing.repeat";
                match timing {
                    None if needs_mr => issue(
                        mr_at(base),
                        "no dose timing: timing.repeat with frequency, period 1 and periodUnit d"
                            .into(),
                    ),
                    None => {}
                    Some(t) => {
                        let frequency = t.get("frequency").and_then(Value::as_u64);
                        let frequency_max = t.get("frequencyMax").and_then(Value::as_u64);
                        match frequency {
                            None => issue(
                                mr_at(&format!("{base}.frequency")),
                                "the number of doses a day is missing".into(),
                            ),
                            Some(0) => issue(
                                mr_at(&format!("{base}.frequency")),
                                "frequency 0: at least one dose a day".into(),
                            ),
                            Some(f) if f > u64::from(rules.max_doses_per_day) => issue(
                                mr_at(&format!("{base}.frequency")),
                                format!(
                                    "more than {} doses a day cannot be planned",
                                    rules.max_doses_per_day
                                ),
                            ),
                            Some(f) => {
                                per_day = u32::try_from(f).ok();
                                let most = frequency_max.unwrap_or(f).max(f);
                                if most > u64::from(rules.warn_doses_per_day_over) {
                                    warnings.push(format!(
                                        "{most} doses a day: more than {} a day is usually hospital care (Region Skåne's survey); planned as ordered",
                                        rules.warn_doses_per_day_over
                                    ));
                                }
                                if let Some(fm) = frequency_max
                                    && fm < f
                                {
                                    issue(
                                        mr_at(&format!("{base}.frequencyMax")),
                                        "frequencyMax is less than frequency".into(),
                                    );
                                }
                            }
                        }
                        let period_ok = t.get("period").and_then(Value::as_f64) == Some(1.0);
                        if !period_ok {
                            issue(
                                mr_at(&format!("{base}.period")),
                                "doses are ordered per day: period 1".into(),
                            );
                        }
                        if t.get("periodUnit").and_then(Value::as_str) != Some("d") {
                            issue(
                                mr_at(&format!("{base}.periodUnit")),
                                "doses are ordered per day: periodUnit 'd'".into(),
                            );
                        }
                        if let Some(tod) = t
                            .get("timeOfDay")
                            .and_then(Value::as_array)
                            .and_then(|a| a.first())
                        {
                            match tod.as_str().and_then(|s| s.parse::<Time>().ok()) {
                                Some(time) => first_time = Some(time),
                                None => issue(
                                    mr_at(&format!("{base}.timeOfDay[0]")),
                                    "not a time such as 08:00:00".into(),
                                ),
                            }
                        }
                        // The bounds give the period where the order has none.
                        if let Some(bp) = t.get("boundsPeriod") {
                            let s = bp.get("start").and_then(Value::as_str).and_then(day_of);
                            let e = bp.get("end").and_then(Value::as_str).and_then(day_of);
                            if let (Some(s), Some(e)) = (s, e)
                                && e < s
                            {
                                issue(
                                    mr_at(&format!("{base}.boundsPeriod.end")),
                                    "the dosing ends before it starts".into(),
                                );
                            }
                            if first_day.is_none() && last_day.is_none() {
                                last_day = e;
                            }
                        }
                        if let (Some(fd), None) = (first_day, last_day)
                            && let Some(days) =
                                t.pointer("/boundsDuration/value").and_then(Value::as_u64)
                            && t.pointer("/boundsDuration/code")
                                .and_then(Value::as_str)
                                .or(t.pointer("/boundsDuration/unit").and_then(Value::as_str))
                                == Some("d")
                            && (1..=u64::from(rules.max_period_days)).contains(&days)
                        {
                            last_day = fd
                                .checked_add(
                                    jiff::Span::new().days(i64::try_from(days).unwrap_or(1) - 1),
                                )
                                .ok();
                        }
                    }
                }
                medication = Some(Medication {
                    id: mr_id.clone(),
                    name: mr
                        .pointer("/medicationCodeableConcept/text")
                        .or(mr.pointer("/medicationCodeableConcept/coding/0/display"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    dose: mr
                        .pointer("/dosageInstruction/0/doseAndRate/0/doseQuantity")
                        .and_then(|q| {
                            let v = q.get("value")?;
                            let unit = q
                                .get("unit")
                                .or(q.get("code"))
                                .and_then(Value::as_str)
                                .unwrap_or("");
                            Some(format!("{v} {unit}").trim().to_owned())
                        }),
                    route: mr
                        .pointer("/dosageInstruction/0/route/coding/0/code")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
            }
        }
    } else if needs_mr && status == "active" {
        warnings.push(
            "no MedicationRequest yet: nothing is planned until one arrives (basedOn this ServiceRequest)".into(),
        );
    }
    match (first_day, last_day) {
        (None, _) => issue(
            at("occurrencePeriod.start"),
            "the first day of the period is missing".into(),
        ),
        (Some(_), None) => issue(
            at("occurrencePeriod.end"),
            "the last day of the period is missing".into(),
        ),
        (Some(s), Some(e)) if e < s => issue(
            at("occurrencePeriod.end"),
            "the period ends before it starts".into(),
        ),
        (Some(s), Some(e)) => {
            if s.until(e).map(|d| d.get_days()).unwrap_or(i32::MAX)
                >= i32::try_from(rules.max_period_days).unwrap_or(i32::MAX)
            {
                issue(
                    at("occurrencePeriod"),
                    format!("the period is longer than {} days", rules.max_period_days),
                );
            }
        }
    }
    // A transfusion's units.
    let units = match value.get("quantityQuantity") {
        None => None,
        Some(q) => match q.get("value").and_then(Value::as_u64) {
            Some(u) if (1..=u64::from(rules.max_transfusion_units)).contains(&u) => {
                u32::try_from(u).ok()
            }
            _ => {
                issue(
                    at("quantityQuantity.value"),
                    format!(
                        "units are a whole number from 1 to {}",
                        rules.max_transfusion_units
                    ),
                );
                None
            }
        },
    };
    let base_test = codings(value.get("orderDetail"))
        .any(|(s, c)| s == rules.intervention_system && c == "bas-test");
    // A named performer must be a team of the care map.
    let performer_ref = value
        .get("performer")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .cloned();
    let performer = match &performer_ref {
        None => None,
        Some(r) => match hsa_of_reference(tx, r)? {
            Some(hsa) if ctx.ordination.care.team(&hsa).is_some() => Some(hsa),
            _ => {
                issue(at("performer[0]"), "the performer is not a team of the care map (an HSA-id of a team, or its Organization)".into());
                None
            }
        },
    };
    let main_need = codings(value.get("reasonCode"))
        .find(|(s, _)| *s == MAIN_NEED_SYSTEM)
        .map(|(_, c)| c.to_owned());
    let reasons: Vec<String> = codings(value.get("reasonCode"))
        .filter(|(s, _)| *s == super::REASON_SYSTEM)
        .map(|(_, c)| c.to_owned())
        .collect();
    // (v2) Kommunal hemsjukvård, stated by the orderer (spec/ordination.md step 4): a yes or no.
    let home_care = match extension_index(value, &rules.home_care_extension) {
        None => false,
        Some(i) => match value.pointer(&format!("/extension/{i}/valueBoolean")) {
            Some(Value::Bool(b)) => *b,
            _ => {
                issue(
                    at(&format!("extension[{i}]")),
                    "kommunal hemsjukvård is stated as valueBoolean (true or false)".into(),
                );
                false
            }
        },
    };
    if !issues.is_empty() {
        return Err(HandleError::Invalid(issues));
    }
    // Every field above was checked: these hold.
    let (
        Some(intervention),
        Some(patient_id),
        Some(patient),
        Some(municipality),
        Some(first_day),
        Some(last_day),
    ) = (
        intervention,
        patient_id,
        patient,
        municipality,
        first_day,
        last_day,
    )
    else {
        return Err(HandleError::Api(ApiError::internal(
            "an order passed its checks incompletely",
        )));
    };
    let age = national_id.as_ref().and_then(|n| {
        n.birth_date().until(first_day).ok().and_then(|_| {
            let years = first_day.year() - n.birth_date().year();
            let before_birthday = (first_day.month(), first_day.day())
                < (n.birth_date().month(), n.birth_date().day());
            u32::try_from(years - i16::from(before_birthday)).ok()
        })
    });
    let facts = OrderFacts {
        intervention: intervention.code.clone(),
        municipality,
        first_day,
        last_day,
        per_day,
        first_time: first_time.or_else(|| {
            value
                .pointer("/occurrencePeriod/start")
                .and_then(Value::as_str)
                .and_then(time_of)
        }),
        units,
        base_test,
        performer: performer.clone(),
        patient: PatientFacts { age, main_need },
    };
    // A drug order whose MedicationRequest has not arrived yet is planned for its team only (who coordinates),
    // its visits when the MedicationRequest comes.
    let waiting_for_mr = needs_mr && facts.per_day.is_none();
    let team_facts = if waiting_for_mr {
        OrderFacts {
            per_day: Some(1),
            ..facts.clone()
        }
    } else {
        facts.clone()
    };
    let planned: Plan = match super::plan::plan(&ctx.ordination.care, rules, &team_facts) {
        Ok(p) => p,
        Err(e) => {
            let path = match &e {
                PlanError::NoArea(_) => at("subject"),
                PlanError::NotOffered { .. } | PlanError::UnknownIntervention(_) => at("code"),
                PlanError::UnknownPerformer(_) | PlanError::PerformerCannot { .. } => {
                    at("performer[0]")
                }
                PlanError::NoTiming => {
                    "MedicationRequest.dosageInstruction[0].timing.repeat.frequency".into()
                }
                PlanError::Bounds(_) => at("occurrencePeriod"),
            };
            return Err(HandleError::Invalid(vec![ElementIssue {
                path,
                message: e.to_string(),
            }]));
        }
    };
    let orderer = sr.owner.clone();
    // (v2) A point intervention is ordered by another care provider than the team that performs it.
    if category == "punktinsats" && (orderer == planned.coordinator || orderer == planned.day_team)
    {
        return Err(HandleError::Invalid(vec![ElementIssue {
            path: at("category"),
            message: "the performing team's own order is an ordinary order, not a punktinsats"
                .into(),
        }]));
    }
    let listed_vc = match patient
        .get("generalPractitioner")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        Some(r) => hsa_of_reference(tx, r)?,
        None => None,
    };
    let responsibility_ext = value
        .get("extension")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter().find(|e| {
                e.get("url").and_then(Value::as_str)
                    == Some(rules.medical_responsibility_extension.as_str())
            })
        })
        .cloned();
    let responsible = match responsibility_ext
        .as_ref()
        .and_then(|e| e.get("valueReference"))
    {
        Some(r) => hsa_of_reference(tx, r)?,
        None => listed_vc.clone(),
    };
    // The home-care nurse is invited through the kommun where the patient stays (hemsjukvård is the
    // municipality's); a kommun that is not a navet principal cannot be invited, which the orderer is told.
    let home_care_kommun = if home_care {
        let found = kommun_of(ctx, tx, &facts.municipality)?;
        if found.is_none() {
            warnings.push(format!(
                "kommunal hemsjukvård: no kommun principal in navet for municipality {}; the home-care nurse is not invited",
                facts.municipality
            ));
        }
        found
    } else {
        None
    };
    let order = Order {
        sr_id: sr.id.clone(),
        home_care_kommun,
        patient_id,
        national_id: national_id.map(|n| n.canonical().to_owned()),
        facts,
        category,
        orderer,
        requester,
        ordinator,
        responsible: responsible.clone(),
        listed_vc,
        medication,
        reasons,
    };
    // Record the coordinating team (performer) and the medical responsibility on the order when it names
    // neither: a new version by the orderer, in this transaction.
    let replaced = if performer_ref.is_none() || responsibility_ext.is_none() {
        let mut updated = value.clone();
        if performer_ref.is_none() {
            let team = ctx.ordination.care.team(&planned.coordinator);
            updated["performer"] = serde_json::json!([{
                "identifier": {"system": HSA_ID_SYSTEM, "value": planned.coordinator},
                "display": team.map(|t| t.name.as_str()).unwrap_or_default()
            }]);
        }
        if responsibility_ext.is_none()
            && let Some(hsa) = &responsible
        {
            let ext = serde_json::json!({
                "url": rules.medical_responsibility_extension,
                "valueReference": {"identifier": {"system": HSA_ID_SYSTEM, "value": hsa}}
            });
            match updated.get_mut("extension").and_then(Value::as_array_mut) {
                Some(list) => list.push(ext),
                None => updated["extension"] = Value::Array(vec![ext]),
            }
        }
        if let Some(meta) = updated.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
        }
        // The client's validated order with navet's two additions: not validated again.
        let prepared = super::work::built(updated)?;
        Some(ops::update(ctx, tx, &prepared, &sr.id, None)?.version)
    } else {
        None
    };
    let created = if status == "active" && !waiting_for_mr {
        super::work::create(ctx, tx, &order, &planned)?
    } else {
        Vec::new()
    };
    Ok(Handled {
        warnings,
        replaced,
        created,
    })
}

/// The ordering physician's HSA-id: a logical HSA identifier, or a PractitionerRole's practitioner.
fn ordinator_of(tx: &mut dyn WriteTx, requester: &Value) -> Result<Option<String>, ApiError> {
    if let Some(id) = requester.get("identifier")
        && id.get("system").and_then(Value::as_str) == Some(HSA_ID_SYSTEM)
    {
        return Ok(id.get("value").and_then(Value::as_str).map(str::to_owned));
    }
    let practitioner = match literal_refs(Some(requester), "PractitionerRole").first() {
        Some(role_id) => tx
            .current("PractitionerRole", role_id)?
            .as_ref()
            .and_then(json_of)
            .and_then(|r| r.get("practitioner").cloned()),
        None => Some(requester.clone()),
    };
    let Some(p) = practitioner else {
        return Ok(None);
    };
    if let Some(id) = p.get("identifier")
        && id.get("system").and_then(Value::as_str) == Some(HSA_ID_SYSTEM)
    {
        return Ok(id.get("value").and_then(Value::as_str).map(str::to_owned));
    }
    match literal_refs(Some(&p), "Practitioner").first() {
        Some(pid) => Ok(tx
            .current("Practitioner", pid)?
            .as_ref()
            .and_then(json_of)
            .as_ref()
            .and_then(hsa_identifier)),
        None => Ok(None),
    }
}

/// The local date of a FHIR date or dateTime (`2026-11-24`, `2026-11-24T08:00:00+01:00`).
fn day_of(s: &str) -> Option<Date> {
    s.get(..10)?.parse().ok()
}

/// The local time of a FHIR dateTime with a time (`2026-11-24T10:00:00+01:00` → 10:00), when it has one.
fn time_of(s: &str) -> Option<Time> {
    let t = s.get(11..19)?;
    t.parse().ok().filter(|t: &Time| *t != Time::midnight())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_read_without_panicking_on_any_text() {
        assert_eq!(day_of("2026-11-24"), Some(jiff::civil::date(2026, 11, 24)));
        assert_eq!(
            day_of("2026-11-24T08:00:00+01:00"),
            Some(jiff::civil::date(2026, 11, 24))
        );
        assert_eq!(day_of("2026-1"), None);
        assert_eq!(day_of("åäöåäöåäöåäö"), None);
        assert_eq!(
            time_of("2026-11-24T10:30:00+01:00"),
            Some(jiff::civil::time(10, 30, 0, 0))
        );
        assert_eq!(time_of("2026-11-24"), None);
        assert_eq!(time_of("2026-11-24Tåäöåäö"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_text_as_a_date_or_time_is_read_or_refused(s in ".{0,40}") {
            let _ = day_of(&s);
            let _ = time_of(&s);
        }
    }
}
