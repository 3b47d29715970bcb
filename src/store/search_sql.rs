//! A [`SearchQuery`] as SQL over `resources_current` and `search_index` (SQLite dialect; the row encoding is
//! the contract in `search/index.rs`). Each filter becomes `c.id [NOT] IN (SELECT s.id FROM search_index …)`
//! so the `(type, param, value)` index does the work; values inside one filter are ORed, filters ANDed.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::{Actor, SearchPage, StoreError, StoredVersion};
use crate::fhir::visibility::{ACCESS_LOG_TYPE, Visibility};
use crate::search::params::ParamType;
use crate::search::query::{
    Filter, FilterValue, Include, Link, Modifier, ReferenceValue, RowMatch, SearchQuery, TotalMode,
    ValueMatch, date_condition,
};

/// `('Patient','Organization',…)`: [`crate::fhir::visibility::SHARED_MASTER_DATA`] as an SQL list, rendered
/// once from the one list in code.
fn shared_types_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| sql_list(&crate::fhir::visibility::SHARED_MASTER_DATA));
    &SQL
}

/// `('A','B')` for type names (fixed identifiers from navet's own tables, never caller input).
fn sql_list(types: &[&str]) -> String {
    let quoted: Vec<String> = types.iter().map(|t| format!("'{t}'")).collect();
    format!("({})", quoted.join(","))
}

/// ` AND (…)`: the resources (alias `c`, resources_current) `actor` may see, rendered from its
/// [`Visibility`] (empty for navet itself):
/// - an auditor: shared master data, and the access log when doing audit work; nothing else;
/// - anyone else never the access log, and of the rest:
///   - shared master data;
///   - what a principal among `sees` owns, or takes part in (the `participants` table);
///   - sammanhållen dokumentation (fhir/sharing.rs): another principal's record about a patient with whom the
///     actor has a care relationship, when the patient's consent names the actor or all and no block covers
///     the record's owner; emergency access (`ETREAT`) passes consent and blocks.
pub fn visibility_sql(actor: &Actor, args: &mut Vec<Sql>) -> String {
    let (sees, emergency) = match &actor.visibility {
        Visibility::Everything => return String::new(),
        Visibility::Auditor { reads_log } => {
            let log = if *reads_log {
                format!(" OR c.type = '{ACCESS_LOG_TYPE}'")
            } else {
                String::new()
            };
            return format!(" AND (c.type IN {}{log})", shared_types_sql());
        }
        Visibility::Care { sees, emergency } => (sees, *emergency),
    };
    let ph = placeholders(sees.len().max(1));
    let push = |args: &mut Vec<Sql>| {
        if sees.is_empty() {
            args.push(Sql::Null);
        }
        args.extend(sees.iter().map(|h| Sql::Text(h.clone())));
    };
    push(args); // owner
    push(args); // participants
    push(args); // care relationship
    let consent = if emergency {
        String::new()
    } else {
        push(args); // consent
        format!(
            " AND EXISTS (SELECT 1 FROM consents k WHERE k.patient = pl.patient AND k.kind = 'permit' \
               AND (k.principal = '*' OR k.principal IN ({ph}))) \
             AND NOT EXISTS (SELECT 1 FROM consents b WHERE b.patient = pl.patient AND b.kind = 'block' \
               AND b.principal = c.owner)"
        )
    };
    format!(
        " AND c.type <> '{ACCESS_LOG_TYPE}' AND (c.type IN {shared} OR c.owner IN ({ph}) \
         OR EXISTS (SELECT 1 FROM participants p WHERE p.type = c.type AND p.id = c.id AND p.hsa IN ({ph})) \
         OR EXISTS (SELECT 1 FROM patient_links pl WHERE pl.type = c.type AND pl.id = c.id \
           AND EXISTS (SELECT 1 FROM care_relations cr WHERE cr.patient = pl.patient AND cr.hsa IN ({ph})){consent}))",
        shared = shared_types_sql()
    )
}

/// Past every other character: `value >= s AND value < s || MAX_CHAR` is "starts with s", index-friendly.
const MAX_CHAR: char = '\u{10FFFF}';

struct SqlPart {
    text: String,
    args: Vec<Sql>,
}

/// `WHERE` conditions (after `c.type = ? AND c.deleted = 0` and the visibility rule) for the query's
/// filters, its compartment and its page position.
fn filters_sql(actor: &Actor, ty: &str, query: &SearchQuery) -> SqlPart {
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
                let suffix = format!("/{id}");
                args.push(Sql::Integer(-(suffix.chars().count() as i64)));
                args.push(Sql::Text(suffix));
                args.push(Sql::Text(id.clone()));
                "(substr(s.value, ?) = ? OR s.value = ?)".into()
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

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `ORDER BY` for `_sort`, always ending in `c.id` so paging is deterministic. Default: newest first.
fn order_sql(query: &SearchQuery, args: &mut Vec<Sql>) -> String {
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

/// A version from `SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected`
/// (`v` resource_versions, `c` resources_current).
pub(super) fn row_to_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredVersion> {
    Ok(StoredVersion {
        resource_type: r.get(0)?,
        id: r.get(1)?,
        version: r.get(2)?,
        last_updated: r.get(3)?,
        owner: r.get(4)?,
        deleted: r.get::<_, i64>(5)? != 0,
        json: r.get(6)?,
        protected: r.get::<_, i64>(7)? != 0,
    })
}

/// Ids of current, non-deleted matches (conditional operations), at most `limit`.
pub fn matching_ids(
    conn: &Connection,
    actor: &Actor,
    ty: &str,
    query: &SearchQuery,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut args = vec![Sql::Text(ty.to_owned())];
    let vis = visibility_sql(actor, &mut args);
    let f = filters_sql(actor, ty, query);
    let sql = format!(
        "SELECT c.id FROM resources_current c WHERE c.type = ? AND c.deleted = 0{vis}{} ORDER BY c.id LIMIT ?",
        f.text
    );
    args.extend(f.args);
    args.push(Sql::Integer(limit as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let ids = stmt
        .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// One page of matches with `_include`s and `_revinclude`s and, when asked, the total. The page starts after
/// `query.after` (keyset paging in the default order) or at `offset` (under `_sort`, with a snapshot).
pub fn search_page(
    conn: &Connection,
    actor: &Actor,
    ty: &str,
    query: &SearchQuery,
    offset: usize,
    count: usize,
) -> Result<SearchPage, StoreError> {
    let mut page = SearchPage::default();
    if matches!(query.total, TotalMode::Accurate | TotalMode::Estimate) {
        let mut args = vec![Sql::Text(ty.to_owned())];
        let vis = visibility_sql(actor, &mut args);
        // The total counts every match, not what follows the page position.
        let unpaged = SearchQuery {
            after: None,
            ..query.clone()
        };
        let f = filters_sql(actor, ty, &unpaged);
        let sql = format!(
            "SELECT COUNT(*) FROM resources_current c WHERE c.type = ? AND c.deleted = 0{vis}{}",
            f.text
        );
        args.extend(f.args);
        let total: i64 = conn
            .prepare_cached(&sql)?
            .query_row(params_from_iter(args), |r| r.get(0))?;
        page.total = Some(u64::try_from(total).unwrap_or(0));
    }
    if count == 0 {
        return Ok(page);
    }
    let mut args = vec![Sql::Text(ty.to_owned())];
    let vis = visibility_sql(actor, &mut args);
    let f = filters_sql(actor, ty, query);
    args.extend(f.args);
    let mut keyset = String::new();
    if let Some(after) = &query.after {
        // The default order is (lu_ms DESC, id ASC): what follows `after`. A resource written during the walk
        // is newer than every cursor, so it never shifts a page or repeats an entry.
        keyset.push_str(" AND (c.lu_ms < ? OR (c.lu_ms = ? AND c.id > ?))");
        args.push(Sql::Integer(after.lu_ms));
        args.push(Sql::Integer(after.lu_ms));
        args.push(Sql::Text(after.id.clone()));
    }
    let order = order_sql(query, &mut args);
    let sql = format!(
        "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected \
         FROM resources_current c JOIN resource_versions v \
           ON v.type = c.type AND v.id = c.id AND v.version = c.version \
         WHERE c.type = ? AND c.deleted = 0{vis}{}{keyset}{order} LIMIT ? OFFSET ?",
        f.text
    );
    args.push(Sql::Integer(
        i64::try_from(count).unwrap_or(i64::MAX).saturating_add(1),
    ));
    args.push(Sql::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt
        .query_map(params_from_iter(args), row_to_version)?
        .collect::<Result<Vec<_>, _>>()?;
    page.has_more = rows.len() > count;
    rows.truncate(count);
    page.matches = rows;
    page.included = includes(conn, actor, ty, query, &page.matches)?;
    Ok(page)
}

/// How many rounds of `:iterate` are followed, and how many resources the includes of one page may add:
/// bounds on the work one request can ask for (a cycle of references ends at the first bound).
const MAX_INCLUDE_ROUNDS: usize = 3;
const MAX_INCLUDED: usize = 1_000;

/// `_include` and `_revinclude` (search.html#include): the current, non-deleted resources the matches
/// reference (or that reference them) through the named parameters, and with `:iterate` those the included
/// resources reference in turn. What the caller may not see is left out, as if it did not exist.
fn includes(
    conn: &Connection,
    actor: &Actor,
    ty: &str,
    query: &SearchQuery,
    matches: &[StoredVersion],
) -> Result<Vec<StoredVersion>, StoreError> {
    if query.include.is_empty() || matches.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen: std::collections::HashSet<String> = matches
        .iter()
        .map(|m| format!("{}/{}", m.resource_type, m.id))
        .collect();
    let mut out: Vec<StoredVersion> = Vec::new();
    let mut frontier: Vec<(String, String)> = matches
        .iter()
        .map(|m| (m.resource_type.clone(), m.id.clone()))
        .collect();
    for round in 0..MAX_INCLUDE_ROUNDS {
        let mut next: Vec<(String, String)> = Vec::new();
        for inc in query.include.iter().filter(|i| round == 0 || i.iterate) {
            // Round 0 starts from the matches (of type `ty`); iterations from what was just included.
            let found = include_targets(conn, inc, ty, round, &frontier)?;
            for (target_type, target_id) in found {
                let key = format!("{target_type}/{target_id}");
                if out.len() >= MAX_INCLUDED || !seen.insert(key) {
                    continue;
                }
                if let Some(v) = read_visible(conn, actor, &target_type, &target_id)? {
                    next.push((v.resource_type.clone(), v.id.clone()));
                    out.push(v);
                }
            }
        }
        if next.is_empty() || !query.include.iter().any(|i| i.iterate) {
            break;
        }
        frontier = next;
    }
    Ok(out)
}

/// The (type, id)s one include rule reaches from `frontier`.
fn include_targets(
    conn: &Connection,
    inc: &Include,
    ty: &str,
    round: usize,
    frontier: &[(String, String)],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut found = Vec::new();
    if inc.reverse {
        // Resources of source_type whose `param` points at a frontier resource (of target_type if given).
        let refs: Vec<Sql> = frontier
            .iter()
            .filter(|(t, _)| {
                (round > 0 || t == ty) && inc.target_type.as_ref().is_none_or(|x| x == t)
            })
            .map(|(t, i)| Sql::Text(format!("{t}/{i}")))
            .collect();
        for chunk in refs.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT s.id FROM search_index s WHERE s.type = ? AND s.param = ? AND s.value IN ({}) \
                 ORDER BY s.id LIMIT ?",
                placeholders(chunk.len())
            );
            let mut args = vec![
                Sql::Text(inc.source_type.clone()),
                Sql::Text(inc.param.clone()),
            ];
            args.extend(chunk.iter().cloned());
            args.push(Sql::Integer(
                i64::try_from(MAX_INCLUDED).unwrap_or(i64::MAX),
            ));
            let ids = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            found.extend(ids.into_iter().map(|id| (inc.source_type.clone(), id)));
        }
        return Ok(found);
    }
    let ids: Vec<Sql> = frontier
        .iter()
        .filter(|(t, _)| *t == inc.source_type)
        .map(|(_, i)| Sql::Text(i.clone()))
        .collect();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT DISTINCT s.value FROM search_index s WHERE s.type = ? AND s.param = ? AND s.id IN ({}) ORDER BY s.value",
            placeholders(chunk.len())
        );
        let mut args = vec![
            Sql::Text(inc.source_type.clone()),
            Sql::Text(inc.param.clone()),
        ];
        args.extend(chunk.iter().cloned());
        let targets = conn
            .prepare_cached(&sql)?
            .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for target in targets {
            // Rows holding other literals (urn:uuid:…) name nothing stored.
            let Some((target_type, target_id)) = target.split_once('/') else {
                continue;
            };
            if inc.target_type.as_deref().is_some_and(|t| t != target_type) {
                continue;
            }
            found.push((target_type.to_owned(), target_id.to_owned()));
        }
    }
    Ok(found)
}

/// The current, non-deleted version of a resource, if `actor` may see it.
fn read_visible(
    conn: &Connection,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<Option<StoredVersion>, StoreError> {
    let mut args = vec![Sql::Text(ty.to_owned()), Sql::Text(id.to_owned())];
    let vis = visibility_sql(actor, &mut args);
    Ok(conn
        .prepare_cached(&format!(
            "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected \
             FROM resources_current c JOIN resource_versions v \
               ON v.type = c.type AND v.id = c.id AND v.version = c.version \
             WHERE c.type = ? AND c.id = ? AND c.deleted = 0{vis}"
        ))?
        .query_row(params_from_iter(args), row_to_version)
        .optional()?)
}

/// Whether the resource exists for `actor` (see [`visibility_sql`]).
pub fn visible(conn: &Connection, actor: &Actor, ty: &str, id: &str) -> Result<bool, StoreError> {
    let mut args = vec![Sql::Text(ty.to_owned()), Sql::Text(id.to_owned())];
    let vis = visibility_sql(actor, &mut args);
    if vis.is_empty() {
        return Ok(true);
    }
    let sql = format!("SELECT 1 FROM resources_current c WHERE c.type = ? AND c.id = ?{vis}");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(args), |_| Ok(()))
        .optional()?
        .is_some())
}

/// A page of a patient's timeline (`crate::timeline`): rows of `timeline` joined to the current versions the
/// actor may see, newest first by (time, type, id), after the query's key.
pub fn timeline_page(
    conn: &Connection,
    actor: &Actor,
    q: &crate::timeline::TimelineQuery,
) -> Result<crate::timeline::TimelinePage, StoreError> {
    let mut filters = String::new();
    let mut filter_args: Vec<Sql> = vec![Sql::Text(q.patient.clone())];
    if let Some(types) = &q.types {
        if types.is_empty() {
            filters.push_str(" AND 0 = 1");
        } else {
            filters.push_str(&format!(" AND tl.type IN ({})", placeholders(types.len())));
            filter_args.extend(types.iter().map(|t| Sql::Text(t.clone())));
        }
    }
    if let Some(start) = q.start_ms {
        filters.push_str(" AND tl.t_ms >= ?");
        filter_args.push(Sql::Integer(start));
    }
    if let Some(end) = q.end_ms {
        filters.push_str(" AND tl.t_ms < ?");
        filter_args.push(Sql::Integer(end));
    }
    if let Some(since) = q.since_ms {
        filters.push_str(" AND c.lu_ms >= ?");
        filter_args.push(Sql::Integer(since));
    }
    let joins = "FROM timeline tl JOIN resources_current c ON c.type = tl.type AND c.id = tl.id";
    let scope = " WHERE tl.patient = ? AND c.deleted = 0";
    let mut page = crate::timeline::TimelinePage::default();
    if q.total {
        let mut args = Vec::new();
        let vis = visibility_sql(actor, &mut args);
        let mut all = filter_args.clone();
        all.extend(args);
        let total: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) {joins}{scope}{filters}{vis}"))?
            .query_row(params_from_iter(all), |r| r.get(0))?;
        page.total = Some(u64::try_from(total).unwrap_or(0));
    }
    if q.count == 0 {
        return Ok(page);
    }
    let mut args = filter_args;
    let mut keyset = String::new();
    if let Some(k) = &q.after {
        keyset.push_str(" AND (tl.t_ms, tl.type, tl.id) < (?, ?, ?)");
        args.push(Sql::Integer(k.time_ms));
        args.push(Sql::Text(k.resource_type.clone()));
        args.push(Sql::Text(k.id.clone()));
    }
    let vis = visibility_sql(actor, &mut args);
    args.push(Sql::Integer(
        i64::try_from(q.count).unwrap_or(i64::MAX).saturating_add(1),
    ));
    let sql = format!(
        "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected, tl.t_ms \
         {joins} JOIN resource_versions v ON v.type = c.type AND v.id = c.id AND v.version = c.version\
         {scope}{filters}{keyset}{vis} ORDER BY tl.t_ms DESC, tl.type DESC, tl.id DESC LIMIT ?"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((r.get::<_, i64>(8)?, row_to_version(r)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    page.has_more = rows.len() > q.count;
    rows.truncate(q.count);
    page.entries = rows;
    Ok(page)
}
