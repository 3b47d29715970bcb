//! Structural validation of FHIR R4 (4.0.1) resources in their JSON form.
//!
//! navet stores the client's JSON as it came (`serde_json::Value`), so typed models cannot tell it whether a
//! resource is well formed. This module checks a resource against the base R4 StructureDefinitions, as
//! extracted into `profiles/r4-structure.json` by `profiles/tools/extract_structure.py`, following the JSON
//! representation rules of FHIR R4 4.0.1 §2.6.2 (json.html):
//!
//! - `resourceType` is present on every resource and names a concrete R4 resource type;
//! - every property is an element of its type (choice elements as `value[x]` → `valueString`, ...);
//! - primitives have the JSON type of their FHIR type (§2.6.2.2) and its lexical form (datatypes.html regexes,
//!   implemented by hand below), and may carry id/extensions in a `_name` sibling (§2.6.2.4), with arrays
//!   aligned by `null`s;
//! - elements with max cardinality 1 are single values, the others arrays, and min cardinality is met;
//! - no empty strings, arrays or objects, and no `null` except for that alignment (§2.6.2 "empty");
//! - at most one type of a choice element;
//! - resources inside resources (`contained`, `Bundle.entry.resource`, `Parameters.parameter.resource`, ...)
//!   are validated against their own `resourceType`.
//!
//! - a `code` element with a `required` binding holds a code of its value set (FHIR R4 4.0.1
//!   terminologies.html#required), the value sets as extracted into `profiles/r4-valuesets.json` by
//!   `profiles/tools/extract_validation.py`.
//!
//! Out of scope here: invariants (FHIRPath constraints, `crate::fhir::validate`), bindings of Coding and
//! CodeableConcept elements, reference targets and profiles. `fhir_comments` is refused like any unknown property: it was a DSTU2 convention, dropped from the
//! JSON format in STU3, and R4 JSON has no comments.
//!
//! The embedded definitions are parsed once at start-up (`Structure::embedded`) and then shared; validating
//! allocates only when it finds an issue (paths are kept as a stack of borrowed segments).

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Issues reported for one resource; beyond this, one last issue says the list was cut.
pub const MAX_ISSUES: usize = 100;

/// A guard against recursion on hand-built values: serde_json's parser already stops at 128 nested values,
/// and every JSON level adds one or two segments here.
const MAX_PATH_SEGMENTS: usize = 256;

/// One structural problem, named by a FHIRPath-style path (`Patient.name[0].given[1]`).
///
/// Paths use the JSON property names, so a choice element appears as its variant (`Observation.valueQuantity`)
/// and a primitive's `_name` extensions as the primitive itself (`Patient.birthDate.extension[0].url`), as in
/// FHIRPath. A missing required choice element is named with its `[x]`
/// (`MedicationKnowledge.ingredient.item[x]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureIssue {
    pub path: String,
    pub message: String,
    pub kind: IssueKind,
}

/// What an issue is about, for the OperationOutcome's issue code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKind {
    /// The JSON does not have the structure of its type (issue type `structure`).
    Structure,
    /// A code outside the value set of a required binding (issue type `code-invalid`).
    Code,
}

/// A bound code found by [`Structure::bound_codes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCode {
    /// FHIRPath location, as validation reports it (`Patient.contact[0].gender`).
    pub path: String,
    /// JSON pointer to the value (`/contact/0/gender`).
    pub pointer: String,
    /// The binding: structure and element (`Patient.contact.gender`).
    pub binding: String,
    pub value_set: String,
}

/// The structure of every R4 resource and datatype, ready for validation.
#[derive(Debug)]
pub struct Structure {
    types: Vec<TypeDef>,
    by_name: HashMap<Box<str>, TypeIndex>,
    /// Indexes of the concrete resource types in `types`, in name order.
    resources: Vec<TypeIndex>,
    /// `Element`: the structure of a primitive's `_name` object (id and extensions).
    element_type: TypeIndex,
    /// The value sets of the required bindings, indexed by `Prop::binding`.
    value_sets: Vec<ValueSet>,
}

pub(crate) type TypeIndex = u32;

/// An expanded value set: its canonical URL and its codes, sorted (binary search).
#[derive(Debug)]
struct ValueSet {
    url: Box<str>,
    codes: Vec<Box<str>>,
}

#[derive(Debug)]
struct TypeDef {
    name: Box<str>,
    is_resource: bool,
    elements: Vec<ElementDef>,
    /// JSON property name (choice variants expanded) → what it holds.
    props: HashMap<Box<str>, Prop>,
    /// Indexes in `elements` of the elements with min ≥ 1.
    required: Vec<u16>,
    /// FHIRPath name (`value` for `value[x]`) → index in `elements`, for the invariants' navigation.
    by_fhirpath_name: HashMap<Box<str>, u16>,
}

#[derive(Debug)]
struct ElementDef {
    /// As in the definitions: `status`, `value[x]`.
    name: Box<str>,
    min: u32,
    /// `u32::MAX` for `*`.
    max: u32,
    /// For `[x]` elements: a bit in the per-object mask that catches two variants of one choice.
    choice_slot: Option<u8>,
    /// `_name`, the sibling that carries a primitive's id and extensions (not for choice elements).
    underscore: Box<str>,
    primitive: bool,
    /// Element.id, Extension.url, Resource.id (FHIRPath System types): XML attributes, except Resource.id.
    system: bool,
}

#[derive(Debug, Clone, Copy)]
struct Prop {
    element: u16,
    ty: Ty,
    /// A FHIR primitive that may have a `_name` sibling: not Element.id, Extension.url, Resource.id
    /// (FHIRPath System types in the definitions) nor xhtml (xhtml.extension has max 0).
    extensible: bool,
    /// A `code` with a required binding: index in `Structure::value_sets`.
    binding: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Primitive(Prim),
    Complex(TypeIndex),
    /// A resource: any (`Resource`) or one type.
    Resource(Option<TypeIndex>),
}

/// The R4 primitive types (datatypes.html#primitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prim {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonKind {
    Boolean,
    Number,
    String,
}

impl Prim {
    pub(crate) fn from_code(code: &str) -> Option<Prim> {
        Some(match code {
            "base64Binary" => Prim::Base64Binary,
            "boolean" => Prim::Boolean,
            "canonical" => Prim::Canonical,
            "code" => Prim::Code,
            "date" => Prim::Date,
            "dateTime" => Prim::DateTime,
            "decimal" => Prim::Decimal,
            "id" => Prim::Id,
            "instant" => Prim::Instant,
            "integer" => Prim::Integer,
            "markdown" => Prim::Markdown,
            "oid" => Prim::Oid,
            "positiveInt" => Prim::PositiveInt,
            "string" => Prim::String,
            "time" => Prim::Time,
            "unsignedInt" => Prim::UnsignedInt,
            "uri" => Prim::Uri,
            "url" => Prim::Url,
            "uuid" => Prim::Uuid,
            "xhtml" => Prim::Xhtml,
            _ => return None,
        })
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Prim::Base64Binary => "base64Binary",
            Prim::Boolean => "boolean",
            Prim::Canonical => "canonical",
            Prim::Code => "code",
            Prim::Date => "date",
            Prim::DateTime => "dateTime",
            Prim::Decimal => "decimal",
            Prim::Id => "id",
            Prim::Instant => "instant",
            Prim::Integer => "integer",
            Prim::Markdown => "markdown",
            Prim::Oid => "oid",
            Prim::PositiveInt => "positiveInt",
            Prim::String => "string",
            Prim::Time => "time",
            Prim::UnsignedInt => "unsignedInt",
            Prim::Uri => "uri",
            Prim::Url => "url",
            Prim::Uuid => "uuid",
            Prim::Xhtml => "xhtml",
        }
    }

    /// FHIR R4 4.0.1 §2.6.2.2: JSON boolean, JSON number for the four numeric types, JSON string otherwise.
    fn json_kind(self) -> JsonKind {
        match self {
            Prim::Boolean => JsonKind::Boolean,
            Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt | Prim::Decimal => {
                JsonKind::Number
            }
            _ => JsonKind::String,
        }
    }

    /// What the value must look like, for the message when it does not.
    fn format_hint(self) -> &'static str {
        match self {
            Prim::Base64Binary => "base64 (groups of 4 characters of A-Z a-z 0-9 + / =)",
            Prim::Code => "no leading, trailing or repeated whitespace",
            Prim::Date => "YYYY, YYYY-MM or YYYY-MM-DD, a real calendar date",
            Prim::DateTime => "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss)+zz:zz / Z",
            Prim::Id => "1 to 64 characters of A-Z a-z 0-9 - .",
            Prim::Instant => "YYYY-MM-DDThh:mm:ss(.sss)+zz:zz or Z, with seconds and a time zone",
            Prim::Oid => "urn:oid: followed by a dotted OID",
            Prim::Time => "hh:mm:ss(.sss)",
            Prim::Uuid => "urn:uuid: followed by a lower-case UUID",
            Prim::Canonical | Prim::Uri | Prim::Url => "no whitespace",
            Prim::String | Prim::Markdown => "no vertical tab or form feed",
            Prim::Integer => "an integer from -2147483648 to 2147483647",
            Prim::PositiveInt => "an integer from 1 to 2147483647",
            Prim::UnsignedInt => "an integer from 0 to 2147483647",
            Prim::Boolean | Prim::Decimal | Prim::Xhtml => "",
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Loading profiles/r4-structure.json

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("profiles/r4-structure.json or r4-valuesets.json is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("profiles/r4-structure.json is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "fhirVersion")]
    fhir_version: String,
    #[serde(deserialize_with = "ordered")]
    primitives: Vec<(String, RawPrimitive)>,
    #[serde(deserialize_with = "ordered")]
    types: Vec<(String, RawType)>,
}

/// profiles/r4-valuesets.json (see profiles/tools/extract_validation.py).
#[derive(Deserialize)]
struct RawValueSets {
    #[serde(rename = "fhirVersion")]
    fhir_version: String,
    /// Structure key → element name → value set URL.
    bindings: HashMap<String, HashMap<String, String>>,
    #[serde(rename = "valueSets")]
    value_sets: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct RawPrimitive {
    json: String,
}

#[derive(Deserialize)]
struct RawType {
    kind: String,
    #[serde(default, rename = "abstract")]
    is_abstract: bool,
    #[serde(deserialize_with = "ordered")]
    elements: Vec<(String, RawElement)>,
}

#[derive(Deserialize)]
struct RawElement {
    min: u32,
    max: RawMax,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default, rename = "contentReference")]
    content_reference: Option<String>,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMax {
    Number(u32),
    Star(String),
}

/// A JSON object as a list of entries in file order, so that issues come out in definition order.
fn ordered<'de, D, T>(deserializer: D) -> Result<Vec<(String, T)>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Entries<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
        type Value = Vec<(String, T)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Entries(PhantomData))
}

fn inconsistent(message: String) -> LoadError {
    LoadError::Inconsistent(message)
}

/// `value[x]` + `dateTime` → `valueDateTime` (FHIR R4 4.0.1 formats.html#choice).
fn choice_variant(stem: &str, code: &str) -> String {
    let mut name = String::with_capacity(stem.len() + code.len());
    name.push_str(stem);
    let mut chars = code.chars();
    if let Some(first) = chars.next() {
        name.extend(first.to_uppercase());
        name.push_str(chars.as_str());
    }
    name
}

impl Structure {
    /// The FHIR R4 4.0.1 structures built into navet. Parse once at start-up and share the result.
    pub fn embedded() -> Structure {
        // A build-time artefact generated by profiles/tools/extract_structure.py; a unit test parses it, so a
        // failure here is a packaging bug, not a run-time condition.
        Structure::parse(
            include_str!("../../profiles/r4-structure.json"),
            include_str!("../../profiles/r4-valuesets.json"),
        )
        .expect("the embedded profiles/r4-structure.json must describe the R4 structures")
    }

    fn parse(text: &str, value_sets_text: &str) -> Result<Structure, LoadError> {
        let raw: RawFile = serde_json::from_str(text)?;
        let raw_sets: RawValueSets = serde_json::from_str(value_sets_text)?;
        if raw_sets.fhir_version != "4.0.1" {
            return Err(inconsistent(format!(
                "r4-valuesets.json fhirVersion {} is not 4.0.1",
                raw_sets.fhir_version
            )));
        }
        let mut value_sets: Vec<ValueSet> = Vec::new();
        let mut value_set_index: HashMap<&str, u16> = HashMap::new();
        if raw.fhir_version != "4.0.1" {
            return Err(inconsistent(format!(
                "fhirVersion {} is not 4.0.1",
                raw.fhir_version
            )));
        }
        for (code, primitive) in &raw.primitives {
            let prim = Prim::from_code(code)
                .ok_or_else(|| inconsistent(format!("unknown primitive {code}")))?;
            let expected = match prim.json_kind() {
                JsonKind::Boolean => "boolean",
                JsonKind::Number => "number",
                JsonKind::String => "string",
            };
            if primitive.json != expected {
                return Err(inconsistent(format!(
                    "primitive {code} is JSON {}",
                    primitive.json
                )));
            }
        }

        let by_name: HashMap<Box<str>, TypeIndex> = raw
            .types
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.as_str().into(), i as TypeIndex))
            .collect();
        let resolve = |code: &str| -> Result<Ty, LoadError> {
            if code == "Resource" {
                return Ok(Ty::Resource(None));
            }
            if let Some(prim) = Prim::from_code(code) {
                return Ok(Ty::Primitive(prim));
            }
            let index = *by_name
                .get(code)
                .ok_or_else(|| inconsistent(format!("unknown type {code}")))?;
            Ok(match raw.types[index as usize].1.kind.as_str() {
                "resource" => Ty::Resource(Some(index)),
                _ => Ty::Complex(index),
            })
        };

        let mut types = Vec::with_capacity(raw.types.len());
        let mut resources = Vec::new();
        for (index, (type_name, raw_type)) in raw.types.iter().enumerate() {
            let is_resource = raw_type.kind == "resource";
            if is_resource && !raw_type.is_abstract {
                resources.push(index as TypeIndex);
            }
            let mut elements = Vec::with_capacity(raw_type.elements.len());
            let mut props = HashMap::new();
            let mut required = Vec::new();
            let mut by_fhirpath_name = HashMap::new();
            let type_bindings = raw_sets.bindings.get(type_name.as_str());
            let mut choices = 0u8;
            for (position, (name, raw_element)) in raw_type.elements.iter().enumerate() {
                let position = u16::try_from(position)
                    .map_err(|_| inconsistent(format!("{type_name} has too many elements")))?;
                let max = match &raw_element.max {
                    RawMax::Number(n) => *n,
                    RawMax::Star(s) if s == "*" => u32::MAX,
                    RawMax::Star(s) => {
                        return Err(inconsistent(format!("{type_name}.{name}: max {s}")));
                    }
                };
                let codes: Vec<&str> = match &raw_element.content_reference {
                    Some(target) => vec![target.as_str()],
                    None => raw_element.types.iter().map(String::as_str).collect(),
                };
                let choice_stem = name.strip_suffix("[x]");
                let choice_slot = match choice_stem {
                    Some(_) => {
                        if choices >= 64 {
                            return Err(inconsistent(format!(
                                "{type_name} has more than 64 choice elements"
                            )));
                        }
                        choices += 1;
                        Some(choices - 1)
                    }
                    None if codes.len() == 1 => None,
                    None => {
                        return Err(inconsistent(format!(
                            "{type_name}.{name} has {} types",
                            codes.len()
                        )));
                    }
                };
                let mut primitive = false;
                let url = type_bindings.and_then(|b| b.get(name.as_str()));
                let binding = match url {
                    Some(url) => match value_set_index.get(url.as_str()) {
                        Some(&index) => Some(index),
                        // Not expandable from the definitions (listed under notExpanded): not checked.
                        None => match raw_sets.value_sets.get(url) {
                            None => None,
                            Some(codes) => {
                                let mut codes: Vec<Box<str>> =
                                    codes.iter().map(|c| c.as_str().into()).collect();
                                codes.sort();
                                let index = u16::try_from(value_sets.len())
                                    .map_err(|_| inconsistent("too many value sets".into()))?;
                                value_sets.push(ValueSet {
                                    url: url.as_str().into(),
                                    codes,
                                });
                                value_set_index.insert(url.as_str(), index);
                                Some(index)
                            }
                        },
                    },
                    None => None,
                };
                by_fhirpath_name.insert(choice_stem.unwrap_or(name).into(), position);
                for code in &codes {
                    let ty = resolve(code)?;
                    let extensible = match ty {
                        Ty::Primitive(prim) => {
                            primitive = true;
                            !raw_element.system && prim != Prim::Xhtml
                        }
                        _ => false,
                    };
                    let prop = Prop {
                        element: position,
                        ty,
                        extensible,
                        binding: binding.filter(|_| ty == Ty::Primitive(Prim::Code)),
                    };
                    let key = match choice_stem {
                        Some(stem) => choice_variant(stem, code),
                        None => name.clone(),
                    };
                    if props.insert(key.clone().into_boxed_str(), prop).is_some() {
                        return Err(inconsistent(format!(
                            "{type_name} has two properties {key}"
                        )));
                    }
                }
                if raw_element.min >= 1 {
                    required.push(position);
                }
                elements.push(ElementDef {
                    name: name.as_str().into(),
                    min: raw_element.min,
                    max,
                    choice_slot,
                    underscore: format!("_{name}").into_boxed_str(),
                    primitive,
                    system: raw_element.system,
                });
            }
            types.push(TypeDef {
                name: type_name.as_str().into(),
                is_resource,
                elements,
                props,
                required,
                by_fhirpath_name,
            });
        }
        let element_type = match by_name.get("Element") {
            Some(&index) => index,
            None => return Err(inconsistent("no Element type".to_owned())),
        };
        Ok(Structure {
            types,
            by_name,
            resources,
            element_type,
            value_sets,
        })
    }

    /// Whether `name` is a concrete FHIR R4 resource type (`Patient`, not `DomainResource`).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_index(name).is_some()
    }

    /// The concrete FHIR R4 resource types, in name order.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resources
            .iter()
            .map(|&index| &*self.types[index as usize].name)
    }

    fn resource_index(&self, name: &str) -> Option<TypeIndex> {
        let index = *self.by_name.get(name)?;
        self.types[index as usize].is_resource.then_some(index)
    }

    // Navigation for the FHIRPath evaluator (`crate::fhir::validate`): what a property holds.

    pub(crate) fn type_index(&self, name: &str) -> Option<TypeIndex> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn type_name(&self, index: TypeIndex) -> &str {
        self.types.get(index as usize).map_or("", |t| &*t.name)
    }

    /// The concrete resource type of a JSON object, by its `resourceType`.
    pub(crate) fn resource_type_of(&self, value: &Value) -> Option<TypeIndex> {
        self.resource_index(value.get("resourceType")?.as_str()?)
    }

    /// What the JSON property `key` (no `_`) of an object of type `index` holds, and its element's position.
    pub(crate) fn property(&self, index: TypeIndex, key: &str) -> Option<(Ty, u16)> {
        let prop = self.types.get(index as usize)?.props.get(key)?;
        Some((prop.ty, prop.element))
    }

    /// The position of the element a FHIRPath name navigates to (`value` → `value[x]`), and whether it is
    /// a choice element (whose JSON properties carry the type's name).
    pub(crate) fn element_by_fhirpath(&self, index: TypeIndex, name: &str) -> Option<(u16, bool)> {
        let def = self.types.get(index as usize)?;
        let position = *def.by_fhirpath_name.get(name)?;
        let element = def.elements.get(usize::from(position))?;
        Some((position, element.choice_slot.is_some()))
    }

    /// Whether an element repeats (max > 1) and whether it is a System-typed one (id, url).
    pub(crate) fn element_shape(&self, index: TypeIndex, position: u16) -> (bool, bool) {
        self.types
            .get(index as usize)
            .and_then(|t| t.elements.get(usize::from(position)))
            .map_or((false, false), |e| (e.max > 1, e.system))
    }

    pub(crate) fn is_resource_index(&self, index: TypeIndex) -> bool {
        self.types
            .get(index as usize)
            .is_some_and(|t| t.is_resource)
    }

    /// Every `code` with a required binding that navet checks in `resource`: where it is and which binding
    /// (`Patient.gender`). For the mutation tests (tests/official_examples_validation.rs) and for tooling.
    pub fn bound_codes(&self, resource: &Value) -> Vec<BoundCode> {
        let mut out = Vec::new();
        if let Some(index) = self.resource_type_of(resource) {
            let path = self.type_name(index).to_owned();
            self.collect_codes(index, resource, path, String::new(), &mut out);
        }
        out
    }

    fn collect_codes(
        &self,
        index: TypeIndex,
        value: &Value,
        path: String,
        pointer: String,
        out: &mut Vec<BoundCode>,
    ) {
        let (Some(def), Value::Object(object)) = (self.types.get(index as usize), value) else {
            return;
        };
        for (key, child) in object {
            let Some(prop) = def.props.get(key.as_str()) else {
                continue;
            };
            let items: Vec<(String, String, &Value)> = match child {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        (
                            format!("{path}.{key}[{i}]"),
                            format!("{pointer}/{key}/{i}"),
                            v,
                        )
                    })
                    .collect(),
                v => vec![(format!("{path}.{key}"), format!("{pointer}/{key}"), v)],
            };
            for (path, pointer, item) in items {
                match prop.ty {
                    Ty::Primitive(_) => {
                        if let (Some(binding), Value::String(_)) = (prop.binding, item) {
                            let element = &def.elements[usize::from(prop.element)].name;
                            out.push(BoundCode {
                                path,
                                pointer,
                                binding: format!("{}.{element}", def.name),
                                value_set: self.value_sets[usize::from(binding)].url.to_string(),
                            });
                        }
                    }
                    Ty::Complex(child) => self.collect_codes(child, item, path, pointer, out),
                    Ty::Resource(_) => {
                        if let Some(child) = self.resource_type_of(item) {
                            self.collect_codes(child, item, path, pointer, out);
                        }
                    }
                }
            }
        }
    }

    /// How many required code bindings navet checks (elements with an expandable value set).
    pub fn checked_bindings(&self) -> usize {
        self.types
            .iter()
            .map(|t| {
                let mut elements: Vec<u16> = t
                    .props
                    .values()
                    .filter(|p| p.binding.is_some())
                    .map(|p| p.element)
                    .collect();
                elements.sort_unstable();
                elements.dedup();
                elements.len()
            })
            .sum()
    }

    /// Checks `resource` against the R4 structure of its `resourceType`; on failure, every issue found (at most
    /// [`MAX_ISSUES`], then one that says the list was cut), in document order.
    pub fn validate(&self, resource: &Value) -> Result<(), Vec<StructureIssue>> {
        let mut validator = Validator {
            structure: self,
            path: Vec::with_capacity(16),
            issues: Vec::new(),
        };
        validator.resource(resource, None);
        if validator.issues.is_empty() {
            Ok(())
        } else {
            Err(validator.issues)
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Validation

#[derive(Clone, Copy)]
enum Segment<'a> {
    Name(&'a str),
    Index(usize),
}

struct Validator<'a> {
    structure: &'a Structure,
    path: Vec<Segment<'a>>,
    issues: Vec<StructureIssue>,
}

fn json_kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Validator<'a> {
    /// Whether the issue list is full: callers stop walking.
    fn full(&self) -> bool {
        self.issues.len() > MAX_ISSUES
    }

    fn issue(&mut self, message: impl Into<String>) {
        self.issue_of(IssueKind::Structure, message);
    }

    fn issue_of(&mut self, kind: IssueKind, message: impl Into<String>) {
        match self.issues.len() {
            n if n < MAX_ISSUES => {
                let path = self.render_path();
                self.issues.push(StructureIssue {
                    path,
                    message: message.into(),
                    kind,
                });
            }
            MAX_ISSUES => {
                let path = self.render_path();
                self.issues.push(StructureIssue {
                    path,
                    message: format!("more issues follow; validation stopped after {MAX_ISSUES}"),
                    kind: IssueKind::Structure,
                });
            }
            _ => {}
        }
    }

    /// An issue about `name` under the current path, without keeping `name` on the stack.
    fn issue_at(&mut self, name: &'a str, message: impl Into<String>) {
        self.path.push(Segment::Name(name));
        self.issue(message);
        self.path.pop();
    }

    fn render_path(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                Segment::Name(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(index) => {
                    out.push('[');
                    out.push_str(&index.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    /// A resource at the current path (the root when the path is empty), of type `expected` if given.
    fn resource(&mut self, value: &'a Value, expected: Option<TypeIndex>) {
        let structure = self.structure;
        let Some(object) = value.as_object() else {
            self.issue(format!(
                "a resource must be a JSON object, found {}",
                json_kind_name(value)
            ));
            return;
        };
        let index = match object.get("resourceType") {
            Some(Value::String(name)) => match structure.resource_index(name) {
                Some(index) => index,
                None => {
                    self.issue_at(
                        "resourceType",
                        format!("unknown FHIR R4 resource type \"{name}\""),
                    );
                    return;
                }
            },
            Some(other) => {
                self.issue_at(
                    "resourceType",
                    format!("must be a string, found {}", json_kind_name(other)),
                );
                return;
            }
            None => {
                self.issue_at(
                    "resourceType",
                    "resourceType is missing: every resource names its type",
                );
                return;
            }
        };
        if let Some(expected) = expected
            && expected != index
        {
            let expected_name = &structure.types[expected as usize].name;
            self.issue_at("resourceType", format!("must be {expected_name} here"));
            return;
        }
        let root = self.path.is_empty();
        if root {
            self.path
                .push(Segment::Name(&structure.types[index as usize].name));
        }
        self.object(index, object);
        if root {
            self.path.pop();
        }
    }

    /// The properties of an object of type `index` (a resource, datatype or inline structure).
    fn object(&mut self, index: TypeIndex, object: &'a Map<String, Value>) {
        let structure = self.structure;
        let def = &structure.types[index as usize];
        if self.path.len() > MAX_PATH_SEGMENTS {
            self.issue("nested too deeply");
            return;
        }
        let mut choices_seen = 0u64;
        for (key, value) in object {
            if self.full() {
                return;
            }
            if def.is_resource && key == "resourceType" {
                continue;
            }
            let (name, underscore) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let Some(prop) = def.props.get(name) else {
                self.issue_at(key, format!("unknown element \"{key}\" in {}", def.name));
                continue;
            };
            let element = &def.elements[prop.element as usize];
            if let Some(slot) = element.choice_slot
                && (!underscore || !object.contains_key(name))
            {
                if choices_seen & (1 << slot) != 0 {
                    self.issue_at(
                        key,
                        format!(
                            "only one type of {} may be present, and another one already is",
                            element.name
                        ),
                    );
                }
                choices_seen |= 1 << slot;
            }
            if underscore {
                if !prop.extensible {
                    self.issue_at(
                        key,
                        format!("unknown element \"{key}\": {name} cannot have extensions"),
                    );
                    continue;
                }
                self.path.push(Segment::Name(name));
                self.primitive_extensions(element, value, object.get(name));
            } else {
                self.path.push(Segment::Name(name));
                self.property(element, prop, value, object);
            }
            self.path.pop();
        }
        for &position in &def.required {
            let element = &def.elements[position as usize];
            let present = match element.choice_slot {
                Some(slot) => choices_seen & (1 << slot) != 0,
                None => {
                    object.contains_key(&*element.name)
                        || (element.primitive && object.contains_key(&*element.underscore))
                }
            };
            if !present {
                self.issue_at(
                    &element.name,
                    format!(
                        "required element is missing (cardinality {}..{})",
                        element.min,
                        max_text(element.max)
                    ),
                );
            }
        }
    }

    /// The value of a property (without `_`); the current path ends with its name.
    fn property(
        &mut self,
        element: &'a ElementDef,
        prop: &Prop,
        value: &'a Value,
        object: &'a Map<String, Value>,
    ) {
        match value {
            Value::Array(items) => {
                if element.max <= 1 {
                    self.issue(format!(
                        "must be a single value, not an array (cardinality {}..1)",
                        element.min
                    ));
                    return;
                }
                if items.is_empty() {
                    self.issue("empty array: leave the element out instead");
                    return;
                }
                let extensions = match object.get(&*element.underscore) {
                    Some(Value::Array(extensions)) if prop.extensible => Some(extensions),
                    _ => None,
                };
                if let Some(extensions) = extensions
                    && extensions.len() != items.len()
                {
                    self.issue(format!(
                        "{} has {} entries but {} has {}: they must align",
                        element.name,
                        items.len(),
                        element.underscore,
                        extensions.len()
                    ));
                }
                self.cardinality(element, items.len());
                for (i, item) in items.iter().enumerate() {
                    if self.full() {
                        return;
                    }
                    self.path.push(Segment::Index(i));
                    if item.is_null() {
                        let aligned = extensions
                            .and_then(|e| e.get(i))
                            .is_some_and(|e| !e.is_null());
                        if !aligned {
                            self.issue(format!(
                                "null is only allowed to align with an entry of {} that has extensions",
                                element.underscore
                            ));
                        }
                    } else {
                        self.single(prop, item);
                    }
                    self.path.pop();
                }
            }
            _ if element.max > 1 => {
                self.issue(format!(
                    "must be an array (cardinality {}..{})",
                    element.min,
                    max_text(element.max)
                ));
            }
            _ => self.single(prop, value),
        }
    }

    fn cardinality(&mut self, element: &ElementDef, count: usize) {
        if count < element.min as usize || count > element.max as usize {
            self.issue(format!(
                "has {count} entries, cardinality is {}..{}",
                element.min,
                max_text(element.max)
            ));
        }
    }

    /// One value of a property, not an array.
    fn single(&mut self, prop: &Prop, value: &'a Value) {
        match prop.ty {
            Ty::Primitive(prim) => {
                self.primitive(prim, value);
                if let (Some(binding), Value::String(code)) = (prop.binding, value)
                    && !code.is_empty()
                {
                    self.binding(binding, code);
                }
            }
            Ty::Complex(index) => match value {
                Value::Object(object) if object.is_empty() => {
                    self.issue("empty object: leave the element out instead");
                }
                Value::Object(object) => self.object(index, object),
                Value::Null => self.issue("null is not allowed: leave the element out instead"),
                other => {
                    let name = &self.structure.types[index as usize].name;
                    self.issue(format!(
                        "must be a JSON object ({name}), found {}",
                        json_kind_name(other)
                    ));
                }
            },
            Ty::Resource(expected) => match value {
                Value::Null => self.issue("null is not allowed: leave the element out instead"),
                _ => self.resource(value, expected),
            },
        }
    }

    /// The `_name` sibling of a primitive (FHIR R4 4.0.1 §2.6.2.4); the current path ends with `name`.
    fn primitive_extensions(
        &mut self,
        element: &'a ElementDef,
        value: &'a Value,
        base: Option<&'a Value>,
    ) {
        let element_type = self.structure.element_type;
        match value {
            Value::Array(items) if element.max > 1 => {
                if items.is_empty() {
                    self.issue(format!(
                        "empty array in {}: leave it out instead",
                        element.underscore
                    ));
                    return;
                }
                // Alignment with the values (lengths, nulls on both sides) is reported from the value side.
                let values_are_array = matches!(base, Some(Value::Array(_)));
                for (i, item) in items.iter().enumerate() {
                    if self.full() {
                        return;
                    }
                    self.path.push(Segment::Index(i));
                    match item {
                        Value::Null if values_are_array => {}
                        Value::Null => self.issue(format!(
                            "null in {} is only allowed to align with a value of {}",
                            element.underscore, element.name
                        )),
                        Value::Object(object) if object.is_empty() => {
                            self.issue(format!(
                                "empty object in {}: use null to align",
                                element.underscore
                            ));
                        }
                        Value::Object(object) => self.object(element_type, object),
                        other => self.issue(format!(
                            "{} entries must be JSON objects (id, extension) or null, found {}",
                            element.underscore,
                            json_kind_name(other)
                        )),
                    }
                    self.path.pop();
                }
            }
            Value::Array(_) => {
                self.issue(format!(
                    "{} must be a single object, not an array (cardinality ..1)",
                    element.underscore
                ));
            }
            _ if element.max > 1 => {
                self.issue(format!(
                    "{} must be an array, aligned with {}",
                    element.underscore, element.name
                ));
            }
            Value::Object(object) if object.is_empty() => {
                self.issue(format!(
                    "empty object in {}: leave it out instead",
                    element.underscore
                ));
            }
            Value::Object(object) => self.object(element_type, object),
            other => self.issue(format!(
                "{} must be a JSON object (id, extension), found {}",
                element.underscore,
                json_kind_name(other)
            )),
        }
    }

    /// A code of an element with a required binding must be in its value set (terminologies.html#required).
    fn binding(&mut self, binding: u16, code: &str) {
        let Some(set) = self.structure.value_sets.get(usize::from(binding)) else {
            return;
        };
        if set.codes.binary_search_by(|c| (**c).cmp(code)).is_err() {
            let mut listed: Vec<&str> = set.codes.iter().take(12).map(|c| &**c).collect();
            if set.codes.len() > listed.len() {
                listed.push("...");
            }
            self.issue_of(
                IssueKind::Code,
                format!(
                    "'{code}' is not in the required value set {} ({})",
                    set.url,
                    listed.join(", ")
                ),
            );
        }
    }

    fn primitive(&mut self, prim: Prim, value: &Value) {
        let valid = match (prim.json_kind(), value) {
            (_, Value::Null) => {
                self.issue("null is not allowed: leave the element out instead");
                return;
            }
            (JsonKind::Boolean, Value::Bool(_)) => true,
            (JsonKind::Number, Value::Number(number)) => match prim {
                Prim::Decimal => true,
                _ => {
                    let low = if prim == Prim::Integer {
                        i64::from(i32::MIN)
                    } else {
                        i64::from(prim == Prim::PositiveInt)
                    };
                    number
                        .as_i64()
                        .is_some_and(|n| (low..=i64::from(i32::MAX)).contains(&n))
                }
            },
            (JsonKind::String, Value::String(text)) if text.is_empty() => {
                self.issue("empty string: leave the element out instead");
                return;
            }
            (JsonKind::String, Value::String(text)) => string_is_valid(prim, text.as_bytes()),
            (kind, other) => {
                let expected = match kind {
                    JsonKind::Boolean => "a JSON boolean",
                    JsonKind::Number => "a JSON number",
                    JsonKind::String => "a JSON string",
                };
                self.issue(format!(
                    "{} must be {expected}, found {}",
                    prim.code(),
                    json_kind_name(other)
                ));
                return;
            }
        };
        if !valid {
            self.issue(format!(
                "not a valid {}: expected {}",
                prim.code(),
                prim.format_hint()
            ));
        }
    }
}

fn max_text(max: u32) -> String {
    if max == u32::MAX {
        "*".to_owned()
    } else {
        max.to_string()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Lexical forms of the string-valued primitives: hand-written equivalents of the regexes in the R4 4.0.1
// definitions (the `regex` extension of each primitive's `value` element, kept in r4-structure.json), with
// whitespace as in those regexes (`\s` = space, tab, LF, VT, FF, CR).

fn string_is_valid(prim: Prim, s: &[u8]) -> bool {
    match prim {
        // [ \r\n\t\S]+: any character but the other two whitespaces.
        Prim::String | Prim::Markdown => !s.iter().any(|&b| b == 0x0B || b == 0x0C),
        // [^\s]+(\s[^\s]+)*
        Prim::Code => {
            !is_space(s[0])
                && !is_space(s[s.len() - 1])
                && !s.windows(2).any(|w| is_space(w[0]) && is_space(w[1]))
        }
        // \S*
        Prim::Uri | Prim::Url | Prim::Canonical => !s.iter().any(|&b| is_space(b)),
        // [A-Za-z0-9\-\.]{1,64}
        Prim::Id => {
            s.len() <= 64
                && s.iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
        Prim::Oid => is_oid(s),
        Prim::Uuid => is_uuid(s),
        Prim::Base64Binary => is_base64(s),
        Prim::Date => date_prefix(s).is_some_and(|(rest, _)| rest.is_empty()),
        Prim::DateTime => is_date_time(s),
        Prim::Instant => is_instant(s),
        Prim::Time => time_prefix(s).is_some_and(<[u8]>::is_empty),
        // Narrative XHTML rules (narrative.html) are beyond structure; a non-empty string is required.
        Prim::Xhtml => true,
        Prim::Boolean | Prim::Decimal | Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt => {
            false
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Exactly `n` ASCII digits as a number, and the rest.
fn digits(s: &[u8], n: usize) -> Option<(u32, &[u8])> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = s[..n]
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    Some((value, &s[n..]))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// YYYY, YYYY-MM or YYYY-MM-DD with year 0001-9999, and whether the day was given. datatypes.html#date: the
/// regex only bounds the day by 31, but "Dates SHALL be valid dates", so 2019-02-30 is refused.
fn date_prefix(s: &[u8]) -> Option<(&[u8], bool)> {
    let (year, rest) = digits(s, 4)?;
    if year == 0 {
        return None;
    }
    let Some(rest) = rest.strip_prefix(b"-") else {
        return Some((rest, false));
    };
    let (month, rest) = digits(rest, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let Some(rest) = rest.strip_prefix(b"-") else {
        return Some((rest, false));
    };
    let (day, rest) = digits(rest, 2)?;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((rest, true))
}

/// hh:mm:ss(.s+) (seconds up to 60 for leap seconds, as the regex allows), and the rest.
fn time_prefix(s: &[u8]) -> Option<&[u8]> {
    let (hour, rest) = digits(s, 2)?;
    let (minute, rest) = digits(rest.strip_prefix(b":")?, 2)?;
    let (second, rest) = digits(rest.strip_prefix(b":")?, 2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    match rest.strip_prefix(b".") {
        Some(fraction) => {
            let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            (count > 0).then(|| &fraction[count..])
        }
        None => Some(rest),
    }
}

/// Z or ±hh:mm with hh:mm up to 13:59, or 14:00; true if nothing follows.
fn is_zone(s: &[u8]) -> bool {
    if s == b"Z" {
        return true;
    }
    let Some(rest) = s.strip_prefix(b"+").or_else(|| s.strip_prefix(b"-")) else {
        return false;
    };
    let Some((hour, rest)) = digits(rest, 2) else {
        return false;
    };
    let Some((minute, rest)) = rest.strip_prefix(b":").and_then(|r| digits(r, 2)) else {
        return false;
    };
    rest.is_empty() && ((hour <= 13 && minute <= 59) || (hour == 14 && minute == 0))
}

/// A partial date, or a full date with a time and a zone ("if hours and minutes are specified, a time zone
/// SHALL be populated", datatypes.html#dateTime).
fn is_date_time(s: &[u8]) -> bool {
    match date_prefix(s) {
        Some(([], _)) => true,
        Some((rest, true)) => rest
            .strip_prefix(b"T")
            .and_then(time_prefix)
            .is_some_and(is_zone),
        _ => false,
    }
}

fn is_instant(s: &[u8]) -> bool {
    match date_prefix(s) {
        Some((rest, true)) => rest
            .strip_prefix(b"T")
            .and_then(time_prefix)
            .is_some_and(is_zone),
        _ => false,
    }
}

/// urn:oid:[0-2](\.(0|[1-9][0-9]*))+
fn is_oid(s: &[u8]) -> bool {
    let Some(rest) = s.strip_prefix(b"urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split(|&b| b == b'.');
    if !matches!(arcs.next(), Some([b'0'..=b'2'])) {
        return false;
    }
    let mut count = 0;
    for arc in arcs {
        let valid = match arc {
            [b'0'] => true,
            [b'1'..=b'9', tail @ ..] => tail.iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if !valid {
            return false;
        }
        count += 1;
    }
    count > 0
}

/// urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
fn is_uuid(s: &[u8]) -> bool {
    let Some(rest) = s.strip_prefix(b"urn:uuid:") else {
        return false;
    };
    rest.len() == 36
        && rest.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// (\s*([0-9a-zA-Z\+/=]){4}\s*)+: every whitespace-separated run is whole groups of 4 base64 characters.
fn is_base64(s: &[u8]) -> bool {
    let mut runs = 0;
    for run in s.split(|&b| is_space(b)).filter(|run| !run.is_empty()) {
        if !run.len().is_multiple_of(4)
            || !run
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return false;
        }
        runs += 1;
    }
    runs > 0
}

#[cfg(test)]
mod tests;
