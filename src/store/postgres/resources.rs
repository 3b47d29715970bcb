//! Resources in PostgreSQL: versions, the current-version table, the search index, unique keys, sharing facts,
//! the timeline, settings; reads, history and search (the search clauses are `store/search_sql`'s builders).

use postgres::GenericClient;
use postgres::types::Type;

use crate::search::index::IndexRow;
use crate::store::{DbErrorKind, NewVersion, StoreError, StoredVersion};

/// This area's tables (applied by `migrate.rs`): `store/schema.rs`'s tables in PostgreSQL's types. Integers are
/// BIGINT (the drivers' i64) and flags BIGINT 0/1, so the search builders' SQL (`c.deleted = 0`) is the same on
/// both backends. Every compared or sorted text column is `COLLATE "C"`: byte order, as on SQLite, whatever the
/// database's default collation, so ids sort, page and compare the same on both backends, and
/// `value >= s AND value < s || U+10FFFF` is a prefix match the B-tree index serves.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE resource_versions (
    seq          BIGSERIAL PRIMARY KEY,
    type         TEXT COLLATE "C"    NOT NULL,
    id           TEXT COLLATE "C"    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated TEXT COLLATE "C"    NOT NULL,
    lu_ms        BIGINT  NOT NULL,
    owner        TEXT COLLATE "C"    NOT NULL,
    deleted      BIGINT  NOT NULL DEFAULT 0,
    json         TEXT,
    UNIQUE (type, id, version)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (type, seq);

CREATE TABLE resources_current (
    type      TEXT COLLATE "C"   NOT NULL,
    id        TEXT COLLATE "C"   NOT NULL,
    version   BIGINT NOT NULL,
    deleted   BIGINT NOT NULL,
    owner     TEXT COLLATE "C"   NOT NULL,
    lu_ms     BIGINT NOT NULL,
    protected BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (type, id)
);
CREATE INDEX resources_current_lu ON resources_current (type, lu_ms, id);

CREATE TABLE search_index (
    type   TEXT COLLATE "C" NOT NULL,
    id     TEXT COLLATE "C" NOT NULL,
    param  TEXT COLLATE "C" NOT NULL,
    system TEXT COLLATE "C",
    value  TEXT COLLATE "C" NOT NULL,
    lo     BIGINT,
    hi     BIGINT
);
CREATE INDEX search_index_value ON search_index (type, param, value);
CREATE INDEX search_index_date_lo ON search_index (type, param, lo) WHERE lo IS NOT NULL;
CREATE INDEX search_index_resource ON search_index (type, id);

CREATE TABLE participants (
    type TEXT COLLATE "C" NOT NULL,
    id   TEXT COLLATE "C" NOT NULL,
    hsa  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (type, id, hsa)
);
CREATE TABLE patient_links (
    type    TEXT COLLATE "C" NOT NULL,
    id      TEXT COLLATE "C" NOT NULL,
    patient TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (type, id, patient)
);
CREATE INDEX patient_links_patient ON patient_links (patient, type);
CREATE TABLE care_relations (
    type    TEXT COLLATE "C" NOT NULL,
    id      TEXT COLLATE "C" NOT NULL,
    patient TEXT COLLATE "C" NOT NULL,
    hsa     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (type, id, patient, hsa)
);
CREATE INDEX care_relations_patient ON care_relations (patient, hsa);
CREATE TABLE consents (
    type      TEXT COLLATE "C" NOT NULL,
    id        TEXT COLLATE "C" NOT NULL,
    patient   TEXT COLLATE "C" NOT NULL,
    kind      TEXT COLLATE "C" NOT NULL,
    principal TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (type, id, patient, kind, principal)
);
CREATE INDEX consents_patient ON consents (patient, kind, principal);

CREATE TABLE timeline (
    patient TEXT COLLATE "C"   NOT NULL,
    t_ms    BIGINT NOT NULL,
    type    TEXT COLLATE "C"   NOT NULL,
    id      TEXT COLLATE "C"   NOT NULL,
    PRIMARY KEY (patient, t_ms, type, id)
);
CREATE INDEX timeline_resource ON timeline (type, id);

CREATE TABLE unique_keys (
    scope TEXT COLLATE "C" NOT NULL,
    key   TEXT COLLATE "C" NOT NULL,
    type  TEXT COLLATE "C" NOT NULL,
    id    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX unique_keys_resource ON unique_keys (type, id);

CREATE TABLE seen_once (
    scope      TEXT COLLATE "C"   NOT NULL,
    key        TEXT COLLATE "C"   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX seen_once_expiry ON seen_once (expires_at);

CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);

-- SQLite's instr(), which the search builders' `:contains` uses, under the same name (PostgreSQL: strpos).
CREATE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS INTEGER
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT strpos(haystack, needle)';
"#;

// Every statement here goes out with `query_typed`/`execute_typed` (parameter types given): one round trip
// each, with no separate prepare, which is what a write job's dozen statements cost over the network.

/// Columns of a stored version, in the order [`row_to_version`] reads them (SQLite's
/// `read_sql::CURRENT_SQL` and `search_sql::row_to_version`).
const VERSION_COLUMNS: &str =
    "v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected";

/// A row of [`VERSION_COLUMNS`] as a [`StoredVersion`]. `try_get` throughout: a column of an unexpected
/// type is an error, never a panic.
pub(super) fn row_to_version(r: &postgres::Row) -> Result<StoredVersion, StoreError> {
    Ok(StoredVersion {
        resource_type: r.try_get(0)?,
        id: r.try_get(1)?,
        version: r.try_get(2)?,
        last_updated: r.try_get(3)?,
        owner: r.try_get(4)?,
        deleted: r.try_get::<_, i64>(5)? != 0,
        json: r.try_get(6)?,
        protected: r.try_get::<_, i64>(7)? != 0,
    })
}

pub(super) fn setting(c: &mut impl GenericClient, key: &str) -> Result<Option<String>, StoreError> {
    let row = c.query_typed_opt(
        "SELECT value FROM settings WHERE key = $1",
        &[(&key, Type::TEXT)],
    )?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// The current version, its row locked until the transaction ends (`SELECT … FOR UPDATE`).
///
/// Why a LEFT JOIN: when the row is locked by another transaction that then commits a new version, READ
/// COMMITTED re-checks the query on the new `resources_current` row but with the `resource_versions` row it
/// had already joined (the old version). With an inner join that re-check fails and the query answers no
/// row at all — a resource that exists would read as absent. With a LEFT JOIN the locked row still comes
/// back, with no version columns; the lock is then ours, and a second statement (a fresh snapshot) reads the
/// version the other transaction committed. Uncontended, this is one statement.
pub(super) fn current_for_update(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
) -> Result<Option<StoredVersion>, StoreError> {
    let params: [(&(dyn postgres::types::ToSql + Sync), Type); 2] =
        [(&ty, Type::TEXT), (&id, Type::TEXT)];
    let locked = c.query_typed_opt(
        &format!(
            "SELECT {VERSION_COLUMNS} FROM resources_current c LEFT JOIN resource_versions v \
               ON v.type = c.type AND v.id = c.id AND v.version = c.version \
             WHERE c.type = $1 AND c.id = $2 FOR UPDATE OF c"
        ),
        &params,
    )?;
    let Some(row) = locked else {
        return Ok(None);
    };
    if row.try_get::<_, Option<String>>(0)?.is_some() {
        return row_to_version(&row).map(Some);
    }
    // Updated while we waited for the lock (see above): read what was committed.
    let row = c
        .query_typed_opt(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM resources_current c JOIN resource_versions v \
                   ON v.type = c.type AND v.id = c.id AND v.version = c.version \
                 WHERE c.type = $1 AND c.id = $2"
            ),
            &params,
        )?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{ty}/{id}: the current version is not among the stored versions"
            ))
        })?;
    row_to_version(&row).map(Some)
}

/// Writes `v` as the new current version (and its index rows), or answers `VersionConflict` when `v.version`
/// is not the current version + 1 — including when another transaction (another node) wrote that version
/// first: two concurrent creates of one id both see no current row, and the second one's insert meets the
/// first one's `(type, id, version)`. `ON CONFLICT DO NOTHING` makes that a row count, not an error (an error
/// would abort the whole PostgreSQL transaction).
pub(super) fn put_version(c: &mut impl GenericClient, v: NewVersion) -> Result<(), StoreError> {
    let conflict = || StoreError::VersionConflict(format!("{}/{}", v.resource_type, v.id));
    let Some(previous) = v.version.checked_sub(1) else {
        return Err(conflict());
    };
    let (deleted, protected) = (i64::from(v.deleted), i64::from(v.protected));
    // One statement: the version row only when the current version is `previous` (read in this statement's
    // snapshot: if it is stale, the version we write exists already and the insert does nothing), and the
    // current-state row only when the version row went in.
    let written = c.execute_typed(
        "WITH inserted AS ( \
           INSERT INTO resource_versions (type, id, version, last_updated, lu_ms, owner, deleted, json) \
           SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
           WHERE COALESCE((SELECT version FROM resources_current WHERE type = $1 AND id = $2), 0) = $9 \
           ON CONFLICT (type, id, version) DO NOTHING \
           RETURNING 1) \
         INSERT INTO resources_current (type, id, version, deleted, owner, lu_ms, protected) \
         SELECT $1, $2, $3, $7, $6, $5, $10 FROM inserted \
         ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, \
           owner = excluded.owner, lu_ms = excluded.lu_ms, protected = excluded.protected",
        &[
            (&v.resource_type, Type::TEXT),
            (&v.id, Type::TEXT),
            (&v.version, Type::INT8),
            (&v.last_updated, Type::TEXT),
            (&v.last_updated_ms, Type::INT8),
            (&v.owner, Type::TEXT),
            (&deleted, Type::INT8),
            (&v.json, Type::TEXT),
            (&previous, Type::INT8),
            (&protected, Type::INT8),
        ],
    )?;
    if written != 1 {
        return Err(conflict());
    }
    set_index(c, &v.resource_type, &v.id, &v.index)
}

/// Replaces the resource's index rows: one statement whatever their number (the rows go as arrays).
///
/// The DELETE and the INSERT are one statement: both run on the statement's snapshot, so the DELETE never
/// sees (or removes) the rows the INSERT adds, and `search_index` has no unique key for them to meet.
pub(super) fn set_index(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    rows: &[IndexRow],
) -> Result<(), StoreError> {
    let params: Vec<&str> = rows.iter().map(|r| r.param.as_str()).collect();
    let systems: Vec<Option<&str>> = rows.iter().map(|r| r.system.as_deref()).collect();
    let values: Vec<&str> = rows.iter().map(|r| r.value.as_str()).collect();
    let los: Vec<Option<i64>> = rows.iter().map(|r| r.lo).collect();
    let his: Vec<Option<i64>> = rows.iter().map(|r| r.hi).collect();
    c.execute_typed(
        "WITH gone AS (DELETE FROM search_index WHERE type = $1 AND id = $2) \
         INSERT INTO search_index (type, id, param, system, value, lo, hi) \
         SELECT $1, $2, u.param, u.system, u.value, u.lo, u.hi \
         FROM UNNEST($3, $4, $5, $6, $7) AS u(param, system, value, lo, hi)",
        &[
            (&ty, Type::TEXT),
            (&id, Type::TEXT),
            (&params, Type::TEXT_ARRAY),
            (&systems, Type::TEXT_ARRAY),
            (&values, Type::TEXT_ARRAY),
            (&los, Type::INT8_ARRAY),
            (&his, Type::INT8_ARRAY),
        ],
    )?;
    Ok(())
}

/// Claims (scope, key) for `id`; answers the other holder's id when it is taken. The primary key decides:
/// a concurrent claim of the same key on another node waits for the first transaction, then does nothing
/// and reads the holder it committed.
pub(super) fn claim_unique(
    c: &mut impl GenericClient,
    scope: &str,
    key: &str,
    ty: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    // The holder read after a refused insert is a new snapshot: the holder may have released the key in
    // between, and then the claim is tried again (a few times: each round means another transaction
    // released or took it meanwhile).
    for _ in 0..3 {
        let inserted = c.execute_typed(
            "INSERT INTO unique_keys (scope, key, type, id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, key) DO NOTHING",
            &[
                (&scope, Type::TEXT),
                (&key, Type::TEXT),
                (&ty, Type::TEXT),
                (&id, Type::TEXT),
            ],
        )?;
        if inserted == 1 {
            return Ok(None);
        }
        let holder = c.query_typed_opt(
            "SELECT id FROM unique_keys WHERE scope = $1 AND key = $2",
            &[(&scope, Type::TEXT), (&key, Type::TEXT)],
        )?;
        if let Some(row) = holder {
            let holder: String = row.try_get(0)?;
            return Ok((holder != id).then_some(holder));
        }
    }
    Err(StoreError::database(
        DbErrorKind::Contention,
        format!("the unique key {scope} {key} kept changing hands"),
    ))
}

pub(super) fn reassign_unique(
    c: &mut impl GenericClient,
    scope: &str,
    key: &str,
    ty: &str,
    id: &str,
) -> Result<(), StoreError> {
    c.execute_typed(
        "INSERT INTO unique_keys (scope, key, type, id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (scope, key) DO UPDATE SET type = excluded.type, id = excluded.id",
        &[
            (&scope, Type::TEXT),
            (&key, Type::TEXT),
            (&ty, Type::TEXT),
            (&id, Type::TEXT),
        ],
    )?;
    Ok(())
}

pub(super) fn release_unique(
    c: &mut impl GenericClient,
    scope: &str,
    ty: &str,
    id: &str,
) -> Result<(), StoreError> {
    c.execute_typed(
        "DELETE FROM unique_keys WHERE scope = $1 AND type = $2 AND id = $3",
        &[(&scope, Type::TEXT), (&ty, Type::TEXT), (&id, Type::TEXT)],
    )?;
    Ok(())
}

pub(super) fn set_setting(
    c: &mut impl GenericClient,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    c.execute_typed(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[(&key, Type::TEXT), (&value, Type::TEXT)],
    )?;
    Ok(())
}

/// Remembers (scope, key) until `expires_at_unix`; `true` the first time (while it is remembered).
pub(super) fn remember_once(
    c: &mut impl GenericClient,
    scope: &str,
    key: &str,
    expires_at_unix: i64,
) -> Result<bool, StoreError> {
    let now = jiff::Timestamp::now().as_second();
    // Forget what has expired first, as on SQLite, but skip rows another transaction holds (another node
    // forgetting the same rows): a request never waits on another node's housekeeping.
    c.execute_typed(
        "DELETE FROM seen_once WHERE (scope, key) IN \
           (SELECT scope, key FROM seen_once WHERE expires_at < $1 FOR UPDATE SKIP LOCKED)",
        &[(&now, Type::INT8)],
    )?;
    // The primary key decides between nodes (a concurrent insert of the same key waits for the first
    // transaction, then does nothing). An expired entry the delete skipped counts as forgotten: it is
    // overwritten, so the answer never depends on whose housekeeping ran.
    let inserted = c.execute_typed(
        "INSERT INTO seen_once (scope, key, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (scope, key) DO UPDATE SET expires_at = excluded.expires_at \
           WHERE seen_once.expires_at < $4",
        &[
            (&scope, Type::TEXT),
            (&key, Type::TEXT),
            (&expires_at_unix, Type::INT8),
            (&now, Type::INT8),
        ],
    )?;
    Ok(inserted == 1)
}

// The sharing facts and the timeline: each setter makes the resource's rows exactly the given set in one
// statement. Rows outside the set are deleted, the set is inserted with ON CONFLICT DO NOTHING (duplicates in
// the input, and rows that stay, as SQLite's INSERT OR IGNORE). The DELETE never touches a row of the new set,
// so which part of the statement runs first does not matter, and rows that stay are not rewritten (no dead
// tuples for unchanged facts).

pub(super) fn set_participants(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    hsa_ids: &[String],
) -> Result<(), StoreError> {
    c.execute_typed(
        "WITH gone AS (DELETE FROM participants WHERE type = $1 AND id = $2 AND hsa <> ALL($3)) \
         INSERT INTO participants (type, id, hsa) SELECT $1, $2, u.hsa FROM UNNEST($3) AS u(hsa) \
         ON CONFLICT DO NOTHING",
        &[
            (&ty, Type::TEXT),
            (&id, Type::TEXT),
            (&hsa_ids, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

pub(super) fn participants_of(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    // Byte order, as SQLite's BINARY collation.
    c.query_typed(
        "SELECT hsa FROM participants WHERE type = $1 AND id = $2 ORDER BY hsa COLLATE \"C\"",
        &[(&ty, Type::TEXT), (&id, Type::TEXT)],
    )?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

pub(super) fn set_patient_links(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    patients: &[String],
) -> Result<(), StoreError> {
    c.execute_typed(
        "WITH gone AS (DELETE FROM patient_links WHERE type = $1 AND id = $2 AND patient <> ALL($3)) \
         INSERT INTO patient_links (type, id, patient) SELECT $1, $2, u.patient FROM UNNEST($3) AS u(patient) \
         ON CONFLICT DO NOTHING",
        &[
            (&ty, Type::TEXT),
            (&id, Type::TEXT),
            (&patients, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

pub(super) fn set_timeline(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    patients: &[String],
    time_ms: i64,
) -> Result<(), StoreError> {
    c.execute_typed(
        "WITH gone AS (DELETE FROM timeline WHERE type = $1 AND id = $2 \
                         AND NOT (t_ms = $4 AND patient = ANY($3))) \
         INSERT INTO timeline (patient, t_ms, type, id) SELECT u.patient, $4, $1, $2 \
         FROM UNNEST($3) AS u(patient) \
         ON CONFLICT DO NOTHING",
        &[
            (&ty, Type::TEXT),
            (&id, Type::TEXT),
            (&patients, Type::TEXT_ARRAY),
            (&time_ms, Type::INT8),
        ],
    )?;
    Ok(())
}

pub(super) fn set_care_relations(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    relations: &[(String, String)],
) -> Result<(), StoreError> {
    let patients: Vec<&str> = relations.iter().map(|(p, _)| p.as_str()).collect();
    let hsas: Vec<&str> = relations.iter().map(|(_, h)| h.as_str()).collect();
    c.execute_typed(
        "WITH gone AS (DELETE FROM care_relations r WHERE r.type = $1 AND r.id = $2 AND NOT EXISTS \
                         (SELECT 1 FROM UNNEST($3, $4) AS u(patient, hsa) \
                          WHERE u.patient = r.patient AND u.hsa = r.hsa)) \
         INSERT INTO care_relations (type, id, patient, hsa) SELECT $1, $2, u.patient, u.hsa \
         FROM UNNEST($3, $4) AS u(patient, hsa) \
         ON CONFLICT DO NOTHING",
        &[
            (&ty, Type::TEXT),
            (&id, Type::TEXT),
            (&patients, Type::TEXT_ARRAY),
            (&hsas, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

pub(super) fn set_consents(
    c: &mut impl GenericClient,
    ty: &str,
    id: &str,
    decisions: &[(String, String, String)],
) -> Result<(), StoreError> {
    let patients: Vec<&str> = decisions.iter().map(|(p, _, _)| p.as_str()).collect();
    let kinds: Vec<&str> = decisions.iter().map(|(_, k, _)| k.as_str()).collect();
    let principals: Vec<&str> = decisions.iter().map(|(_, _, p)| p.as_str()).collect();
    c.execute_typed(
        "WITH gone AS (DELETE FROM consents d WHERE d.type = $1 AND d.id = $2 AND NOT EXISTS \
                         (SELECT 1 FROM UNNEST($3, $4, $5) AS u(patient, kind, principal) \
                          WHERE u.patient = d.patient AND u.kind = d.kind AND u.principal = d.principal)) \
         INSERT INTO consents (type, id, patient, kind, principal) \
         SELECT $1, $2, u.patient, u.kind, u.principal FROM UNNEST($3, $4, $5) AS u(patient, kind, principal) \
         ON CONFLICT DO NOTHING",
        &[
            (&ty, Type::TEXT),
            (&id, Type::TEXT),
            (&patients, Type::TEXT_ARRAY),
            (&kinds, Type::TEXT_ARRAY),
            (&principals, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}
