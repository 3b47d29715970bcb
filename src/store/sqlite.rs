//! The embedded SQLite store: WAL with `synchronous=FULL`, one writer thread doing group commit, a small
//! pool of reader connections (WAL readers never block the writer, nor it them).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::schema::SQLITE_SCHEMA;
use super::search_sql::{self, row_to_version};
use super::{
    Actor, DbErrorKind, HistoryQuery, JobOutput, NewVersion, SearchPage, Store, StoreError,
    StoredVersion, WriteJob, WriteTx,
};
use crate::search::query::SearchQuery;

/// Jobs waiting for the writer beyond this are refused with 503 rather than queued without bound.
const WRITE_QUEUE: usize = 4096;
/// At most this many jobs share one transaction and fsync.
const MAX_BATCH: usize = 512;
const READERS: usize = 4;
/// Page cache of the writing connection, in KiB (see `open_writer`).
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// Page cache of each reading connection, in KiB: the hot index pages of reads and searches stay in it.
const READER_CACHE_KIB: u32 = 16 * 1024;

type JobResult = Result<JobOutput, StoreError>;

struct Job {
    actor: Actor,
    run: WriteJob,
    reply: oneshot::Sender<JobResult>,
}

pub struct SqliteStore {
    writer: Mutex<Option<SyncSender<Job>>>,
    /// The access chain's appender and the checkpointer (`store/appender.rs`).
    appender: Arc<super::appender::Appender>,
    checkpointer: Arc<super::appender::Checkpointer>,
    /// Dropping it stops the checkpoint thread.
    checkpoint_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    data_dir: std::path::PathBuf,
    /// Jobs sent and not yet taken by the writer: the `navet_writer_queue_depth` gauge.
    queued: Arc<AtomicUsize>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<ReaderPool>,
}

struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
}

impl ReaderPool {
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.idle.lock().map_err(|_| StoreError::Busy)?.pop();
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < READERS * 4
        {
            idle.push(conn);
        }
        out
    }
}

/// Prepared statements kept per connection. rusqlite's default of 16 is fewer than the writer's distinct
/// statements, and re-preparing the evicted ones showed as 8% of the writer's time under load.
const STATEMENT_CACHE: usize = 256;

/// Settings every connection of the store gets. QPSG (the query planner stability guarantee,
/// https://sqlite.org/c3ref/c_dbconfig_defensive.html): without it SQLite marks some statements (the visibility
/// rule's OR terms, after constant propagation) to be re-planned whenever a parameter is bound anew, and
/// rusqlite's statement cache clears every binding when a statement comes back to it, so every run of such a
/// statement was prepared again from the SQL text (measured: 28% of an unlogged read by id, 18-20% of the writer's
/// time in the ordination bench, as `sqlite3Reprepare`). navet keeps no
/// planner statistics (no ANALYZE), so plans never depended on bound values anyway.
pub(super) fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// The one connection that writes: WAL + `synchronous=FULL`, so a commit is on disk before it is
/// acknowledged and survives kill -9 and power loss (https://sqlite.org/pragma.html#pragma_synchronous).
fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open(format!(
            "could not enable WAL (got {mode})"
        )));
    }
    // temp_store = MEMORY: each job's SAVEPOINT keeps its rollback pages in memory instead of a statement
    // journal file (measured: 15% of the writer's time went to those writes).
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;",
    )?;
    // A 64 MiB page cache (SQLite's default is 2 MiB): a group-commit batch of orders touches far more index
    // pages than 2 MiB holds, so the writer kept re-reading pages from the OS and spilling dirty ones to the
    // statement journal mid-transaction (measured: about a fifth of the writer's time in the ordination bench
    // went to `readDbPage`, `pagerStress` and their copies). https://sqlite.org/pragma.html#pragma_cache_size
    conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))?;
    tune(&conn)?;
    Ok(conn)
}

/// Readers cannot write (`query_only`): the writer is the only connection that changes the database. They
/// see the access chain's database as the schema `access` (`store/audit_sql.rs`).
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    let access = path.with_file_name(super::audit_sql::ACCESS_DB);
    conn.execute(
        &format!("ATTACH DATABASE ?1 AS {}", super::audit_sql::ACCESS_SCHEMA),
        params![access.to_string_lossy()],
    )?;
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = 5000; PRAGMA query_only = 1; PRAGMA cache_size = -{READER_CACHE_KIB};"
    ))?;
    tune(&conn)?;
    Ok(conn)
}

/// The query builders' neutral values, bound by rusqlite.
impl rusqlite::ToSql for super::arg::Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            super::arg::Arg::Null => ValueRef::Null,
            super::arg::Arg::Integer(i) => ValueRef::Integer(*i),
            super::arg::Arg::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

/// SQLite's errors in the store's neutral terms (`StoreError::Database`): the classification lives here, with
/// the one driver that produces them.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let kind = match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => match &e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    DbErrorKind::UniqueViolation
                }
                _ => DbErrorKind::Other,
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbErrorKind::Contention,
            Some(ErrorCode::CannotOpen) => DbErrorKind::Unavailable,
            _ => DbErrorKind::Other,
        };
        StoreError::database(kind, e.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `navet.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, super::appender::CHECKPOINT_INTERVAL)
    }

    /// [`SqliteStore::open`] with the interval between signed checkpoints of the access log.
    pub fn open_with(
        data_dir: &Path,
        checkpoint_interval: std::time::Duration,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Open(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join("navet.db");
        let conn = open_writer(&path)?;
        // The access log (store/appender.rs): both databases' append-only triggers, the end of both chains
        // and the newest signed checkpoint are checked before navet serves.
        super::appender::check_triggers(&conn, data_dir, &path)?;
        super::audit_sql::migrate_v1(&conn)?;
        conn.execute_batch(SQLITE_SCHEMA)?;
        conn.execute_batch(super::audit_sql::AUDIT_SCHEMA)?;
        migrate(&conn)?;
        let key = crate::audit::checkpoint::CheckpointKey::load_or_generate(data_dir)
            .map_err(StoreError::Open)?;
        let (appender, latest) = super::appender::Appender::open(data_dir, &key)?;
        let appender = Arc::new(appender);
        let tail = super::audit_sql::check_tail(
            &conn,
            crate::audit::chain::Chain::Change,
            "main",
            super::appender::TAIL_CHECKED,
            latest.as_ref(),
        )?;
        if let Err(broken) = tail {
            appender.close();
            return Err(super::appender::broken_at_start(&broken, data_dir));
        }
        let checkpointer = Arc::new(super::appender::Checkpointer::new(data_dir, key, latest)?);
        let (checkpoint_stop, stop) = std::sync::mpsc::channel::<()>();
        {
            let (appender, checkpointer) = (appender.clone(), checkpointer.clone());
            std::thread::Builder::new()
                .name("navet-audit-checkpoints".into())
                .spawn(move || {
                    // Two duties on one clock: the access log's WAL is copied into its database file
                    // often (the appender never stops for it), and a checkpoint is signed per interval.
                    let tick = super::appender::WAL_CHECKPOINT_INTERVAL.min(checkpoint_interval);
                    let mut signed = std::time::Instant::now();
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stop.recv_timeout(tick)
                    {
                        checkpointer.checkpoint_wal();
                        if signed.elapsed() >= checkpoint_interval {
                            signed = std::time::Instant::now();
                            if let Err(e) = checkpointer.checkpoint(appender.head()) {
                                tracing::error!(error = %e, "signing an access-log checkpoint failed");
                            }
                        }
                    }
                })
                .map_err(|e| StoreError::Open(format!("could not start the checkpointer: {e}")))?;
        }

        let mut idle = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            idle.push(open_reader(&path)?);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(WRITE_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let writer_queued = queued.clone();
        let handle = std::thread::Builder::new()
            .name("navet-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, &writer_queued))
            .map_err(|e| StoreError::Open(format!("could not start the writer: {e}")))?;
        Ok(SqliteStore {
            writer: Mutex::new(Some(tx)),
            appender,
            checkpointer,
            checkpoint_stop: Mutex::new(Some(checkpoint_stop)),
            data_dir: data_dir.to_owned(),
            queued,
            writer_thread: Mutex::new(Some(handle)),
            readers: Arc::new(ReaderPool {
                idle: Mutex::new(idle),
                path,
            }),
        })
    }

    /// [`Store::close`] for a caller without an async runtime (`navet migrate`, `navet import`): the writer
    /// finishes its queue, the appender stops, a last checkpoint is signed.
    pub fn shutdown_blocking(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Some(handle) = self.writer_thread.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
        if let Ok(mut stop) = self.checkpoint_stop.lock() {
            stop.take();
        }
        self.appender.close();
        if let Err(e) = self.checkpointer.checkpoint(self.appender.head()) {
            tracing::error!(error = %e, "the shutdown checkpoint of the access log failed");
        }
    }

    async fn read_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|_| StoreError::Busy)?
    }
}

/// The writer: takes every job waiting (up to MAX_BATCH), runs each in a savepoint of one transaction,
/// commits once, then answers them all. A job's error rolls back that job only; a failed commit fails all.
fn writer_loop(mut conn: Connection, rx: Receiver<Job>, queued: &AtomicUsize) {
    let mut last_ms = 0i64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let waiting = queued.fetch_sub(batch.len(), Ordering::Relaxed);
        metrics::gauge!("navet_writer_queue_depth").set(waiting.saturating_sub(batch.len()) as f64);
        metrics::histogram!("navet_writer_batch_size").record(batch.len() as f64);
        let started = std::time::Instant::now();
        last_ms = jiff::Timestamp::now().as_millisecond().max(last_ms);
        let now = (format_instant(last_ms), last_ms);
        let results = run_batch(&mut conn, &mut batch, &now);
        metrics::histogram!("navet_writer_commit_seconds").record(started.elapsed().as_secs_f64());
        for (job, result) in batch.into_iter().zip(results) {
            // The requester may have gone away; its work is committed all the same.
            let _ = job.reply.send(result);
        }
    }
    // Channel closed: a clean shutdown. Checkpoint so the WAL does not grow across restarts.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

fn run_batch(conn: &mut Connection, batch: &mut [Job], now: &(String, i64)) -> Vec<JobResult> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = StoreError::from(e);
        return batch
            .iter()
            .map(|_| Err(StoreError::database(DbErrorKind::Other, e.to_string())))
            .collect();
    }
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let run = std::mem::replace(
            &mut job.run,
            Box::new(|_| JobOutput {
                value: Box::new(()),
                commit: false,
            }),
        );
        let result = (|| {
            conn.execute_batch("SAVEPOINT job")?;
            let mut tx = SqliteTx {
                conn,
                actor: &job.actor,
                now,
            };
            let out = std::panic::catch_unwind(AssertUnwindSafe(|| run(&mut tx)));
            let commit = matches!(&out, Ok(o) if o.commit);
            if commit {
                conn.execute_batch("RELEASE job")?;
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            }
            Ok::<_, rusqlite::Error>(out.map_err(|_| StoreError::JobPanicked))
        })();
        results.push(result.unwrap_or_else(|e| Err(e.into())));
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        tracing::error!(error = %e, "group commit failed; every job of the batch is failed");
        let _ = conn.execute_batch("ROLLBACK");
        return batch
            .iter()
            .map(|_| {
                Err(StoreError::database(
                    DbErrorKind::Other,
                    format!("the commit failed: {e}"),
                ))
            })
            .collect();
    }
    results
}

/// FHIR instant with millisecond precision in UTC (FHIR R4 §2.24.0.0 instant).
pub fn format_instant(ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!(
        "{}.{:03}Z",
        ts.strftime("%Y-%m-%dT%H:%M:%S"),
        ms.rem_euclid(1000)
    )
}

/// Brings a data directory made by an earlier navet up to the current schema.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_protected = conn
        .prepare("SELECT 1 FROM pragma_table_info('resources_current') WHERE name = 'protected'")?
        .exists([])?;
    if !has_protected {
        // resources_current.protected: set from the current Patient versions that carry the label.
        conn.execute_batch(
            "ALTER TABLE resources_current ADD COLUMN protected INTEGER NOT NULL DEFAULT 0",
        )?;
        let mut stmt = conn.prepare(
            "SELECT c.id, v.json FROM resources_current c JOIN resource_versions v \
               ON v.type = c.type AND v.id = c.id AND v.version = c.version \
             WHERE c.type = 'Patient' AND v.json IS NOT NULL",
        )?;
        let protected: Vec<String> = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .filter_map(Result::ok)
            .filter(|(_, json)| crate::fhir::protected::is_protected_text(json))
            .map(|(id, _)| id)
            .collect();
        for id in protected {
            conn.execute(
                "UPDATE resources_current SET protected = 1 WHERE type = 'Patient' AND id = ?1",
                params![id],
            )?;
        }
    }
    Ok(())
}

struct SqliteTx<'a> {
    conn: &'a Connection,
    actor: &'a Actor,
    now: &'a (String, i64),
}

fn read_current(
    conn: &Connection,
    ty: &str,
    id: &str,
) -> Result<Option<StoredVersion>, StoreError> {
    Ok(conn
        .prepare_cached(super::read_sql::CURRENT_SQL)?
        .query_row(params![ty, id], row_to_version)
        .optional()?)
}

impl WriteTx for SqliteTx<'_> {
    fn actor(&self) -> &Actor {
        self.actor
    }

    fn now(&self) -> (String, i64) {
        self.now.clone()
    }

    fn current(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError> {
        read_current(self.conn, resource_type, id)
    }

    fn search_ids(
        &mut self,
        resource_type: &str,
        query: &SearchQuery,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        search_sql::matching_ids(self.conn, self.actor, resource_type, query, limit)
    }

    fn search_ids_as(
        &mut self,
        actor: &Actor,
        resource_type: &str,
        query: &SearchQuery,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        search_sql::matching_ids(self.conn, actor, resource_type, query, limit)
    }

    fn put_version(&mut self, v: NewVersion) -> Result<(), StoreError> {
        let current: Option<i64> = self
            .conn
            .prepare_cached("SELECT version FROM resources_current WHERE type = ?1 AND id = ?2")?
            .query_row(params![v.resource_type, v.id], |r| r.get(0))
            .optional()?;
        if current.unwrap_or(0) + 1 != v.version {
            return Err(StoreError::VersionConflict(format!(
                "{}/{}",
                v.resource_type, v.id
            )));
        }
        self.conn
            .prepare_cached(
                "INSERT INTO resource_versions (type, id, version, last_updated, lu_ms, owner, deleted, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                v.resource_type,
                v.id,
                v.version,
                v.last_updated,
                v.last_updated_ms,
                v.owner,
                v.deleted as i64,
                v.json
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO resources_current (type, id, version, deleted, owner, lu_ms, protected) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, \
                   deleted = excluded.deleted, owner = excluded.owner, lu_ms = excluded.lu_ms, \
                   protected = excluded.protected",
            )?
            .execute(params![
                v.resource_type,
                v.id,
                v.version,
                v.deleted as i64,
                v.owner,
                v.last_updated_ms,
                v.protected as i64
            ])?;
        self.set_index(&v.resource_type, &v.id, &v.index)
    }

    fn set_index(
        &mut self,
        resource_type: &str,
        id: &str,
        rows: &[crate::search::index::IndexRow],
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM search_index WHERE type = ?1 AND id = ?2")?
            .execute(params![resource_type, id])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO search_index (type, id, param, system, value, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for row in rows {
            insert.execute(params![
                resource_type,
                id,
                row.param,
                row.system,
                row.value,
                row.lo,
                row.hi
            ])?;
        }
        Ok(())
    }

    fn claim_unique(
        &mut self,
        scope: &str,
        key: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        // INSERT … ON CONFLICT DO NOTHING, then read the holder: the primary key decides, not a prior read,
        // so the same code is race-free on a database with concurrent writers (PostgreSQL).
        self.conn
            .prepare_cached(
                "INSERT INTO unique_keys (scope, key, type, id) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )?
            .execute(params![scope, key, resource_type, id])?;
        let holder: String = self
            .conn
            .prepare_cached("SELECT id FROM unique_keys WHERE scope = ?1 AND key = ?2")?
            .query_row(params![scope, key], |r| r.get(0))?;
        Ok((holder != id).then_some(holder))
    }

    fn reassign_unique(
        &mut self,
        scope: &str,
        key: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO unique_keys (scope, key, type, id) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (scope, key) DO UPDATE SET type = excluded.type, id = excluded.id",
            )?
            .execute(params![scope, key, resource_type, id])?;
        Ok(())
    }

    fn release_unique(
        &mut self,
        scope: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM unique_keys WHERE scope = ?1 AND type = ?2 AND id = ?3")?
            .execute(params![scope, resource_type, id])?;
        Ok(())
    }

    fn serialize_on(&mut self, _scope: &str, _key: &str) -> Result<(), StoreError> {
        // One writer thread runs every job in turn: nothing to wait for.
        Ok(())
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    fn set_participants(
        &mut self,
        resource_type: &str,
        id: &str,
        hsa_ids: &[String],
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM participants WHERE type = ?1 AND id = ?2")?
            .execute(params![resource_type, id])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO participants (type, id, hsa) VALUES (?1, ?2, ?3)",
        )?;
        for hsa in hsa_ids {
            insert.execute(params![resource_type, id, hsa])?;
        }
        Ok(())
    }

    fn participants_of(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hsa FROM participants WHERE type = ?1 AND id = ?2 ORDER BY hsa",
        )?;
        let rows = stmt
            .query_map(params![resource_type, id], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn set_patient_links(
        &mut self,
        resource_type: &str,
        id: &str,
        patients: &[String],
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM patient_links WHERE type = ?1 AND id = ?2")?
            .execute(params![resource_type, id])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO patient_links (type, id, patient) VALUES (?1, ?2, ?3)",
        )?;
        for patient in patients {
            insert.execute(params![resource_type, id, patient])?;
        }
        Ok(())
    }

    fn set_care_relations(
        &mut self,
        resource_type: &str,
        id: &str,
        relations: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM care_relations WHERE type = ?1 AND id = ?2")?
            .execute(params![resource_type, id])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO care_relations (type, id, patient, hsa) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (patient, hsa) in relations {
            insert.execute(params![resource_type, id, patient, hsa])?;
        }
        Ok(())
    }

    fn set_timeline(
        &mut self,
        resource_type: &str,
        id: &str,
        patients: &[String],
        time_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM timeline WHERE type = ?1 AND id = ?2")?
            .execute(params![resource_type, id])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO timeline (patient, t_ms, type, id) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for patient in patients {
            insert.execute(params![patient, time_ms, resource_type, id])?;
        }
        Ok(())
    }

    fn set_consents(
        &mut self,
        resource_type: &str,
        id: &str,
        decisions: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM consents WHERE type = ?1 AND id = ?2")?
            .execute(params![resource_type, id])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO consents (type, id, patient, kind, principal) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (patient, kind, principal) in decisions {
            insert.execute(params![resource_type, id, patient, kind, principal])?;
        }
        Ok(())
    }

    fn visible(&mut self, resource_type: &str, id: &str) -> Result<bool, StoreError> {
        search_sql::visible(self.conn, self.actor, resource_type, id)
    }

    fn setting(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?)
    }

    fn current_after(
        &mut self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        super::read_sql::current_after(self.conn, after, limit)
    }

    fn append_audit(&mut self, record: &crate::audit::Encoded) -> Result<(), StoreError> {
        // The change chain's head is read inside the transaction (a primary-key lookup of the last row), so a
        // job's savepoint rollback or a failed group commit takes its links with it and the head stays right.
        let (seq, hash, t_us) = super::audit_sql::head(self.conn, "main")?;
        let time = crate::audit::next_time_us(t_us);
        super::audit_sql::insert(
            self.conn,
            crate::audit::chain::Chain::Change,
            (seq, hash),
            record,
            time,
        )?;
        Ok(())
    }

    fn enqueue(&mut self, message: super::outbox::NewMessage) -> Result<(), StoreError> {
        super::outbox_sql::enqueue(self.conn, self.now.1, &message)
    }

    fn outbox_claim(
        &mut self,
        request: &super::outbox::ClaimRequest,
    ) -> Result<super::outbox::Claim, StoreError> {
        super::outbox_sql::claim(self.conn, request)
    }

    fn outbox_record(
        &mut self,
        id: &str,
        outcome: &super::outbox::AttemptOutcome,
    ) -> Result<bool, StoreError> {
        super::outbox_sql::record(self.conn, self.now.1, id, outcome)
    }

    fn outbox_replay(
        &mut self,
        which: &super::outbox::Replay,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        super::outbox_sql::replay(self.conn, self.now.1, which)
    }

    fn outbox_release_claims(&mut self) -> Result<usize, StoreError> {
        super::outbox_sql::release_claims(self.conn)
    }

    fn inbound_message(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<super::inbound::InboundMessage>, StoreError> {
        super::inbound_sql::get(self.conn, format, sender, message_id)
    }

    fn inbound_by_id(
        &mut self,
        format: &str,
        message_id: &str,
    ) -> Result<Vec<super::inbound::InboundMessage>, StoreError> {
        super::inbound_sql::by_id(self.conn, format, message_id)
    }

    fn inbound_by_case(
        &mut self,
        format: &str,
        case_ref: &str,
    ) -> Result<Vec<super::inbound::InboundMessage>, StoreError> {
        super::inbound_sql::by_case(self.conn, format, case_ref)
    }

    fn put_inbound(
        &mut self,
        message: &super::inbound::InboundMessage,
    ) -> Result<bool, StoreError> {
        super::inbound_sql::put(self.conn, message)
    }

    fn set_inbound_receipt(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
        receipt: &str,
    ) -> Result<bool, StoreError> {
        super::inbound_sql::set_receipt(self.conn, format, sender, message_id, receipt)
    }

    fn put_receiver_receipt(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
        receipt: &super::inbound::ReceiverReceipt,
    ) -> Result<(), StoreError> {
        super::inbound_sql::put_receiver_receipt(self.conn, format, sender, message_id, receipt)
    }

    fn remember_once(
        &mut self,
        scope: &str,
        key: &str,
        expires_at_unix: i64,
    ) -> Result<bool, StoreError> {
        // Forget what has expired first (an indexed range delete), so the table holds only live entries.
        let now = jiff::Timestamp::now().as_second();
        self.conn
            .prepare_cached("DELETE FROM seen_once WHERE expires_at < ?1")?
            .execute(params![now])?;
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO seen_once (scope, key, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![scope, key, expires_at_unix])?;
        Ok(inserted == 1)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn read(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let (ty, id) = (resource_type.to_owned(), id.to_owned());
        let actor = actor.clone();
        self.read_blocking(move |conn| match version {
            None => Ok(super::read_sql::current(conn, &actor, &ty, &id)?.map(|c| c.version)),
            Some(v) => super::read_sql::version(conn, &actor, &ty, &id, v),
        })
        .await
    }

    async fn read_current(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<super::Current>, StoreError> {
        let (ty, id) = (resource_type.to_owned(), id.to_owned());
        let actor = actor.clone();
        self.read_blocking(move |conn| super::read_sql::current(conn, &actor, &ty, &id))
            .await
    }

    async fn history(
        &self,
        actor: &Actor,
        q: HistoryQuery,
    ) -> Result<(Vec<StoredVersion>, bool), StoreError> {
        let actor = actor.clone();
        self.read_blocking(move |conn| super::read_sql::history(conn, &actor, &q))
            .await
    }

    async fn search(
        &self,
        actor: &Actor,
        resource_type: &str,
        query: SearchQuery,
        offset: usize,
        count: usize,
    ) -> Result<SearchPage, StoreError> {
        let ty = resource_type.to_owned();
        let actor = actor.clone();
        self.read_blocking(move |conn| {
            search_sql::search_page(conn, &actor, &ty, &query, offset, count)
        })
        .await
    }

    async fn write_boxed(&self, actor: &Actor, job: WriteJob) -> Result<JobOutput, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            actor: actor.clone(),
            run: job,
            reply,
        };
        {
            let guard = self.writer.lock().map_err(|_| StoreError::Busy)?;
            let sender = guard.as_ref().ok_or(StoreError::Busy)?;
            // Counted before the send, so the writer never takes more than was counted.
            self.queued.fetch_add(1, Ordering::Relaxed);
            match sender.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    return Err(StoreError::Busy);
                }
            }
        }
        answer.await.map_err(|_| StoreError::Busy)?
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read_blocking(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn audit_page(
        &self,
        actor: &Actor,
        from_ms: i64,
        to_ms: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        super::reads_access_log(actor)?;
        self.read_blocking(move |conn| {
            super::audit_sql::page(
                conn,
                from_ms.saturating_mul(1000),
                to_ms.saturating_mul(1000),
                after,
                limit,
            )
        })
        .await
    }

    async fn log_access(
        &self,
        _actor: &Actor,
        record: crate::audit::Encoded,
    ) -> Result<(), StoreError> {
        self.appender.append(record).await.map(|_| ())
    }

    async fn audit_search(
        &self,
        actor: &Actor,
        query: crate::audit::query::AuditQuery,
        offset: usize,
        count: usize,
        total: bool,
    ) -> Result<super::AuditPage, StoreError> {
        super::reads_access_log(actor)?;
        self.read_blocking(move |conn| {
            let (found, has_more, total) =
                super::audit_sql::search(conn, &query, offset, count, total)?;
            Ok(super::AuditPage {
                events: found
                    .into_iter()
                    .map(|l| super::LoggedEvent {
                        id: l.id(),
                        recorded_us: l.entry.time_us,
                        json: l.json(),
                        patients: l.entry.patients,
                    })
                    .collect(),
                has_more,
                total,
            })
        })
        .await
    }

    async fn audit_checkpoint(&self, _actor: &Actor) -> Result<bool, StoreError> {
        let (appender, checkpointer) = (self.appender.clone(), self.checkpointer.clone());
        tokio::task::spawn_blocking(move || checkpointer.checkpoint(appender.head()))
            .await
            .map_err(|_| StoreError::Busy)?
            .map(|c| c.is_some())
    }

    async fn timeline(
        &self,
        actor: &Actor,
        query: crate::timeline::TimelineQuery,
    ) -> Result<crate::timeline::TimelinePage, StoreError> {
        let actor = actor.clone();
        self.read_blocking(move |conn| search_sql::timeline_page(conn, &actor, &query))
            .await
    }

    async fn patients_of(
        &self,
        _actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (ty, id) = (resource_type.to_owned(), id.to_owned());
        self.read_blocking(move |conn| super::read_sql::patients_of(conn, &ty, &id))
            .await
    }

    async fn audit_for_patient(
        &self,
        actor: &Actor,
        patient: &str,
    ) -> Result<Vec<String>, StoreError> {
        super::reads_access_log(actor)?;
        let query = crate::audit::query::AuditQuery {
            key_groups: vec![vec![format!("p|{patient}")]],
            ..Default::default()
        };
        self.read_blocking(move |conn| {
            let (found, _, _) = super::audit_sql::search(conn, &query, 0, usize::MAX - 1, false)?;
            Ok(found.iter().map(super::audit_sql::Logged::json).collect())
        })
        .await
    }

    async fn verify_audit(
        &self,
        actor: &Actor,
    ) -> Result<crate::audit::chain::Verification, StoreError> {
        super::reads_access_log(actor)?;
        let dir = self.data_dir.clone();
        let key = self.checkpointer.public_key();
        self.read_blocking(move |conn| {
            let schema = Some(super::audit_sql::ACCESS_SCHEMA);
            match super::audit_sql::all_checkpoints(conn, schema, &dir, &[], Some(&key)) {
                Ok(checkpoints) => super::audit_sql::verify(conn, schema, &checkpoints),
                Err(reason) => Ok(crate::audit::chain::Verification {
                    records: 0,
                    checkpoints: 0,
                    first_broken: Some(crate::audit::chain::Broken {
                        chain: crate::audit::chain::Chain::Access,
                        seq: 0,
                        id: "checkpoints".into(),
                        reason,
                    }),
                }),
            }
        })
        .await
    }

    async fn outbox_list(
        &self,
        _actor: &Actor,
        filter: super::outbox::OutboxFilter,
    ) -> Result<Vec<super::outbox::OutboxMessage>, StoreError> {
        self.read_blocking(move |conn| super::outbox_sql::list(conn, &filter))
            .await
    }

    async fn outbox_get(
        &self,
        _actor: &Actor,
        id: &str,
    ) -> Result<Option<super::outbox::OutboxMessage>, StoreError> {
        let id = id.to_owned();
        self.read_blocking(move |conn| super::outbox_sql::get(conn, &id))
            .await
    }

    async fn outbox_stats(
        &self,
        _actor: &Actor,
    ) -> Result<Vec<super::outbox::DestinationStats>, StoreError> {
        self.read_blocking(super::outbox_sql::stats).await
    }

    async fn inbound_message(
        &self,
        _actor: &Actor,
        format: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<super::inbound::InboundMessage>, StoreError> {
        let (format, sender, id) = (format.to_owned(), sender.to_owned(), message_id.to_owned());
        self.read_blocking(move |conn| super::inbound_sql::get(conn, &format, &sender, &id))
            .await
    }

    async fn receiver_receipts(
        &self,
        _actor: &Actor,
        format: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Vec<super::inbound::ReceiverReceipt>, StoreError> {
        let (format, sender, id) = (format.to_owned(), sender.to_owned(), message_id.to_owned());
        self.read_blocking(move |conn| {
            super::inbound_sql::receiver_receipts(conn, &format, &sender, &id)
        })
        .await
    }

    async fn close(&self) {
        // Dropping the sender ends the writer loop once the queued jobs are committed.
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        let handle = self.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        // Then the appender, and a last checkpoint of both final heads (the checkpoint at shutdown).
        if let Ok(mut stop) = self.checkpoint_stop.lock() {
            stop.take();
        }
        let (appender, checkpointer) = (self.appender.clone(), self.checkpointer.clone());
        let _ = tokio::task::spawn_blocking(move || {
            appender.close();
            if let Err(e) = checkpointer.checkpoint(appender.head()) {
                tracing::error!(error = %e, "the shutdown checkpoint of the access log failed");
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writing_connection_syncs_every_commit_and_readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("navet.db");
        let writer = open_writer(&path).unwrap();
        // 2 = FULL (https://sqlite.org/pragma.html#pragma_synchronous).
        let sync: i64 = writer
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2);
        let mode: String = writer
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        writer.execute_batch("CREATE TABLE t (x)").unwrap();
        let reader = open_reader(&path).unwrap();
        assert!(reader.execute_batch("INSERT INTO t VALUES (1)").is_err());
        // The store's writer is this connection: a store opens on it.
        drop(writer);
        assert!(SqliteStore::open(dir.path()).is_ok());
    }

    #[test]
    fn instants_have_millisecond_precision_in_utc() {
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_instant(1_795_000_000_123),
            "2026-11-18T11:06:40.123Z"
        );
    }
}
