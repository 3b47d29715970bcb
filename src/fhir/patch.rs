//! PATCH (FHIR R4 4.0.1 §3.1.0.7): a change to the current version of a resource, as JSON Patch
//! (RFC 6902, `application/json-patch+json`) or FHIRPath Patch (a `Parameters` resource, fhirpatch.html).
//!
//! This module only computes the patched resource from the current JSON; the HTTP handler then sends it
//! through the same path as an update (parsing, structure validation, the Swedish rules, ownership,
//! `If-Match`, the access log), so a PATCH can do nothing an update may not.
//!
//! FHIRPath Patch paths are the subset navet evaluates (no general FHIRPath engine exists for Rust 1.95, see
//! DESIGN.md): `Type.element.element`, each step optionally followed by `[n]`, `.first()`, `.last()` or
//! `.where(element = 'text')`. Anything else is refused with a clear message, never guessed.

use serde_json::{Map, Value};

/// Why a patch could not be applied (a 422 naming the operation, or a 400 for a malformed document).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Failed(String),
}

/// Applies an RFC 6902 JSON Patch document (`patch` is its JSON text) to `resource`.
pub fn apply_json_patch(resource: &mut Value, patch: &[u8]) -> Result<(), PatchError> {
    let patch: json_patch::Patch = serde_json::from_slice(patch)
        .map_err(|e| PatchError::Malformed(format!("not a JSON Patch document: {e}")))?;
    json_patch::patch(resource, &patch).map_err(|e| PatchError::Failed(format!("JSON Patch: {e}")))
}

/// One step of a FHIRPath Patch path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Select {
    Index(usize),
    First,
    Last,
    Where(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    name: String,
    selects: Vec<Select>,
}

/// A location in the resource: object keys and array indexes from the root.
type Location = Vec<Key>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Name(String),
    Index(usize),
}

/// Parses `Type.a[0].b.where(system='email').value` into steps (the leading type is checked by the caller).
fn parse_path(path: &str) -> Result<(String, Vec<Step>), PatchError> {
    let bad = || {
        PatchError::Malformed(format!(
            "FHIRPath {path:?} is not a path navet evaluates (Type.element, [n], .first(), .last(), \
             .where(element = 'text'))"
        ))
    };
    if path.len() > 512 {
        return Err(bad());
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut rest = path.trim();
    let mut root = None;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        if name.is_empty() {
            return Err(bad());
        }
        rest = after;
        let mut selects = Vec::new();
        loop {
            if let Some(after) = rest.strip_prefix('[') {
                let close = after.find(']').ok_or_else(bad)?;
                let index = after[..close].trim().parse::<usize>().map_err(|_| bad())?;
                selects.push(Select::Index(index));
                rest = &after[close + 1..];
            } else if let Some(after) = rest.strip_prefix(".first()") {
                selects.push(Select::First);
                rest = after;
            } else if let Some(after) = rest.strip_prefix(".last()") {
                selects.push(Select::Last);
                rest = after;
            } else if let Some(after) = rest.strip_prefix(".where(") {
                let close = after.find(')').ok_or_else(bad)?;
                let (field, value) = after[..close].split_once('=').ok_or_else(bad)?;
                let field = field.trim();
                let value = value.trim();
                let value = value
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .ok_or_else(bad)?;
                if !field.bytes().all(|b| b.is_ascii_alphanumeric()) || field.is_empty() {
                    return Err(bad());
                }
                selects.push(Select::Where(field.to_owned(), value.to_owned()));
                rest = &after[close + 1..];
            } else {
                break;
            }
        }
        if root.is_none() {
            if !selects.is_empty() {
                return Err(bad());
            }
            root = Some(name.to_owned());
        } else {
            steps.push(Step {
                name: name.to_owned(),
                selects,
            });
        }
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix('.').ok_or_else(bad)?;
    }
    Ok((root.ok_or_else(bad)?, steps))
}

fn get<'a>(root: &'a Value, location: &[Key]) -> Option<&'a Value> {
    location.iter().try_fold(root, |node, key| match key {
        Key::Name(n) => node.get(n),
        Key::Index(i) => node.get(*i),
    })
}

fn get_mut<'a>(root: &'a mut Value, location: &[Key]) -> Option<&'a mut Value> {
    location.iter().try_fold(root, |node, key| match key {
        Key::Name(n) => node.get_mut(n),
        Key::Index(i) => node.get_mut(*i),
    })
}

/// The locations `steps` select in `resource` (every step traverses arrays, as FHIRPath does).
fn evaluate(resource: &Value, steps: &[Step]) -> Vec<Location> {
    let mut current: Vec<Location> = vec![Vec::new()];
    for step in steps {
        let mut next: Vec<Location> = Vec::new();
        for loc in &current {
            let Some(node) = get(resource, loc) else {
                continue;
            };
            let Some(child) = node.get(&step.name) else {
                continue;
            };
            let mut items: Vec<Location> = match child {
                Value::Array(items) => (0..items.len())
                    .map(|i| {
                        let mut l = loc.clone();
                        l.push(Key::Name(step.name.clone()));
                        l.push(Key::Index(i));
                        l
                    })
                    .collect(),
                _ => {
                    let mut l = loc.clone();
                    l.push(Key::Name(step.name.clone()));
                    vec![l]
                }
            };
            for select in &step.selects {
                items = match select {
                    Select::Index(i) => items.get(*i).cloned().into_iter().collect(),
                    Select::First => items.first().cloned().into_iter().collect(),
                    Select::Last => items.last().cloned().into_iter().collect(),
                    Select::Where(field, value) => items
                        .into_iter()
                        .filter(|l| {
                            get(resource, l)
                                .and_then(|v| v.get(field))
                                .and_then(Value::as_str)
                                == Some(value.as_str())
                        })
                        .collect(),
                };
            }
            next.extend(items);
        }
        current = next;
    }
    current
}

/// The value of a FHIRPath Patch `value` part: its `value[x]`, or, for a complex value, its parts as an
/// object (fhirpatch.html: "the value is provided as parts").
fn part_value(part: &Map<String, Value>) -> Option<Value> {
    if let Some((_, v)) = part
        .iter()
        .find(|(k, _)| k.starts_with("value") && k.len() > 5)
    {
        return Some(v.clone());
    }
    let parts = part.get("part")?.as_array()?;
    let mut obj = Map::new();
    for p in parts {
        let p = p.as_object()?;
        let name = p.get("name")?.as_str()?.to_owned();
        obj.insert(name, part_value(p)?);
    }
    Some(Value::Object(obj))
}

/// Whether `candidate` passes navet's structural validation (used to tell a single element from a list
/// when an `add` creates it).
pub type StructureCheck<'a> = &'a dyn Fn(&Value) -> bool;

/// Applies a FHIRPath Patch (`Parameters`) to `resource`, operation by operation.
pub fn apply_fhirpath_patch(
    resource: &mut Value,
    parameters: &Value,
    valid: StructureCheck<'_>,
) -> Result<(), PatchError> {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(PatchError::Malformed(
            "a FHIRPath Patch is a Parameters resource".into(),
        ));
    }
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let operations = parameters
        .get("parameter")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if operations.is_empty() {
        return Err(PatchError::Malformed(
            "the Parameters has no operation".into(),
        ));
    }
    for (n, op) in operations.iter().enumerate() {
        let fail = |m: String| PatchError::Failed(format!("operation {}: {m}", n + 1));
        let malformed = |m: String| PatchError::Malformed(format!("operation {}: {m}", n + 1));
        if op.get("name").and_then(Value::as_str) != Some("operation") {
            return Err(malformed("every parameter is named \"operation\"".into()));
        }
        let mut fields: Map<String, Value> = Map::new();
        let mut value = None;
        for part in op
            .get("part")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(part) = part.as_object() else {
                continue;
            };
            let Some(name) = part.get("name").and_then(Value::as_str) else {
                continue;
            };
            if name == "value" {
                value = part_value(part);
            } else if let Some((_, v)) = part.iter().find(|(k, _)| k.starts_with("value")) {
                fields.insert(name.to_owned(), v.clone());
            }
        }
        let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
        let int = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_u64)
                .and_then(|v| usize::try_from(v).ok())
        };
        let kind = text("type").ok_or_else(|| malformed("no type".into()))?;
        let path = text("path").ok_or_else(|| malformed("no path".into()))?;
        let (root, steps) = parse_path(&path)?;
        if root != resource_type {
            return Err(fail(format!(
                "path {path:?} does not start with {resource_type}"
            )));
        }
        let found = evaluate(resource, &steps);
        let single = |found: &[Location]| match found {
            [one] => Ok(one.clone()),
            [] => Err(fail(format!("{path:?} selects nothing"))),
            _ => Err(fail(format!("{path:?} selects more than one element"))),
        };
        match kind.as_str() {
            "add" => {
                let name = text("name").ok_or_else(|| malformed("add needs a name".into()))?;
                let value = value.ok_or_else(|| malformed("add needs a value".into()))?;
                let target = single(&found)?;
                let node = get_mut(resource, &target)
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| fail(format!("{path:?} is not an element with children")))?;
                match node.get_mut(&name) {
                    Some(Value::Array(items)) => items.push(value),
                    Some(_) => return Err(fail(format!("{path:?} already has a {name}"))),
                    None => {
                        // A list element is created as a list: the structure tells which.
                        node.insert(name.clone(), Value::Array(vec![value.clone()]));
                        let as_list = valid(resource);
                        if !as_list
                            && let Some(node) =
                                get_mut(resource, &target).and_then(Value::as_object_mut)
                        {
                            node.insert(name, value);
                        }
                    }
                }
            }
            "insert" => {
                let value = value.ok_or_else(|| malformed("insert needs a value".into()))?;
                let index =
                    int("index").ok_or_else(|| malformed("insert needs an index".into()))?;
                let list = list_of(resource, &steps, &found)
                    .ok_or_else(|| fail(format!("{path:?} is not a list")))?;
                let items = get_mut(resource, &list)
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| fail(format!("{path:?} is not a list")))?;
                if index > items.len() {
                    return Err(fail(format!("index {index} is past the end of {path:?}")));
                }
                items.insert(index, value);
            }
            "delete" => {
                // Deleting nothing is not an error (fhirpatch.html).
                let Some(target) = (match found.as_slice() {
                    [] => None,
                    [one] => Some(one.clone()),
                    _ => return Err(fail(format!("{path:?} selects more than one element"))),
                }) else {
                    continue;
                };
                remove(resource, &target);
            }
            "replace" => {
                let value = value.ok_or_else(|| malformed("replace needs a value".into()))?;
                let target = single(&found)?;
                let slot = get_mut(resource, &target)
                    .ok_or_else(|| fail(format!("{path:?} selects nothing")))?;
                *slot = value;
            }
            "move" => {
                let source =
                    int("source").ok_or_else(|| malformed("move needs a source".into()))?;
                let destination = int("destination")
                    .ok_or_else(|| malformed("move needs a destination".into()))?;
                let list = list_of(resource, &steps, &found)
                    .ok_or_else(|| fail(format!("{path:?} is not a list")))?;
                let items = get_mut(resource, &list)
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| fail(format!("{path:?} is not a list")))?;
                if source >= items.len() || destination >= items.len() {
                    return Err(fail(
                        "source or destination is past the end of the list".into(),
                    ));
                }
                let item = items.remove(source);
                items.insert(destination, item);
            }
            other => {
                return Err(malformed(format!(
                    "type {other:?} is not add, insert, delete, replace or move"
                )));
            }
        }
    }
    Ok(())
}

/// The location of the list a path names (its items, or the path's parent element's list).
fn list_of(resource: &Value, steps: &[Step], found: &[Location]) -> Option<Location> {
    if let Some(first) = found.first() {
        let mut list = first.clone();
        if matches!(list.last(), Some(Key::Index(_))) {
            list.pop();
            return get(resource, &list).filter(|v| v.is_array()).map(|_| list);
        }
        return get(resource, first)
            .filter(|v| v.is_array())
            .map(|_| first.clone());
    }
    let _ = steps;
    None
}

fn remove(resource: &mut Value, target: &[Key]) {
    let Some((last, parent)) = target.split_last() else {
        return;
    };
    let Some(node) = get_mut(resource, parent) else {
        return;
    };
    match (node, last) {
        (Value::Object(obj), Key::Name(n)) => {
            obj.remove(n);
        }
        (Value::Array(items), Key::Index(i)) => {
            if *i < items.len() {
                items.remove(*i);
            }
            // FHIR JSON has no empty arrays: the element goes with its last item.
            if items.is_empty()
                && let Some((Key::Name(list_name), grand)) = parent.split_last()
                && let Some(Value::Object(obj)) = get_mut(resource, grand)
            {
                obj.remove(list_name);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p", "active": true,
               "name": [{"use": "official", "family": "Åkesson", "given": ["Anna"]}],
               "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]})
    }

    fn op(parts: Value) -> Value {
        json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]})
    }

    fn always(_: &Value) -> bool {
        true
    }

    #[test]
    fn json_patch_replaces_and_tests() {
        let mut p = patient();
        apply_json_patch(
            &mut p,
            br#"[{"op":"test","path":"/active","value":true},{"op":"replace","path":"/active","value":false}]"#,
        )
        .expect("applies");
        assert_eq!(p["active"], false);
        let failed = apply_json_patch(&mut p, br#"[{"op":"test","path":"/active","value":true}]"#);
        assert!(matches!(failed, Err(PatchError::Failed(_))));
        assert!(matches!(
            apply_json_patch(&mut p, b"{}"),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn fhirpath_patch_replaces_a_filtered_element() {
        let mut p = patient();
        let patch = op(json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.telecom.where(system='email').value"},
            {"name": "value", "valueString": "new@example.se"}
        ]));
        apply_fhirpath_patch(&mut p, &patch, &always).expect("applies");
        assert_eq!(p["telecom"][1]["value"], "new@example.se");
        assert_eq!(p["telecom"][0]["value"], "1");
    }

    #[test]
    fn fhirpath_patch_adds_inserts_moves_and_deletes() {
        let mut p = patient();
        let add = op(json!([
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "birthDate"},
            {"name": "value", "valueDate": "1950-01-01"}
        ]));
        // A validator that refuses lists for birthDate makes the add a single value.
        apply_fhirpath_patch(&mut p, &add, &|v: &Value| !v["birthDate"].is_array()).expect("add");
        assert_eq!(p["birthDate"], "1950-01-01");
        let insert = op(json!([
            {"name": "type", "valueCode": "insert"},
            {"name": "path", "valueString": "Patient.name[0].given"},
            {"name": "index", "valueInteger": 0},
            {"name": "value", "valueString": "Greta"}
        ]));
        apply_fhirpath_patch(&mut p, &insert, &always).expect("insert");
        assert_eq!(p["name"][0]["given"], json!(["Greta", "Anna"]));
        let mv = op(json!([
            {"name": "type", "valueCode": "move"},
            {"name": "path", "valueString": "Patient.telecom"},
            {"name": "source", "valueInteger": 1},
            {"name": "destination", "valueInteger": 0}
        ]));
        apply_fhirpath_patch(&mut p, &mv, &always).expect("move");
        assert_eq!(p["telecom"][0]["system"], "email");
        let delete = op(json!([
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.name.first()"}
        ]));
        apply_fhirpath_patch(&mut p, &delete, &always).expect("delete");
        assert!(p.get("name").is_none(), "no empty array is left behind");
    }

    #[test]
    fn fhirpath_patch_refuses_what_it_cannot_evaluate_or_apply() {
        let mut p = patient();
        let unsupported = op(json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.name.exists()"},
            {"name": "value", "valueString": "x"}
        ]));
        assert!(matches!(
            apply_fhirpath_patch(&mut p, &unsupported, &always),
            Err(PatchError::Malformed(_))
        ));
        let ambiguous = op(json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.telecom.value"},
            {"name": "value", "valueString": "x"}
        ]));
        assert!(matches!(
            apply_fhirpath_patch(&mut p, &ambiguous, &always),
            Err(PatchError::Failed(_))
        ));
        let other_type = op(json!([
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Observation.status"}
        ]));
        assert!(apply_fhirpath_patch(&mut p, &other_type, &always).is_err());
        assert_eq!(
            p,
            patient(),
            "a failed patch changes nothing it had not applied"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_paths_never_panic(path in ".{0,80}") {
            let _ = parse_path(&path);
        }

        #[test]
        fn arbitrary_fhirpath_patches_never_panic(
            path in "Patient(\\.[a-z]{1,8}(\\[[0-9]\\]|\\.first\\(\\)|\\.where\\([a-z]{1,5}='[a-z]{0,3}'\\))?){0,3}",
            kind in "(add|insert|delete|replace|move|x)",
            index in 0u64..5,
        ) {
            let mut p = patient();
            let patch = op(json!([
                {"name": "type", "valueCode": kind},
                {"name": "path", "valueString": path},
                {"name": "name", "valueString": "x"},
                {"name": "index", "valueInteger": index},
                {"name": "source", "valueInteger": index},
                {"name": "destination", "valueInteger": 0},
                {"name": "value", "valueString": "v"}
            ]));
            let _ = apply_fhirpath_patch(&mut p, &patch, &always);
        }
    }
}
