//! One comma-separated search value, by parameter type: token, string, reference, date, number, quantity,
//! URI and composite, with the escapes (`\,` `\|` `\$` `\\`). Kept apart from the key parsing because it
//! is the part that reads the untrusted value text.

use super::{FilterValue, Modifier, Prefix, ReferenceValue, RowMatch, ValueMatch};
use crate::search::index::{
    COMPOSITE_SEPARATOR, is_valid_id, normalize_string, parse_date_range, parse_literal_reference,
};
use crate::search::params::{ParamType, SearchParam};
pub(super) fn parse_value(
    param: &SearchParam,
    modifier: Option<&Modifier>,
    piece: &str,
) -> Result<FilterValue, String> {
    match (param.kind, modifier) {
        (ParamType::Token, Some(Modifier::Text)) => parse_string_value(piece, false),
        (ParamType::Token, _) => parse_token(piece),
        (ParamType::String, Some(Modifier::Exact)) => parse_string_value(piece, true),
        (ParamType::String, _) => parse_string_value(piece, false),
        (ParamType::Reference, Some(Modifier::Identifier)) => match parse_token(piece)? {
            FilterValue::Token { code: None, .. } => Err(format!(
                "{piece:?}: :identifier needs system|value or value"
            )),
            token => Ok(token),
        },
        (ParamType::Reference, Some(Modifier::Type(resource_type))) => {
            parse_reference(param, Some(resource_type), piece)
        }
        (ParamType::Reference, _) => parse_reference(param, None, piece),
        (ParamType::Date, _) => parse_date_value(piece),
        (ParamType::Uri, _) => Ok(FilterValue::Uri(unescape(piece))),
        (ParamType::Number, _) => {
            let (prefix, lo, hi) = parse_number(&unescape(piece))?;
            Ok(FilterValue::Row(RowMatch {
                system: None,
                value: None,
                range: Some((prefix, lo, hi)),
            }))
        }
        (ParamType::Quantity, _) => {
            let (range, unit) = parse_quantity(piece)?;
            let (system, value) = quantity_unit_match(unit, String::new());
            Ok(FilterValue::Row(RowMatch {
                system,
                value: Some(value),
                range: Some(range),
            }))
        }
        (ParamType::Composite, _) => parse_composite(param, piece),
    }
}

/// A number with an optional prefix (search.html#number): the prefix and the `lo..=hi` range (scaled by
/// [`NUMBER_SCALE`]) the value stands for. `eq`/`ne` use the value's precision (`5.4` is 5.35…5.45), `ap`
/// ±10 % (as `eq` over the widened range); the other prefixes compare with the value as written.
fn parse_number(text: &str) -> Result<(Prefix, i64, i64), String> {
    let (prefix, number) = match text.get(..2) {
        Some(head) if head.bytes().all(|b| b.is_ascii_alphabetic()) => match Prefix::parse(head) {
            Some(prefix) => (prefix, &text[2..]),
            None => return Err(format!("unknown prefix {head:?}")),
        },
        _ => (Prefix::Eq, text),
    };
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok().filter(|e| e.abs() <= 300)),
        None => (number, Some(0)),
    };
    let digits_ok = is_decimal(mantissa);
    let (Some(exponent), true) = (exponent, digits_ok) else {
        return Err(format!("{number:?} is not a number"));
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    let decimals = mantissa
        .split_once('.')
        .map_or(0, |(_, d)| i32::try_from(d.len()).unwrap_or(40));
    let half = 0.5 * 10f64.powi(exponent.saturating_sub(decimals));
    let scale = crate::search::index::scale_number;
    Ok(match prefix {
        Prefix::Eq | Prefix::Ne => (prefix, scale(value - half), scale(value + half)),
        Prefix::Ap => {
            let margin = (value * 0.1).abs().max(half);
            (Prefix::Eq, scale(value - margin), scale(value + margin))
        }
        _ => (prefix, scale(value), scale(value)),
    })
}

/// `-?digits(.digits)?`, at most 40 characters (FHIR R4 decimal, without the exponent).
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (unsigned, None),
    };
    text.len() <= 40
        && !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// The unit part of a quantity search: `None` any unit, `(None, code)` a code or unit, `(Some(s), code)`.
type QuantityUnit = Option<(Option<String>, String)>;

/// `[prefix]number|system|code`, `[prefix]number||code` or `[prefix]number` (search.html#quantity).
fn parse_quantity(piece: &str) -> Result<((Prefix, i64, i64), QuantityUnit), String> {
    let parts = split_escaped(piece, '|');
    let (number, unit) = match parts.as_slice() {
        [number] => (number.clone(), None),
        [number, system, code] if !code.is_empty() => (
            number.clone(),
            Some(((!system.is_empty()).then(|| system.clone()), code.clone())),
        ),
        _ => {
            return Err(format!(
                "{piece:?} is not a quantity ([prefix]number, [prefix]number|system|code or [prefix]number||code)"
            ));
        }
    };
    Ok((parse_number(&number)?, unit))
}

/// The row condition for a quantity unit, its `value` after `prefix` (a composite's `code$`).
fn quantity_unit_match(unit: QuantityUnit, prefix: String) -> (Option<Option<String>>, ValueMatch) {
    match unit {
        None => (None, ValueMatch::Equals(prefix)),
        Some((None, code)) => (None, ValueMatch::Equals(prefix + &code)),
        Some((Some(system), code)) if prefix.is_empty() => {
            (Some(Some(system)), ValueMatch::Equals(code))
        }
        // In a composite the token part owns the row's system: the unit's system is in the value.
        Some((Some(system), code)) => {
            (None, ValueMatch::Equals(format!("{prefix}{system}|{code}")))
        }
    }
}

/// `token$value` for a composite (search.html#composite), as the index encodes it
/// ([`crate::search::index::COMPOSITE_SEPARATOR`]).
fn parse_composite(param: &SearchParam, piece: &str) -> Result<FilterValue, String> {
    let [_, second] = param.components.as_slice() else {
        return Err(format!("{} is not a two-part composite", param.code));
    };
    let parts = split_escaped(piece, '$');
    let [first_text, second_text] = parts.as_slice() else {
        return Err(format!("{piece:?} is not a composite value (token$value)"));
    };
    let FilterValue::Token {
        system,
        code: Some(code),
    } = parse_token(first_text)?
    else {
        return Err(format!("{first_text:?}: the first part needs a code"));
    };
    let head = format!("{code}{COMPOSITE_SEPARATOR}");
    let row = match second.kind {
        ParamType::Token => match parse_token(second_text)? {
            FilterValue::Token {
                system: Some(Some(s)),
                code: Some(c),
            } => RowMatch::value(system, ValueMatch::Equals(format!("{head}{s}|{c}"))),
            FilterValue::Token {
                system: Some(Some(s)),
                code: None,
            } => RowMatch::value(system, ValueMatch::StartsWith(format!("{head}{s}|"))),
            FilterValue::Token { code: Some(c), .. } => {
                RowMatch::value(system, ValueMatch::Equals(format!("{head}{c}")))
            }
            _ => return Err(format!("{second_text:?} is not a token")),
        },
        ParamType::String => {
            let text = normalize_string(&unescape(second_text));
            if text.is_empty() {
                return Err(format!("{second_text:?} is blank"));
            }
            RowMatch::value(system, ValueMatch::StartsWith(format!("{head}{text}")))
        }
        ParamType::Uri => RowMatch::value(
            system,
            ValueMatch::Equals(format!("{head}{}", unescape(second_text))),
        ),
        ParamType::Reference => match parse_literal_reference(&unescape(second_text)) {
            Some(r) => RowMatch::value(system, ValueMatch::Equals(format!("{head}{}", r.value))),
            None => return Err(format!("{second_text:?} is not a reference")),
        },
        ParamType::Date => {
            let FilterValue::Date { prefix, lo, hi } = parse_date_value(second_text)? else {
                return Err(format!("{second_text:?} is not a date"));
            };
            RowMatch {
                system,
                value: Some(ValueMatch::Equals(head)),
                range: Some((prefix, lo, hi)),
            }
        }
        ParamType::Number => RowMatch {
            system,
            value: Some(ValueMatch::Equals(head)),
            range: Some(parse_number(&unescape(second_text))?),
        },
        ParamType::Quantity => {
            let (range, unit) = parse_quantity(second_text)?;
            let (_, value) = quantity_unit_match(unit, head);
            RowMatch {
                system,
                value: Some(value),
                range: Some(range),
            }
        }
        ParamType::Composite => return Err("a composite inside a composite".into()),
    };
    Ok(FilterValue::Row(row))
}

fn parse_string_value(piece: &str, exact: bool) -> Result<FilterValue, String> {
    let text = unescape(piece);
    let text = if exact { text } else { normalize_string(&text) };
    if text.is_empty() {
        return Err(format!("{piece:?} is blank"));
    }
    Ok(FilterValue::String(text))
}

/// `code`, `system|code`, `|code` or `system|` (search.html#token).
fn parse_token(piece: &str) -> Result<FilterValue, String> {
    let parts = split_escaped(piece, '|');
    let non_empty = |text: &String| (!text.is_empty()).then(|| text.clone());
    match parts.as_slice() {
        [code] => Ok(FilterValue::Token {
            system: None,
            code: Some(code.clone()),
        }),
        [system, code] if !(system.is_empty() && code.is_empty()) => {
            // The index also holds national numbers in canonical form; search with that form when it parses.
            if let Ok(Some(id)) = crate::domain::from_fhir(system, code) {
                return Ok(FilterValue::Token {
                    system: Some(Some(id.canonical_system().to_owned())),
                    code: Some(id.canonical_value().to_owned()),
                });
            }
            Ok(FilterValue::Token {
                system: Some(non_empty(system)),
                code: non_empty(code),
            })
        }
        _ => Err(format!(
            "{piece:?} is not a token (code, system|code, |code or system|)"
        )),
    }
}

fn parse_reference(
    param: &SearchParam,
    type_modifier: Option<&str>,
    piece: &str,
) -> Result<FilterValue, String> {
    let text = unescape(piece);
    if is_valid_id(&text) {
        let value = match (type_modifier, param.targets.as_slice()) {
            (Some(resource_type), _) => ReferenceValue::Local {
                resource_type: resource_type.to_owned(),
                id: text,
            },
            (None, [only]) => ReferenceValue::Local {
                resource_type: only.clone(),
                id: text,
            },
            (None, targets) => ReferenceValue::AnyType {
                id: text,
                types: targets.to_vec(),
            },
        };
        return Ok(FilterValue::Reference(value));
    }
    let Some(literal) = parse_literal_reference(&text) else {
        return Err(format!("{text:?} is not a reference"));
    };
    let value = match literal.resource_type {
        Some(resource_type) => {
            if !param.accepts_target(&resource_type) {
                return Err(format!(
                    "{resource_type} is not a target type of {}",
                    param.code
                ));
            }
            if type_modifier.is_some_and(|m| m != resource_type) {
                return Err(format!(
                    "{text:?} does not match the :{} modifier",
                    type_modifier.unwrap_or_default()
                ));
            }
            let id = literal
                .value
                .split_once('/')
                .map(|(_, id)| id.to_owned())
                .unwrap_or_default();
            ReferenceValue::Local { resource_type, id }
        }
        None if type_modifier.is_some() => {
            return Err(format!(
                "{text:?} is not an id or Type/id, as a :Type modifier needs"
            ));
        }
        None => ReferenceValue::Literal(literal.value),
    };
    Ok(FilterValue::Reference(value))
}

pub(super) fn parse_date_value(piece: &str) -> Result<FilterValue, String> {
    let text = unescape(piece);
    let (prefix, date) = match text.get(..2) {
        Some(head) if head.bytes().all(|b| b.is_ascii_alphabetic()) => match Prefix::parse(head) {
            Some(prefix) => (prefix, &text[2..]),
            None => {
                return Err(format!(
                    "unknown date prefix {head:?} (eq, ne, gt, lt, ge, le, sa, eb, ap)"
                ));
            }
        },
        _ => (Prefix::Eq, text.as_str()),
    };
    let range = parse_date_range(date)
        .ok_or_else(|| format!("{date:?} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|±hh:mm])"))?;
    Ok(FilterValue::Date {
        prefix,
        lo: range.lo,
        hi: range.hi,
    })
}

/// Splits on `separator` where it is not escaped by `\`, then unescapes
/// nothing: pieces keep their escapes for the next split.
pub(super) fn split_escaped(text: &str, separator: char) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            if let Some(next) = chars.next() {
                current.push(next);
            }
        } else if c == separator {
            pieces.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    pieces.push(current);
    if separator == '|' {
        // Token pieces are final: unescape them here.
        return pieces.iter().map(|p| unescape(p)).collect();
    }
    pieces
}

/// Removes the search escapes `\,` `\|` `\$` `\\` (search.html#escaping).
pub(super) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ (',' | '|' | '$' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}
