//! Protected identity (DESIGN.md, issue 4): a Patient labelled *skyddad folkbokföring* or *sekretessmarkering*
//! (HL7 Sweden security labels in `meta.security`) shows its address and telecom to no principal except the one
//! that entered it. Those elements are removed from what others read, and are not indexed at all, so no
//! search by address, phone or e-mail can point at the patient either.

use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::search::index::IndexRow;

pub const SECURITY_LABEL_SYSTEM: &str = "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel";
pub const PROTECTED_CODES: [&str; 2] = ["skyddadFolkbokforing", "sekretessmarkering"];

/// The members withheld from other principals.
const WITHHELD: [&str; 2] = ["address", "telecom"];

/// Whether a Patient (parsed) carries a protected-identity label.
pub fn is_protected(value: &Value) -> bool {
    value
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("system").and_then(Value::as_str) == Some(SECURITY_LABEL_SYSTEM)
                && c.get("code")
                    .and_then(Value::as_str)
                    .is_some_and(|code| PROTECTED_CODES.contains(&code))
        })
}

/// Drops the index rows that would let a search by address or telecom find a protected Patient.
pub fn unindexed(rows: Vec<IndexRow>) -> Vec<IndexRow> {
    rows.into_iter()
        .filter(|r| {
            !(r.param.starts_with("address")
                || matches!(r.param.as_str(), "phone" | "email" | "telecom"))
        })
        .collect()
}

/// The stored Patient text without address and telecom when it is protected; `None` when nothing is withheld.
/// Other members stay byte for byte as stored.
pub fn redacted(json: &str) -> Option<String> {
    // Cheap test first: almost no Patient carries a label.
    if !PROTECTED_CODES.iter().any(|c| json.contains(c)) {
        return None;
    }
    let mut members: IndexMap<String, Box<RawValue>> = serde_json::from_str(json).ok()?;
    let meta: Value = members
        .get("meta")
        .and_then(|m| serde_json::from_str(m.get()).ok())?;
    if !is_protected(&serde_json::json!({ "meta": meta })) {
        return None;
    }
    let before = members.len();
    members.retain(|k, _| {
        !WITHHELD.contains(&k.as_str()) && !WITHHELD.iter().any(|w| k == &format!("_{w}"))
    });
    if members.len() == before {
        return None;
    }
    serde_json::to_string(&members).ok()
}

/// Another principal's view of a stored version: a protected Patient without address and telecom. `sees` is
/// the actor's HSA-ids (`None`: navet itself, which sees everything).
pub fn redact_for(sees: Option<&[String]>, v: &mut crate::store::StoredVersion) {
    let Some(sees) = sees else { return };
    if v.resource_type != "Patient" || sees.contains(&v.owner) {
        return;
    }
    if let Some(redacted) = v.json.as_deref().and_then(redacted) {
        v.json = Some(redacted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protected_patient_loses_address_and_telecom_and_keeps_the_rest_verbatim() {
        let json = r#"{"resourceType":"Patient","id":"p","meta":{"security":[{"system":"http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel","code":"skyddadFolkbokforing"}]},"name":[{"family":"Berg"}],"address":[{"city":"Kristianstad"}],"telecom":[{"value":"070"}],"extension":[{"url":"u","valueDecimal":1.50}]}"#;
        let out = redacted(json).expect("redacted");
        assert!(
            !out.contains("Kristianstad") && !out.contains("070"),
            "{out}"
        );
        assert!(out.contains("1.50") && out.contains("Berg"), "{out}");
    }

    #[test]
    fn an_unlabelled_patient_or_another_system_is_left_alone() {
        assert_eq!(
            redacted(r#"{"resourceType":"Patient","address":[{"city":"X"}]}"#),
            None
        );
        let other = r#"{"resourceType":"Patient","meta":{"security":[{"system":"x","code":"skyddadFolkbokforing"}]},"address":[]}"#;
        assert_eq!(redacted(other), None);
    }
}
