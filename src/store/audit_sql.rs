//! The access log's tables in SQLite, and every query on them: appending a record, the auditor indexes,
//! pages, search, verification. The same tables live in two files: `navet.db` holds the change chain
//! (written in the resource writer's transactions), `audit.db` the access chain (written by the appender);
//! reader connections see the latter as the attached schema `access`.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::StoreError;
use crate::audit::Encoded;
use crate::audit::chain::{Chain, Hash, Verification, Walk};
use crate::audit::checkpoint::{self, Checkpoint};
use crate::audit::format::{Entry, set_time};
use crate::audit::query::AuditQuery;

/// The access chain's database file, beside `navet.db`.
pub const ACCESS_DB: &str = "audit.db";
/// The schema name readers attach [`ACCESS_DB`] under.
pub const ACCESS_SCHEMA: &str = "access";

/// The triggers that make the log append-only, checked at every open (a database whose triggers were
/// dropped was altered outside navet).
pub const APPEND_ONLY_TRIGGERS: [&str; 2] = ["audit_log_no_update", "audit_log_no_delete"];

/// Applied to both files at every open; idempotent.
pub const AUDIT_SCHEMA: &str = r#"
-- One row per record (src/audit/FORMAT.md): `record` is the canonical bytes the hash covers; `t_us`, `action`,
-- `outcome` and `purpose` are copies of record fields kept as columns for the auditor's filters.
CREATE TABLE IF NOT EXISTS audit_log (
    seq     INTEGER PRIMARY KEY,       -- 1, 2, 3, … in chain order
    t_us    INTEGER NOT NULL,          -- recorded, µs since the epoch; increases with seq
    action  INTEGER NOT NULL,          -- C R U D E (ASCII)
    outcome INTEGER NOT NULL,          -- 0 4 8
    purpose TEXT,                      -- TREAT ETREAT HOPERAT SYSTEM-INTEGRATION, or NULL
    record  BLOB    NOT NULL,
    hash    BLOB    NOT NULL           -- SHA-256(previous hash ‖ chain ‖ seq ‖ record)
);
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (t_us);
-- The auditor indexes: p|Patient/{id}, h|{HSA-id} (user, care unit, principal, receiver), c|{client id}.
CREATE TABLE IF NOT EXISTS audit_key (
    k   TEXT    NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (k, seq)
) WITHOUT ROWID;
-- Signed checkpoints (audit/checkpoint.rs), one canonical line each; also in audit-checkpoints.log.
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    n    INTEGER PRIMARY KEY,
    line TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_key_no_update BEFORE UPDATE ON audit_key
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_key_no_delete BEFORE DELETE ON audit_key
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
"#;

/// Before [`AUDIT_SCHEMA`]: a `navet.db` from before format 1 kept AuditEvent JSON in `audit_log`; that
/// table is kept, read-only, as `audit_log_v1` (its own triggers), and the new tables start beside it.
pub fn migrate_v1(conn: &Connection) -> Result<(), StoreError> {
    let old = conn
        .prepare("SELECT 1 FROM pragma_table_info('audit_log') WHERE name = 'json'")?
        .exists([])?;
    if old {
        conn.execute_batch(
            "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete; \
             ALTER TABLE audit_log RENAME TO audit_log_v1; \
             CREATE TRIGGER audit_log_v1_no_update BEFORE UPDATE ON audit_log_v1 \
             BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END; \
             CREATE TRIGGER audit_log_v1_no_delete BEFORE DELETE ON audit_log_v1 \
             BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;",
        )?;
    }
    Ok(())
}

/// The newest record of a chain: (seq, hash, t_us), or the genesis.
pub fn head(conn: &Connection, schema: &str) -> Result<(i64, Hash, i64), StoreError> {
    let row: Option<(i64, Vec<u8>, i64)> = conn
        .prepare_cached(&format!(
            "SELECT seq, hash, t_us FROM {schema}.audit_log ORDER BY seq DESC LIMIT 1"
        ))?
        .query_row([], |r| Ok((r.get(0)?, bytes_of(r, 1)?, r.get(2)?)))
        .optional()?;
    Ok(match row {
        None => (0, crate::audit::chain::GENESIS, 0),
        Some((seq, hash, t)) => (seq, to_hash(&hash), t),
    })
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    if bytes.len() == 32 {
        h.copy_from_slice(bytes);
    }
    h
}

/// Inserts `record` as record `prev.0 + 1` of `chain` after `prev`; answers the new head. One insert for the
/// record, one per index key; the caller's transaction makes it durable.
pub fn insert(
    conn: &Connection,
    chain: Chain,
    prev: (i64, Hash),
    record: &Encoded,
    time_us: i64,
) -> Result<(i64, Hash), StoreError> {
    let seq = prev.0 + 1;
    let mut bytes = record.bytes.clone();
    set_time(&mut bytes, time_us);
    let hash = crate::audit::chain::link_hash(&prev.1, chain, seq, &bytes);
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, t_us, action, outcome, purpose, record, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        seq,
        time_us,
        record.action,
        record.outcome,
        record.purpose,
        bytes,
        &hash[..]
    ])?;
    let mut key = conn.prepare_cached("INSERT INTO audit_key (k, seq) VALUES (?1, ?2)")?;
    for k in &record.keys {
        key.execute(params![k, seq])?;
    }
    Ok((seq, hash))
}

/// One stored record, decoded.
#[derive(Debug, Clone)]
pub struct Logged {
    pub chain: Chain,
    pub seq: i64,
    pub entry: Entry,
}

impl Logged {
    pub fn id(&self) -> String {
        self.chain.id(self.seq)
    }

    /// The AuditEvent view.
    pub fn json(&self) -> String {
        crate::audit::view::audit_event(&self.entry, &self.id()).to_string()
    }

    /// The AuditEvent view carrying the stored record and its hash (the export, FORMAT.md "The export").
    pub fn json_with_record(&self, record: &[u8], hash: &[u8]) -> String {
        use base64::Engine;
        let mut event = crate::audit::view::audit_event(&self.entry, &self.id());
        event["meta"]["extension"] = serde_json::json!([{
            "url": crate::audit::view::RECORD_EXTENSION,
            "valueString": format!(
                "{}:{}:{}:{}",
                self.chain.name(),
                self.seq,
                base64::engine::general_purpose::STANDARD.encode(record),
                crate::audit::chain::hex(hash)
            )
        }]);
        event.to_string()
    }
}

fn chain_of(letter: &str) -> Chain {
    if letter == "c" {
        Chain::Change
    } else {
        Chain::Access
    }
}

fn logged(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, Vec<u8>)> {
    Ok((row.get(0)?, row.get(1)?, bytes_of(row, 2)?))
}

/// A stored record or hash as bytes, whatever its storage class: a value someone replaced with text (SQL
/// `||` makes text) is then simply a changed record for the verifier, not a read error.
fn bytes_of(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Vec<u8>> {
    Ok(match row.get_ref(index)? {
        rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b.to_vec(),
        _ => Vec::new(),
    })
}

fn decode(rows: Vec<(String, i64, Vec<u8>)>) -> Result<Vec<Logged>, StoreError> {
    rows.into_iter()
        .map(|(letter, seq, bytes)| {
            let chain = chain_of(&letter);
            Entry::decode(&bytes)
                .map(|entry| Logged { chain, seq, entry })
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", chain.id(seq))))
        })
        .collect()
}

/// The WHERE clause of one chain's part of a search.
fn conditions(
    q: &AuditQuery,
    chain: Chain,
    schema: &str,
    args: &mut Vec<crate::store::arg::Arg>,
) -> String {
    let mut sql = String::from(" WHERE 1 = 1");
    if let Some(from) = q.from_us {
        sql.push_str(" AND l.t_us >= ?");
        args.push(from.into());
    }
    if let Some(to) = q.to_us {
        sql.push_str(" AND l.t_us < ?");
        args.push(to.into());
    }
    let mut list = |sql: &mut String, column: &str, values: Vec<crate::store::arg::Arg>| {
        let marks = vec!["?"; values.len()].join(", ");
        sql.push_str(&format!(" AND {column} IN ({marks})"));
        args.extend(values);
    };
    if let Some(ids) = &q.ids {
        let seqs: Vec<_> = ids
            .iter()
            .filter(|(c, _)| *c == chain)
            .map(|(_, s)| (*s).into())
            .collect();
        list(&mut sql, "l.seq", seqs);
    }
    if let Some(outcomes) = &q.outcomes {
        list(
            &mut sql,
            "l.outcome",
            outcomes.iter().map(|o| i64::from(*o).into()).collect(),
        );
    }
    if let Some(actions) = &q.actions {
        list(
            &mut sql,
            "l.action",
            actions.iter().map(|a| i64::from(*a).into()).collect(),
        );
    }
    if let Some(purposes) = &q.purposes {
        list(
            &mut sql,
            "l.purpose",
            purposes.iter().map(|p| p.clone().into()).collect(),
        );
    }
    for group in &q.key_groups {
        let marks = vec!["?"; group.len()].join(", ");
        sql.push_str(&format!(
            " AND l.seq IN (SELECT seq FROM {schema}.audit_key WHERE k IN ({marks}))"
        ));
        args.extend(group.iter().map(|k| k.clone().into()));
    }
    sql
}

/// Both chains' matches as one compound SELECT of (chain letter, seq, record, t_us), oldest first.
fn matching(q: &AuditQuery, args: &mut Vec<crate::store::arg::Arg>) -> String {
    let parts: Vec<String> = [(Chain::Change, "main"), (Chain::Access, ACCESS_SCHEMA)]
        .into_iter()
        .map(|(chain, schema)| {
            let letter = chain.letter() as char;
            let cond = conditions(q, chain, schema, args);
            format!("SELECT '{letter}' AS ch, l.seq AS seq, l.record AS record, l.t_us AS t_us FROM {schema}.audit_log l{cond}")
        })
        .collect();
    parts.join(" UNION ALL ")
}

/// A page of search matches in recorded order (the order of the chains' times), and whether more follow.
pub fn search(
    conn: &Connection,
    q: &AuditQuery,
    offset: usize,
    count: usize,
    total: bool,
) -> Result<(Vec<Logged>, bool, Option<u64>), StoreError> {
    if q.matches_nothing() {
        return Ok((Vec::new(), false, total.then_some(0)));
    }
    let mut args = Vec::new();
    let inner = matching(q, &mut args);
    let order = if q.newest_first { "DESC" } else { "ASC" };
    let sql =
        format!("SELECT ch, seq, record FROM ({inner}) ORDER BY t_us {order} LIMIT ? OFFSET ?");
    let mut page_args = args.clone();
    page_args.push(
        i64::try_from(count.saturating_add(1))
            .unwrap_or(i64::MAX)
            .into(),
    );
    page_args.push(i64::try_from(offset).unwrap_or(i64::MAX).into());
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(page_args), logged)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut found = decode(rows)?;
    let more = found.len() > count;
    found.truncate(count);
    let total = if total {
        let n: i64 = conn
            .prepare_cached(&format!("SELECT count(*) FROM ({inner})"))?
            .query_row(params_from_iter(args), |r| r.get(0))?;
        Some(n.max(0) as u64)
    } else {
        None
    };
    Ok((found, more, total))
}

/// Records recorded in `[from_us, to_us)` after the record recorded at `after_us`, oldest first, as
/// (time, AuditEvent view with the stored record): the export and the sample page through the log with the
/// time of the last record they got.
pub fn page(
    conn: &Connection,
    from_us: i64,
    to_us: i64,
    after_us: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    let sql = format!(
        "SELECT ch, seq, record, t_us, hash FROM (\
           SELECT 'c' AS ch, seq, record, t_us, hash FROM main.audit_log WHERE t_us > ?1 AND t_us >= ?2 AND t_us < ?3 \
           UNION ALL \
           SELECT 'a', seq, record, t_us, hash FROM {ACCESS_SCHEMA}.audit_log WHERE t_us > ?1 AND t_us >= ?2 AND t_us < ?3) \
         ORDER BY t_us LIMIT ?4"
    );
    type Row = (String, i64, Vec<u8>, i64, Vec<u8>);
    let rows: Vec<Row> = conn
        .prepare_cached(&sql)?
        .query_map(
            params![
                after_us,
                from_us,
                to_us,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    bytes_of(r, 2)?,
                    r.get(3)?,
                    bytes_of(r, 4)?,
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(letter, seq, record, t, hash)| {
            let found = decode(vec![(letter, seq, record.clone())])?;
            let logged = found
                .into_iter()
                .next()
                .ok_or(StoreError::Corrupt("no row".into()))?;
            Ok((t, logged.json_with_record(&record, &hash)))
        })
        .collect()
}

/// The checkpoints stored in a database (its `audit_checkpoint` table), oldest first.
pub fn stored_checkpoints(conn: &Connection, schema: &str) -> Result<Vec<Checkpoint>, String> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT n, line FROM {schema}.audit_checkpoint ORDER BY n"
        ))
        .map_err(|e| e.to_string())?;
    let rows: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    rows.into_iter()
        .map(|(n, line)| {
            let c = Checkpoint::parse(&line)
                .map_err(|e| format!("checkpoint {n} in the database: {e}"))?;
            if c.n == n {
                Ok(c)
            } else {
                Err(format!("checkpoint row {n} holds checkpoint {}", c.n))
            }
        })
        .collect()
}

/// Walks one chain from its first record, then compares it with the checkpoints.
fn walk_chain(
    conn: &Connection,
    chain: Chain,
    schema: &str,
    checkpoints: &[Checkpoint],
) -> Result<(u64, Option<crate::audit::chain::Broken>), StoreError> {
    let mut walk = Walk::new(chain, checkpoints);
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, record, hash FROM {schema}.audit_log ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (seq, record, hash): (i64, Vec<u8>, Vec<u8>) =
            (row.get(0)?, bytes_of(row, 1)?, bytes_of(row, 2)?);
        if !walk.check(seq, &record, &hash) {
            break;
        }
    }
    let records = walk.records;
    Ok((records, walk.finish(checkpoints)))
}

/// Verifies both chains of a connection that sees the change chain as `main` and the access chain as
/// `access_schema` (or has no access chain: `None`), against the checkpoints given.
pub fn verify(
    conn: &Connection,
    access_schema: Option<&str>,
    checkpoints: &[Checkpoint],
) -> Result<Verification, StoreError> {
    let mut records = 0;
    let mut first_broken = None;
    for chain in Chain::ALL {
        let schema = match chain {
            Chain::Change => Some("main"),
            Chain::Access => access_schema,
        };
        let (n, broken) = match schema {
            Some(schema) => walk_chain(conn, chain, schema, checkpoints)?,
            // No access database at all: an empty chain, which the checkpoints may show was removed.
            None => {
                let walk = Walk::new(chain, checkpoints);
                (0, walk.finish(checkpoints))
            }
        };
        records += n;
        if first_broken.is_none() {
            first_broken = broken;
        }
    }
    Ok(Verification {
        records,
        checkpoints: checkpoints.len() as u64,
        first_broken,
    })
}

/// The checkpoints of the database and the file, merged and checked; an error is a broken log.
pub fn all_checkpoints(
    conn: &Connection,
    access_schema: Option<&str>,
    data_dir: &Path,
    extra: &[std::path::PathBuf],
    trusted_key: Option<&[u8]>,
) -> Result<Vec<Checkpoint>, String> {
    let mut sources: Vec<(String, Vec<Checkpoint>)> = Vec::new();
    if let Some(schema) = access_schema {
        sources.push(("the database".into(), stored_checkpoints(conn, schema)?));
    }
    let file = data_dir.join(checkpoint::FILE);
    sources.push((file.display().to_string(), checkpoint::read_file(&file)?));
    for path in extra {
        sources.push((path.display().to_string(), checkpoint::read_file(path)?));
    }
    let borrowed: Vec<(&str, Vec<Checkpoint>)> = sources
        .iter()
        .map(|(s, l)| (s.as_str(), l.clone()))
        .collect();
    checkpoint::merge(&borrowed, trusted_key)
}

/// The public key of the checkpoint key file in `data_dir`, if there is one (read only, never generated).
pub fn trusted_key(data_dir: &Path) -> Option<Vec<u8>> {
    let path = data_dir.join(checkpoint::KEY_FILE);
    path.exists()
        .then(|| checkpoint::CheckpointKey::load_or_generate(data_dir).ok())
        .flatten()
        .map(|k| k.public())
}

/// Verifies the log of the data directory in `data_dir`, opened read-only: `navet audit verify` runs this
/// offline, on a live data directory or a copy of one. `extra` are more copies of the checkpoint file (the
/// ones an operator shipped elsewhere).
pub fn verify_data_dir_with(
    data_dir: &Path,
    extra: &[std::path::PathBuf],
) -> Result<Verification, String> {
    let path = data_dir.join("navet.db");
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let access = data_dir.join(ACCESS_DB);
    let schema = if access.exists() {
        conn.execute(
            &format!("ATTACH DATABASE ?1 AS {ACCESS_SCHEMA}"),
            params![access.to_string_lossy()],
        )
        .map_err(|e| format!("{}: {e}", access.display()))?;
        Some(ACCESS_SCHEMA)
    } else {
        None
    };
    let has_table = |schema: &str| {
        conn.prepare(&format!(
            "SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = 'audit_log'"
        ))
        .and_then(|mut s| s.exists([]))
        .unwrap_or(false)
    };
    if !has_table("main") {
        return Err(format!("{} holds no access log", path.display()));
    }
    let schema = schema.filter(|s| has_table(s));
    let trusted = trusted_key(data_dir);
    let broken_checkpoints = |reason: String| Verification {
        records: 0,
        checkpoints: 0,
        first_broken: Some(crate::audit::chain::Broken {
            chain: Chain::Access,
            seq: 0,
            id: "checkpoints".into(),
            reason,
        }),
    };
    let checkpoints = match all_checkpoints(&conn, schema, data_dir, extra, trusted.as_deref()) {
        Ok(c) => c,
        Err(reason) => return Ok(broken_checkpoints(reason)),
    };
    verify(&conn, schema, &checkpoints).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks the newest `n` records of a chain (hash, link, no gap) and that the newest checkpoint matches the
/// chain; answers the head. Start-up runs it, so navet neither appends to nor serves on a log whose end was
/// changed, cut off or recomputed.
pub fn check_tail(
    conn: &Connection,
    chain: Chain,
    schema: &str,
    n: usize,
    latest: Option<&Checkpoint>,
) -> Result<Result<(i64, Hash, i64), crate::audit::chain::Broken>, StoreError> {
    let (last, head_hash, t_us) = head(conn, schema)?;
    let start = last
        .saturating_sub(i64::try_from(n).unwrap_or(i64::MAX))
        .max(0);
    let anchor: Hash = if start == 0 {
        crate::audit::chain::GENESIS
    } else {
        let h: Option<Vec<u8>> = conn
            .prepare(&format!(
                "SELECT hash FROM {schema}.audit_log WHERE seq = ?1"
            ))?
            .query_row([start], |r| bytes_of(r, 0))
            .optional()?;
        match h {
            Some(h) => to_hash(&h),
            None => {
                return Ok(Err(crate::audit::chain::Broken {
                    chain,
                    seq: start,
                    id: chain.id(start),
                    reason: "the record is missing".into(),
                }));
            }
        }
    };
    let mut walk = Walk::from(chain, start, anchor);
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, record, hash FROM {schema}.audit_log WHERE seq > ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query([start])?;
    while let Some(row) = rows.next()? {
        let (seq, record, hash): (i64, Vec<u8>, Vec<u8>) =
            (row.get(0)?, bytes_of(row, 1)?, bytes_of(row, 2)?);
        if !walk.check(seq, &record, &hash) {
            break;
        }
    }
    if let Some(broken) = walk.finish(&[]) {
        return Ok(Err(broken));
    }
    if let Some(c) = latest {
        let (seq, hash) = c.head(chain);
        if seq > last {
            return Ok(Err(crate::audit::chain::Broken {
                chain,
                seq: last + 1,
                id: chain.id(last + 1),
                reason: format!(
                    "the chain ends at record {last}, but signed checkpoint {} covers {seq} records (truncated)",
                    c.n
                ),
            }));
        }
        if seq > 0 {
            let h: Option<Vec<u8>> = conn
                .prepare(&format!(
                    "SELECT hash FROM {schema}.audit_log WHERE seq = ?1"
                ))?
                .query_row([seq], |r| bytes_of(r, 0))
                .optional()?;
            if h.as_deref() != Some(&hash[..]) {
                return Ok(Err(crate::audit::chain::Broken {
                    chain,
                    seq,
                    id: chain.id(seq),
                    reason: format!(
                        "record {seq} does not have the hash signed in checkpoint {}: the chain was recomputed",
                        c.n
                    ),
                }));
            }
        }
    }
    Ok(Ok((last, head_hash, t_us)))
}

/// Every record of the data directory's log as (AuditEvent id, AuditEvent view), in recorded order, read
/// offline (tests and tools; the server uses [`page`]).
pub fn events_in_data_dir(data_dir: &Path) -> Result<Vec<(String, String)>, String> {
    let path = data_dir.join("navet.db");
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    conn.execute(
        &format!("ATTACH DATABASE ?1 AS {ACCESS_SCHEMA}"),
        params![data_dir.join(ACCESS_DB).to_string_lossy()],
    )
    .map_err(|e| e.to_string())?;
    let (found, _, _) = search(&conn, &AuditQuery::default(), 0, usize::MAX - 1, false)
        .map_err(|e| e.to_string())?;
    Ok(found.iter().map(|l| (l.id(), l.json())).collect())
}
