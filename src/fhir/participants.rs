//! Who takes part in a resource (DESIGN.md "Record ownership and sharing"): the HSA-ids named as requester,
//! performer, owner, recipient, author, sender or care-team member on it, or on the ServiceRequest, CarePlan,
//! Task or MedicationRequest it belongs to. Computed when a version is written and stored with it, so the
//! visibility filter is a join inside the search query, never a filter after it.
//!
//! A name is an HSA-id either given directly (a logical reference, `identifier` under the HSA system) or found
//! through a literal reference: Organization (its HSA identifier), PractitionerRole and HealthcareService (their
//! organization), CareTeam (its members and managing organization). Practitioners carry no organization and
//! add nothing. Whether an HSA-id is a principal or one of its care units is decided when reading (the caller's
//! principal and units are compared), so configuration changes need no rewrite.
//!
//! Limit: what a resource inherits from its parent is taken when the resource is written; a participant added
//! to the parent later sees the children written after that.

use serde_json::Value;

use crate::domain::HSA_ID_SYSTEM;
use crate::search::params::SearchParams;
use crate::store::{StoreError, WriteTx};

/// Top-level members that name participants (FHIR R4 element names across ServiceRequest, Task, CarePlan,
/// CareTeam, Encounter, Appointment, Communication, MedicationRequest, MedicationAdministration, Consent).
const PARTICIPANT_MEMBERS: [&str; 8] = [
    "requester",
    "performer",
    "owner",
    "recipient",
    "author",
    "sender",
    "participant",
    "careTeam",
];

/// Members that point at the referral, plan, task or ordination a resource belongs to.
const PARENT_MEMBERS: [&str; 4] = ["basedOn", "partOf", "focus", "request"];
const PARENT_TYPES: [&str; 4] = ["ServiceRequest", "CarePlan", "Task", "MedicationRequest"];

/// How deep literal references are followed (CareTeam → PractitionerRole → Organization).
const MAX_DEPTH: u8 = 3;

/// The HSA-ids the references inside `v` name (logical HSA identifiers, Organizations and the resources that
/// lead to one), deduplicated.
pub fn named_in(tx: &mut dyn WriteTx, v: &Value) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for reference in references_in(v) {
        resolve(tx, &reference, 0, &mut out)?;
    }
    Ok(out)
}

/// The participant HSA-ids of `value` (deduplicated, upper-case).
pub fn collect(tx: &mut dyn WriteTx, value: &Value) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for member in PARTICIPANT_MEMBERS {
        if let Some(v) = value.get(member) {
            for reference in references_in(v) {
                resolve(tx, &reference, 0, &mut out)?;
            }
        }
    }
    for member in PARENT_MEMBERS {
        if let Some(v) = value.get(member) {
            for reference in references_in(v) {
                let Reference::Literal(ty, id) = &reference else {
                    continue;
                };
                if !PARENT_TYPES.contains(&ty.as_str()) {
                    continue;
                }
                if let Some(parent) = tx.current(ty, id)? {
                    push(&mut out, &parent.owner);
                    for hsa in tx.participants_of(ty, id)? {
                        push(&mut out, &hsa);
                    }
                }
            }
        }
    }
    Ok(out)
}

enum Reference {
    Literal(String, String),
    Hsa(String),
}

/// Every Reference-shaped object inside `v` (including nested ones such as `performer[].actor`).
fn references_in(v: &Value) -> Vec<Reference> {
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn walk(v: &Value, out: &mut Vec<Reference>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
        Value::Object(map) => {
            if let Some(reference) = map.get("reference").and_then(Value::as_str) {
                // Relative `Type/id` (an absolute URL keeps its last two segments; a version suffix is dropped).
                let path = reference.split("/_history/").next().unwrap_or(reference);
                let mut parts = path.rsplit('/');
                if let (Some(id), Some(ty)) = (parts.next(), parts.next())
                    && ty.starts_with(|c: char| c.is_ascii_uppercase())
                {
                    out.push(Reference::Literal(ty.to_owned(), id.to_owned()));
                }
            }
            if let Some(identifier) = map.get("identifier")
                && identifier.get("system").and_then(Value::as_str) == Some(HSA_ID_SYSTEM)
                && let Some(value) = identifier.get("value").and_then(Value::as_str)
            {
                out.push(Reference::Hsa(value.to_ascii_uppercase()));
            }
            // Into every member (a Consent actor's `reference` is itself a Reference object), except
            // extensions and an identifier's issuing organisation, which name no participant.
            for (key, child) in map {
                if key != "extension" && key != "assigner" {
                    walk(child, out);
                }
            }
        }
        _ => {}
    }
}

fn push(out: &mut Vec<String>, hsa: &str) {
    if !out.iter().any(|h| h == hsa) {
        out.push(hsa.to_owned());
    }
}

fn resolve(
    tx: &mut dyn WriteTx,
    reference: &Reference,
    depth: u8,
    out: &mut Vec<String>,
) -> Result<(), StoreError> {
    let (ty, id) = match reference {
        Reference::Hsa(hsa) => {
            push(out, hsa);
            return Ok(());
        }
        Reference::Literal(ty, id) => (ty, id),
    };
    if depth >= MAX_DEPTH
        || !matches!(
            ty.as_str(),
            "Organization" | "PractitionerRole" | "HealthcareService" | "CareTeam"
        )
    {
        return Ok(());
    }
    let Some(found) = tx.current(ty, id)? else {
        return Ok(());
    };
    let Some(json) = found.json.as_deref() else {
        return Ok(());
    };
    let Ok(target) = serde_json::from_str::<Value>(json) else {
        return Ok(());
    };
    let next: Vec<&str> = match ty.as_str() {
        "Organization" => {
            for identifier in target
                .get("identifier")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if identifier.get("system").and_then(Value::as_str) == Some(HSA_ID_SYSTEM)
                    && let Some(value) = identifier.get("value").and_then(Value::as_str)
                {
                    push(out, &value.to_ascii_uppercase());
                }
            }
            return Ok(());
        }
        "PractitionerRole" => vec!["organization"],
        "HealthcareService" => vec!["providedBy"],
        _ => vec!["participant", "managingOrganization"],
    };
    for member in next {
        if let Some(v) = target.get(member) {
            for r in references_in(v) {
                resolve(tx, &r, depth + 1, out)?;
            }
        }
    }
    Ok(())
}

/// The patients a resource is about, as `Patient/{id}`: itself for a Patient; for any other type the literal
/// Patient references through its FHIR R4 Patient compartment parameters (CompartmentDefinition `patient`,
/// e.g. an Appointment's `participant.actor`, a Communication's `sender`/`recipient`, an Observation's
/// `performer`), for every R4 type the CompartmentDefinition lists; for any other, the top-level
/// subject/patient/beneficiary/for. These links decide sammanhållen
/// dokumentation visibility and the patients the access log names, so both follow the same definition.
pub fn patients_in(
    params: &SearchParams,
    resource_type: &str,
    id: &str,
    value: &Value,
) -> Vec<String> {
    if resource_type == "Patient" {
        return vec![format!("Patient/{id}")];
    }
    let mut found = crate::search::patient_references(params, resource_type, value);
    // A type the compartment does not list (none in R4 that names a patient) keeps the top-level fields.
    if params.patient_compartment_params(resource_type).is_empty()
        && params.patient_compartment_paths(resource_type).is_empty()
    {
        for member in ["subject", "patient", "beneficiary", "for"] {
            let reference = value
                .get(member)
                .and_then(|r| r.get("reference"))
                .and_then(Value::as_str)
                .and_then(crate::search::index::parse_literal_reference);
            if let Some(r) = reference
                && r.resource_type.as_deref() == Some("Patient")
                && !found.contains(&r.value)
            {
                found.push(r.value);
            }
        }
    }
    found
}

/// [`patients_in`] of stored JSON text (a version read back); nothing for text that is not JSON.
pub fn patients_in_json(
    params: &SearchParams,
    resource_type: &str,
    id: &str,
    json: &str,
) -> Vec<String> {
    match serde_json::from_str::<Value>(json) {
        Ok(value) => patients_in(params, resource_type, id, &value),
        Err(_) => Vec::new(),
    }
}
