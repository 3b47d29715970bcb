//! A small element tree over quick-xml: SVPL messages are read into it (so the mapping's element paths can
//! address any element or attribute) and written from it. quick-xml does the XML; this file only refuses what
//! SVPL refuses (document types and entity declarations, other encodings, foreign namespaces, deep nesting)
//! and keeps what the mapping needs.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Nesting limit: SVPL needs four levels; a hostile document must not make the tree (or its drop) deep.
pub const MAX_DEPTH: usize = 32;
/// Element limit: 1 MiB of `<a/>` would otherwise be 250,000 nodes.
pub const MAX_ELEMENTS: usize = 20_000;

/// One element: its local name, its unprefixed attributes, its child elements and its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// A `<!DOCTYPE …>`: entity declarations live only there, so this refuses XXE and billion laughs.
    #[error("document type and entity declarations are refused")]
    Dtd,
    #[error("the message is not UTF-8")]
    Encoding,
    #[error("the message is not well-formed XML: {0}")]
    Malformed(String),
    #[error("element '{0}' is not in the namespace {1}")]
    Namespace(String, String),
    #[error("the message nests deeper than {MAX_DEPTH} elements or has more than {MAX_ELEMENTS}")]
    TooLarge,
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Parses a whole document whose elements must all be in `namespace`.
pub fn parse(bytes: &[u8], namespace: &str) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| XmlError::Encoding)?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(malformed)?;
        match event {
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::Decl(decl) => {
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(malformed)?;
                    if !encoding.eq_ignore_ascii_case("utf-8") {
                        return Err(XmlError::Encoding);
                    }
                }
            }
            Event::Start(start) => {
                count += 1;
                let element = open(&resolved, &start, namespace)?;
                stack.push(element);
                if stack.len() > MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                let element = open(&resolved, &start, namespace)?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| malformed("an end tag without a start tag"))?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::Text(t) => {
                push_text(&mut stack, &t.xml10_content())?;
            }
            Event::CData(c) => {
                push_text(&mut stack, &c.xml10_content())?;
            }
            Event::GeneralRef(r) => {
                // Only the five predefined entities and character references exist without a DTD.
                let resolved = match r.resolve_char_ref().map_err(malformed)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| malformed(format!("undefined entity '&{name};'")))?
                            .to_owned()
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("the document ends inside an element"));
    }
    root.ok_or_else(|| malformed("the document has no element"))
}

fn open(
    resolved: &ResolveResult<'_>,
    start: &BytesStart<'_>,
    namespace: &str,
) -> Result<Element, XmlError> {
    let name = start.local_name().as_ref().to_owned();
    match resolved {
        ResolveResult::Bound(ns) if ns.as_ref() == namespace => {}
        _ => return Err(XmlError::Namespace(name, namespace.to_owned())),
    }
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(malformed)?;
        // Namespace declarations and prefixed (foreign) attributes are not SVPL data.
        if attr.key.as_namespace_binding().is_some() || attr.key.prefix().is_some() {
            continue;
        }
        let key = attr.key.local_name().as_ref().to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(malformed)?
            .into_owned();
        if attrs.iter().any(|(k, _)| *k == key) {
            return Err(malformed(format!("attribute '{key}' given twice")));
        }
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

fn attach(
    stack: &mut [Element],
    root: &mut Option<Element>,
    element: Element,
) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err(malformed("more than one root element")),
    }
    Ok(())
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(top) => top.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(malformed("text outside the root element")),
    }
    Ok(())
}

/// An element path from a mapping file: child element names, then optionally `@attribute`; `.` is the
/// element itself (its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub steps: Vec<String>,
    pub attr: Option<String>,
    text: String,
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut steps = Vec::new();
        let mut attr = None;
        if text != "." {
            let parts: Vec<&str> = text.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let (name, is_attr) = match part.strip_prefix('@') {
                    Some(a) => (a, true),
                    None => (*part, false),
                };
                if !is_name(name) {
                    return Err(format!("'{text}': '{part}' is not an XML name"));
                }
                if is_attr {
                    if i + 1 != parts.len() {
                        return Err(format!("'{text}': an attribute must be the last step"));
                    }
                    attr = Some(name.to_owned());
                } else {
                    steps.push(name.to_owned());
                }
            }
        }
        Ok(Path {
            steps,
            attr,
            text: text.to_owned(),
        })
    }

    /// The path as written in the mapping file.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_attribute(&self) -> bool {
        self.attr.is_some()
    }
}

/// An XML name as SVPL uses them (ASCII letters, digits, `_`, `-`, `.`; not starting with a digit).
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Element {
    pub fn new(name: &str) -> Self {
        Element {
            name: name.to_owned(),
            ..Element::default()
        }
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The element the path's steps lead to (the first of each name).
    pub fn element(&self, path: &Path) -> Option<&Element> {
        let mut at = self;
        for step in &path.steps {
            at = at.children.iter().find(|c| &c.name == step)?;
        }
        Some(at)
    }

    /// The value at `path`: an attribute's value, or an element's text (trimmed); `None` when absent.
    pub fn value(&self, path: &Path) -> Option<&str> {
        let element = self.element(path)?;
        match &path.attr {
            Some(a) => element.attr(a),
            None => Some(element.text.trim()),
        }
    }

    /// Every element at `path` (the last step repeated).
    pub fn all(&self, path: &Path) -> Vec<&Element> {
        let Some((last, parents)) = path.steps.split_last() else {
            return vec![self];
        };
        let mut at = self;
        for step in parents {
            match at.children.iter().find(|c| &c.name == step) {
                Some(c) => at = c,
                None => return Vec::new(),
            }
        }
        at.children.iter().filter(|c| &c.name == last).collect()
    }

    fn child_mut(&mut self, name: &str) -> &mut Element {
        let index = match self.children.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.children.push(Element::new(name));
                self.children.len() - 1
            }
        };
        &mut self.children[index]
    }

    /// Sets the value at `path`, making the elements on the way.
    pub fn set(&mut self, path: &Path, value: &str) {
        let mut at = self;
        for step in &path.steps {
            at = at.child_mut(step);
        }
        match &path.attr {
            Some(a) => match at.attrs.iter_mut().find(|(k, _)| k == a) {
                Some(slot) => slot.1 = value.to_owned(),
                None => at.attrs.push((a.clone(), value.to_owned())),
            },
            None => at.text = value.to_owned(),
        }
    }

    /// Appends a new element at `path` (a repeated group), making its parents once; answers it.
    pub fn push(&mut self, path: &Path) -> &mut Element {
        let Some((last, parents)) = path.steps.split_last() else {
            return self;
        };
        let mut at = self;
        for step in parents {
            at = at.child_mut(step);
        }
        at.children.push(Element::new(last));
        let n = at.children.len() - 1;
        &mut at.children[n]
    }

    /// The document text: an XML declaration, then this element as the root in `namespace`.
    pub fn to_document(&self, namespace: &str) -> String {
        let mut writer = Writer::new(Vec::new());
        // Writing into a Vec cannot fail.
        let _ = writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        write(&mut writer, self, Some(namespace));
        String::from_utf8(writer.into_inner()).unwrap_or_default()
    }
}

fn write(writer: &mut Writer<Vec<u8>>, e: &Element, namespace: Option<&str>) {
    let mut start = BytesStart::new(e.name.as_str());
    if let Some(ns) = namespace {
        start.push_attribute(("xmlns", ns));
    }
    for (k, v) in &e.attrs {
        start.push_attribute((k.as_str(), v.as_str()));
    }
    if e.children.is_empty() && e.text.is_empty() {
        let _ = writer.write_event(Event::Empty(start));
        return;
    }
    let _ = writer.write_event(Event::Start(start));
    if !e.text.is_empty() {
        let _ = writer.write_event(Event::Text(BytesText::new(&e.text)));
    }
    for c in &e.children {
        write(writer, c, None);
    }
    let _ = writer.write_event(Event::End(BytesEnd::new(e.name.as_str())));
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "urn:navet:svpl:1";

    #[test]
    fn a_document_type_is_refused_before_any_entity_is_expanded() {
        let lol = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><m xmlns=\"{NS}\">&b;</m>"
        );
        assert_eq!(parse(lol.as_bytes(), NS), Err(XmlError::Dtd));
        let xxe = format!(
            "<!DOCTYPE m [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><m xmlns=\"{NS}\">&x;</m>"
        );
        assert_eq!(parse(xxe.as_bytes(), NS), Err(XmlError::Dtd));
    }

    #[test]
    fn an_undefined_entity_is_not_well_formed_and_predefined_ones_are_text() {
        let doc = format!("<m xmlns=\"{NS}\">&x;</m>");
        assert!(matches!(
            parse(doc.as_bytes(), NS),
            Err(XmlError::Malformed(_))
        ));
        let doc = format!("<m xmlns=\"{NS}\" a=\"&lt;&#65;\">&amp;&#x42;</m>");
        let m = parse(doc.as_bytes(), NS).unwrap();
        assert_eq!(m.text, "&B");
        assert_eq!(m.attr("a"), Some("<A"));
    }

    #[test]
    fn elements_outside_the_namespace_are_refused() {
        let doc = "<m xmlns=\"urn:other\"/>";
        assert!(matches!(
            parse(doc.as_bytes(), NS),
            Err(XmlError::Namespace(..))
        ));
        let doc = format!("<m xmlns=\"{NS}\"><x:y xmlns:x=\"urn:other\"/></m>");
        assert!(matches!(
            parse(doc.as_bytes(), NS),
            Err(XmlError::Namespace(..))
        ));
    }

    #[test]
    fn deep_nesting_other_encodings_and_bad_utf8_are_refused() {
        let deep = format!(
            "<m xmlns=\"{NS}\">{}{}</m>",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(parse(deep.as_bytes(), NS), Err(XmlError::TooLarge));
        let latin = format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><m xmlns=\"{NS}\"/>");
        assert_eq!(parse(latin.as_bytes(), NS), Err(XmlError::Encoding));
        assert_eq!(parse(b"<m>\xff</m>", NS), Err(XmlError::Encoding));
    }

    #[test]
    fn paths_read_and_write_attributes_and_text_and_a_written_tree_reads_back() {
        let mut root = Element::new("Meddelande");
        root.set(&Path::parse("@typ").unwrap(), "SipBegaran");
        root.set(&Path::parse("Patient/Id").unwrap(), "191212121212");
        root.set(&Path::parse("Patient/Id/@typ").unwrap(), "personnummer");
        root.push(&Path::parse("Mottagare").unwrap())
            .set(&Path::parse("@hsaId").unwrap(), "A & <B>");
        root.push(&Path::parse("Mottagare").unwrap())
            .set(&Path::parse("@hsaId").unwrap(), "C");
        let text = root.to_document(NS);
        let back = parse(text.as_bytes(), NS).unwrap();
        assert_eq!(back, root);
        assert_eq!(
            back.value(&Path::parse("Patient/Id/@typ").unwrap()),
            Some("personnummer")
        );
        assert_eq!(back.all(&Path::parse("Mottagare").unwrap()).len(), 2);
        assert!(Path::parse("a/@b/c").is_err());
        assert!(Path::parse("1a").is_err());
    }
}
