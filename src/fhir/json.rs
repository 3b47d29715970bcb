//! Lossless handling of client resources (FHIR R4 4.0.1 §2.6.2 JSON representation).
//!
//! The client's JSON text is the record of truth (DESIGN.md): decimals keep their written precision, instants
//! their offset, unknown extensions and `_field` siblings stay. So a resource is kept as its top-level
//! members' raw JSON text; only `id` and `meta` are rewritten by navet. A parsed `serde_json::Value` is kept
//! beside it for validation, indexing and the rules navet reasons about, never for storage.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fhir::OWNER_TAG_SYSTEM;

/// Meta elements the server owns (FHIR R4 §2.27 Meta): anything a client sends for them is replaced.
const SERVER_META: [&str; 2] = ["versionId", "lastUpdated"];

#[derive(Debug, Clone)]
pub struct IncomingResource {
    resource_type: String,
    value: Value,
    /// Top-level members other than `resourceType`, `id` and `meta`, in the client's order, as written.
    members: Vec<(String, Box<RawValue>)>,
    /// The client's `meta` without the server-owned elements.
    meta: Map<String, Value>,
}

impl IncomingResource {
    /// Parses a request body. Malformed JSON, a non-object or a missing `resourceType` are 400s.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
        let raw: IndexMap<String, Box<RawValue>> = serde_json::from_slice(bytes).map_err(|_| {
            ApiError::BadRequest("the body must be a JSON object (a FHIR resource)".into())
        })?;
        Self::from_parts(value, raw)
    }

    /// A resource nested in a Bundle entry, given as its raw text.
    pub fn from_raw(raw: &RawValue) -> Result<Self, ApiError> {
        Self::parse(raw.get().as_bytes())
    }

    fn from_parts(value: Value, raw: IndexMap<String, Box<RawValue>>) -> Result<Self, ApiError> {
        let resource_type = match value.get("resourceType") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => {
                return Err(ApiError::BadRequest(
                    "the body has no resourceType: it is not a FHIR resource".into(),
                ));
            }
        };
        let meta = match value.get("meta") {
            None => Map::new(),
            Some(Value::Object(m)) => m
                .iter()
                .filter(|(k, _)| !SERVER_META.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("{resource_type}.meta"),
                    "meta must be an object",
                ));
            }
        };
        let members = raw
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "resourceType" | "id" | "meta"))
            .collect();
        Ok(IncomingResource {
            resource_type,
            value,
            members,
            meta,
        })
    }

    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The parsed view, for validation and indexing.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The `id` the client put in the body, if any.
    pub fn body_id(&self) -> Option<&str> {
        self.value.get("id").and_then(Value::as_str)
    }

    /// Adds a `meta.security` or `meta.tag` coding navet owns (replacing one with the same system).
    pub fn set_meta_coding(&mut self, list: &str, system: &str, code: &str) {
        let entry = self
            .meta
            .entry(list.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = entry {
            items.retain(|c| c.get("system").and_then(Value::as_str) != Some(system));
            items.push(serde_json::json!({"system": system, "code": code}));
        }
    }

    /// Removes a `meta.security` or `meta.tag` coding (navet's own marks a client may echo back).
    pub fn remove_meta_coding(&mut self, list: &str, system: &str, code: &str) {
        let is_it = |c: &Value| {
            c.get("system").and_then(Value::as_str) == Some(system)
                && c.get("code").and_then(Value::as_str) == Some(code)
        };
        if let Some(Value::Array(items)) = self.meta.get_mut(list) {
            items.retain(|c| !is_it(c));
            if items.is_empty() {
                self.meta.remove(list);
            }
        }
        if let Some(Value::Object(meta)) = self.value.get_mut("meta")
            && let Some(Value::Array(items)) = meta.get_mut(list)
        {
            items.retain(|c| !is_it(c));
            if items.is_empty() {
                meta.remove(list);
            }
        }
    }

    /// Puts back stored members the client could not see (protected identity, `fhir/protected.rs`): whole
    /// top-level members, and entries appended to the named extension arrays. Raw text and parsed view alike.
    pub fn restore(
        &mut self,
        members: Vec<(String, Box<RawValue>)>,
        entries: Vec<(String, Box<RawValue>)>,
    ) -> Result<(), ApiError> {
        let corrupt = |e: serde_json::Error| ApiError::internal(format!("stored member: {e}"));
        for (name, raw) in members {
            let parsed: Value = serde_json::from_str(raw.get()).map_err(corrupt)?;
            if let Value::Object(m) = &mut self.value {
                m.insert(name.clone(), parsed);
            }
            self.members.retain(|(k, _)| *k != name);
            self.members.push((name, raw));
        }
        for (name, entry) in entries {
            let parsed: Value = serde_json::from_str(entry.get()).map_err(corrupt)?;
            if let Value::Object(m) = &mut self.value {
                match m
                    .entry(name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(items) => items.push(parsed),
                    other => *other = Value::Array(vec![parsed]),
                }
            }
            let position = self.members.iter().position(|(k, _)| *k == name);
            let mut array: Vec<Box<RawValue>> = position
                .and_then(|i| serde_json::from_str(self.members[i].1.get()).ok())
                .unwrap_or_default();
            array.push(entry);
            let raw = serde_json::to_string(&array)
                .and_then(RawValue::from_string)
                .map_err(corrupt)?;
            match position {
                Some(i) => self.members[i].1 = raw,
                None => self.members.push((name, raw)),
            }
        }
        Ok(())
    }

    /// Replaces reference strings (transaction `urn:uuid:` full URLs, conditional references) by the
    /// resolved `Type/id`, in both the raw text and the parsed view. A JSON string equal to the key is
    /// replaced as a whole; a key never needs escaping (uuids and search URLs are escaped alike in both).
    pub fn rewrite_references(&mut self, map: &HashMap<String, String>) {
        if map.is_empty() {
            return;
        }
        for (_, raw) in self.members.iter_mut() {
            let mut text = raw.get().to_owned();
            let mut changed = false;
            for (from, to) in map {
                let quoted_from = serde_json::to_string(from).unwrap_or_default();
                if text.contains(&quoted_from) {
                    let quoted_to = serde_json::to_string(to).unwrap_or_default();
                    text = text.replace(&quoted_from, &quoted_to);
                    changed = true;
                }
            }
            if changed && let Ok(new) = RawValue::from_string(text) {
                *raw = new;
            }
        }
        rewrite_value(&mut self.value, map);
    }

    /// The stored text: `resourceType`, `id`, `meta` (client meta plus versionId and lastUpdated), then
    /// the client's members exactly as written.
    /// `owner` goes into `meta.tag` under [`OWNER_TAG_SYSTEM`], replacing whatever the client sent there.
    pub fn render(&self, id: &str, version: i64, last_updated: &str, owner: &str) -> String {
        let mut meta = Map::new();
        meta.insert("versionId".into(), Value::String(version.to_string()));
        meta.insert("lastUpdated".into(), Value::String(last_updated.to_owned()));
        for (k, v) in &self.meta {
            meta.insert(k.clone(), v.clone());
        }
        let tags = meta
            .entry("tag")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = tags {
            items.retain(|c| c.get("system").and_then(Value::as_str) != Some(OWNER_TAG_SYSTEM));
            items.push(serde_json::json!({"system": OWNER_TAG_SYSTEM, "code": owner}));
        } else {
            *tags = serde_json::json!([{"system": OWNER_TAG_SYSTEM, "code": owner}]);
        }
        let mut out = String::with_capacity(
            256 + self
                .members
                .iter()
                .map(|(_, r)| r.get().len() + 32)
                .sum::<usize>(),
        );
        out.push_str("{\"resourceType\":");
        out.push_str(&json_string(&self.resource_type));
        out.push_str(",\"id\":");
        out.push_str(&json_string(id));
        out.push_str(",\"meta\":");
        out.push_str(&serde_json::to_string(&meta).unwrap_or_else(|_| "{}".into()));
        for (k, raw) in &self.members {
            out.push(',');
            out.push_str(&json_string(k));
            out.push(':');
            out.push_str(raw.get());
        }
        out.push('}');
        out
    }

    /// The parsed view as it will be stored (id and meta set), for indexing.
    pub fn value_with_id(&self, id: &str) -> Value {
        let mut v = self.value.clone();
        if let Value::Object(m) = &mut v {
            m.insert("id".into(), Value::String(id.to_owned()));
        }
        v
    }
}

fn rewrite_value(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(to) = map.get(s.as_str()) {
                *s = to.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_value(v, map)),
        Value::Object(members) => members.values_mut().for_each(|v| rewrite_value(v, map)),
        _ => {}
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_offsets_and_unknown_members_survive_rendering() {
        let body = br#"{"resourceType":"Observation","id":"x","meta":{"versionId":"9","tag":[{"code":"a"}]},
            "valueQuantity":{"value":1.50},"effectiveDateTime":"2026-01-01T10:00:00+00:00",
            "_status":{"extension":[{"url":"u","valueDecimal":12500.00}]}}"#;
        let r = IncomingResource::parse(body).expect("parses");
        let text = r.render("new", 2, "2026-11-22T10:00:00.000Z", "SE2321000255-MTN01");
        assert!(text.contains(r#""value":1.50"#), "{text}");
        assert!(text.contains("+00:00"));
        assert!(text.contains("12500.00"));
        assert!(text.contains(r#""versionId":"2""#));
        assert!(
            text.contains(
                r#""tag":[{"code":"a"},{"system":"urn:navet:owner","code":"SE2321000255-MTN01"}]"#
            ),
            "the client's tag stays, the owner tag follows it: {text}"
        );
        assert!(text.contains(r#""id":"new""#));
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["meta"]["versionId"], "2");
    }

    #[test]
    fn a_body_without_resource_type_is_a_bad_request() {
        let err = IncomingResource::parse(br#"{"id":"x"}"#).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let err = IncomingResource::parse(br#"{"resourceType": "Patient",,}"#).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
    }

    #[test]
    fn references_are_rewritten_in_text_and_view() {
        let body = br#"{"resourceType":"Observation","subject":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}}"#;
        let mut r = IncomingResource::parse(body).expect("parses");
        let map = HashMap::from([(
            "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a".to_string(),
            "Patient/p1".to_string(),
        )]);
        r.rewrite_references(&map);
        assert!(
            r.render("o", 1, "t", "SE2321000255-MTN01")
                .contains(r#""reference":"Patient/p1""#)
        );
        assert_eq!(r.value()["subject"]["reference"], "Patient/p1");
    }
}
