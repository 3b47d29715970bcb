//! The `WHERE` conditions for a query's filters (index lookups, chains, `_has`, `_id`, `_lastUpdated`,
//! `:missing`, `:not`), its compartment and page position, and the `ORDER BY` for `_sort`: the translation
//! of the index's row encoding into SQL, apart from the statements that run it.

use crate::store::arg::Arg as Sql;

use super::{Actor, SqlPart, placeholders, visibility_sql};
use crate::search::params::ParamType;
use crate::search::query::{
    Filter, FilterValue, Link, Modifier, ReferenceValue, RowMatch, SearchQuery, ValueMatch,
    date_condition,
};

/// Past every other character: `value >= s AND value < s || MAX_CHAR` is "starts with s", index-friendly.
const MAX_CHAR: char = '\u{10FFFF}';

/// `WHERE` conditions (after `c.type = ? AND c.deleted = 0` and the visibility rule) for the query's
/// filters, its compartment and its page position.
pub(crate) fn filters_sql(actor: &Actor, ty: &str, query: &SearchQuery) -> SqlPart {
    let mut text = String::new();
    let mut args: Vec<Sql> = Vec::new();
    for f in &query.filters {
        text.push_str(" AND ");
        filter_sql(actor, ty, f, &mut text, &mut args);
    }
    if let Some(patient) = &query.compartment {
        // The patient links are the Patient compartment (FHIR R4 4.0.1 CompartmentDefinition `patient`,
        // fhir/participants.rs); a Patient is in its own compartment.
        if ty == "Patient" {
            text.push_str(
                " AND (c.id = ? OR c.id IN \
                 (SELECT pl.id FROM patient_links pl WHERE pl.patient = ? AND pl.type = 'Patient'))",
            );
            args.push(Sql::Text(
                patient
                    .strip_prefix("Patient/")
                    .unwrap_or(patient)
                    .to_owned(),
            ));
        } else {
            text.push_str(
                " AND c.id IN (SELECT pl.id FROM patient_links pl WHERE pl.patient = ? AND pl.type = ?)",
            );
        }
        args.push(Sql::Text(patient.clone()));
        if ty != "Patient" {
            args.push(Sql::Text(ty.to_owned()));
        }
    }
    if let Some(snapshot) = query.snapshot_ms {
        text.push_str(" AND c.lu_ms <= ?");
        args.push(Sql::Integer(snapshot));
    }
    SqlPart { text, args }
}

/// One filter as a condition on `c` (a resources_current row of type `ty`).
fn filter_sql(actor: &Actor, ty: &str, f: &Filter, text: &mut String, args: &mut Vec<Sql>) {
    match (&f.link, f.param.as_str()) {
        (Some(link), _) => link_sql(actor, ty, f, link, text, args),
        (None, "_id") => id_filter(f, text, args),
        (None, "_lastUpdated") => last_updated_filter(f, text, args),
        (None, _) => index_filter(ty, f, text, args),
    }
}

/// A chain or `_has` (search.html#chaining, #has): a subquery over the other resources, which re-binds `c`
/// to them so the caller's visibility rule applies there too. A chain through a resource the caller may not
/// see matches nothing, exactly as if that resource did not exist.
fn link_sql(
    actor: &Actor,
    ty: &str,
    f: &Filter,
    link: &Link,
    text: &mut String,
    args: &mut Vec<Sql>,
) {
    match link {
        Link::Chain(targets) => {
            text.push_str(
                "c.id IN (SELECT s.id FROM search_index s WHERE s.type = ? AND s.param = ? AND s.value IN (",
            );
            args.push(Sql::Text(ty.to_owned()));
            args.push(Sql::Text(f.param.clone()));
            for (i, (target, inner)) in targets.iter().enumerate() {
                if i > 0 {
                    text.push_str(" UNION ALL ");
                }
                text.push_str(
                    "SELECT c.type || '/' || c.id FROM resources_current c WHERE c.type = ? AND c.deleted = 0",
                );
                args.push(Sql::Text(target.clone()));
                text.push_str(&visibility_sql(actor, args));
                text.push_str(" AND ");
                filter_sql(actor, target, inner, text, args);
            }
            text.push_str("))");
        }
        Link::Has {
            source_type,
            param,
            inner,
        } => {
            text.push_str(
                "EXISTS (SELECT 1 FROM search_index s WHERE s.type = ? AND s.param = ? \
                 AND s.value = c.type || '/' || c.id AND s.id IN \
                 (SELECT c.id FROM resources_current c WHERE c.type = ? AND c.deleted = 0",
            );
            args.push(Sql::Text(source_type.clone()));
            args.push(Sql::Text(param.clone()));
            args.push(Sql::Text(source_type.clone()));
            text.push_str(&visibility_sql(actor, args));
            text.push_str(" AND ");
            filter_sql(actor, source_type, inner, text, args);
            text.push_str("))");
        }
    }
}

fn id_filter(f: &Filter, text: &mut String, args: &mut Vec<Sql>) {
    let ids: Vec<&String> = f
        .values
        .iter()
        .filter_map(|v| match v {
            FilterValue::Token {
                code: Some(code), ..
            } => Some(code),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        text.push_str("0 = 1");
        return;
    }
    let not = if f.modifier == Some(Modifier::Not) {
        "NOT "
    } else {
        ""
    };
    text.push_str(&format!("c.id {not}IN ({})", placeholders(ids.len())));
    args.extend(ids.into_iter().map(|i| Sql::Text(i.clone())));
}

fn last_updated_filter(f: &Filter, text: &mut String, args: &mut Vec<Sql>) {
    let mut parts = Vec::new();
    for v in &f.values {
        if let FilterValue::Date { prefix, lo, hi } = v {
            let (sql, binds) = date_condition(*prefix, *lo, *hi).to_sql("c.lu_ms", "c.lu_ms");
            parts.push(sql);
            args.extend(binds.into_iter().map(Sql::Integer));
        }
    }
    if parts.is_empty() {
        text.push_str("0 = 1");
    } else {
        text.push_str(&format!("({})", parts.join(" OR ")));
    }
}

fn index_filter(ty: &str, f: &Filter, text: &mut String, args: &mut Vec<Sql>) {
    if f.modifier == Some(Modifier::Missing) {
        // `:missing=true` and `:missing=false` both given match everything; one of them selects.
        let wants: Vec<bool> = f
            .values
            .iter()
            .filter_map(|v| match v {
                FilterValue::Missing(m) => Some(*m),
                _ => None,
            })
            .collect();
        if wants.contains(&true) && wants.contains(&false) {
            text.push_str("1 = 1");
            return;
        }
        let presence = f.presence_params();
        let not = if wants.first() == Some(&true) {
            "NOT "
        } else {
            ""
        };
        text.push_str(&format!(
            "c.id {not}IN (SELECT s.id FROM search_index s WHERE s.type = ? AND s.param IN ({}))",
            placeholders(presence.len())
        ));
        args.push(Sql::Text(ty.to_owned()));
        args.extend(presence.into_iter().map(Sql::Text));
        return;
    }
    let not = if f.modifier == Some(Modifier::Not) {
        "NOT "
    } else {
        ""
    };
    if is_range_filter(f) {
        // A range matches many rows of the type (every dated Observation): looked up per candidate through
        // (type, id) instead of collecting them all, so a selective filter beside it drives the query.
        text.push_str(&format!(
            "{not}EXISTS (SELECT 1 FROM search_index s WHERE s.type = c.type AND s.id = c.id AND s.param = ? AND ("
        ));
    } else {
        text.push_str(&format!(
            "c.id {not}IN (SELECT s.id FROM search_index s WHERE s.type = ? AND s.param = ? AND ("
        ));
        args.push(Sql::Text(ty.to_owned()));
    }
    args.push(Sql::Text(f.index_param()));
    let mut ors = Vec::new();
    for v in &f.values {
        ors.push(value_sql(f, v, args));
    }
    if ors.is_empty() {
        ors.push("0 = 1".into());
    }
    text.push_str(&ors.join(" OR "));
    text.push_str("))");
}

/// Date, number, quantity and composite filters: conditions on ranges, not on one indexed value.
fn is_range_filter(f: &Filter) -> bool {
    matches!(
        f.kind,
        ParamType::Date | ParamType::Number | ParamType::Quantity | ParamType::Composite
    )
}

/// Whether a filter names the resources it matches through an index lookup of its values (a token,
/// reference, uri or string value, `_id`, a chain): such a filter should drive the query rather than the
/// order-by index (see [`order_sql`]).
fn is_lookup_filter(f: &Filter) -> bool {
    if f.param == "_id" {
        return f.modifier != Some(Modifier::Not);
    }
    if f.param == "_lastUpdated" || f.param == "_has" {
        return false;
    }
    if f.link.is_some() {
        return true;
    }
    !is_range_filter(f) && !matches!(f.modifier, Some(Modifier::Not | Modifier::Missing))
}

fn value_sql(f: &Filter, v: &FilterValue, args: &mut Vec<Sql>) -> String {
    match v {
        FilterValue::Token { system, code } => {
            let mut parts = Vec::new();
            match system {
                None => {}
                Some(None) => parts.push("s.system IS NULL".to_owned()),
                Some(Some(sys)) => {
                    parts.push("s.system = ?".to_owned());
                    args.push(Sql::Text(sys.clone()));
                }
            }
            if let Some(code) = code {
                parts.push("s.value = ?".to_owned());
                args.push(Sql::Text(code.clone()));
            }
            if parts.is_empty() {
                "1 = 1".into()
            } else {
                format!("({})", parts.join(" AND "))
            }
        }
        FilterValue::String(s) => match (f.kind, &f.modifier) {
            (_, Some(Modifier::Exact)) => {
                args.push(Sql::Text(s.clone()));
                "s.value = ?".into()
            }
            (_, Some(Modifier::Contains)) => {
                args.push(Sql::Text(s.clone()));
                "instr(s.value, ?) > 0".into()
            }
            _ => starts_with(s, args),
        },
        FilterValue::Reference(r) => match r {
            ReferenceValue::AnyType { id, types } if types.is_empty() => {
                // "Ends with /id": the value's last n characters, from position length - n + 1 (1-based),
                // are the suffix. Both backends count characters; a start below 1 (a value shorter than the
                // suffix) gives no match on either. (A negative start means "from the end" on SQLite only.)
                let suffix = format!("/{id}");
                args.push(Sql::Integer(
                    i64::try_from(suffix.chars().count()).unwrap_or(i64::MAX),
                ));
                args.push(Sql::Text(suffix));
                args.push(Sql::Text(id.clone()));
                "(substr(s.value, length(s.value) - ? + 1) = ? OR s.value = ?)".into()
            }
            other => {
                let candidates = other.candidates().unwrap_or_default();
                if candidates.is_empty() {
                    return "0 = 1".into();
                }
                let sql = format!("s.value IN ({})", placeholders(candidates.len()));
                args.extend(candidates.into_iter().map(Sql::Text));
                sql
            }
        },
        FilterValue::Date { prefix, lo, hi } => {
            let (sql, binds) = date_condition(*prefix, *lo, *hi).to_sql("s.lo", "s.hi");
            args.extend(binds.into_iter().map(Sql::Integer));
            sql
        }
        FilterValue::Uri(u) => match f.modifier {
            Some(Modifier::Below) => starts_with(u, args),
            Some(Modifier::Above) => {
                args.push(Sql::Text(u.clone()));
                "substr(?, 1, length(s.value)) = s.value".into()
            }
            _ => {
                args.push(Sql::Text(u.clone()));
                "s.value = ?".into()
            }
        },
        FilterValue::Missing(_) => "0 = 1".into(),
        FilterValue::Row(m) => row_match_sql(m, args),
    }
}

/// A [`RowMatch`] on `s` (number, quantity, composite rows).
fn row_match_sql(m: &RowMatch, args: &mut Vec<Sql>) -> String {
    let mut parts = Vec::new();
    match &m.system {
        None => {}
        Some(None) => parts.push("s.system IS NULL".to_owned()),
        Some(Some(sys)) => {
            parts.push("s.system = ?".to_owned());
            args.push(Sql::Text(sys.clone()));
        }
    }
    match &m.value {
        None => {}
        Some(ValueMatch::Equals(v)) => {
            parts.push("s.value = ?".to_owned());
            args.push(Sql::Text(v.clone()));
        }
        Some(ValueMatch::StartsWith(v)) => parts.push(starts_with(v, args)),
    }
    if let Some((prefix, lo, hi)) = m.range {
        let (sql, binds) = date_condition(prefix, lo, hi).to_sql("s.lo", "s.hi");
        parts.push(sql);
        args.extend(binds.into_iter().map(Sql::Integer));
    }
    if parts.is_empty() {
        "1 = 1".into()
    } else {
        format!("({})", parts.join(" AND "))
    }
}

fn starts_with(s: &str, args: &mut Vec<Sql>) -> String {
    args.push(Sql::Text(s.to_owned()));
    args.push(Sql::Text(format!("{s}{MAX_CHAR}")));
    "(s.value >= ? AND s.value < ?)".into()
}

/// `ORDER BY` for `_sort`, always ending in `c.id` so paging is deterministic. Default: newest first.
pub(crate) fn order_sql(query: &SearchQuery, args: &mut Vec<Sql>) -> String {
    if query.sort.is_empty() {
        // With a selective lookup among the filters (or a compartment), the matches are found through it and
        // sorted; without one, walking the (type, lu_ms) index in order and stopping at the page is cheaper.
        // `+` keeps SQLite from choosing the order-by index over the lookup (https://sqlite.org/optoverview.html).
        let lookup = query.compartment.is_some() || query.filters.iter().any(is_lookup_filter);
        return if lookup {
            " ORDER BY +c.lu_ms DESC, c.id".into()
        } else {
            " ORDER BY c.lu_ms DESC, c.id".into()
        };
    }
    let mut keys = Vec::new();
    for k in &query.sort {
        let dir = if k.descending { "DESC" } else { "ASC" };
        match k.param.as_str() {
            "_id" => keys.push(format!("c.id {dir}")),
            "_lastUpdated" => keys.push(format!("c.lu_ms {dir}")),
            param => {
                let ranged = matches!(
                    k.kind,
                    ParamType::Date | ParamType::Number | ParamType::Quantity
                );
                let expr = match (ranged, k.descending) {
                    (true, false) => "MIN(s.lo)",
                    (true, true) => "MAX(s.hi)",
                    (_, false) => "MIN(s.value)",
                    (_, true) => "MAX(s.value)",
                };
                let sub = format!(
                    "(SELECT {expr} FROM search_index s WHERE s.type = c.type AND s.id = c.id AND s.param = ?)"
                );
                // Resources without a value sort last either way.
                keys.push(format!("{sub} IS NULL, {sub} {dir}"));
                args.push(Sql::Text(param.to_owned()));
                args.push(Sql::Text(param.to_owned()));
            }
        }
    }
    keys.push("c.id".into());
    format!(" ORDER BY {}", keys.join(", "))
}
