//! [`Env::eval`]: the evaluation of an [`Expr`] on a collection: paths, operators (`binary`) and the
//! functions of the subset (`call`), on top of the item operations in [`super::items`].

use std::borrow::Cow;

use serde_json::Value;

use super::items::{
    Prv, all_children, arithmetic, boolean, children_named, coll_eq, compare, distinct, is_type,
    item_eq, prv, string_of, to_bool,
};
use super::{Coll, Env, EvalError, Expr, Func, Item, Op, Res, TypeFn, UCUM, Var};
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
