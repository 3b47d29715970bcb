//! Reads in PostgreSQL: by id (with the visibility rule and the resource's patients in one query), history,
//! search with includes, the timeline. The statements, their paging and the includes are the shared ones
//! (`store/search_sql`, `store/read_sql.rs`), whose SQL means the same on both backends; here they run on a
//! PostgreSQL client or transaction through [`Pg`] (`sql.rs`: `$n` placeholders, arguments bound as the
//! types PostgreSQL inferred).

use postgres::GenericClient;

use super::sql::Pg;
use crate::search::query::SearchQuery;
use crate::store::{
    Actor, Current, HistoryQuery, SearchPage, StoreError, StoredVersion, read_sql, search_sql,
};

/// A version of (type, id), or the current one, if `actor` may see the resource now (as on SQLite: a given
/// version is served only while the resource is visible).
pub(super) fn read(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    id: &str,
    version: Option<i64>,
) -> Result<Option<StoredVersion>, StoreError> {
    match version {
        None => Ok(read_current(c, actor, ty, id)?.map(|cur| cur.version)),
        Some(v) => read_sql::version(Pg(c), actor, ty, id, v),
    }
}

/// The current version (deleted or not) with the patients it is about, if `actor` may see it.
pub(super) fn read_current(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    read_sql::current(Pg(c), actor, ty, id)
}

pub(super) fn history(
    c: &mut impl GenericClient,
    actor: &Actor,
    q: &HistoryQuery,
) -> Result<(Vec<StoredVersion>, bool), StoreError> {
    read_sql::history(Pg(c), actor, q)
}

pub(super) fn search_page(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    query: &SearchQuery,
    offset: usize,
    count: usize,
) -> Result<SearchPage, StoreError> {
    search_sql::search_page(Pg(c), actor, ty, query, offset, count)
}

pub(super) fn timeline_page(
    c: &mut impl GenericClient,
    actor: &Actor,
    q: &crate::timeline::TimelineQuery,
) -> Result<crate::timeline::TimelinePage, StoreError> {
    search_sql::timeline_page(Pg(c), actor, q)
}

pub(super) fn patients_of(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    read_sql::patients_of(Pg(c), ty, id)
}

pub(super) fn matching_ids(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    query: &SearchQuery,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    search_sql::matching_ids(Pg(c), actor, ty, query, limit)
}

pub(super) fn visible(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<bool, StoreError> {
    search_sql::visible(Pg(c), actor, ty, id)
}

pub(super) fn current_after(
    c: &mut impl GenericClient,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<StoredVersion>, StoreError> {
    read_sql::current_after(Pg(c), after, limit)
}
