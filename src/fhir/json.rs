//! Lossless handling of client resources (FHIR R4 4.0.1 §2.6.2 JSON representation).
//!
//! The client's JSON text is the record of truth (DESIGN.md): decimals keep their written precision, instants
//! their offset, unknown extensions and `_field` siblings stay. So a resource is kept as its top-level
//! members' raw JSON text; only `id` and `meta` are rewritten by navet. A parsed `serde_json::Value` is kept
//! beside it for validation, indexing and the rules navet reasons about, never for storage.

use std::collections::{HashMap, HashSet};
use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

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
        let value = parse_strict(bytes)?;
        let raw: IndexMap<String, Box<RawValue>> = serde_json::from_slice(bytes).map_err(|_| {
            ApiError::BadRequest("the body must be a JSON object (a FHIR resource)".into())
        })?;
        Self::from_parts(value, raw)
    }

    /// A resource navet built itself (Tasks, Communications, an order's recorded performer): its members
    /// are rendered from the value, without the strict parse a client's bytes need (no duplicate names can
    /// exist in a `Value`).
    pub fn from_value(value: Value) -> Result<Self, ApiError> {
        let raw: IndexMap<String, Box<RawValue>> = match &value {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), serde_json::value::to_raw_value(v)?)))
                .collect::<Result<_, serde_json::Error>>()
                .map_err(ApiError::internal)?,
            _ => return Err(ApiError::internal("a built resource is not a JSON object")),
        };
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
    ///
    /// One pass over the resource, one map lookup per string: linear in the resource's size whatever the
    /// map's (a transaction's map has an entry per `fullUrl`; trying every key on every resource made a
    /// 30,000-entry transaction quadratic, issue 8). Answers whether anything was replaced.
    pub fn rewrite_references(&mut self, map: &HashMap<String, String>) -> bool {
        if map.is_empty() {
            return false;
        }
        let mut changed = false;
        for (_, raw) in self.members.iter_mut() {
            if let Some(text) = rewrite_strings(raw.get(), map)
                && let Ok(new) = RawValue::from_string(text)
            {
                *raw = new;
                changed = true;
            }
        }
        rewrite_value(&mut self.value, map) || changed
    }

    /// Whether any string value of the resource is a key of `keys` (what [`Self::rewrite_references`] would
    /// replace), in one pass over the parsed view.
    pub fn mentions_any(&self, keys: &HashSet<String>) -> bool {
        !keys.is_empty() && mentions(&self.value, keys)
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

/// Replaces string values (never member names) equal to a key of `map`; answers whether any was.
fn rewrite_value(value: &mut Value, map: &HashMap<String, String>) -> bool {
    match value {
        Value::String(s) => match map.get(s.as_str()) {
            Some(to) => {
                *s = to.clone();
                true
            }
            None => false,
        },
        // Every item, not only up to the first change: no short-circuiting `any`.
        Value::Array(items) => {
            let mut changed = false;
            for v in items {
                changed |= rewrite_value(v, map);
            }
            changed
        }
        Value::Object(members) => {
            let mut changed = false;
            for v in members.values_mut() {
                changed |= rewrite_value(v, map);
            }
            changed
        }
        _ => false,
    }
}

fn mentions(value: &Value, keys: &HashSet<String>) -> bool {
    match value {
        Value::String(s) => keys.contains(s.as_str()),
        Value::Array(items) => items.iter().any(|v| mentions(v, keys)),
        Value::Object(members) => members.values().any(|v| mentions(v, keys)),
        _ => false,
    }
}

/// The raw JSON `text` with every string value that is a key of `map` replaced by its target, or `None`
/// when nothing is. Hand-written because no crate edits a JSON text in place without re-serialising it,
/// and re-serialising would lose what the raw text exists to keep (decimal precision, DESIGN.md). `text`
/// is valid JSON (a `RawValue`), so a string starts at an unescaped `"` outside a string and ends at the next
/// unescaped `"`; both are ASCII, so every slice below is on a character boundary. A string followed by `:`
/// is a member name and stays. Keys are compared decoded, so an escaped spelling of a key matches too.
fn rewrite_strings(text: &str, map: &HashMap<String, String>) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    // Everything before `copied` is already in `out` (once something was replaced).
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        let mut escaped = false;
        i += 1;
        loop {
            match bytes.get(i) {
                None => break,
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
        let end = i.min(bytes.len());
        i = end;
        // `get` rather than indexing: never a panic, even on text that is not the valid JSON it should be.
        let Some(literal) = text.get(start..end) else {
            continue;
        };
        if text.get(end..).unwrap_or("").trim_start().starts_with(':') {
            // A member name.
            continue;
        }
        let target = if escaped {
            serde_json::from_str::<String>(literal)
                .ok()
                .and_then(|s| map.get(&s))
        } else {
            literal
                .get(1..literal.len().saturating_sub(1))
                .and_then(|s| map.get(s))
        };
        if let Some(to) = target {
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len() + 64));
            buf.push_str(text.get(copied..start).unwrap_or(""));
            buf.push_str(&json_string(to));
            copied = end;
        }
    }
    out.map(|mut buf| {
        buf.push_str(text.get(copied..).unwrap_or(""));
        buf
    })
}

/// Parses JSON into a `Value`, refusing an object that names a member twice, at any depth: serde_json
/// silently keeps the last of duplicate names while the raw text keeps both, so the checks on the parsed
/// view would pass on a value other than the stored one (issue 8). RFC 8259 §4 wants unique names, and FHIR
/// JSON (R4 4.0.1 §2.6.2) never repeats one. serde_json has no switch for it, so a [`Visitor`] (serde's way
/// to customise parsing) builds the `Value` and checks names in the same pass. Nesting is bounded by
/// serde_json's recursion limit (128 levels), so hostile input cannot exhaust the stack.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// Refuses a member name given twice in any object of `bytes`, without building the value (the check
/// [`parse_strict`] makes, for bodies navet reads only in part, such as a Bundle around its entries).
pub fn check_unique_names(bytes: &[u8]) -> Result<(), ApiError> {
    serde_json::from_slice::<UniqueNames>(bytes)
        .map(|_| ())
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

fn duplicate<E: de::Error>(name: &str) -> E {
    E::custom(format!(
        "the member {name:?} appears twice in one object (JSON names must be unique)"
    ))
}

struct UniqueNames;

impl<'de> Deserialize<'de> for UniqueNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueNamesVisitor)
    }
}

struct UniqueNamesVisitor;

impl<'de> Visitor<'de> for UniqueNamesVisitor {
    type Value = UniqueNames;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_unit<E>(self) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_none<E>(self) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueNames, A::Error> {
        while seq.next_element::<UniqueNames>()?.is_some() {}
        Ok(UniqueNames)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueNames, A::Error> {
        let mut names = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if names.contains(&name) {
                return Err(duplicate(&name));
            }
            map.next_value::<UniqueNames>()?;
            names.insert(name);
        }
        Ok(UniqueNames)
    }
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number must be finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(duplicate(&name));
            }
            let Strict(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
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

    fn duplicate_error(body: &[u8]) -> String {
        match IncomingResource::parse(body) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!(
                "expected a 400 for {}: {other:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    #[test]
    fn a_member_named_twice_is_refused_at_any_depth() {
        let top =
            duplicate_error(br#"{"resourceType":"Patient","gender":"male","gender":"female"}"#);
        assert!(top.contains(r#""gender" appears twice"#), "{top}");
        let nested = duplicate_error(
            br#"{"resourceType":"Patient","name":{"family":"A","given":["B"],"family":"C"}}"#,
        );
        assert!(nested.contains(r#""family" appears twice"#), "{nested}");
        let in_array = duplicate_error(
            br#"{"resourceType":"Patient","identifier":[{"system":"s","value":"1"},{"value":"2","value":"3"}]}"#,
        );
        assert!(in_array.contains(r#""value" appears twice"#), "{in_array}");
        let deep = duplicate_error(
            br#"{"resourceType":"Patient","extension":[{"url":"u","extension":[[{"a":1,"b":{"x":1,"x":1}}]]}]}"#,
        );
        assert!(deep.contains(r#""x" appears twice"#), "{deep}");
        // The same name in sibling objects is no duplicate.
        IncomingResource::parse(
            br#"{"resourceType":"Patient","name":[{"family":"A"},{"family":"B"}]}"#,
        )
        .expect("siblings may share names");
        assert!(check_unique_names(br#"{"a":[{"b":1},{"b":2}]}"#).is_ok());
        assert!(check_unique_names(br#"{"a":[{"b":1,"b":2}]}"#).is_err());
    }

    #[test]
    fn the_strict_parse_keeps_numbers_strings_and_order_as_serde_json_does() {
        let text =
            br#"{"resourceType":"Observation","z":1,"a":-2,"m":1.5,"big":18446744073709551615,
            "s":"\u00e5\"","n":null,"b":[true,false,{}]}"#;
        let strict = parse_strict(text).expect("valid");
        let plain: Value = serde_json::from_slice(text).expect("valid");
        assert_eq!(strict, plain);
        let order: Vec<&String> = strict.as_object().expect("object").keys().collect();
        assert_eq!(order, ["resourceType", "z", "a", "m", "big", "s", "n", "b"]);
    }

    #[test]
    fn rewriting_replaces_whole_string_values_only_and_reads_escapes() {
        let map = HashMap::from([("urn:uuid:1".to_string(), "Patient/p1".to_string())]);
        let text = r#"{"urn:uuid:1":"urn:uuid:1","a":["urn:uuid:1x","urn:uuid:1"],"b":"urn\u003auuid:1","c":1}"#;
        let out = rewrite_strings(text, &map).expect("something to rewrite");
        assert_eq!(
            out,
            r#"{"urn:uuid:1":"Patient/p1","a":["urn:uuid:1x","Patient/p1"],"b":"Patient/p1","c":1}"#
        );
        assert_eq!(rewrite_strings(r#"{"a":"other"}"#, &map), None);
    }

    #[test]
    fn a_resource_knows_whether_it_mentions_a_key() {
        let r = IncomingResource::parse(
            br#"{"resourceType":"Observation","subject":{"reference":"Patient?identifier=x|1"}}"#,
        )
        .expect("parses");
        assert!(r.mentions_any(&HashSet::from(["Patient?identifier=x|1".to_string()])));
        assert!(!r.mentions_any(&HashSet::from(["Patient?identifier=x|2".to_string()])));
        assert!(!r.mentions_any(&HashSet::new()));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Request bodies come from the network: no byte string makes the parser panic.
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = IncomingResource::parse(&bytes);
            let _ = check_unique_names(&bytes);
        }

        /// Arbitrary JSON-ish text (objects, arrays, escapes, repeated names) is parsed or refused, never a
        /// panic; and when it parses, the rewrite over its raw members does not panic either.
        #[test]
        fn parsing_and_rewriting_json_like_text_never_panics(text in r#"\{"resourceType":"Patient"(,"[a-c\\]{0,3}":(\[|\{|"[a-cu\\:]{0,4}"|[0-9.eE+-]{1,4}|\]|\}|,|:|null|true)){0,12}\}?"#) {
            if let Ok(mut r) = IncomingResource::parse(text.as_bytes()) {
                let map = HashMap::from([("a".to_string(), "Patient/1".to_string())]);
                r.rewrite_references(&map);
                let _ = r.render("x", 1, "t", "o");
            }
            let map = HashMap::from([("a".to_string(), "b".to_string())]);
            let _ = rewrite_strings(&text, &map);
        }
    }
}
