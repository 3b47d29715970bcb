//! Resources in PostgreSQL: versions, the current-version table, the search index, unique keys, sharing facts,
//! the timeline, settings; reads, history and search (the search clauses are `store/search_sql`'s builders).

use postgres::GenericClient;

use crate::search::index::IndexRow;
use crate::store::{NewVersion, StoreError, StoredVersion};

/// This area's tables (applied by `migrate.rs`): `store/schema.rs`'s tables in PostgreSQL's types. Integers are
/// BIGINT (the drivers' i64) and flags BIGINT 0/1, so the search builders' SQL (`c.deleted = 0`) is the same on
/// both backends. Text compared by prefix (`search_index.value`) is `COLLATE "C"`: byte order, as on SQLite,
/// which makes `value >= s AND value < s || U+10FFFF` a prefix match the B-tree index serves.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE resource_versions (
    seq          BIGSERIAL PRIMARY KEY,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated TEXT    NOT NULL,
    lu_ms        BIGINT  NOT NULL,
    owner        TEXT    NOT NULL,
    deleted      BIGINT  NOT NULL DEFAULT 0,
    json         TEXT,
    UNIQUE (type, id, version)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (type, seq);

CREATE TABLE resources_current (
    type      TEXT   NOT NULL,
    id        TEXT   NOT NULL,
    version   BIGINT NOT NULL,
    deleted   BIGINT NOT NULL,
    owner     TEXT   NOT NULL,
    lu_ms     BIGINT NOT NULL,
    protected BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (type, id)
);
CREATE INDEX resources_current_lu ON resources_current (type, lu_ms, id);

CREATE TABLE search_index (
    type   TEXT NOT NULL,
    id     TEXT NOT NULL,
    param  TEXT NOT NULL,
    system TEXT,
    value  TEXT COLLATE "C" NOT NULL,
    lo     BIGINT,
    hi     BIGINT
);
CREATE INDEX search_index_value ON search_index (type, param, value);
CREATE INDEX search_index_date_lo ON search_index (type, param, lo) WHERE lo IS NOT NULL;
CREATE INDEX search_index_resource ON search_index (type, id);

CREATE TABLE participants (
    type TEXT NOT NULL,
    id   TEXT NOT NULL,
    hsa  TEXT NOT NULL,
    PRIMARY KEY (type, id, hsa)
);
CREATE TABLE patient_links (
    type    TEXT NOT NULL,
    id      TEXT NOT NULL,
    patient TEXT NOT NULL,
    PRIMARY KEY (type, id, patient)
);
CREATE INDEX patient_links_patient ON patient_links (patient, type);
CREATE TABLE care_relations (
    type    TEXT NOT NULL,
    id      TEXT NOT NULL,
    patient TEXT NOT NULL,
    hsa     TEXT NOT NULL,
    PRIMARY KEY (type, id, patient, hsa)
);
CREATE INDEX care_relations_patient ON care_relations (patient, hsa);
CREATE TABLE consents (
    type      TEXT NOT NULL,
    id        TEXT NOT NULL,
    patient   TEXT NOT NULL,
    kind      TEXT NOT NULL,
    principal TEXT NOT NULL,
    PRIMARY KEY (type, id, patient, kind, principal)
);
CREATE INDEX consents_patient ON consents (patient, kind, principal);

CREATE TABLE timeline (
    patient TEXT   NOT NULL,
    t_ms    BIGINT NOT NULL,
    type    TEXT   NOT NULL,
    id      TEXT   NOT NULL,
    PRIMARY KEY (patient, t_ms, type, id)
);
CREATE INDEX timeline_resource ON timeline (type, id);

CREATE TABLE unique_keys (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    type  TEXT NOT NULL,
    id    TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX unique_keys_resource ON unique_keys (type, id);

CREATE TABLE seen_once (
    scope      TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX seen_once_expiry ON seen_once (expires_at);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- SQLite's instr(), which the search builders' `:contains` uses, under the same name (PostgreSQL: strpos).
CREATE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS INTEGER
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT strpos(haystack, needle)';
"#;

fn todo<T>(what: &str) -> Result<T, StoreError> {
    Err(StoreError::Corrupt(format!(
        "not yet on PostgreSQL: {what}"
    )))
}

pub(super) fn setting(c: &mut impl GenericClient, key: &str) -> Result<Option<String>, StoreError> {
    todo("setting")
}
/// The current version, its row locked until the transaction ends (`SELECT … FOR UPDATE`).
pub(super) fn current_for_update(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
) -> Result<Option<StoredVersion>, StoreError> {
    todo("current")
}
pub(super) fn put_version(c: &mut impl GenericClient, v: NewVersion) -> Result<(), StoreError> {
    todo("put_version")
}
pub(super) fn set_index(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    rows: &[IndexRow],
) -> Result<(), StoreError> {
    todo("set_index")
}
pub(super) fn claim_unique(
    c: &mut impl GenericClient,
    scope: &str,
    key: &str,
    ty: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    todo("claim_unique")
}
pub(super) fn reassign_unique(
    c: &mut impl GenericClient,
    scope: &str,
    key: &str,
    ty: &str,
    id: &str,
) -> Result<(), StoreError> {
    todo("reassign_unique")
}
pub(super) fn release_unique(
    c: &mut impl GenericClient,
    scope: &str,
    ty: &str,
    id: &str,
) -> Result<(), StoreError> {
    todo("release_unique")
}
pub(super) fn set_setting(
    c: &mut impl GenericClient,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    todo("set_setting")
}
pub(super) fn remember_once(
    c: &mut impl GenericClient,
    scope: &str,
    key: &str,
    expires_at_unix: i64,
) -> Result<bool, StoreError> {
    todo("remember_once")
}
pub(super) fn set_participants(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    hsa_ids: &[String],
) -> Result<(), StoreError> {
    todo("set_participants")
}
pub(super) fn participants_of(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    todo("participants_of")
}
pub(super) fn set_patient_links(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    patients: &[String],
) -> Result<(), StoreError> {
    todo("set_patient_links")
}
pub(super) fn set_timeline(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    patients: &[String],
    time_ms: i64,
) -> Result<(), StoreError> {
    todo("set_timeline")
}
pub(super) fn set_care_relations(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    relations: &[(String, String)],
) -> Result<(), StoreError> {
    todo("set_care_relations")
}
pub(super) fn set_consents(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    decisions: &[(String, String, String)],
) -> Result<(), StoreError> {
    todo("set_consents")
}
