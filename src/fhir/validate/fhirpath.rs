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

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Var(String),
    This,
    Sym(&'static str),
}

/// Why an expression is outside the subset (or malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

fn unsupported(message: impl Into<String>) -> Unsupported {
    Unsupported(message.into())
}

const SYMBOLS: [&str; 19] = [
    "<=", ">=", "!=", "!~", "(", ")", "[", "]", ",", ".", "=", "~", "<", ">", "|", "+", "-", "*",
    "/",
];

fn tokenize(text: &str) -> Result<Vec<Token>, Unsupported> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            break;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == '`')
                .ok_or_else(|| unsupported("unterminated `identifier`"))?;
            tokens.push(Token::Ident(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
            continue;
        }
        if c == '\'' {
            let mut out = String::new();
            i += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err(unsupported("unterminated string"));
                };
                i += 1;
                match c {
                    '\'' => break,
                    '\\' => {
                        let escaped = chars.get(i).copied().unwrap_or('\\');
                        i += 1;
                        out.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            'f' => '\u{c}',
                            other => other,
                        });
                    }
                    other => out.push(other),
                }
            }
            tokens.push(Token::Str(out));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            tokens.push(Token::Num(chars[start..i].iter().collect()));
            continue;
        }
        if c == '%' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Var(chars[start..i].iter().collect()));
            continue;
        }
        if c == '$' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name != "this" {
                return Err(unsupported(format!("${name}")));
            }
            tokens.push(Token::This);
            continue;
        }
        if c == '&' {
            tokens.push(Token::Sym("&"));
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let Some(sym) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) else {
            return Err(unsupported(format!("character '{c}'")));
        };
        tokens.push(Token::Sym(sym));
        i += sym.chars().count();
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

/// Binding powers, FHIRPath N1 §"Operator precedence" (higher binds tighter).
fn infix(token: &Token) -> Option<(u8, Infix)> {
    Some(match token {
        Token::Sym("*") => (9, Infix::Op(Op::Mul)),
        Token::Sym("/") => (9, Infix::Op(Op::Div)),
        Token::Sym("+") => (8, Infix::Op(Op::Add)),
        Token::Sym("-") => (8, Infix::Op(Op::Sub)),
        Token::Sym("&") => (8, Infix::Op(Op::Concat)),
        Token::Ident(k) if k == "is" => (7, Infix::Is),
        Token::Ident(k) if k == "as" => (7, Infix::As),
        Token::Sym("|") => (6, Infix::Op(Op::Union)),
        Token::Sym("<") => (5, Infix::Op(Op::Lt)),
        Token::Sym(">") => (5, Infix::Op(Op::Gt)),
        Token::Sym("<=") => (5, Infix::Op(Op::Le)),
        Token::Sym(">=") => (5, Infix::Op(Op::Ge)),
        Token::Sym("=") => (4, Infix::Op(Op::Eq)),
        Token::Sym("!=") => (4, Infix::Op(Op::Ne)),
        Token::Ident(k) if k == "in" => (3, Infix::Op(Op::In)),
        Token::Ident(k) if k == "contains" => (3, Infix::Op(Op::Contains)),
        Token::Ident(k) if k == "and" => (2, Infix::Op(Op::And)),
        Token::Ident(k) if k == "or" => (1, Infix::Op(Op::Or)),
        Token::Ident(k) if k == "xor" => (1, Infix::Op(Op::Xor)),
        Token::Ident(k) if k == "implies" => (0, Infix::Op(Op::Implies)),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Infix {
    Op(Op),
    Is,
    As,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), Unsupported> {
        match self.next() {
            Some(Token::Sym(s)) if s == sym => Ok(()),
            other => Err(unsupported(format!("expected '{sym}', found {other:?}"))),
        }
    }

    fn expr(&mut self, min: u8) -> Result<Expr, Unsupported> {
        let mut left = self.unary()?;
        while let Some((power, op)) = self.peek().and_then(infix) {
            if power < min {
                break;
            }
            self.at += 1;
            left = match op {
                Infix::Op(op) => {
                    let right = self.expr(power + 1)?;
                    Expr::Binary(op, Box::new(left), Box::new(right))
                }
                Infix::Is => Expr::Is(Box::new(left), self.type_name()?),
                Infix::As => Expr::As(Box::new(left), self.type_name()?),
            };
        }
        Ok(left)
    }

    fn type_name(&mut self) -> Result<String, Unsupported> {
        let mut name = match self.next() {
            Some(Token::Ident(name)) => name,
            other => return Err(unsupported(format!("expected a type, found {other:?}"))),
        };
        // FHIR.Patient, System.Boolean
        if matches!(self.peek(), Some(Token::Sym("."))) && (name == "FHIR" || name == "System") {
            self.at += 1;
            name = match self.next() {
                Some(Token::Ident(n)) => n,
                other => return Err(unsupported(format!("expected a type, found {other:?}"))),
            };
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Expr, Unsupported> {
        if matches!(self.peek(), Some(Token::Sym("-"))) {
            self.at += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        let mut base = self.term()?;
        loop {
            match self.peek() {
                Some(Token::Sym(".")) => {
                    self.at += 1;
                    let name = match self.next() {
                        Some(Token::Ident(name)) => name,
                        other => return Err(unsupported(format!("after '.': {other:?}"))),
                    };
                    base = self.invocation(Some(base), name)?;
                }
                Some(Token::Sym("[")) => {
                    self.at += 1;
                    let index = self.expr(0)?;
                    self.expect("]")?;
                    base = Expr::Index(Box::new(base), Box::new(index));
                }
                _ => return Ok(base),
            }
        }
    }

    fn invocation(&mut self, base: Option<Expr>, name: String) -> Result<Expr, Unsupported> {
        if !matches!(self.peek(), Some(Token::Sym("("))) {
            return Ok(Expr::Member(base.map(Box::new), name));
        }
        self.at += 1;
        let mut args = Vec::new();
        if !matches!(self.peek(), Some(Token::Sym(")"))) {
            loop {
                args.push(self.expr(0)?);
                match self.next() {
                    Some(Token::Sym(",")) => continue,
                    Some(Token::Sym(")")) => break,
                    other => return Err(unsupported(format!("in arguments: {other:?}"))),
                }
            }
        } else {
            self.at += 1;
        }
        let base = base.map(Box::new);
        let type_fn = match name.as_str() {
            "ofType" => Some(TypeFn::OfType),
            "is" => Some(TypeFn::Is),
            "as" => Some(TypeFn::As),
            _ => None,
        };
        if let Some(type_fn) = type_fn {
            return match args.as_slice() {
                [Expr::Member(None, t)] => Ok(Expr::TypeFn(base, type_fn, t.clone())),
                _ => Err(unsupported(format!("{name}() needs a type name"))),
            };
        }
        let (func, min, max) =
            Func::from_name(&name).ok_or_else(|| unsupported(format!("function {name}()")))?;
        if args.len() < min || args.len() > max {
            return Err(unsupported(format!(
                "{name}() with {} arguments",
                args.len()
            )));
        }
        Ok(Expr::Call(base, func, args))
    }

    fn term(&mut self) -> Result<Expr, Unsupported> {
        match self.next() {
            Some(Token::Sym("(")) => {
                let inner = self.expr(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Some(Token::Str(s)) => Ok(Expr::Str(s)),
            Some(Token::Num(n)) => match n.parse::<i64>() {
                Ok(i) => Ok(Expr::Int(i)),
                Err(_) => n
                    .parse::<f64>()
                    .map(Expr::Num)
                    .map_err(|_| unsupported(format!("number {n}"))),
            },
            Some(Token::This) => Ok(Expr::This),
            Some(Token::Var(v)) => Ok(Expr::Var(match v.as_str() {
                "resource" => Var::Resource,
                "rootResource" => Var::RootResource,
                "context" => Var::Context,
                "ucum" => Var::Ucum,
                other => return Err(unsupported(format!("%{other}"))),
            })),
            Some(Token::Ident(name)) if name == "true" => Ok(Expr::Bool(true)),
            Some(Token::Ident(name)) if name == "false" => Ok(Expr::Bool(false)),
            Some(Token::Ident(name)) => self.invocation(None, name),
            other => Err(unsupported(format!("unexpected {other:?}"))),
        }
    }
}

/// Compiles an expression of the subset, or says why it is outside it.
pub fn compile(text: &str) -> Result<Expr, Unsupported> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
    };
    let expr = parser.expr(0)?;
    if parser.at < parser.tokens.len() {
        return Err(unsupported(format!(
            "unexpected {:?}",
            parser.tokens[parser.at]
        )));
    }
    Ok(expr)
}

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

/// The primitive view of an item, for comparisons and string functions.
#[derive(Debug, Clone, PartialEq)]
enum Prv<'a> {
    Bool(bool),
    Num(f64),
    Str(&'a str),
    /// date, dateTime, instant (kept as text; compared by [`compare_dates`]).
    Date(&'a str),
    Time(&'a str),
}

fn prv<'x>(item: &'x Item<'_>) -> Option<Prv<'x>> {
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

fn string_of<'x>(item: &'x Item<'_>) -> Option<&'x str> {
    match prv(item)? {
        Prv::Str(s) | Prv::Date(s) | Prv::Time(s) => Some(s),
        _ => None,
    }
}

/// Singleton evaluation of collections as a boolean (FHIRPath N1 §4.5): empty is unknown, one boolean is
/// itself, any other single item is true; more than one item is an error.
fn to_bool(c: &[Item<'_>]) -> Result<Option<bool>, EvalError> {
    match c {
        [] => Ok(None),
        [item] => Ok(Some(match prv(item) {
            Some(Prv::Bool(b)) => b,
            _ => true,
        })),
        _ => Err(EvalError),
    }
}

fn boolean<'a>(b: Option<bool>) -> Coll<'a> {
    b.map(Item::Bool).into_iter().collect()
}

/// FHIRPath equality of two items (None: unknown, e.g. dates of different precision).
fn item_eq(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
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

fn coll_eq(a: &[Item<'_>], b: &[Item<'_>]) -> Option<bool> {
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
fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<std::cmp::Ordering>, EvalError> {
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
fn is_type(structure: &Structure, item: &Item<'_>, name: &str) -> bool {
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
fn children_named<'a>(structure: &Structure, item: &Item<'a>, name: &str, out: &mut Coll<'a>) {
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
fn all_children<'a>(structure: &Structure, item: &Item<'a>, out: &mut Coll<'a>) {
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
fn distinct<'a>(items: Coll<'a>) -> Coll<'a> {
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

impl<'a> Env<'a, '_> {
    /// Evaluates `expr` with `focus` as the input collection.
    pub fn eval(&self, expr: &Expr, focus: &[Item<'a>]) -> Res<'a> {
        Ok(match expr {
            Expr::This => focus.to_vec(),
            Expr::Str(s) => vec![Item::Str(Cow::Owned(s.clone()))],
            Expr::Num(n) => vec![Item::Num(*n)],
            Expr::Int(i) => vec![Item::Int(*i)],
            Expr::Bool(b) => vec![Item::Bool(*b)],
            Expr::Var(Var::Resource) => self.resource.to_vec(),
            Expr::Var(Var::RootResource) => self.root.to_vec(),
            Expr::Var(Var::Context) => self.context.to_vec(),
            Expr::Var(Var::Ucum) => vec![Item::Str(Cow::Borrowed(UCUM))],
            Expr::Member(base, name) => {
                let input = match base {
                    Some(base) => self.eval(base, focus)?,
                    None => {
                        // `Appointment.status` on an Appointment: a leading type name is the focus itself.
                        if name.starts_with(|c: char| c.is_ascii_uppercase())
                            && focus.iter().all(|i| is_type(self.structure, i, name))
                            && !focus.is_empty()
                        {
                            return Ok(focus.to_vec());
                        }
                        focus.to_vec()
                    }
                };
                let mut out = Vec::new();
                for item in &input {
                    children_named(self.structure, item, name, &mut out);
                }
                out
            }
            Expr::Index(base, index) => {
                let input = self.eval(base, focus)?;
                let index = self.eval(index, focus)?;
                match index.as_slice() {
                    [Item::Int(i)] => usize::try_from(*i)
                        .ok()
                        .and_then(|i| input.into_iter().nth(i))
                        .into_iter()
                        .collect(),
                    _ => return Err(EvalError),
                }
            }
            Expr::Neg(inner) => match self.eval(inner, focus)?.as_slice() {
                [] => Vec::new(),
                [Item::Int(i)] => vec![Item::Int(i.checked_neg().ok_or(EvalError)?)],
                [item] => match prv(item) {
                    Some(Prv::Num(n)) => vec![Item::Num(-n)],
                    _ => return Err(EvalError),
                },
                _ => return Err(EvalError),
            },
            Expr::Is(base, name) => {
                let input = self.eval(base, focus)?;
                match input.as_slice() {
                    [] => Vec::new(),
                    [item] => vec![Item::Bool(is_type(self.structure, item, name))],
                    _ => return Err(EvalError),
                }
            }
            Expr::As(base, name) => self
                .eval(base, focus)?
                .into_iter()
                .filter(|i| is_type(self.structure, i, name))
                .collect(),
            Expr::TypeFn(base, kind, name) => {
                let input = match base {
                    Some(base) => self.eval(base, focus)?,
                    None => focus.to_vec(),
                };
                match kind {
                    TypeFn::OfType | TypeFn::As => input
                        .into_iter()
                        .filter(|i| is_type(self.structure, i, name))
                        .collect(),
                    TypeFn::Is => match input.as_slice() {
                        [] => Vec::new(),
                        [item] => vec![Item::Bool(is_type(self.structure, item, name))],
                        _ => return Err(EvalError),
                    },
                }
            }
            Expr::Binary(op, left, right) => self.binary(*op, left, right, focus)?,
            Expr::Call(base, func, args) => {
                let input = match base {
                    Some(base) => self.eval(base, focus)?,
                    None => focus.to_vec(),
                };
                self.call(*func, input, args, focus)?
            }
        })
    }

    fn binary(&self, op: Op, left: &Expr, right: &Expr, focus: &[Item<'a>]) -> Res<'a> {
        let l = self.eval(left, focus)?;
        // Short-circuits keep three-valued logic (FHIRPath N1 §6.5).
        match op {
            Op::And => {
                let a = to_bool(&l)?;
                if a == Some(false) {
                    return Ok(boolean(Some(false)));
                }
                let b = to_bool(&self.eval(right, focus)?)?;
                return Ok(boolean(match (a, b) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                }));
            }
            Op::Or => {
                let a = to_bool(&l)?;
                if a == Some(true) {
                    return Ok(boolean(Some(true)));
                }
                let b = to_bool(&self.eval(right, focus)?)?;
                return Ok(boolean(match (a, b) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }));
            }
            Op::Implies => {
                let a = to_bool(&l)?;
                if a == Some(false) {
                    return Ok(boolean(Some(true)));
                }
                let b = to_bool(&self.eval(right, focus)?)?;
                return Ok(boolean(match (a, b) {
                    (_, Some(true)) => Some(true),
                    (Some(true), Some(false)) => Some(false),
                    _ => None,
                }));
            }
            _ => {}
        }
        let r = self.eval(right, focus)?;
        Ok(match op {
            Op::Xor => boolean(match (to_bool(&l)?, to_bool(&r)?) {
                (Some(a), Some(b)) => Some(a != b),
                _ => None,
            }),
            Op::Eq => boolean(coll_eq(&l, &r)),
            Op::Ne => boolean(coll_eq(&l, &r).map(|b| !b)),
            Op::Lt | Op::Gt | Op::Le | Op::Ge => match (l.as_slice(), r.as_slice()) {
                ([], _) | (_, []) => Vec::new(),
                ([a], [b]) => boolean(compare(a, b)?.map(|o| match op {
                    Op::Lt => o.is_lt(),
                    Op::Gt => o.is_gt(),
                    Op::Le => o.is_le(),
                    _ => o.is_ge(),
                })),
                _ => return Err(EvalError),
            },
            Op::Union => {
                let mut all = l;
                all.extend(r);
                distinct(all)
            }
            Op::In | Op::Contains => {
                let (needle, haystack) = if op == Op::In { (l, r) } else { (r, l) };
                match needle.as_slice() {
                    [] => Vec::new(),
                    [item] => vec![Item::Bool(
                        haystack.iter().any(|h| item_eq(item, h) == Some(true)),
                    )],
                    _ => return Err(EvalError),
                }
            }
            Op::Concat => {
                let text = |c: &[Item<'_>]| -> Result<String, EvalError> {
                    match c {
                        [] => Ok(String::new()),
                        [item] => Ok(string_of(item).ok_or(EvalError)?.to_owned()),
                        _ => Err(EvalError),
                    }
                };
                vec![Item::Str(Cow::Owned(text(&l)? + &text(&r)?))]
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div => match (l.as_slice(), r.as_slice()) {
                ([], _) | (_, []) => Vec::new(),
                ([a], [b]) => vec![arithmetic(op, a, b)?],
                _ => return Err(EvalError),
            },
            Op::And | Op::Or | Op::Implies => Vec::new(),
        })
    }

    fn call(&self, func: Func, input: Coll<'a>, args: &[Expr], focus: &[Item<'a>]) -> Res<'a> {
        let arg = |i: usize| -> Res<'a> {
            match args.get(i) {
                Some(e) => self.eval(e, focus),
                None => Ok(Vec::new()),
            }
        };
        let single_string = |c: &Coll<'a>| -> Result<Option<String>, EvalError> {
            match c.as_slice() {
                [] => Ok(None),
                [item] => Ok(string_of(item).map(str::to_owned)),
                _ => Err(EvalError),
            }
        };
        Ok(match func {
            Func::Empty => vec![Item::Bool(input.is_empty())],
            Func::Exists => match args.first() {
                None => vec![Item::Bool(!input.is_empty())],
                Some(criteria) => {
                    let mut any = false;
                    for item in &input {
                        if to_bool(&self.eval(criteria, std::slice::from_ref(item))?)? == Some(true)
                        {
                            any = true;
                            break;
                        }
                    }
                    vec![Item::Bool(any)]
                }
            },
            Func::Not => boolean(to_bool(&input)?.map(|b| !b)),
            Func::Count => vec![Item::Int(input.len() as i64)],
            Func::HasValue => vec![Item::Bool(match input.as_slice() {
                [Item::Node { value, .. }] => {
                    !value.is_null() && !value.is_object() && !value.is_array()
                }
                [_] => true,
                _ => false,
            })],
            Func::All => {
                let criteria = &args[0];
                let mut all = true;
                for item in &input {
                    if to_bool(&self.eval(criteria, std::slice::from_ref(item))?)? != Some(true) {
                        all = false;
                        break;
                    }
                }
                vec![Item::Bool(all)]
            }
            Func::Where => {
                let criteria = &args[0];
                let mut out = Vec::new();
                for item in input {
                    if to_bool(&self.eval(criteria, std::slice::from_ref(&item))?)? == Some(true) {
                        out.push(item);
                    }
                }
                out
            }
            Func::Select => {
                let mut out = Vec::new();
                for item in &input {
                    out.extend(self.eval(&args[0], std::slice::from_ref(item))?);
                }
                out
            }
            Func::First => input.into_iter().take(1).collect(),
            Func::Last => input.into_iter().last().into_iter().collect(),
            Func::Tail => input.into_iter().skip(1).collect(),
            Func::IsDistinct => {
                let n = input.len();
                vec![Item::Bool(distinct(input).len() == n)]
            }
            Func::Distinct => distinct(input),
            Func::StartsWith | Func::EndsWith | Func::ContainsStr => {
                let Some(text) = single_string(&input)? else {
                    return Ok(Vec::new());
                };
                let Some(part) = single_string(&arg(0)?)? else {
                    return Ok(Vec::new());
                };
                vec![Item::Bool(match func {
                    Func::StartsWith => text.starts_with(&part),
                    Func::EndsWith => text.ends_with(&part),
                    _ => text.contains(&part),
                })]
            }
            Func::Substring => {
                let Some(text) = single_string(&input)? else {
                    return Ok(Vec::new());
                };
                let int = |c: Coll<'a>| -> Result<Option<usize>, EvalError> {
                    match c.as_slice() {
                        [] => Ok(None),
                        [Item::Int(i)] => Ok(usize::try_from(*i).ok()),
                        _ => Err(EvalError),
                    }
                };
                let Some(start) = int(arg(0)?)? else {
                    return Ok(Vec::new());
                };
                let length = if args.len() > 1 { int(arg(1)?)? } else { None };
                if start >= text.chars().count() {
                    return Ok(Vec::new());
                }
                let part: String = text
                    .chars()
                    .skip(start)
                    .take(length.unwrap_or(usize::MAX))
                    .collect();
                vec![Item::Str(Cow::Owned(part))]
            }
            Func::Length => match single_string(&input)? {
                Some(text) => vec![Item::Int(text.chars().count() as i64)],
                None => Vec::new(),
            },
            Func::Trace => input,
            Func::ToInteger => match input.as_slice() {
                [] => Vec::new(),
                [item] => match prv(item) {
                    Some(Prv::Num(n)) if n.fract() == 0.0 => vec![Item::Int(n as i64)],
                    Some(Prv::Str(s)) => s
                        .parse::<i32>()
                        .map(|i| vec![Item::Int(i64::from(i))])
                        .unwrap_or_default(),
                    Some(Prv::Bool(b)) => vec![Item::Int(i64::from(b))],
                    _ => Vec::new(),
                },
                _ => return Err(EvalError),
            },
            Func::ToString => match input.as_slice() {
                [] => Vec::new(),
                [
                    Item::Node {
                        value: Value::Number(n),
                        ..
                    },
                ] => vec![Item::Str(Cow::Owned(n.to_string()))],
                [item] => match prv(item) {
                    Some(Prv::Bool(b)) => vec![Item::Str(Cow::Owned(b.to_string()))],
                    Some(Prv::Num(n)) => vec![Item::Str(Cow::Owned(n.to_string()))],
                    Some(Prv::Str(s) | Prv::Date(s) | Prv::Time(s)) => {
                        vec![Item::Str(Cow::Owned(s.to_owned()))]
                    }
                    None => Vec::new(),
                },
                _ => return Err(EvalError),
            },
            Func::Iif => {
                let condition = to_bool(&self.eval(&args[0], &input)?)?;
                if condition == Some(true) {
                    self.eval(&args[1], &input)?
                } else if args.len() > 2 {
                    self.eval(&args[2], &input)?
                } else {
                    Vec::new()
                }
            }
            Func::Children => {
                let mut out = Vec::new();
                for item in &input {
                    all_children(self.structure, item, &mut out);
                }
                out
            }
            Func::Descendants => {
                let mut out = Vec::new();
                let mut frontier = input;
                while !frontier.is_empty() {
                    let mut next = Vec::new();
                    for item in &frontier {
                        all_children(self.structure, item, &mut next);
                    }
                    out.extend(next.iter().cloned());
                    frontier = next;
                }
                out
            }
            Func::Combine => {
                let mut all = input;
                all.extend(arg(0)?);
                all
            }
            Func::Union => {
                let mut all = input;
                all.extend(arg(0)?);
                distinct(all)
            }
            Func::Intersect => {
                let other = arg(0)?;
                distinct(
                    input
                        .into_iter()
                        .filter(|i| other.iter().any(|o| item_eq(i, o) == Some(true)))
                        .collect(),
                )
            }
        })
    }
}

fn arithmetic<'a>(op: Op, a: &Item<'a>, b: &Item<'a>) -> Result<Item<'a>, EvalError> {
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

#[cfg(test)]
mod tests;
