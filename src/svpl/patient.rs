//! The Patient navet creates, as shared master data, for a message about a patient it does not know yet: the
//! identifier, name, folkbokföringsadress, municipality and listed vårdcentral the message gives. A
//! protected identity is never known from a message; a Patient navet already has is used as it is (its
//! labels and withheld data stay), and what leaves navet is redacted where it leaves (fhir/protected.rs).

use serde_json::{Value, json};

use super::mapping::Mapping;
use super::message::PatientData;
use super::translate::{EXT_MUNICIPALITY, MUNICIPALITY_SYSTEM, hsa_ref};
use crate::domain::PatientIdentifier;

pub fn resource(p: &PatientData, map: &Mapping) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "identifier": [{"system": p.id.canonical_system(), "value": p.id.canonical_value()}],
        "active": true
    });
    if p.given.is_some() || p.family.is_some() {
        let mut name = json!({"use": "official"});
        if let Some(f) = &p.family {
            name["family"] = json!(f);
        }
        if let Some(g) = &p.given {
            name["given"] = json!([g]);
        }
        patient["name"] = json!([name]);
    }
    if let PatientIdentifier::National(id) = &p.id {
        patient["birthDate"] = json!(id.birth_date().to_string());
        // SKV 704: the second-to-last digit is odd for men, even for women.
        let digits = id.canonical().as_bytes();
        if let Some(d) = digits.get(10) {
            patient["gender"] = json!(if (d - b'0') % 2 == 1 {
                "male"
            } else {
                "female"
            });
        }
    }
    if p.street.is_some() || p.postal_code.is_some() || p.city.is_some() {
        let mut address = json!({"use": "home", "type": "both", "country": "SE"});
        if let Some(s) = &p.street {
            address["line"] = json!([s]);
        }
        if let Some(s) = &p.postal_code {
            address["postalCode"] = json!(s);
        }
        if let Some(s) = &p.city {
            address["city"] = json!(s);
        }
        patient["address"] = json!([address]);
    }
    if let Some(code) = &p.municipality {
        let mut coding = json!({"system": MUNICIPALITY_SYSTEM, "code": code});
        if let Some(name) = map.municipalities.get(code) {
            coding["display"] = json!(name);
        }
        patient["extension"] = json!([{"url": EXT_MUNICIPALITY, "valueCoding": coding}]);
    }
    if let Some(listed) = &p.listed_at {
        patient["generalPractitioner"] = json!([hsa_ref(listed.as_str())]);
    }
    patient
}
