//! Protected identity (DESIGN.md "Record ownership and sharing"): a Patient labelled *skyddad folkbokföring*
//! or *sekretessmarkering* (HL7 Sweden security labels in `meta.security`) shows its address and contact data
//! to no principal except the one that entered it.
//!
//! - What is withheld: every element that carries address or contact data, wherever it sits. The top-level
//!   `address`, `telecom`, `contact` (next of kin: their addresses point at the patient) and the narrative
//!   `text` (it renders the same data); every `extension`/`modifierExtension` entry, and any other top-level
//!   element, that holds an `address`, `telecom`, `valueAddress` or `valueContactPoint` anywhere inside.
//!   Whole elements are withheld, never parts of one, so what others read stays valid FHIR and an update can
//!   put the withheld elements back exactly ([`restore`]).
//! - Where: once, where a resource leaves navet ([`outgoing`]): every answer, Bundle entry and (later)
//!   timeline entry, receipt and notification is built from an [`Outgoing`], and only this module makes one.
//!   A redacted view carries the `REDACTED` security label so a reader knows something was withheld.
//! - Every version of a resource that is protected now is withheld alike (`StoredVersion::protected`), so the
//!   history cannot show an address the current version hides.
//! - Indexing: address and telecom rows are not written at all ([`unindexed`]): no search points at them.
//! - Changes: [`check_update`] keeps the labels and the withheld elements out of other principals' hands.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::fhir::json::IncomingResource;
use crate::search::index::IndexRow;
use crate::store::{Actor, StoredVersion};

pub const SECURITY_LABEL_SYSTEM: &str = "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel";
pub const PROTECTED_CODES: [&str; 2] = ["skyddadFolkbokforing", "sekretessmarkering"];

/// The label navet puts on a redacted view (HL7 v3 ObservationValue `REDACTED`, FHIR R4 §8.1 security
/// labels): never stored, and stripped from what clients send.
pub const REDACTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
pub const REDACTED_CODE: &str = "REDACTED";

/// Top-level members withheld whole.
const WITHHELD_MEMBERS: [&str; 7] = [
    "address", "_address", "telecom", "_telecom", "contact", "_contact", "text",
];
/// Members that carry address or contact data wherever they appear (datatypes Address and ContactPoint).
const CONTACT_DATA_KEYS: [&str; 8] = [
    "address",
    "_address",
    "telecom",
    "_telecom",
    "valueAddress",
    "_valueAddress",
    "valueContactPoint",
    "_valueContactPoint",
];
/// Top-level arrays whose entries are judged one by one.
const EXTENSION_MEMBERS: [&str; 2] = ["extension", "modifierExtension"];

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

/// Resource JSON on its way out of navet, as the receiving caller may see it. Only [`outgoing`] makes one, so
/// every path that answers with a resource passes the protected-identity rule.
#[derive(Debug, Clone)]
pub struct Outgoing<'a>(Cow<'a, str>);

impl Outgoing<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, copied only if it is still borrowed from a stored version.
    pub fn into_string(self) -> String {
        self.0.into_owned()
    }

    /// Content navet made itself for the answer (an OperationOutcome), holding no stored resource.
    pub fn navet_made(text: String) -> Outgoing<'static> {
        Outgoing(Cow::Owned(text))
    }
}

/// What `actor` gets of a stored version: the stored text, or — for a protected Patient that `actor` did not
/// enter — the text without its address and contact data. `None` for a deletion version.
pub fn outgoing<'a>(actor: &Actor, v: &'a StoredVersion) -> Option<Outgoing<'a>> {
    let json = v.json.as_deref()?;
    if withheld_from(actor, v, json)
        && let Some(view) = redacted(json)
    {
        return Some(Outgoing(Cow::Owned(view)));
    }
    Some(Outgoing(Cow::Borrowed(json)))
}

/// [`outgoing`] that takes the stored text out of `v` instead of borrowing it, so a read answers with the
/// stored bytes themselves (no copy) when nothing is withheld. `v.json` is `None` afterwards.
pub fn take_outgoing(actor: &Actor, v: &mut StoredVersion) -> Option<Outgoing<'static>> {
    let json = v.json.take()?;
    if withheld_from(actor, v, &json)
        && let Some(view) = redacted(&json)
    {
        return Some(Outgoing(Cow::Owned(view)));
    }
    Some(Outgoing(Cow::Owned(json)))
}

/// The rule itself: a protected Patient's contact data is withheld from every principal but the one that
/// entered it.
fn withheld_from(actor: &Actor, v: &StoredVersion, json: &str) -> bool {
    v.resource_type == "Patient"
        && !actor.visibility.entered(&v.owner)
        && (v.protected || is_protected_text(json))
}

/// Whether stored Patient text carries a protected-identity label (cheap text test first: almost none do).
pub fn is_protected_text(json: &str) -> bool {
    PROTECTED_CODES.iter().any(|c| json.contains(c))
        && serde_json::from_str::<MetaOnly>(json)
            .ok()
            .and_then(|m| m.meta)
            .is_some_and(|meta| is_protected(&serde_json::json!({ "meta": meta })))
}

#[derive(serde::Deserialize)]
struct MetaOnly {
    meta: Option<Value>,
}

/// A stored resource split into what others see and what is withheld from them.
struct Split {
    /// The members others see, in stored order (extension arrays without their withheld entries).
    visible: IndexMap<String, Box<RawValue>>,
    /// Withheld top-level members.
    members: Vec<(String, Box<RawValue>)>,
    /// Withheld entries of `extension` / `modifierExtension`, with the array they came from.
    extensions: Vec<(String, Box<RawValue>)>,
}

impl Split {
    fn withholds_anything(&self) -> bool {
        !self.members.is_empty() || !self.extensions.is_empty()
    }
}

fn split(json: &str) -> Option<Split> {
    let members: IndexMap<String, Box<RawValue>> = serde_json::from_str(json).ok()?;
    let mut out = Split {
        visible: IndexMap::with_capacity(members.len()),
        members: Vec::new(),
        extensions: Vec::new(),
    };
    for (name, raw) in members {
        if matches!(name.as_str(), "resourceType" | "id" | "meta") {
            out.visible.insert(name, raw);
        } else if WITHHELD_MEMBERS.contains(&name.as_str()) {
            out.members.push((name, raw));
        } else if EXTENSION_MEMBERS.contains(&name.as_str()) {
            let Ok(entries) = serde_json::from_str::<Vec<Box<RawValue>>>(raw.get()) else {
                // Not an array: judged as a whole, like any other member.
                if carries_contact_data(&raw) {
                    out.members.push((name, raw));
                } else {
                    out.visible.insert(name, raw);
                }
                continue;
            };
            let (hidden, shown): (Vec<_>, Vec<_>) =
                entries.into_iter().partition(|e| carries_contact_data(e));
            out.extensions
                .extend(hidden.into_iter().map(|e| (name.clone(), e)));
            // FHIR JSON has no empty arrays (§2.6.2): an array left empty goes.
            if !shown.is_empty()
                && let Some(array) = raw_array(&shown)
            {
                out.visible.insert(name, array);
            }
        } else if carries_contact_data(&raw) {
            out.members.push((name, raw));
        } else {
            out.visible.insert(name, raw);
        }
    }
    Some(out)
}

fn raw_array(entries: &[Box<RawValue>]) -> Option<Box<RawValue>> {
    serde_json::to_string(entries)
        .ok()
        .and_then(|t| RawValue::from_string(t).ok())
}

/// Whether an element holds address or contact data anywhere inside it.
fn carries_contact_data(raw: &RawValue) -> bool {
    let text = raw.get();
    // Cheap text test first; the parse confirms it is a member name, not a string value.
    if !["address\"", "Address\"", "telecom\"", "ContactPoint\""]
        .iter()
        .any(|k| text.contains(k))
    {
        return false;
    }
    serde_json::from_str::<Value>(text).is_ok_and(|v| has_contact_key(&v))
}

fn has_contact_key(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| CONTACT_DATA_KEYS.contains(&k.as_str()) || has_contact_key(v)),
        Value::Array(items) => items.iter().any(has_contact_key),
        _ => false,
    }
}

/// The stored text without its address and contact data, marked `REDACTED`; `None` when it withholds
/// nothing. Other members stay byte for byte as stored.
pub fn redacted(json: &str) -> Option<String> {
    let mut split = split(json)?;
    if !split.withholds_anything() {
        return None;
    }
    let mut meta: Value = split
        .visible
        .get("meta")
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_else(|| Value::Object(Default::default()));
    if let Value::Object(m) = &mut meta {
        let security = m
            .entry("security")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = security {
            items.push(serde_json::json!({"system": REDACTED_SYSTEM, "code": REDACTED_CODE}));
        }
    }
    let meta = RawValue::from_string(meta.to_string()).ok()?;
    split.visible.insert("meta".into(), meta);
    serde_json::to_string(&split.visible).ok()
}

/// The security labels of a resource (`meta.security` as (system, code)), without navet's `REDACTED`.
fn labels(meta_security: Option<&Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = meta_security
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            (s("system"), s("code"))
        })
        .filter(|(s, c)| !(s == REDACTED_SYSTEM && c == REDACTED_CODE))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The rules for an update of a stored Patient by `actor` (DESIGN.md: "Security labels are not the client's to
/// drop"), applied to the incoming resource before it is written:
/// - `meta.security` may be changed only by the principal that entered the Patient, the registered
///   population-register integration, or navet itself: from anyone else a change is refused (403);
/// - on a protected Patient, what the caller could not see is kept: an update from another principal that
///   leaves the withheld elements out (it sent back what it read) gets them back from the stored version; one
///   that sends address or contact data itself is refused (403), since it would overwrite data it cannot see.
///   The population register writes them as sent: it is their source.
pub fn check_update(
    actor: &Actor,
    current: &StoredVersion,
    incoming: &mut IncomingResource,
) -> Result<(), ApiError> {
    if current.resource_type != "Patient" {
        return Ok(());
    }
    let Some(stored) = current.json.as_deref() else {
        return Ok(());
    };
    let entered = actor.visibility.entered(&current.owner);
    let authority = entered || actor.population_register;
    let stored_meta = serde_json::from_str::<MetaOnly>(stored)
        .ok()
        .and_then(|m| m.meta);
    let before = labels(stored_meta.as_ref().and_then(|m| m.get("security")));
    let after = labels(incoming.value().get("meta").and_then(|m| m.get("security")));
    if before != after && !authority {
        return Err(ApiError::Forbidden(format!(
            "{}/{}: its security labels (meta.security) may be set or removed only by the principal that \
             entered it ({}) or the population register",
            current.resource_type, current.id, current.owner
        )));
    }
    if authority || !(current.protected || is_protected_text(stored)) {
        return Ok(());
    }
    let sent = split(&incoming.value().to_string())
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    if sent.withholds_anything() {
        return Err(ApiError::Forbidden(format!(
            "Patient/{} has a protected identity: its address and contact data (address, telecom, contact, \
             narrative, extensions carrying them) are changed only by the principal that entered it or the \
             population register; send the Patient without them and navet keeps the stored ones",
            current.id
        )));
    }
    if let Some(withheld) = split(stored) {
        incoming.restore(withheld.members, withheld.extensions)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = r#"{"system":"http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel","code":"skyddadFolkbokforing"}"#;

    fn protected_patient(rest: &str) -> String {
        format!(
            r#"{{"resourceType":"Patient","id":"p","meta":{{"security":[{LABEL}]}},"name":[{{"family":"Berg"}}]{rest}}}"#
        )
    }

    #[test]
    fn a_protected_patient_loses_every_element_with_contact_data_and_keeps_the_rest_verbatim() {
        let json = protected_patient(
            r#","address":[{"city":"Kristianstad"}],"telecom":[{"value":"070"}],
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Storgatan 1</div>"},
            "contact":[{"name":{"family":"Berg"},"address":{"city":"Åhus"},"telecom":[{"value":"071"}]}],
            "extension":[{"url":"u","valueDecimal":1.50},{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthPlace","valueAddress":{"city":"Lund"}},
              {"url":"complex","extension":[{"url":"inner","valueContactPoint":{"value":"072"}}]}],
            "photo":[{"title":"address"}]"#,
        );
        let out = redacted(&json).expect("redacted");
        for secret in [
            "Kristianstad",
            "070",
            "Storgatan",
            "Åhus",
            "071",
            "Lund",
            "072",
        ] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        let v: Value = serde_json::from_str(&out).expect("valid JSON");
        let kept: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            kept,
            ["resourceType", "id", "meta", "name", "extension", "photo"]
        );
        assert!(out.contains(r#""valueDecimal":1.50"#), "{out}");
        assert_eq!(v["extension"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["meta"]["security"][1]["code"], REDACTED_CODE);
    }

    #[test]
    fn an_extension_array_left_empty_is_dropped() {
        let json =
            protected_patient(r#","extension":[{"url":"b","valueAddress":{"city":"Lund"}}]"#);
        let v: Value = serde_json::from_str(&redacted(&json).expect("redacted")).expect("json");
        assert!(v.get("extension").is_none(), "{v}");
    }

    #[test]
    fn a_string_that_mentions_address_is_not_contact_data() {
        let raw = RawValue::from_string(r#"{"title":"\"address\""}"#.into()).expect("raw");
        assert!(!carries_contact_data(&raw));
    }

    #[test]
    fn the_label_is_read_from_meta_only() {
        assert!(is_protected_text(&protected_patient("")));
        assert!(!is_protected_text(
            r#"{"resourceType":"Patient","name":[{"text":"skyddadFolkbokforing"}]}"#
        ));
        let other = r#"{"resourceType":"Patient","meta":{"security":[{"system":"x","code":"skyddadFolkbokforing"}]},"address":[]}"#;
        assert!(!is_protected_text(other));
    }

    #[test]
    fn labels_ignore_order_duplicates_and_the_redacted_mark() {
        let a = serde_json::json!([{"system": "s", "code": "b"}, {"system": "s", "code": "a"}]);
        let b = serde_json::json!([
            {"system": "s", "code": "a"},
            {"system": REDACTED_SYSTEM, "code": REDACTED_CODE},
            {"system": "s", "code": "b"},
            {"system": "s", "code": "a"}
        ]);
        assert_eq!(labels(Some(&a)), labels(Some(&b)));
        assert_ne!(labels(Some(&a)), labels(None));
    }
}
