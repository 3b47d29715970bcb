//! FHIR XML (FHIR R4 4.0.1 xml.html) to and from navet's JSON, driven by the structure table.
//!
//! navet keeps FHIR JSON as the record of truth, so XML is a codec at the edge: a request in XML becomes the
//! JSON text the JSON pipeline takes, an answer in JSON becomes XML. Both directions work on text, never
//! through `serde_json::Value` numbers, so decimals keep their written form (`1.50` stays `1.50`) and a
//! JSON → XML → JSON round trip gives the same resource (tests/xml_roundtrip.rs, over the official examples).
//!
//! The rules implemented (xml.html §2.7): the root element is the resource type in the namespace
//! `http://hl7.org/fhir`; elements appear in definition order (the JSON order is not significant); a
//! primitive is an element with `value`/`id` attributes and `extension` children (JSON's `_name` sibling,
//! arrays aligned with `null`); `Element.id` and `Extension.url` are attributes, `Resource.id` an element;
//! choice elements carry the type in the name (`valueQuantity`) as in JSON; a resource inside a resource is
//! wrapped in its element (`<contained><Patient>…</Patient></contained>`); the narrative `div` is XHTML, kept
//! as the exact text of the JSON string. XML comments are dropped (JSON has none); a DOCTYPE (and so any
//! entity definition) is refused.
//!
//! quick-xml does the XML parsing and escaping; the FHIR mapping is navet's, because no crate maps FHIR XML
//! without its own typed model (and fhir-sdk's models are lossy, DESIGN.md).
//!
//! Split by direction: `write` is JSON → XML ([`json_to_xml`]), `read` is XML → JSON ([`xml_to_json`]);
//! this file keeps the order-preserving JSON form ([`Json`]) and the error both share.

mod read;
mod write;

pub use read::xml_to_json;
pub use write::json_to_xml;

use serde_json::value::RawValue;
pub const FHIR_NS: &str = "http://hl7.org/fhir";

/// Nesting beyond this is refused (serde_json's own limit is 128 for JSON).
const MAX_DEPTH: usize = 120;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct XmlError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, XmlError> {
    Err(XmlError(message.into()))
}

/// JSON as written: numbers keep their text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses JSON text keeping number literals as written.
    pub fn parse(text: &str) -> Result<Json, XmlError> {
        Self::parse_depth(text, 0)
    }

    fn parse_depth(text: &str, depth: usize) -> Result<Json, XmlError> {
        if depth > MAX_DEPTH {
            return err("the JSON is nested too deeply");
        }
        let bad = |e: serde_json::Error| XmlError(format!("not valid JSON: {e}"));
        let trimmed = text.trim_start();
        Ok(match trimmed.as_bytes().first() {
            Some(b'{') => {
                let members: Vec<(String, &RawValue)> =
                    serde_json::from_str::<indexmap::IndexMap<String, &RawValue>>(text)
                        .map_err(bad)?
                        .into_iter()
                        .collect();
                let mut out = Vec::with_capacity(members.len());
                for (k, v) in members {
                    out.push((k, Self::parse_depth(v.get(), depth + 1)?));
                }
                Json::Obj(out)
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text).map_err(bad)?;
                let mut out = Vec::with_capacity(items.len());
                for v in items {
                    out.push(Self::parse_depth(v.get(), depth + 1)?);
                }
                Json::Arr(out)
            }
            Some(b'"') => Json::Str(serde_json::from_str(text).map_err(bad)?),
            Some(b't' | b'f') => Json::Bool(serde_json::from_str(text).map_err(bad)?),
            Some(b'n') => {
                serde_json::from_str::<()>(text).map_err(bad)?;
                Json::Null
            }
            _ => {
                // Checks it is a number; keeps the text.
                serde_json::from_str::<serde_json::Number>(text).map_err(bad)?;
                Json::Num(trimmed.trim_end().to_owned())
            }
        })
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Writes compact JSON text.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Equality as JSON: object members in any order, numbers compared as written.
    pub fn same(&self, other: &Json) -> bool {
        match (self, other) {
            (Json::Obj(a), Json::Obj(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| other.get(k).is_some_and(|w| v.same(w)))
            }
            (Json::Arr(a), Json::Arr(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (a, b) => a == b,
        }
    }
}

#[cfg(test)]
mod tests;
