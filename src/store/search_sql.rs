//! A [`SearchQuery`] as SQL over `resources_current` and `search_index` (the row encoding is the contract in
//! `search/index.rs`). Each filter becomes `c.id [NOT] IN (SELECT s.id FROM search_index …)` so the
//! `(type, param, value)` index does the work; values inside one filter are ORed, filters ANDed.
//!
//! The SQL is what SQLite and PostgreSQL both run with the same meaning (`?` placeholders, which the
//! PostgreSQL store renumbers, `store/postgres/sql.rs`), and the statements run through a [`Reader`], which
//! each backend implements for its connection: one query builder, one paging and include logic, for both.
//!
//! The `WHERE` and `ORDER BY` clauses built from the query's filters and `_sort` are in `clauses`; this
//! file keeps the visibility rule and the statements that run them (search pages, includes, the timeline).

mod clauses;

use crate::store::arg::Arg as Sql;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::{Actor, SearchPage, StoreError, StoredVersion};
use crate::fhir::visibility::{ACCESS_LOG_TYPE, Visibility};
use crate::search::query::{Include, SearchQuery, TotalMode};
pub(crate) use clauses::{filters_sql, order_sql};

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

/// `?, ?, …`: `n` placeholders for an `IN (…)` list. Callers never ask for none: `IN ()` is SQLite's, not
/// PostgreSQL's, so an empty list is written as a false (or true) condition instead.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Part of a statement: SQL text with `?` placeholders and their arguments, in order.
pub(crate) struct SqlPart {
    pub(crate) text: String,
    pub(crate) args: Vec<Sql>,
}

/// A connection the shared read statements run on: SQLite's reader connection, a PostgreSQL client or
/// transaction (`store/postgres/sql.rs`). Each method runs one statement with `?` placeholders and `args`
/// and maps its rows; the version columns are `v.type, v.id, v.version, v.last_updated, v.owner, v.deleted,
/// v.json, c.protected` ([`row_to_version`]).
pub(crate) trait Reader {
    /// Rows of the version columns.
    fn versions(&mut self, sql: &str, args: Vec<Sql>) -> Result<Vec<StoredVersion>, StoreError>;
    /// Rows of the version columns and a ninth, nullable text column.
    fn versions_with_text(
        &mut self,
        sql: &str,
        args: Vec<Sql>,
    ) -> Result<Vec<(StoredVersion, Option<String>)>, StoreError>;
    /// Rows of the version columns and a ninth, integer column.
    fn versions_with_integer(
        &mut self,
        sql: &str,
        args: Vec<Sql>,
    ) -> Result<Vec<(StoredVersion, i64)>, StoreError>;
    /// The first column of every row, text.
    fn texts(&mut self, sql: &str, args: Vec<Sql>) -> Result<Vec<String>, StoreError>;
    /// The first column of the one row, an integer (`COUNT(*)`).
    fn integer(&mut self, sql: &str, args: Vec<Sql>) -> Result<i64, StoreError>;
    /// Whether the statement answers any row.
    fn exists(&mut self, sql: &str, args: Vec<Sql>) -> Result<bool, StoreError>;
}

impl<R: Reader + ?Sized> Reader for &mut R {
    fn versions(&mut self, sql: &str, args: Vec<Sql>) -> Result<Vec<StoredVersion>, StoreError> {
        (**self).versions(sql, args)
    }
    fn versions_with_text(
        &mut self,
        sql: &str,
        args: Vec<Sql>,
    ) -> Result<Vec<(StoredVersion, Option<String>)>, StoreError> {
        (**self).versions_with_text(sql, args)
    }
    fn versions_with_integer(
        &mut self,
        sql: &str,
        args: Vec<Sql>,
    ) -> Result<Vec<(StoredVersion, i64)>, StoreError> {
        (**self).versions_with_integer(sql, args)
    }
    fn texts(&mut self, sql: &str, args: Vec<Sql>) -> Result<Vec<String>, StoreError> {
        (**self).texts(sql, args)
    }
    fn integer(&mut self, sql: &str, args: Vec<Sql>) -> Result<i64, StoreError> {
        (**self).integer(sql, args)
    }
    fn exists(&mut self, sql: &str, args: Vec<Sql>) -> Result<bool, StoreError> {
        (**self).exists(sql, args)
    }
}

/// SQLite's reader connections: the statements are prepared once per connection (`prepare_cached`).
impl Reader for &Connection {
    fn versions(&mut self, sql: &str, args: Vec<Sql>) -> Result<Vec<StoredVersion>, StoreError> {
        Ok(self
            .prepare_cached(sql)?
            .query_map(params_from_iter(args), row_to_version)?
            .collect::<Result<_, _>>()?)
    }
    fn versions_with_text(
        &mut self,
        sql: &str,
        args: Vec<Sql>,
    ) -> Result<Vec<(StoredVersion, Option<String>)>, StoreError> {
        Ok(self
            .prepare_cached(sql)?
            .query_map(params_from_iter(args), |r| {
                Ok((row_to_version(r)?, r.get(8)?))
            })?
            .collect::<Result<_, _>>()?)
    }
    fn versions_with_integer(
        &mut self,
        sql: &str,
        args: Vec<Sql>,
    ) -> Result<Vec<(StoredVersion, i64)>, StoreError> {
        Ok(self
            .prepare_cached(sql)?
            .query_map(params_from_iter(args), |r| {
                Ok((row_to_version(r)?, r.get(8)?))
            })?
            .collect::<Result<_, _>>()?)
    }
    fn texts(&mut self, sql: &str, args: Vec<Sql>) -> Result<Vec<String>, StoreError> {
        Ok(self
            .prepare_cached(sql)?
            .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?)
    }
    fn integer(&mut self, sql: &str, args: Vec<Sql>) -> Result<i64, StoreError> {
        Ok(self
            .prepare_cached(sql)?
            .query_row(params_from_iter(args), |r| r.get(0))?)
    }
    fn exists(&mut self, sql: &str, args: Vec<Sql>) -> Result<bool, StoreError> {
        Ok(self
            .prepare_cached(sql)?
            .query_row(params_from_iter(args), |_| Ok(()))
            .optional()?
            .is_some())
    }
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
pub(crate) fn matching_ids(
    mut db: impl Reader,
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
    args.push(Sql::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    db.texts(&sql, args)
}

/// One page of matches with `_include`s and `_revinclude`s and, when asked, the total. The page starts after
/// `query.after` (keyset paging in the default order) or at `offset` (under `_sort`, with a snapshot).
pub(crate) fn search_page(
    mut db: impl Reader,
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
        let total = db.integer(&sql, args)?;
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
    let mut rows = db.versions(&sql, args)?;
    page.has_more = rows.len() > count;
    rows.truncate(count);
    page.matches = rows;
    page.included = includes(&mut db, actor, ty, query, &page.matches)?;
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
    db: &mut impl Reader,
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
            let found = include_targets(db, inc, ty, round, &frontier)?;
            for (target_type, target_id) in found {
                let key = format!("{target_type}/{target_id}");
                if out.len() >= MAX_INCLUDED || !seen.insert(key) {
                    continue;
                }
                if let Some(v) = read_visible(db, actor, &target_type, &target_id)? {
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
    db: &mut impl Reader,
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
            let ids = db.texts(&sql, args)?;
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
        let targets = db.texts(&sql, args)?;
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
    db: &mut impl Reader,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<Option<StoredVersion>, StoreError> {
    let mut args = vec![Sql::Text(ty.to_owned()), Sql::Text(id.to_owned())];
    let vis = visibility_sql(actor, &mut args);
    let sql = format!(
        "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected \
         FROM resources_current c JOIN resource_versions v \
           ON v.type = c.type AND v.id = c.id AND v.version = c.version \
         WHERE c.type = ? AND c.id = ? AND c.deleted = 0{vis}"
    );
    Ok(db.versions(&sql, args)?.into_iter().next())
}

/// Whether the resource exists for `actor` (see [`visibility_sql`]).
pub(crate) fn visible(
    mut db: impl Reader,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let mut args = vec![Sql::Text(ty.to_owned()), Sql::Text(id.to_owned())];
    let vis = visibility_sql(actor, &mut args);
    if vis.is_empty() {
        return Ok(true);
    }
    let sql = format!("SELECT 1 FROM resources_current c WHERE c.type = ? AND c.id = ?{vis}");
    db.exists(&sql, args)
}

/// A page of a patient's timeline (`crate::timeline`): rows of `timeline` joined to the current versions the
/// actor may see, newest first by (time, type, id), after the query's key.
pub(crate) fn timeline_page(
    mut db: impl Reader,
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
        let total = db.integer(
            &format!("SELECT COUNT(*) {joins}{scope}{filters}{vis}"),
            all,
        )?;
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
    let mut rows = db.versions_with_integer(&sql, args)?;
    page.has_more = rows.len() > q.count;
    rows.truncate(q.count);
    page.entries = rows.into_iter().map(|(v, t_ms)| (t_ms, v)).collect();
    Ok(page)
}
