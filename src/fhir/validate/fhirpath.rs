//! The FHIRPath subset navet evaluates: the language of the R4 invariants (FHIRPath N1, FHIR R4 4.0.1
//! fhirpath.html), over the client's JSON, typed by the structure table.
//!
//! Hand-written on purpose: the Rust FHIRPath crates (fhirpathrs 0.1, octofhir-fhirpath, haste-fhirpath,
//! helios-fhirpath, ferrobridge-fhirpath, tlq-fhirpath) are young, bring parser generators, decimal and date
//! stacks or their own resource models, and are heavy to build on two cores; the invariants of the base
//! definitions need only paths, a few dozen functions and the operators. What is not in the subset
//! (`resolve()`, `matches()`, `htmlChecks()`, `memberOf()`, date literals, ...) is refused when an expression
//! is compiled, so such an invariant is known not to be checked (listed by a unit test), never guessed.
//!
//! Semantics kept from FHIRPath: collections everywhere, empty propagation, three-valued logic for `and`,
//! `or`, `xor`, `implies`, `not()`; an invariant holds unless it evaluates to `false` (an empty result,
//! e.g. comparing dates of different precision, is not a failure). Nothing here panics on client data:
//! no slicing by client values, checked arithmetic, recursion bounded by the JSON depth serde allows.
//!
//! Split by responsibility: `parse` turns the text into an [`Expr`] (tokenizer and precedence parser),
//! `eval` evaluates an [`Expr`] on [`Env`] (operators and functions), and `items` holds the operations on
//! single items and collections that the evaluation builds on (equality, ordering, type tests, navigation,
//! arithmetic). This file keeps the syntax tree and the values both sides share.

mod eval;
mod items;
mod parse;

pub use parse::compile;

use std::borrow::Cow;

use serde_json::Value;

use crate::fhir::structure::{Prim, Structure, Ty, TypeIndex};
// ---------------------------------------------------------------------------------------------------------
// Syntax

#[derive(Debug, Clone)]
pub enum Expr {
    This,
    Str(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    Var(Var),
    /// `name` on the focus (`base` None) or on `base`.
    Member(Option<Box<Expr>>, String),
    Call(Option<Box<Expr>>, Func, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    Is(Box<Expr>, String),
    As(Box<Expr>, String),
    /// `ofType(T)`, `is(T)` and `as(T)` in function form.
    TypeFn(Option<Box<Expr>>, TypeFn, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Resource,
    RootResource,
    Context,
    Ucum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeFn {
    OfType,
    Is,
    As,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Mul,
    Div,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Empty,
    Exists,
    Not,
    Count,
    HasValue,
    All,
    Where,
    Select,
    First,
    Last,
    Tail,
    IsDistinct,
    Distinct,
    StartsWith,
    EndsWith,
    ContainsStr,
    Substring,
    Length,
    Trace,
    ToInteger,
    ToString,
    Iif,
    Descendants,
    Children,
    Combine,
    Intersect,
    Union,
}

impl Func {
    fn from_name(name: &str) -> Option<(Func, usize, usize)> {
        // (function, min args, max args)
        Some(match name {
            "empty" => (Func::Empty, 0, 0),
            "exists" => (Func::Exists, 0, 1),
            "not" => (Func::Not, 0, 0),
            "count" => (Func::Count, 0, 0),
            "hasValue" => (Func::HasValue, 0, 0),
            "all" => (Func::All, 1, 1),
            "where" => (Func::Where, 1, 1),
            "select" => (Func::Select, 1, 1),
            "first" => (Func::First, 0, 0),
            "last" => (Func::Last, 0, 0),
            "tail" => (Func::Tail, 0, 0),
            "isDistinct" => (Func::IsDistinct, 0, 0),
            "distinct" => (Func::Distinct, 0, 0),
            "startsWith" => (Func::StartsWith, 1, 1),
            "endsWith" => (Func::EndsWith, 1, 1),
            "contains" => (Func::ContainsStr, 1, 1),
            "substring" => (Func::Substring, 1, 2),
            "length" => (Func::Length, 0, 0),
            "trace" => (Func::Trace, 1, 2),
            "toInteger" => (Func::ToInteger, 0, 0),
            "toString" => (Func::ToString, 0, 0),
            "iif" => (Func::Iif, 2, 3),
            "descendants" => (Func::Descendants, 0, 0),
            "children" => (Func::Children, 0, 0),
            "combine" => (Func::Combine, 1, 1),
            "intersect" => (Func::Intersect, 1, 1),
            "union" => (Func::Union, 1, 1),
            _ => return None,
        })
    }
}

/// Why an expression is outside the subset (or malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

// ---------------------------------------------------------------------------------------------------------
// Evaluation

/// The type of a node, as the structure table knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeTy {
    Prim(Prim),
    Object(TypeIndex),
    Unknown,
}

/// One item of a collection: a node of the resource (with the `_name` sibling of a primitive) or a value
/// computed by the expression.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    Node { value: &'a Value, ty: NodeTy },
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(Cow<'a, str>),
}

/// The environment of one evaluation: `%resource`, `%rootResource`, `%context`.
pub struct Env<'a, 'e> {
    pub structure: &'a Structure,
    pub resource: &'e [Item<'a>],
    pub root: &'e [Item<'a>],
    pub context: &'e [Item<'a>],
}

/// An evaluation that hit a FHIRPath error (a singleton expected, a type mismatch): the invariant is
/// reported as not evaluable, not as broken.
#[derive(Debug)]
pub struct EvalError;

type Coll<'a> = Vec<Item<'a>>;
type Res<'a> = Result<Coll<'a>, EvalError>;

const UCUM: &str = "http://unitsofmeasure.org";

/// A node item for a JSON value of type `ty` (resources typed by their resourceType).
pub fn node<'a>(structure: &Structure, value: &'a Value, ty: Ty) -> Item<'a> {
    let ty = match ty {
        Ty::Primitive(p) => NodeTy::Prim(p),
        Ty::Complex(i) => NodeTy::Object(i),
        Ty::Resource(_) => structure
            .resource_type_of(value)
            .map_or(NodeTy::Unknown, NodeTy::Object),
    };
    Item::Node { value, ty }
}

#[cfg(test)]
mod tests;
