//! JSON → XML: [`json_to_xml`] walks the resource in definition order and writes elements and attributes.
//! One direction of the codec, separate from the parser of untrusted XML in [`super::read`].

use std::fmt::Write as _;

use super::{FHIR_NS, Json, MAX_DEPTH, XmlError, err};
use crate::fhir::structure::{Prim, Structure, Ty, TypeIndex};
// ---------------------------------------------------------------------------------------------------------
// JSON → XML

/// The XML form of a FHIR JSON resource (valid against the structure table).
pub fn json_to_xml(structure: &Structure, json: &str) -> Result<String, XmlError> {
    let value = Json::parse(json)?;
    let mut out = String::with_capacity(json.len() * 2);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let mut writer = XmlWriter {
        structure,
        out: &mut out,
        depth: 0,
    };
    writer.resource(&value, true)?;
    Ok(out)
}

struct XmlWriter<'s, 'o> {
    structure: &'s Structure,
    out: &'o mut String,
    depth: usize,
}

/// Text that can stand in an attribute value: `&<>"` escaped, and the whitespace XML would normalise
/// (tab, CR, LF) as character references so it survives.
fn escape_attr(text: &str, out: &mut String) -> Result<(), XmlError> {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return err(format!(
                    "the character U+{:04X} cannot be represented in XML",
                    c as u32
                ));
            }
            c => out.push(c),
        }
    }
    Ok(())
}

impl XmlWriter<'_, '_> {
    fn deeper(&mut self) -> Result<(), XmlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("the resource is nested too deeply");
        }
        Ok(())
    }

    fn resource(&mut self, value: &Json, root: bool) -> Result<(), XmlError> {
        self.deeper()?;
        let Json::Obj(members) = value else {
            return err("a resource must be a JSON object");
        };
        let Some(Json::Str(ty)) = value.get("resourceType") else {
            return err("a resource needs a resourceType");
        };
        let Some(index) = self
            .structure
            .type_index(ty)
            .filter(|&i| self.structure.is_resource_index(i))
        else {
            return err(format!("unknown resource type {ty}"));
        };
        self.out.push('<');
        self.out.push_str(ty);
        if root {
            let _ = write!(self.out, " xmlns=\"{FHIR_NS}\"");
        }
        self.out.push('>');
        self.children(index, members, true)?;
        let _ = write!(self.out, "</{ty}>");
        self.depth -= 1;
        Ok(())
    }

    /// An object's elements, in definition order.
    fn children(
        &mut self,
        index: TypeIndex,
        members: &[(String, Json)],
        in_resource: bool,
    ) -> Result<(), XmlError> {
        let structure = self.structure;
        let type_name = structure.type_name(index);
        let mut ordered: Vec<(u16, &str, Ty)> = Vec::with_capacity(members.len());
        for (key, _) in members {
            if key == "resourceType" && in_resource {
                continue;
            }
            let (name, underscore) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            if underscore && members.iter().any(|(k, _)| k == name) {
                continue;
            }
            let Some((ty, position)) = structure.property(index, name) else {
                return err(format!("unknown element {key} in {type_name}"));
            };
            let (_, system) = structure.element_shape(index, position);
            if system && !in_resource {
                continue; // an attribute, written with the start tag
            }
            ordered.push((position, name, ty));
        }
        ordered.sort_by_key(|(position, _, _)| *position);
        for (_, name, ty) in ordered {
            let value = members.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let underscore = format!("_{name}");
            let extensions = members
                .iter()
                .find(|(k, _)| *k == underscore)
                .map(|(_, v)| v);
            match ty {
                Ty::Primitive(prim) => self.primitives(name, prim, value, extensions)?,
                Ty::Complex(child) => {
                    for item in items(value) {
                        self.object(name, child, item)?;
                    }
                }
                Ty::Resource(_) => {
                    for item in items(value) {
                        let _ = write!(self.out, "<{name}>");
                        self.resource(item, false)?;
                        let _ = write!(self.out, "</{name}>");
                    }
                }
            }
        }
        Ok(())
    }

    fn object(&mut self, name: &str, index: TypeIndex, value: &Json) -> Result<(), XmlError> {
        self.deeper()?;
        let Json::Obj(members) = value else {
            return err(format!("{name} must be a JSON object"));
        };
        self.out.push('<');
        self.out.push_str(name);
        let mut has_children = false;
        for (key, v) in members {
            let system = !key.starts_with('_')
                && self
                    .structure
                    .property(index, key)
                    .is_some_and(|(_, p)| self.structure.element_shape(index, p).1);
            if system {
                let Json::Str(text) = v else {
                    return err(format!("{name}.{key} must be a string"));
                };
                let _ = write!(self.out, " {key}=\"");
                escape_attr(text, self.out)?;
                self.out.push('"');
            } else {
                has_children = true;
            }
        }
        if has_children {
            self.out.push('>');
            self.children(index, members, false)?;
            let _ = write!(self.out, "</{name}>");
        } else {
            self.out.push_str("/>");
        }
        self.depth -= 1;
        Ok(())
    }

    /// A primitive element (or a list of them) with its `_name` sibling.
    fn primitives(
        &mut self,
        name: &str,
        prim: Prim,
        value: Option<&Json>,
        extensions: Option<&Json>,
    ) -> Result<(), XmlError> {
        let values: Vec<Option<&Json>> = match value {
            Some(Json::Arr(items)) => items.iter().map(Some).collect(),
            Some(v) => vec![Some(v)],
            None => Vec::new(),
        };
        let exts: Vec<Option<&Json>> = match extensions {
            Some(Json::Arr(items)) => items.iter().map(Some).collect(),
            Some(e) => vec![Some(e)],
            None => Vec::new(),
        };
        let count = values.len().max(exts.len());
        for i in 0..count {
            let v = values
                .get(i)
                .copied()
                .flatten()
                .filter(|v| **v != Json::Null);
            let e = exts.get(i).copied().flatten().filter(|e| **e != Json::Null);
            if prim == Prim::Xhtml {
                match v {
                    Some(Json::Str(div)) => self.out.push_str(div),
                    _ => return err(format!("{name} must be an XHTML string")),
                }
                continue;
            }
            self.out.push('<');
            self.out.push_str(name);
            if let Some(Json::Str(id)) = e.and_then(|e| e.get("id")) {
                self.out.push_str(" id=\"");
                escape_attr(id, self.out)?;
                self.out.push('"');
            }
            if let Some(v) = v {
                self.out.push_str(" value=\"");
                match v {
                    Json::Str(s) => escape_attr(s, self.out)?,
                    Json::Num(n) => self.out.push_str(n),
                    Json::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
                    _ => return err(format!("{name} must be a primitive value")),
                }
                self.out.push('"');
            }
            match e.and_then(|e| e.get("extension")) {
                Some(Json::Arr(list)) if !list.is_empty() => {
                    self.out.push('>');
                    let extension = self
                        .structure
                        .type_index("Extension")
                        .ok_or_else(|| XmlError("no Extension type".into()))?;
                    for ext in list {
                        self.object("extension", extension, ext)?;
                    }
                    let _ = write!(self.out, "</{name}>");
                }
                _ => self.out.push_str("/>"),
            }
        }
        Ok(())
    }
}

fn items(value: Option<&Json>) -> Vec<&Json> {
    match value {
        Some(Json::Arr(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    }
}
