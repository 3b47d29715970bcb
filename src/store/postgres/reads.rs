//! Reads in PostgreSQL: by id (with the visibility rule and the resource's patients in one query), history,
//! search with includes, the timeline. The search clauses are `store/search_sql`'s builders, run with `$n`
//! placeholders (`sql.rs`).

use postgres::GenericClient;

use crate::search::query::SearchQuery;
use crate::store::{Actor, Current, HistoryQuery, SearchPage, StoreError, StoredVersion};

fn todo<T>(what: &str) -> Result<T, StoreError> {
    Err(StoreError::Corrupt(format!(
        "not yet on PostgreSQL: {what}"
    )))
}

pub(super) fn read(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    id: &str,
    version: Option<i64>,
) -> Result<Option<StoredVersion>, StoreError> {
    todo("read")
}
pub(super) fn read_current(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    todo("read_current")
}
pub(super) fn history(
    c: &mut impl GenericClient,
    actor: &Actor,
    q: &HistoryQuery,
) -> Result<(Vec<StoredVersion>, bool), StoreError> {
    todo("history")
}
pub(super) fn search_page(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    query: &SearchQuery,
    offset: usize,
    count: usize,
) -> Result<SearchPage, StoreError> {
    todo("search")
}
pub(super) fn timeline_page(
    c: &mut impl GenericClient,
    actor: &Actor,
    q: &crate::timeline::TimelineQuery,
) -> Result<crate::timeline::TimelinePage, StoreError> {
    todo("timeline")
}
pub(super) fn patients_of(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    todo("patients_of")
}
pub(super) fn matching_ids(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    query: &SearchQuery,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    todo("matching_ids")
}
pub(super) fn visible(
    c: &mut impl GenericClient,
    actor: &Actor,
    ty: &str,
    id: &str,
) -> Result<bool, StoreError> {
    todo("visible")
}
pub(super) fn current_after(
    c: &mut impl GenericClient,
    after: Option<(&str, &str)>,
    limit: usize,
) -> Result<Vec<StoredVersion>, StoreError> {
    todo("current_after")
}
