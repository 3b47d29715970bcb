//! The walk that checks one resource against the loaded [`Structure`]: properties, cardinality, choice
//! elements, primitives and their `_name` siblings, required bindings. It borrows the tables and keeps the
//! path as a stack, so it is its own type apart from the tables.

use serde_json::{Map, Value};

use super::lexical::string_is_valid;
use super::{
    ElementDef, IssueKind, JsonKind, MAX_ISSUES, MAX_PATH_SEGMENTS, Prim, Prop, Structure,
    StructureIssue, Ty, TypeIndex,
};
impl Structure {
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
