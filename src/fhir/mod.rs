//! FHIR R4 (4.0.1): lossless resource handling, structural validation, Swedish rules, the REST operations
//! and Bundles. HTTP specifics stay in `http/`; this module knows nothing of axum beyond response types.

pub mod bundle;
pub mod capability;
pub mod json;
pub mod ops;
pub mod outcome;
pub mod participants;
pub mod protected;
pub mod rules;
pub mod sharing;
pub mod structure;
pub mod typed;

use std::sync::Arc;

use crate::search::params::SearchParams;
use structure::Structure;

/// `Content-Type` of every FHIR JSON answer (FHIR R4 §3.1.0.1.2).
pub const FHIR_JSON: &str = "application/fhir+json;charset=utf-8";

/// The read-only FHIR knowledge navet loads once at start-up and shares.
pub struct FhirContext {
    pub structure: Structure,
    pub params: SearchParams,
}

impl FhirContext {
    pub fn embedded() -> Arc<Self> {
        Arc::new(FhirContext {
            structure: Structure::embedded(),
            params: SearchParams::embedded(),
        })
    }

    /// The resource types the search API serves (DESIGN.md glossary plus the shared master data).
    pub fn is_searchable(&self, resource_type: &str) -> bool {
        SEARCHABLE.contains(&resource_type)
    }
}

/// Directory records (DESIGN.md "Record ownership and sharing"): shared master data that is not patient data,
/// so a client without an acting user may use them.
pub const DIRECTORY_TYPES: [&str; 6] = [
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "HealthcareService",
    "Location",
    "Endpoint",
];

/// Shared master data: the directory and Patient. Any care principal may change it (the change is recorded
/// with the changing principal); every other resource may be changed by its owner only.
pub fn is_shared_master_data(resource_type: &str) -> bool {
    resource_type == "Patient" || DIRECTORY_TYPES.contains(&resource_type)
}

/// `meta.tag` system of the owner coding navet puts on every stored version: the code is the owner
/// principal's HSA-id (`navet-system` for what navet loaded itself). Clients cannot set or change it.
pub const OWNER_TAG_SYSTEM: &str = "urn:navet:owner";

/// Types with search support. Every R4 type supports create/read/update/delete/history.
pub const SEARCHABLE: [&str; 18] = [
    "Patient",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "HealthcareService",
    "Location",
    "ServiceRequest",
    "MedicationRequest",
    "MedicationAdministration",
    "Task",
    "CarePlan",
    "CareTeam",
    "Encounter",
    "Consent",
    "Appointment",
    "Communication",
    "AuditEvent",
    "EpisodeOfCare",
];
