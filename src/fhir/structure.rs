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
//!
//! The module is split by responsibility: `load` builds the tables from the embedded JSON once,
//! `validator` walks a resource against them, and `lexical` holds the hand-written lexical forms of the
//! primitives. This file keeps the tables themselves and what the rest of navet asks of them.

mod lexical;
mod load;
mod validator;

use std::collections::HashMap;

use serde_json::Value;

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
impl Structure {
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
}

#[cfg(test)]
mod tests;
