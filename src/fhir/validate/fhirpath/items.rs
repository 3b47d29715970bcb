//! Operations on single items and collections: the primitive view, three-valued booleans, equality and
//! ordering (dates by precision), type tests, navigation to children, `distinct` and arithmetic. The
//! building blocks of [`Env::eval`](super::Env::eval), kept apart from its dispatch over the syntax tree.

use std::borrow::Cow;

use serde_json::Value;

use super::{Coll, EvalError, Item, NodeTy, Op, node};
use crate::fhir::structure::{Prim, Structure, Ty};

/// The primitive view of an item, for comparisons and string functions.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Prv<'a> {
    Bool(bool),
    Num(f64),
    Str(&'a str),
    /// date, dateTime, instant (kept as text; compared by [`compare_dates`]).
    Date(&'a str),
    Time(&'a str),
}

pub(super) fn prv<'x>(item: &'x Item<'_>) -> Option<Prv<'x>> {
    match item {
        Item::Bool(b) => Some(Prv::Bool(*b)),
        Item::Int(i) => Some(Prv::Num(*i as f64)),
        Item::Num(n) => Some(Prv::Num(*n)),
        Item::Str(s) => Some(Prv::Str(s)),
        Item::Node { value, ty } => match value {
            Value::Bool(b) => Some(Prv::Bool(*b)),
            Value::Number(n) => n.as_f64().map(Prv::Num),
            Value::String(s) => Some(match ty {
                NodeTy::Prim(Prim::Date | Prim::DateTime | Prim::Instant) => Prv::Date(s),
                NodeTy::Prim(Prim::Time) => Prv::Time(s),
                _ => Prv::Str(s),
            }),
            _ => None,
        },
    }
}

pub(super) fn string_of<'x>(item: &'x Item<'_>) -> Option<&'x str> {
    match prv(item)? {
        Prv::Str(s) | Prv::Date(s) | Prv::Time(s) => Some(s),
        _ => None,
    }
}

/// Singleton evaluation of collections as a boolean (FHIRPath N1 §4.5): empty is unknown, one boolean is
/// itself, any other single item is true; more than one item is an error.
pub(super) fn to_bool(c: &[Item<'_>]) -> Result<Option<bool>, EvalError> {
    match c {
        [] => Ok(None),
        [item] => Ok(Some(match prv(item) {
            Some(Prv::Bool(b)) => b,
            _ => true,
        })),
        _ => Err(EvalError),
    }
}

pub(super) fn boolean<'a>(b: Option<bool>) -> Coll<'a> {
    b.map(Item::Bool).into_iter().collect()
}

/// FHIRPath equality of two items (None: unknown, e.g. dates of different precision).
pub(super) fn item_eq(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    if let (Item::Node { value: x, .. }, Item::Node { value: y, .. }) = (a, b)
        && (x.is_object() || y.is_object())
    {
        return Some(x == y);
    }
    match (prv(a)?, prv(b)?) {
        (Prv::Bool(x), Prv::Bool(y)) => Some(x == y),
        (Prv::Num(x), Prv::Num(y)) => Some(x == y),
        (Prv::Date(x), Prv::Date(y)) => compare_dates(x, y).map(|o| o.is_eq()),
        (Prv::Date(x) | Prv::Time(x) | Prv::Str(x), Prv::Date(y) | Prv::Time(y) | Prv::Str(y)) => {
            Some(x == y)
        }
        _ => Some(false),
    }
}

pub(super) fn coll_eq(a: &[Item<'_>], b: &[Item<'_>]) -> Option<bool> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.len() != b.len() {
        return Some(false);
    }
    let mut all = Some(true);
    for (x, y) in a.iter().zip(b) {
        match item_eq(x, y) {
            Some(false) => return Some(false),
            None => all = None,
            Some(true) => {}
        }
    }
    all
}

/// Orders two date/dateTime/instant texts; None when the precisions differ and the common part is equal
/// (FHIRPath N1 §5.1: such a comparison is empty).
fn compare_dates(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let time_a = a.contains('T');
    let time_b = b.contains('T');
    if time_a && time_b {
        let x: jiff::Timestamp = a.parse().ok()?;
        let y: jiff::Timestamp = b.parse().ok()?;
        return Some(x.cmp(&y));
    }
    let date_a = a.split('T').next().unwrap_or(a);
    let date_b = b.split('T').next().unwrap_or(b);
    if date_a.len() == date_b.len() && time_a == time_b {
        return Some(date_a.cmp(date_b));
    }
    let common = date_a.len().min(date_b.len());
    let (Some(x), Some(y)) = (date_a.get(..common), date_b.get(..common)) else {
        return None;
    };
    match x.cmp(y) {
        std::cmp::Ordering::Equal => None,
        other => Some(other),
    }
}

/// Orders two singletons: numbers, strings, dates, times, and Quantities with the same unit.
pub(super) fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<std::cmp::Ordering>, EvalError> {
    if let (Item::Node { value: x, .. }, Item::Node { value: y, .. }) = (a, b)
        && x.is_object()
        && y.is_object()
    {
        // Quantity: comparable when both have a value and the same code (or unit).
        let unit = |v: &Value| v.get("code").or_else(|| v.get("unit")).cloned();
        return Ok(match (x.get("value"), y.get("value")) {
            (Some(Value::Number(p)), Some(Value::Number(q))) if unit(x) == unit(y) => p
                .as_f64()
                .zip(q.as_f64())
                .and_then(|(p, q)| p.partial_cmp(&q)),
            _ => None,
        });
    }
    Ok(match (prv(a), prv(b)) {
        (Some(Prv::Num(x)), Some(Prv::Num(y))) => x.partial_cmp(&y),
        (Some(Prv::Date(x)), Some(Prv::Date(y))) => compare_dates(x, y),
        (Some(Prv::Date(x)), Some(Prv::Str(y))) | (Some(Prv::Str(x)), Some(Prv::Date(y))) => {
            compare_dates(x, y)
        }
        (Some(Prv::Str(x)), Some(Prv::Str(y))) | (Some(Prv::Time(x)), Some(Prv::Time(y))) => {
            Some(x.cmp(y))
        }
        _ => return Err(EvalError),
    })
}

/// Whether an item is of the named type (FHIR type names, and the FHIRPath System types).
pub(super) fn is_type(structure: &Structure, item: &Item<'_>, name: &str) -> bool {
    match item {
        Item::Node { ty, .. } => match ty {
            NodeTy::Prim(p) => {
                p.code() == name
                    || match name {
                        "Boolean" => *p == Prim::Boolean,
                        "String" => matches!(
                            p,
                            Prim::String | Prim::Code | Prim::Id | Prim::Markdown | Prim::Uri
                        ),
                        "Integer" => {
                            matches!(p, Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt)
                        }
                        "Decimal" => *p == Prim::Decimal,
                        "Date" => *p == Prim::Date,
                        "DateTime" => *p == Prim::DateTime,
                        "Time" => *p == Prim::Time,
                        _ => false,
                    }
            }
            NodeTy::Object(index) => structure.type_name(*index) == name,
            NodeTy::Unknown => false,
        },
        Item::Bool(_) => name == "Boolean" || name == "boolean",
        Item::Int(_) => name == "Integer" || name == "integer",
        Item::Num(_) => name == "Decimal" || name == "decimal",
        Item::Str(_) => name == "String" || name == "string",
    }
}

/// The children of a node named `name` (FHIRPath navigation): arrays flattened, choice variants found by
/// the structure table, a primitive that only has extensions (`_birthDate`) present without a value.
pub(super) fn children_named<'a>(
    structure: &Structure,
    item: &Item<'a>,
    name: &str,
    out: &mut Coll<'a>,
) {
    let Item::Node {
        value: Value::Object(object),
        ty: NodeTy::Object(index),
    } = item
    else {
        return;
    };
    let index = *index;
    let Some((position, choice)) = structure.element_by_fhirpath(index, name) else {
        return;
    };
    if !choice {
        if let Some((ty, _)) = structure.property(index, name) {
            push_values(
                structure,
                object.get(name),
                object.get(&format!("_{name}")),
                ty,
                out,
            );
        }
        return;
    }
    for (key, value) in object {
        // `_valueString` without `valueString`: a value that only has extensions still exists.
        let (base, extensions_only) = match key.strip_prefix('_') {
            Some(base) if object.contains_key(base) => continue,
            Some(base) => (base, true),
            None => (key.as_str(), false),
        };
        if !base.starts_with(name) {
            continue;
        }
        if let Some((ty, element)) = structure.property(index, base)
            && element == position
        {
            if extensions_only {
                push_values(structure, None, Some(value), ty, out);
            } else {
                push_values(structure, Some(value), None, ty, out);
            }
        }
    }
}

fn push_values<'a>(
    structure: &Structure,
    value: Option<&'a Value>,
    extensions: Option<&'a Value>,
    ty: Ty,
    out: &mut Coll<'a>,
) {
    static NULL: Value = Value::Null;
    match (value, extensions) {
        (Some(Value::Array(items)), _) => {
            for item in items {
                if !item.is_null() {
                    out.push(node(structure, item, ty));
                } else {
                    // A null aligned with extensions: an element without a value.
                    out.push(node(structure, &NULL, ty));
                }
            }
        }
        (Some(value), _) => out.push(node(structure, value, ty)),
        (None, Some(Value::Array(items))) => {
            out.extend(items.iter().map(|_| node(structure, &NULL, ty)));
        }
        (None, Some(_)) => out.push(node(structure, &NULL, ty)),
        (None, None) => {}
    }
}

/// Every child node of an object, in property order.
pub(super) fn all_children<'a>(structure: &Structure, item: &Item<'a>, out: &mut Coll<'a>) {
    let Item::Node {
        value: Value::Object(object),
        ty: NodeTy::Object(index),
    } = item
    else {
        return;
    };
    for (key, value) in object {
        if key.starts_with('_') || key == "resourceType" {
            continue;
        }
        if let Some((ty, _)) = structure.property(*index, key) {
            push_values(structure, Some(value), None, ty, out);
        }
    }
}

/// Items without repeats (FHIRPath equality). Primitives are hashed by their text, so a union of all the
/// references of a big resource (dom-3) stays linear; complex nodes are compared with each other only.
pub(super) fn distinct<'a>(items: Coll<'a>) -> Coll<'a> {
    let mut seen: std::collections::HashSet<(u8, String)> = std::collections::HashSet::new();
    let mut objects: Vec<usize> = Vec::new();
    let mut out: Coll<'a> = Vec::with_capacity(items.len());
    for item in items {
        let key = match prv(&item) {
            Some(Prv::Bool(b)) => Some((0, b.to_string())),
            Some(Prv::Num(n)) => Some((1, n.to_string())),
            Some(Prv::Str(s)) => Some((2, s.to_owned())),
            // Dates of different precision may be unknown-equal: keep both, as `=` cannot decide.
            Some(Prv::Date(s)) => Some((3, s.to_owned())),
            Some(Prv::Time(s)) => Some((4, s.to_owned())),
            None => None,
        };
        match key {
            Some(key) => {
                if seen.insert(key) {
                    out.push(item);
                }
            }
            None => {
                if !objects
                    .iter()
                    .any(|&i| item_eq(&out[i], &item) == Some(true))
                {
                    objects.push(out.len());
                    out.push(item);
                }
            }
        }
    }
    out
}

pub(super) fn arithmetic<'a>(op: Op, a: &Item<'a>, b: &Item<'a>) -> Result<Item<'a>, EvalError> {
    if op == Op::Add
        && let (Some(Prv::Str(x)), Some(Prv::Str(y))) = (prv(a), prv(b))
    {
        return Ok(Item::Str(Cow::Owned(format!("{x}{y}"))));
    }
    if let (Item::Int(x), Item::Int(y)) = (a, b) {
        let value = match op {
            Op::Add => x.checked_add(*y),
            Op::Sub => x.checked_sub(*y),
            Op::Mul => x.checked_mul(*y),
            _ => None,
        };
        if let Some(v) = value {
            return Ok(Item::Int(v));
        }
    }
    match (prv(a), prv(b)) {
        (Some(Prv::Num(x)), Some(Prv::Num(y))) => Ok(Item::Num(match op {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            _ if y == 0.0 => return Err(EvalError),
            _ => x / y,
        })),
        _ => Err(EvalError),
    }
}
