//! Reads of stored versions on the SQLite reader connections: the current version (with the patients it is
//! about, for a read's access-log record), a given version, history, and a resource's patient links.
//!
//! Each is one statement with the actor's visibility rule inside it (`search_sql::visibility_sql`): a resource
//! the actor may not see reads as absent (a 404, never a 403 that confirms it exists).

use crate::store::arg::Arg as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::search_sql::{self, row_to_version};
use super::{Actor, Current, HistoryQuery, StoreError, StoredVersion};

/// The current version of (type, id), joined with its current-state row.
pub(super) const CURRENT_SQL: &str = "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected \
     FROM resources_current c JOIN resource_versions v \
       ON v.type = c.type AND v.id = c.id AND v.version = c.version \
     WHERE c.type = ?1 AND c.id = ?2";

/// Separates the patient references [`current`] gets as one text column (`Patient/{id}` never contains it:
/// FHIR ids are `[A-Za-z0-9\-\.]{1,64}`).
const PATIENT_SEPARATOR: char = '\u{1f}';

/// The current version (deleted or not) of (type, id) if `actor` may see it, with the patients it is about:
/// the visibility rule, the version and its patient links (written with it, `fhir::sharing`) in one query, so
/// a logged read by id needs no second query and no parse of the stored JSON for its record.
pub(super) fn current(
    conn: &Connection,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    let mut args = vec![Sql::Text(ty.to_owned()), Sql::Text(id.to_owned())];
    let vis = search_sql::visibility_sql(actor, &mut args);
    // The visibility rule's first terms are the cheap ones (shared type, owner): SQLite stops at the first
    // true term of the OR, so the participation and sharing subqueries run only when they are needed.
    let sql = format!(
        "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected, \
           (SELECT group_concat(pl.patient, char(31)) FROM patient_links pl WHERE pl.type = c.type AND pl.id = c.id) \
         FROM resources_current c JOIN resource_versions v \
           ON v.type = c.type AND v.id = c.id AND v.version = c.version \
         WHERE c.type = ?1 AND c.id = ?2{vis}"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(args), |r| {
            let version = row_to_version(r)?;
            let patients: Option<String> = r.get(8)?;
            Ok(Current {
                version,
                patients: patients
                    .map(|p| p.split(PATIENT_SEPARATOR).map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
        .optional()?)
}

/// Version `v` of (type, id) if `actor` may see the resource now.
pub(super) fn version(
    conn: &Connection,
    actor: &Actor,
    ty: &str,
    id: &str,
    v: i64,
) -> Result<Option<StoredVersion>, StoreError> {
    if !search_sql::visible(conn, actor, ty, id)? {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached(
            "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected \
             FROM resource_versions v JOIN resources_current c ON c.type = v.type AND c.id = v.id \
             WHERE v.type = ?1 AND v.id = ?2 AND v.version = ?3",
        )?
        .query_row(params![ty, id, v], row_to_version)
        .optional()?)
}

/// A page of history, newest first, and whether more follow.
pub(super) fn history(
    conn: &Connection,
    actor: &Actor,
    q: &HistoryQuery,
) -> Result<(Vec<StoredVersion>, bool), StoreError> {
    // Versions of resources the actor may see now (the join gives the visibility filter its `c`).
    let mut args: Vec<Sql> = Vec::new();
    let vis = search_sql::visibility_sql(actor, &mut args);
    let mut sql = format!(
        "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected \
         FROM resource_versions v JOIN resources_current c ON c.type = v.type AND c.id = v.id \
         WHERE 1 = 1{vis}"
    );
    if let Some(ty) = &q.resource_type {
        sql.push_str(" AND v.type = ?");
        args.push(ty.clone().into());
    }
    if let Some(id) = &q.id {
        sql.push_str(" AND v.id = ?");
        args.push(id.clone().into());
    }
    if let Some(since) = q.since_ms {
        sql.push_str(" AND v.lu_ms >= ?");
        args.push(since.into());
    }
    sql.push_str(" ORDER BY v.seq DESC LIMIT ? OFFSET ?");
    args.push(((q.count + 1) as i64).into());
    args.push((q.offset as i64).into());
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<StoredVersion> = stmt
        .query_map(params_from_iter(args), row_to_version)?
        .collect::<Result<_, _>>()?;
    let more = rows.len() > q.count;
    rows.truncate(q.count);
    Ok((rows, more))
}

/// The `Patient/{id}` references a stored resource is about, whoever may see it (for a refusal's record).
pub(super) fn patients_of(
    conn: &Connection,
    ty: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT patient FROM patient_links WHERE type = ?1 AND id = ?2 ORDER BY patient",
    )?;
    let rows = stmt
        .query_map(params![ty, id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
