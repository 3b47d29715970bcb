//! Swedish rules navet enforces on top of FHIR structure (profiles/README.md lists them).
//!
//! - A Patient identifier in the HL7 Sweden personnummer/samordningsnummer/reservnummer systems (or the
//!   OIDs accepted on input) must pass the date and check-digit tests: 422 naming the identifier.
//! - A national identity number is unique among Patients: the unique keys it yields are claimed in the
//!   database in the same transaction as the write (409 naming the existing Patient).

use serde_json::Value;

use crate::domain::patient_identifier::{self, PatientIdentifier};
use crate::error::{ApiError, ElementIssue};

/// Unique-key scope for national identity numbers among Patients.
pub const PATIENT_IDENTIFIER_SCOPE: &str = "patient-identifier";

/// Checks the Swedish rules and answers the unique keys (scope, key) the resource must hold.
pub fn check(resource_type: &str, value: &Value) -> Result<Vec<(String, String)>, ApiError> {
    if resource_type != "Patient" {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    let mut issues = Vec::new();
    let identifiers = value.get("identifier").and_then(Value::as_array);
    for (i, identifier) in identifiers.into_iter().flatten().enumerate() {
        let (Some(system), Some(id_value)) = (
            identifier.get("system").and_then(Value::as_str),
            identifier.get("value").and_then(Value::as_str),
        ) else {
            continue;
        };
        match patient_identifier::from_fhir(system, id_value) {
            Ok(Some(parsed)) => {
                if let PatientIdentifier::National(_) = parsed {
                    keys.push((
                        PATIENT_IDENTIFIER_SCOPE.to_owned(),
                        format!("{}|{}", parsed.canonical_system(), parsed.canonical_value()),
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => issues.push(ElementIssue {
                path: format!("Patient.identifier[{i}].value"),
                message: e.to_string(),
            }),
        }
    }
    if issues.is_empty() {
        keys.sort();
        keys.dedup();
        Ok(keys)
    } else {
        Err(ApiError::Invalid(issues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_with_a_wrong_check_digit_is_invalid_and_named() {
        let p = json!({"resourceType": "Patient", "identifier": [
            {"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121213"}]});
        match check("Patient", &p) {
            Err(ApiError::Invalid(issues)) => {
                assert_eq!(issues[0].path, "Patient.identifier[0].value")
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_oid_and_the_uri_give_the_same_unique_key() {
        let a = json!({"resourceType": "Patient", "identifier": [
            {"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "19121212-1212"}]});
        let b = json!({"resourceType": "Patient", "identifier": [
            {"system": "http://electronichealth.se/identifier/personnummer", "value": "191212121212"}]});
        assert_eq!(check("Patient", &a).unwrap(), check("Patient", &b).unwrap());
        assert_eq!(check("Patient", &a).unwrap().len(), 1);
    }

    #[test]
    fn other_resource_types_hold_no_keys() {
        assert!(check("Observation", &json!({})).unwrap().is_empty());
    }
}
