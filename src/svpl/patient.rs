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

/// The reverse of [`resource`]: the patient block of an outbound message, from navet's Patient. `None` when
/// the Patient has no identifier navet checks (a message names its patient by one). A protected identity's
/// withheld address is not in the stored Patient, so it cannot leave in a message either.
pub fn data(patient: &Value, map: &Mapping) -> Option<PatientData> {
    let identifiers = patient.get("identifier")?.as_array()?;
    let (id, id_type) = identifiers.iter().find_map(|i| {
        let system = i.get("system")?.as_str()?;
        let value = i.get("value")?.as_str()?;
        let id = crate::domain::from_fhir(system, value).ok()??;
        let id_type = map.patient_id_type_for(id.canonical_system())?.to_owned();
        Some((id, id_type))
    })?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let name = patient.pointer("/name/0");
    let address = patient.pointer("/address/0");
    let municipality = patient
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|x| x.get("url").and_then(Value::as_str) == Some(EXT_MUNICIPALITY))
        .and_then(|x| x.pointer("/valueCoding/code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let listed_at = patient
        .pointer("/generalPractitioner/0/identifier/value")
        .and_then(Value::as_str)
        .and_then(|h| crate::domain::HsaId::parse(h).ok());
    Some(PatientData {
        id,
        id_type,
        given: text(name.and_then(|n| n.pointer("/given/0"))),
        family: text(name.and_then(|n| n.get("family"))),
        street: text(address.and_then(|a| a.pointer("/line/0"))),
        postal_code: text(address.and_then(|a| a.get("postalCode"))),
        city: text(address.and_then(|a| a.get("city"))),
        municipality,
        listed_at,
    })
}
