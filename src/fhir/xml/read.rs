//! XML → JSON: [`xml_to_json`] parses untrusted XML with quick-xml (no DOCTYPE, bounded depth) and builds the
//! JSON text by the structure table, typing primitives. Kept apart from the writer: this is the side that
//! reads network input.

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{FHIR_NS, Json, MAX_DEPTH, XmlError, err};
use crate::fhir::structure::{Prim, Structure, Ty, TypeIndex};
// ---------------------------------------------------------------------------------------------------------
// XML → JSON

/// The FHIR JSON text of a FHIR XML resource. Every problem is a specific message (for a 400).
pub fn xml_to_json(structure: &Structure, xml: &[u8]) -> Result<String, XmlError> {
    let text = std::str::from_utf8(xml).map_err(|_| XmlError("the XML is not UTF-8".into()))?;
    let mut parser = XmlParser {
        structure,
        text,
        reader: Reader::from_str(text),
        depth: 0,
    };
    let mut root = None;
    loop {
        let before = parser.position();
        match parser.next_event()? {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Text(t) if is_blank(&t[..]) => {}
            Event::DocType(_) => return err("a DOCTYPE is not allowed in FHIR XML"),
            Event::Start(start) if root.is_none() => {
                let start = start.into_owned();
                root = Some(parser.resource_element(&start, false, true, before)?);
            }
            Event::Empty(start) if root.is_none() => {
                let start = start.into_owned();
                root = Some(parser.resource_element(&start, true, true, before)?);
            }
            Event::Eof => break,
            _ => return err("the XML must hold exactly one resource element"),
        }
    }
    let Some(root) = root else {
        return err("the XML holds no resource");
    };
    let mut out = String::with_capacity(xml.len());
    root.write(&mut out);
    Ok(out)
}

fn is_blank(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_whitespace())
}

struct XmlParser<'s, 't> {
    structure: &'s Structure,
    text: &'t str,
    reader: Reader<&'t [u8]>,
    depth: usize,
}

/// What one XML element name collected in an object, in document order.
enum Collected {
    /// Values and `_name` objects of a primitive, aligned.
    Primitive(Vec<Json>, Vec<Json>),
    Values(Vec<Json>),
}

impl<'t> XmlParser<'_, 't> {
    fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    fn next_event(&mut self) -> Result<Event<'t>, XmlError> {
        self.reader
            .read_event()
            .map_err(|e| XmlError(format!("malformed XML at byte {}: {e}", self.position())))
    }

    fn deeper(&mut self) -> Result<(), XmlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("the XML is nested too deeply");
        }
        Ok(())
    }

    fn local_name(start: &BytesStart<'_>) -> Result<String, XmlError> {
        let name = start.name();
        let name = name.0;
        if name.contains(':') {
            return err(format!(
                "element {name}: FHIR XML uses the default namespace, not prefixes"
            ));
        }
        Ok(name.to_owned())
    }

    /// The attributes of an element as (name, unescaped value); `xmlns` is checked, not returned.
    fn attributes(start: &BytesStart<'_>, root: bool) -> Result<Vec<(String, String)>, XmlError> {
        let mut out = Vec::new();
        let mut namespace = None;
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| XmlError(format!("malformed attribute: {e}")))?;
            let key = attribute.key.0.to_owned();
            // XML 1.0 §3.3.3: literal whitespace becomes a space, character references stay.
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| XmlError(format!("attribute {key}: {e}")))?
                .into_owned();
            if key == "xmlns" {
                namespace = Some(value);
            } else if key.starts_with("xmlns:") {
                // Declared prefixes are harmless as long as no element or attribute uses one.
            } else {
                out.push((key, value));
            }
        }
        match namespace.as_deref() {
            Some(FHIR_NS) => {}
            None if !root => {}
            Some(other) => return err(format!("namespace {other} is not {FHIR_NS}")),
            None => {
                return err(format!(
                    "the resource element must be in namespace {FHIR_NS}"
                ));
            }
        }
        Ok(out)
    }

    /// A resource element `<Patient>…</Patient>` (the root, or inside `contained`, `resource`, ...).
    fn resource_element(
        &mut self,
        start: &BytesStart<'_>,
        empty: bool,
        root: bool,
        _before: usize,
    ) -> Result<Json, XmlError> {
        self.deeper()?;
        let name = Self::local_name(start)?;
        let Some(index) = self
            .structure
            .type_index(&name)
            .filter(|&i| self.structure.is_resource_index(i))
        else {
            return err(format!("<{name}> is not a FHIR R4 resource type"));
        };
        let attributes = Self::attributes(start, root)?;
        if let Some((key, _)) = attributes.first() {
            return err(format!("unexpected attribute {key} on <{name}>"));
        }
        let mut members = vec![("resourceType".to_owned(), Json::Str(name.clone()))];
        if !empty {
            members.extend(self.children(index, &name)?);
        }
        self.depth -= 1;
        Ok(Json::Obj(members))
    }

    /// A complex element: attributes (id, url) and children.
    fn object(
        &mut self,
        index: TypeIndex,
        name: &str,
        start: &BytesStart<'_>,
        empty: bool,
    ) -> Result<Json, XmlError> {
        self.deeper()?;
        let mut members = Vec::new();
        for (key, value) in Self::attributes(start, false)? {
            let system = self
                .structure
                .property(index, &key)
                .is_some_and(|(_, p)| self.structure.element_shape(index, p).1);
            if !system {
                return err(format!("unexpected attribute {key} on <{name}>"));
            }
            members.push((key, Json::Str(value)));
        }
        if !empty {
            members.extend(self.children(index, name)?);
        }
        self.depth -= 1;
        Ok(Json::Obj(members))
    }

    /// The child elements of an object of type `index`, up to its end tag, as JSON members.
    fn children(
        &mut self,
        index: TypeIndex,
        parent: &str,
    ) -> Result<Vec<(String, Json)>, XmlError> {
        let structure = self.structure;
        let mut collected: Vec<(String, u16, Collected)> = Vec::new();
        loop {
            let before = self.position();
            let (start, empty) = match self.next_event()? {
                Event::Start(s) => (s.into_owned(), false),
                Event::Empty(s) => (s.into_owned(), true),
                Event::End(_) => break,
                Event::Text(t) if is_blank(&t[..]) => continue,
                Event::Comment(_) | Event::PI(_) => continue,
                Event::Eof => return err(format!("<{parent}> is not closed")),
                _ => {
                    return err(format!(
                        "text inside <{parent}>: FHIR XML carries values in value attributes"
                    ));
                }
            };
            let name = Self::local_name(&start)?;
            let Some((ty, position)) = structure.property(index, &name) else {
                return err(format!(
                    "unknown element <{name}> in {}",
                    structure.type_name(index)
                ));
            };
            let slot = match collected.iter().position(|(n, _, _)| *n == name) {
                Some(i) => i,
                None => {
                    let fresh = match ty {
                        Ty::Primitive(Prim::Xhtml) | Ty::Complex(_) | Ty::Resource(_) => {
                            Collected::Values(Vec::new())
                        }
                        Ty::Primitive(_) => Collected::Primitive(Vec::new(), Vec::new()),
                    };
                    collected.push((name.clone(), position, fresh));
                    collected.len() - 1
                }
            };
            let item = match ty {
                Ty::Primitive(Prim::Xhtml) => {
                    if !empty {
                        self.reader
                            .read_to_end(start.name())
                            .map_err(|e| XmlError(format!("malformed XHTML in <{name}>: {e}")))?;
                    }
                    let after = self.position();
                    let raw = self
                        .text
                        .get(before..after)
                        .ok_or_else(|| XmlError("XHTML out of range".into()))?;
                    Some(Json::Str(raw.to_owned()))
                }
                Ty::Primitive(prim) => {
                    let (value, extensions) = self.primitive(prim, &name, &start, empty)?;
                    if let Some((_, _, Collected::Primitive(values, exts))) =
                        collected.get_mut(slot)
                    {
                        values.push(value.unwrap_or(Json::Null));
                        exts.push(extensions.unwrap_or(Json::Null));
                    }
                    None
                }
                Ty::Complex(child) => Some(self.object(child, &name, &start, empty)?),
                Ty::Resource(_) => {
                    if empty {
                        return err(format!("<{name}> must hold a resource"));
                    }
                    Some(self.wrapped_resource(&name)?)
                }
            };
            if let (Some(item), Some((_, _, Collected::Values(values)))) =
                (item, collected.get_mut(slot))
            {
                values.push(item);
            }
        }
        let mut members = Vec::with_capacity(collected.len());
        for (name, position, items) in collected {
            let (repeats, _) = structure.element_shape(index, position);
            match items {
                Collected::Values(mut values) => {
                    if repeats {
                        members.push((name, Json::Arr(values)));
                    } else if values.len() == 1 {
                        members.push((name, values.remove(0)));
                    } else {
                        return err(format!("<{name}> may appear only once in <{parent}>"));
                    }
                }
                Collected::Primitive(values, exts) => {
                    if !repeats && values.len() > 1 {
                        return err(format!("<{name}> may appear only once in <{parent}>"));
                    }
                    let any_value = values.iter().any(|v| *v != Json::Null);
                    let any_ext = exts.iter().any(|e| *e != Json::Null);
                    let underscore = format!("_{name}");
                    if repeats {
                        if any_value {
                            members.push((name, Json::Arr(values)));
                        }
                        if any_ext {
                            members.push((underscore, Json::Arr(exts)));
                        }
                    } else {
                        if let Some(v) = values.into_iter().next().filter(|v| *v != Json::Null) {
                            members.push((name, v));
                        }
                        if let Some(e) = exts.into_iter().next().filter(|e| *e != Json::Null) {
                            members.push((underscore, e));
                        }
                    }
                }
            }
        }
        Ok(members)
    }

    /// `<contained><Patient>…</Patient></contained>`: the one resource inside, then the wrapper's end.
    fn wrapped_resource(&mut self, wrapper: &str) -> Result<Json, XmlError> {
        let mut resource = None;
        loop {
            let before = self.position();
            match self.next_event()? {
                Event::Start(s) if resource.is_none() => {
                    let s = s.into_owned();
                    resource = Some(self.resource_element(&s, false, false, before)?);
                }
                Event::Empty(s) if resource.is_none() => {
                    let s = s.into_owned();
                    resource = Some(self.resource_element(&s, true, false, before)?);
                }
                Event::End(_) => break,
                Event::Text(t) if is_blank(&t[..]) => {}
                Event::Comment(_) => {}
                _ => return err(format!("<{wrapper}> must hold exactly one resource")),
            }
        }
        resource.ok_or_else(|| XmlError(format!("<{wrapper}> must hold a resource")))
    }

    /// A primitive element: its value (typed for JSON) and its `_name` object (id, extensions).
    fn primitive(
        &mut self,
        prim: Prim,
        name: &str,
        start: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(Option<Json>, Option<Json>), XmlError> {
        self.deeper()?;
        let mut value = None;
        let mut id = None;
        for (key, text) in Self::attributes(start, false)? {
            match key.as_str() {
                "value" => value = Some(typed_value(prim, name, text)?),
                "id" => id = Some(text),
                other => return err(format!("unexpected attribute {other} on <{name}>")),
            }
        }
        let mut extensions = Vec::new();
        if !empty {
            let extension = self
                .structure
                .type_index("Extension")
                .ok_or_else(|| XmlError("no Extension type".into()))?;
            loop {
                match self.next_event()? {
                    Event::Start(s) => {
                        let s = s.into_owned();
                        if Self::local_name(&s)? != "extension" {
                            return err(format!("<{name}> may only hold extension elements"));
                        }
                        extensions.push(self.object(extension, "extension", &s, false)?);
                    }
                    Event::Empty(s) => {
                        let s = s.into_owned();
                        if Self::local_name(&s)? != "extension" {
                            return err(format!("<{name}> may only hold extension elements"));
                        }
                        extensions.push(self.object(extension, "extension", &s, true)?);
                    }
                    Event::End(_) => break,
                    Event::Text(t) if is_blank(&t[..]) => {}
                    Event::Comment(_) => {}
                    _ => return err(format!("text inside <{name}>: use its value attribute")),
                }
            }
        }
        self.depth -= 1;
        let mut element = Vec::new();
        if let Some(id) = id {
            element.push(("id".to_owned(), Json::Str(id)));
        }
        if !extensions.is_empty() {
            element.push(("extension".to_owned(), Json::Arr(extensions)));
        }
        if value.is_none() && element.is_empty() {
            return err(format!("<{name}> has neither a value nor extensions"));
        }
        Ok((value, (!element.is_empty()).then_some(Json::Obj(element))))
    }
}

/// A value attribute as its JSON form: booleans and numbers unquoted (FHIR R4 §2.6.2.2), checked first.
fn typed_value(prim: Prim, name: &str, text: String) -> Result<Json, XmlError> {
    match prim {
        Prim::Boolean => match text.as_str() {
            "true" => Ok(Json::Bool(true)),
            "false" => Ok(Json::Bool(false)),
            _ => err(format!("<{name}> value '{text}' is not true or false")),
        },
        Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt | Prim::Decimal => {
            if is_json_number(&text) {
                Ok(Json::Num(text))
            } else {
                err(format!("<{name}> value '{text}' is not a number"))
            }
        }
        _ => Ok(Json::Str(text)),
    }
}

/// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}
