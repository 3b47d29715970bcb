//! `_summary` and `_elements` (FHIR R4 4.0.1 search.html#summary, #elements): the subsets of a resource a
//! client may ask for on read and search.
//!
//! The elements each subset keeps come from `conformance/summary-elements.json`, generated from the R4
//! StructureDefinitions by `conformance/tools/extract_summary_elements.py` (top-level elements marked
//! `isSummary`, and those with min ≥ 1, which every subset keeps). Subsetting is applied to what leaves navet
//! (after protected-identity redaction) and marks the result `SUBSETTED` (FHIR R4 4.0.1 §2.1.0.4.2), so a
//! client never mistakes it for the whole resource and cannot update with it unknowingly.
//!
//! Only top-level elements are selected: an element that is kept is kept whole (R4 lets a server keep more
//! than the summary; it never keeps less).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

const EMBEDDED: &str = include_str!("../../conformance/summary-elements.json");

/// The `meta.tag` navet adds to a subset (FHIR R4 4.0.1 v3-ObservationValue `SUBSETTED`).
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `_summary=true`: the summary elements.
    Summary,
    /// `_summary=text`: text, id, meta and the mandatory elements.
    Text,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_elements=a,b`: those elements, plus id, meta and the mandatory ones.
    Elements(Vec<String>),
}

impl Shape {
    /// From the `_summary` value (`true`, `text`, `data`; `false` and `count` are not subsets) and
    /// `_elements`. Both at once are refused: R4 leaves their combination undefined.
    pub fn from_params(
        summary: Option<&str>,
        elements: Option<&[String]>,
    ) -> Result<Option<Shape>, String> {
        let from_summary = match summary {
            None | Some("false") | Some("count") => None,
            Some("true") => Some(Shape::Summary),
            Some("text") => Some(Shape::Text),
            Some("data") => Some(Shape::Data),
            Some(other) => {
                return Err(format!(
                    "_summary must be true, false, text, data or count, not {other:?}"
                ));
            }
        };
        match (from_summary, elements) {
            (Some(_), Some(_)) => Err("_summary and _elements cannot be combined".into()),
            (Some(shape), None) => Ok(Some(shape)),
            (None, Some(names)) => Ok(Some(Shape::Elements(names.to_vec()))),
            (None, None) => Ok(None),
        }
    }
}

#[derive(Deserialize)]
struct RawEntry {
    summary: Vec<String>,
    mandatory: Vec<String>,
}

/// The summary and mandatory top-level elements of every resource type.
#[derive(Debug, Clone, Default)]
pub struct SummaryTable {
    by_type: HashMap<String, (Vec<String>, Vec<String>)>,
}

impl SummaryTable {
    /// The table embedded in the binary (checked by a test).
    pub fn embedded() -> Self {
        let raw: HashMap<String, RawEntry> = serde_json::from_str(EMBEDDED)
            .expect("the embedded conformance/summary-elements.json is valid (checked by tests)");
        SummaryTable {
            by_type: raw
                .into_iter()
                .map(|(k, v)| (k, (v.summary, v.mandatory)))
                .collect(),
        }
    }

    /// `resource` (JSON text of type `resource_type`) reduced to `shape`, as JSON text; `None` when the text
    /// is not a JSON object (then it is served as it is).
    pub fn apply(&self, resource_type: &str, shape: &Shape, text: &str) -> Option<String> {
        let Ok(Value::Object(mut resource)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let (summary, mandatory) = self
            .by_type
            .get(resource_type)
            .map(|(s, m)| (s.as_slice(), m.as_slice()))
            .unwrap_or((&[], &[]));
        let always = ["resourceType", "id", "meta"];
        let keep = |key: &str, names: &[String]| {
            let base = key.strip_prefix('_').unwrap_or(key);
            always.contains(&base) || names.iter().any(|n| element_matches(n, base))
        };
        // Rebuilt in order: removing from the preserve-order map would swap elements around.
        resource = std::mem::take(&mut resource)
            .into_iter()
            .filter(|(key, _)| match shape {
                Shape::Summary => keep(key, summary) || keep(key, mandatory),
                Shape::Text => key == "text" || keep(key, mandatory),
                Shape::Data => key != "text",
                Shape::Elements(names) => keep(key, names) || keep(key, mandatory),
            })
            .collect();
        mark_subsetted(&mut resource);
        serde_json::to_string(&Value::Object(resource)).ok()
    }
}

/// Whether JSON property `key` is element `name` (`deceased[x]` covers `deceasedBoolean`).
fn element_matches(name: &str, key: &str) -> bool {
    match name.strip_suffix("[x]") {
        Some(stem) => key
            .strip_prefix(stem)
            .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_uppercase())),
        None => name == key,
    }
}

fn mark_subsetted(resource: &mut Map<String, Value>) {
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else { return };
    let tags = meta
        .entry("tag")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(tags) = tags {
        tags.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"},
        "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        "name":[{"family":"Åkesson"}],"deceasedBoolean":false,"contact":[{"name":{"family":"K"}}],
        "communication":[{"language":{"text":"sv"}}],"_gender":{"extension":[]},"gender":"female"}"#;

    fn keys(text: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(text).expect("json");
        v.as_object().expect("object").keys().cloned().collect()
    }

    fn subsetted(text: &str) -> bool {
        let v: Value = serde_json::from_str(text).expect("json");
        v["meta"]["tag"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["code"] == "SUBSETTED"))
    }

    #[test]
    fn summary_true_keeps_the_summary_elements_and_marks_the_subset() {
        let table = SummaryTable::embedded();
        let out = table
            .apply("Patient", &Shape::Summary, PATIENT)
            .expect("object");
        assert_eq!(
            keys(&out),
            [
                "resourceType",
                "id",
                "meta",
                "name",
                "deceasedBoolean",
                "_gender",
                "gender"
            ]
        );
        assert!(subsetted(&out));
    }

    #[test]
    fn summary_text_keeps_the_narrative_and_data_drops_it() {
        let table = SummaryTable::embedded();
        let text = table
            .apply("Patient", &Shape::Text, PATIENT)
            .expect("object");
        assert_eq!(keys(&text), ["resourceType", "id", "meta", "text"]);
        let data = table
            .apply("Patient", &Shape::Data, PATIENT)
            .expect("object");
        assert!(!keys(&data).contains(&"text".to_owned()));
        assert!(keys(&data).contains(&"contact".to_owned()));
        assert!(subsetted(&data));
    }

    #[test]
    fn elements_keeps_the_named_and_the_mandatory_elements() {
        let table = SummaryTable::embedded();
        let obs = r#"{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},
                      "valueQuantity":{"value":1},"note":[{"text":"n"}]}"#;
        let out = table
            .apply("Observation", &Shape::Elements(vec!["note".into()]), obs)
            .expect("object");
        assert_eq!(
            keys(&out),
            ["resourceType", "id", "status", "code", "note", "meta"]
        );
    }

    #[test]
    fn summary_and_elements_together_are_refused() {
        assert!(Shape::from_params(Some("true"), Some(&["name".to_owned()])).is_err());
        assert_eq!(Shape::from_params(Some("count"), None), Ok(None));
        assert_eq!(
            Shape::from_params(Some("data"), None),
            Ok(Some(Shape::Data))
        );
        assert!(Shape::from_params(Some("maybe"), None).is_err());
    }
}
