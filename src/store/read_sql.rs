//! Reads of stored versions: the current version (with the patients it is about, for a read's access-log
//! record), a given version, history, a resource's patient links, and the walk over current resources. The
//! SQL means the same on SQLite and PostgreSQL; it runs through either backend's [`Reader`].
//!
//! Each is one statement with the actor's visibility rule inside it (`search_sql::visibility_sql`): a resource
//! the actor may not see reads as absent (a 404, never a 403 that confirms it exists).

use crate::store::arg::Arg as Sql;

use super::search_sql::{self, Reader};
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
    mut db: impl Reader,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    let mut args = vec![
        Sql::Text(PATIENT_SEPARATOR.to_string()),
        Sql::Text(ty.to_owned()),
        Sql::Text(id.to_owned()),
    ];
    let vis = search_sql::visibility_sql(actor, &mut args);
    // The visibility rule's first terms are the cheap ones (shared type, owner): SQLite stops at the first
    // true term of the OR, so the participation and sharing subqueries run only when they are needed.
    // `string_agg(… ORDER BY …)` is both backends' (SQLite since 3.44): the patients in one order on either.
    let sql = format!(
        "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected, \
           (SELECT string_agg(pl.patient, ? ORDER BY pl.patient) FROM patient_links pl \
             WHERE pl.type = c.type AND pl.id = c.id) \
         FROM resources_current c JOIN resource_versions v \
           ON v.type = c.type AND v.id = c.id AND v.version = c.version \
         WHERE c.type = ? AND c.id = ?{vis}"
    );
    Ok(db
        .versions_with_text(&sql, args)?
        .into_iter()
        .next()
        .map(|(version, patients)| Current {
            version,
            patients: patients
                .map(|p| p.split(PATIENT_SEPARATOR).map(str::to_owned).collect())
                .unwrap_or_default(),
        }))
}

/// Version `v` of (type, id) if `actor` may see the resource now.
pub(super) fn version(
    mut db: impl Reader,
    actor: &Actor,
    ty: &str,
    id: &str,
    v: i64,
) -> Result<Option<StoredVersion>, StoreError> {
    if !search_sql::visible(&mut db, actor, ty, id)? {
        return Ok(None);
    }
    Ok(db
        .versions(
            "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected \
             FROM resource_versions v JOIN resources_current c ON c.type = v.type AND c.id = v.id \
             WHERE v.type = ? AND v.id = ? AND v.version = ?",
            vec![Sql::Text(ty.to_owned()), Sql::Text(id.to_owned()), Sql::Integer(v)],
        )?
        .into_iter()
        .next())
}

/// A page of history, newest first, and whether more follow.
pub(super) fn history(
    mut db: impl Reader,
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
    args.push(Sql::Integer(
        i64::try_from(q.count).unwrap_or(i64::MAX).saturating_add(1),
    ));
    args.push(Sql::Integer(i64::try_from(q.offset).unwrap_or(i64::MAX)));
    let mut rows = db.versions(&sql, args)?;
    let more = rows.len() > q.count;
    rows.truncate(q.count);
    Ok((rows, more))
}

/// The `Patient/{id}` references a stored resource is about, whoever may see it (for a refusal's record).
pub(super) fn patients_of(
    mut db: impl Reader,
    ty: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    db.texts(
        "SELECT patient FROM patient_links WHERE type = ? AND id = ? ORDER BY patient",
        vec![Sql::Text(ty.to_owned()), Sql::Text(id.to_owned())],
    )
}

/// Current, non-deleted resources in (type, id) order after `after` (from the start when `None`), at most
/// `limit`: the walk of migrations over every resource.
pub(super) fn current_after(
    mut db: impl Reader,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<StoredVersion>, StoreError> {
    let (ty, id) = after.unwrap_or(("", ""));
    db.versions(
        "SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected \
         FROM resources_current c JOIN resource_versions v \
           ON v.type = c.type AND v.id = c.id AND v.version = c.version \
         WHERE c.deleted = 0 AND (c.type, c.id) > (?, ?) ORDER BY c.type, c.id LIMIT ?",
        vec![
            Sql::Text(ty.to_owned()),
            Sql::Text(id.to_owned()),
            Sql::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
        ],
    )
}
