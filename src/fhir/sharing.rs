//! Sammanhållen dokumentation (Lag 2022:913, DESIGN.md): what besides ownership and participation lets a
//! principal read another principal's clinical records. Three facts are kept per resource version, written in
//! the version's transaction and read by the visibility filter (store/search_sql.rs) inside the query:
//!
//! - **patient links**: the patient a resource is about (its subject/patient/beneficiary/for, or itself);
//! - **care relationships**: an active Task, ServiceRequest, CarePlan or EpisodeOfCare links its owner and its
//!   participants to its patient;
//! - **consent decisions**: an active Consent either permits (its top-level provision, for the principals it
//!   names as actors or, naming none, for all) or blocks (a `deny` provision naming a principal: that
//!   principal's records are hidden from everyone reading through sammanhållen dokumentation).
//!
//! A principal then reads a record another principal owns, beyond participation, when it has a care
//! relationship with the patient, the patient's consent names it or all, and no block covers the record's
//! owner. Emergency access (purpose `ETREAT`) passes consent and blocks; the care relationship is still
//! required. Blocks do not hide what is addressed to a principal (participation), which it needs to act on.

use serde_json::Value;

use crate::fhir::participants;
use crate::store::{StoreError, WriteTx};

/// Consent-decision kinds in the `consents` table.
pub const PERMIT: &str = "permit";
pub const BLOCK: &str = "block";
/// A permit naming no actor: for all principals.
pub const ANYONE: &str = "*";

const RELATIONSHIP_TYPES: [&str; 4] = ["Task", "ServiceRequest", "CarePlan", "EpisodeOfCare"];

/// Whether a resource of a relationship type is active (FHIR R4 status value sets).
fn is_active(resource_type: &str, value: &Value) -> bool {
    let status = value.get("status").and_then(Value::as_str).unwrap_or("");
    match resource_type {
        "Task" => matches!(
            status,
            "requested" | "received" | "accepted" | "ready" | "in-progress" | "on-hold"
        ),
        _ => status == "active",
    }
}

/// Writes the patient links, care relationships and consent decisions of a version (replacing the previous
/// version's). `patients` are the patients it is about ([`participants::patients_in`]), `participants` the
/// version's participants, `owner` its owner principal.
pub fn record(
    tx: &mut dyn WriteTx,
    resource_type: &str,
    id: &str,
    value: &Value,
    owner: &str,
    patients: &[String],
    participants: &[String],
) -> Result<(), StoreError> {
    tx.set_patient_links(resource_type, id, patients)?;

    let mut relations = Vec::new();
    if RELATIONSHIP_TYPES.contains(&resource_type) && is_active(resource_type, value) {
        for patient in patients {
            relations.push((patient.clone(), owner.to_owned()));
            relations.extend(participants.iter().map(|h| (patient.clone(), h.clone())));
        }
    }
    tx.set_care_relations(resource_type, id, &relations)?;

    let mut decisions = Vec::new();
    if resource_type == "Consent" && value.get("status").and_then(Value::as_str) == Some("active") {
        decisions = consent_decisions(tx, value, patients)?;
    }
    tx.set_consents(resource_type, id, &decisions)?;
    Ok(())
}

/// Removes what a deleted resource contributed: a deleted referral is no care relationship, a deleted
/// Consent no decision.
pub fn forget(tx: &mut dyn WriteTx, resource_type: &str, id: &str) -> Result<(), StoreError> {
    tx.set_care_relations(resource_type, id, &[])?;
    tx.set_consents(resource_type, id, &[])
}

/// (patient, kind, principal) rows of an active Consent.
fn consent_decisions(
    tx: &mut dyn WriteTx,
    value: &Value,
    patients: &[String],
) -> Result<Vec<(String, String, String)>, StoreError> {
    let mut out = Vec::new();
    let Some(provision) = value.get("provision") else {
        return Ok(out);
    };
    let mut push = |kind: &str, principals: &[String]| {
        for patient in patients {
            for p in principals {
                out.push((patient.clone(), kind.to_owned(), p.clone()));
            }
        }
    };
    let top_type = provision
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("permit");
    let top_named = match provision.get("actor") {
        Some(actors) => participants::named_in(tx, actors)?,
        None => Vec::new(),
    };
    match top_type {
        "deny" if !top_named.is_empty() => push(BLOCK, &top_named),
        "deny" => {}
        _ if top_named.is_empty() => push(PERMIT, &[ANYONE.to_owned()]),
        _ => push(PERMIT, &top_named),
    }
    for nested in provision
        .get("provision")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if nested.get("type").and_then(Value::as_str) == Some("deny")
            && let Some(actors) = nested.get("actor")
        {
            let named = participants::named_in(tx, actors)?;
            push(BLOCK, &named);
        }
    }
    Ok(out)
}
