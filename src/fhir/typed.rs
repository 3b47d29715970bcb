//! The only place navet instantiates serde for fhir-sdk's typed models.
//!
//! Every fhir-sdk resource has `contained: Vec<Resource>`, so (de)serializing any of them instantiates serde
//! for all ~150 resource types (DESIGN.md "Compile cost"). Keeping that behind these few non-generic
//! functions pays the cost once per direction. The typed models are lossy (decimals become f64, `+00:00`
//! becomes `Z`, unknown elements vanish), so they are used for reading fields navet reasons about and for
//! building what navet writes, never as the storage path.

use fhir_sdk::r4b::resources::OperationOutcome;

pub fn outcome_to_json(outcome: &OperationOutcome) -> serde_json::Value {
    serde_json::to_value(outcome).unwrap_or(serde_json::Value::Null)
}
