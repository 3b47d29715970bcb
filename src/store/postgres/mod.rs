//! The PostgreSQL store (issue 16): the same [`Store`] and [`WriteTx`] as the embedded SQLite store, for a
//! region that runs several navet nodes over one database.
//!
//! How it differs from SQLite, and why:
//! - Every write job is its own database transaction on a pooled connection (no single writer, no group
//!   commit): several nodes write at once, so what must stay exact is decided by the database — primary keys
//!   and `ON CONFLICT` for unique claims and SVPL idempotency, row locks (`SELECT … FOR UPDATE`) for `If-Match`
//!   and the chains' heads, `FOR UPDATE SKIP LOCKED` for outbox claims — never by an in-process lock.
//! - The SQL lives in this module, one file per area, in PostgreSQL's dialect; the search, read and visibility
//!   statements are the builders both backends share (`store/search_sql`), run with `$n` placeholders (`sql.rs`).
//! - The client is the synchronous `postgres` crate on blocking threads: jobs are synchronous closures.

mod audit;
pub mod dump;
mod error;
mod inbound;
pub mod migrate;
mod outbox;
mod reads;
mod resources;
pub mod sql;
#[cfg(test)]
mod tests_reads;
#[cfg(test)]
mod tests_write;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::postgres::NoTls;

use super::{
    Actor, Current, HistoryQuery, JobOutput, SearchPage, Store, StoreError, StoredVersion, WriteJob,
};
use crate::search::query::SearchQuery;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// Connections per node. Each request holds one for the length of its statement(s) on a blocking thread.
const POOL_SIZE: u32 = 16;

pub struct PgStore {
    /// The node's anchor connection ([`anchor`]); `None` only while dropping.
    anchor: Option<std::sync::Mutex<postgres::Client>>,
    /// `None` only while dropping (see the `Drop` impl).
    pool: Option<Pool>,
    /// The access chain's appender (`audit.rs`): group commit per node, one chain for all nodes. `None` only
    /// while dropping, as `pool`.
    access: Option<Arc<audit::AccessLog>>,
    data_dir: PathBuf,
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Tags every pooled connection with its node (`SET navet.node`): the backend pid of the node's anchor
/// connection. Outbox claims record it, so a starting node can tell its own and dead nodes' claims from live
/// nodes' (`outbox.rs`, `release_claims`).
#[derive(Debug)]
struct NodeTag(i32);

impl r2d2::CustomizeConnection<postgres::Client, postgres::Error> for NodeTag {
    fn on_acquire(&self, conn: &mut postgres::Client) -> Result<(), postgres::Error> {
        conn.batch_execute(&format!("SET navet.node = '{}'", self.0))
    }
}

fn config(url: &str) -> Result<postgres::Config, StoreError> {
    url.parse()
        .map_err(|e| StoreError::Open(format!("the database URL is not valid: {e}")))
}

/// One connection outside the pool (the node's anchor, migrations, export and import, tools); a failure
/// names the server's reason (never the URL: it may hold a password).
pub(crate) fn connect(url: &str) -> Result<postgres::Client, StoreError> {
    config(url)?.connect(NoTls).map_err(|e| {
        StoreError::Open(format!(
            "could not connect to PostgreSQL: {}",
            StoreError::from(e)
        ))
    })
}

/// The node's anchor: a connection held open for the node's lifetime, whose backend pid names the node in
/// the database (it is listed in `pg_stat_activity` exactly as long as the node lives).
fn anchor(url: &str) -> Result<(postgres::Client, i32), StoreError> {
    let mut client = connect(url)?;
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[])?.get(0);
    Ok((client, pid))
}

/// The pool for `url`. `r2d2` connects lazily up to its size and checks a connection before lending it out.
fn pool(url: &str, node: i32) -> Result<Pool, StoreError> {
    let manager = PostgresConnectionManager::new(config(url)?, NoTls);
    r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        // Connections open as they are needed (r2d2 would open all of them at once): a region's PostgreSQL
        // serves several nodes within its max_connections.
        .min_idle(Some(2))
        // r2d2 would run an empty query on every checkout to test the connection: a round trip per request.
        // A broken connection is found when it is used (the request answers 503) and when it comes back
        // (`has_broken`), and is replaced.
        .test_on_check_out(false)
        .connection_customizer(Box::new(NodeTag(node)))
        .connection_timeout(std::time::Duration::from_secs(10))
        .build(manager)
        .map_err(|e| StoreError::Open(format!("could not connect to PostgreSQL: {e}")))
}

impl PgStore {
    /// Connects to `url`, brings the schema up to date (`migrate.rs`, serialised across nodes) and starts the
    /// access-log appender. `data_dir` holds this node's keys (token signing, access-log checkpoints).
    pub fn open(
        url: &str,
        data_dir: &Path,
        checkpoint_interval: std::time::Duration,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Open(format!("{}: {e}", data_dir.display())))?;
        let (anchor, node) = anchor(url)?;
        let pool = pool(url, node)?;
        {
            let mut conn = pool.get().map_err(error::pool)?;
            migrate::migrate(&mut conn)?;
        }
        let access = Arc::new(audit::AccessLog::open(
            &pool,
            data_dir,
            checkpoint_interval,
        )?);
        Ok(PgStore {
            anchor: Some(std::sync::Mutex::new(anchor)),
            pool: Some(pool),
            access: Some(access),
            data_dir: data_dir.to_path_buf(),
        })
    }

    fn access(&self) -> Result<Arc<audit::AccessLog>, StoreError> {
        self.access.clone().ok_or(StoreError::Busy)
    }

    /// Runs `f` on a pooled connection on a blocking thread.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.pool.clone().ok_or(StoreError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(error::pool)?;
            f(&mut conn)
        })
        .await
        .map_err(|_| StoreError::Busy)?
    }
}

/// Every record of the database's access log as (AuditEvent id, AuditEvent view), in recorded order, read
/// outside a running navet (tests and tools): PostgreSQL's counterpart of `audit::chain::events_in_data_dir`.
/// Connects on the calling thread, which must not be an async runtime's.
pub fn events_in_database(url: &str) -> Result<Vec<(String, String)>, String> {
    let mut client = connect(url).map_err(|e| e.to_string())?;
    let page = audit::search(
        &mut client,
        &crate::audit::query::AuditQuery::default(),
        0,
        usize::MAX - 1,
        false,
    )
    .map_err(|e| e.to_string())?;
    Ok(page.events.into_iter().map(|e| (e.id, e.json)).collect())
}

/// The synchronous client closes each connection by blocking on its own small runtime, which panics on an
/// async runtime's thread, where the store is usually dropped: the pool (and with it every idle connection)
/// is dropped on a thread of its own.
impl Drop for PgStore {
    fn drop(&mut self) {
        // The appender's signer holds the pool too: both go.
        let (pool, access, anchor) = (self.pool.take(), self.access.take(), self.anchor.take());
        let _ = std::thread::spawn(move || drop((access, pool, anchor))).join();
    }
}

/// The advisory lock key of [`Store::startup_lock`] ("navet-st").
const STARTUP_LOCK: i64 = 0x6e61_7665_742d_7374;

/// Holds the start-up lock's connection; dropping it unlocks. The unlock runs on a thread of its own: the
/// guard is dropped on an async runtime thread, where the synchronous client may not block.
struct StartupGuard(Option<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>>);

impl Drop for StartupGuard {
    fn drop(&mut self) {
        if let Some(mut conn) = self.0.take() {
            let _ = std::thread::spawn(move || {
                if conn
                    .execute("SELECT pg_advisory_unlock($1)", &[&STARTUP_LOCK])
                    .is_err()
                {
                    // A broken connection releases its session's locks as it closes.
                    tracing::warn!("releasing the start-up lock failed");
                }
            })
            .join();
        }
    }
}

/// `navet audit verify` on PostgreSQL: both chains from their first record, against the checkpoints in the
/// database and in `data_dir`'s checkpoint file, trusted as `audit.rs` says (this node's key is the data
/// directory's). Connects on the calling thread, which must not be an async runtime's.
pub fn verify_database(
    url: &str,
    data_dir: &Path,
) -> Result<crate::audit::chain::Verification, String> {
    let mut client = connect(url).map_err(|e| e.to_string())?;
    let own = crate::store::audit_sql::trusted_key(data_dir).unwrap_or_default();
    audit::verify_log(&mut client, data_dir, &own).map_err(|e| e.to_string())
}

/// The transaction's timestamp: FHIR instant text and epoch ms (this node's clock).
fn now() -> (String, i64) {
    let ms = jiff::Timestamp::now().as_millisecond();
    (super::sqlite::format_instant(ms), ms)
}

#[async_trait]
impl Store for PgStore {
    async fn read(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let (actor, ty, id) = (actor.clone(), resource_type.to_owned(), id.to_owned());
        self.with_conn(move |c| reads::read(c, &actor, &ty, &id, version))
            .await
    }

    async fn read_current(
        &self,
        actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Current>, StoreError> {
        let (actor, ty, id) = (actor.clone(), resource_type.to_owned(), id.to_owned());
        self.with_conn(move |c| reads::read_current(c, &actor, &ty, &id))
            .await
    }

    async fn history(
        &self,
        actor: &Actor,
        query: HistoryQuery,
    ) -> Result<(Vec<StoredVersion>, bool), StoreError> {
        let actor = actor.clone();
        self.with_conn(move |c| reads::history(c, &actor, &query))
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
        let (actor, ty) = (actor.clone(), resource_type.to_owned());
        self.with_conn(move |c| reads::search_page(c, &actor, &ty, &query, offset, count))
            .await
    }

    async fn write_boxed(&self, actor: &Actor, job: WriteJob) -> Result<JobOutput, StoreError> {
        let actor = actor.clone();
        self.with_conn(move |c| tx::run(c, &actor, job)).await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.with_conn(move |c| resources::setting(c, &key)).await
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
        self.with_conn(move |c| {
            audit::page(
                c,
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
        self.access()?.append(record).await
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
        self.with_conn(move |c| audit::search(c, &query, offset, count, total))
            .await
    }

    async fn audit_checkpoint(&self, _actor: &Actor) -> Result<bool, StoreError> {
        let access = self.access()?;
        tokio::task::spawn_blocking(move || access.checkpoint())
            .await
            .map_err(|_| StoreError::Busy)?
    }

    async fn timeline(
        &self,
        actor: &Actor,
        query: crate::timeline::TimelineQuery,
    ) -> Result<crate::timeline::TimelinePage, StoreError> {
        let actor = actor.clone();
        self.with_conn(move |c| reads::timeline_page(c, &actor, &query))
            .await
    }

    async fn patients_of(
        &self,
        _actor: &Actor,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (ty, id) = (resource_type.to_owned(), id.to_owned());
        self.with_conn(move |c| reads::patients_of(c, &ty, &id))
            .await
    }

    async fn audit_for_patient(
        &self,
        actor: &Actor,
        patient: &str,
    ) -> Result<Vec<String>, StoreError> {
        super::reads_access_log(actor)?;
        let patient = patient.to_owned();
        self.with_conn(move |c| audit::for_patient(c, &patient))
            .await
    }

    async fn verify_audit(
        &self,
        actor: &Actor,
    ) -> Result<crate::audit::chain::Verification, StoreError> {
        super::reads_access_log(actor)?;
        let (access, dir) = (self.access()?, self.data_dir.clone());
        self.with_conn(move |c| access.verify(c, &dir)).await
    }

    async fn outbox_list(
        &self,
        _actor: &Actor,
        filter: super::outbox::OutboxFilter,
    ) -> Result<Vec<super::outbox::OutboxMessage>, StoreError> {
        self.with_conn(move |c| outbox::list(c, &filter)).await
    }

    async fn outbox_get(
        &self,
        _actor: &Actor,
        id: &str,
    ) -> Result<Option<super::outbox::OutboxMessage>, StoreError> {
        let id = id.to_owned();
        self.with_conn(move |c| outbox::get(c, &id)).await
    }

    async fn outbox_stats(
        &self,
        _actor: &Actor,
    ) -> Result<Vec<super::outbox::DestinationStats>, StoreError> {
        self.with_conn(outbox::stats).await
    }

    async fn inbound_message(
        &self,
        _actor: &Actor,
        format: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<super::inbound::InboundMessage>, StoreError> {
        let (format, sender, id) = (format.to_owned(), sender.to_owned(), message_id.to_owned());
        self.with_conn(move |c| inbound::get(c, &format, &sender, &id))
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
        self.with_conn(move |c| inbound::receiver_receipts(c, &format, &sender, &id))
            .await
    }

    async fn startup_lock(&self) -> Result<Box<dyn std::any::Any + Send>, StoreError> {
        let pool = self.pool.clone().ok_or(StoreError::Busy)?;
        let conn = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(error::pool)?;
            conn.execute("SELECT pg_advisory_lock($1)", &[&STARTUP_LOCK])?;
            Ok::<_, StoreError>(conn)
        })
        .await
        .map_err(|_| StoreError::Busy)??;
        Ok(Box::new(StartupGuard(Some(conn))))
    }

    async fn close(&self) {
        // Every acknowledged write is committed already (one transaction per job); the appender drains what
        // it holds and signs a last checkpoint.
        if let Ok(access) = self.access() {
            let _ = tokio::task::spawn_blocking(move || access.close()).await;
        }
    }
}
