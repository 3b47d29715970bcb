//! The access-log appender: its own thread and connection on `audit.db`, natural group commit. A request
//! sends its encoded record and waits; the appender takes every record waiting, gives each the next sequence
//! number and hash from the chain head it holds in memory (loaded and checked at start), inserts it with one
//! prepared statement (plus its index keys), commits once, and only then releases the waiters. Nothing here
//! waits for the resource writer: a read's record never queues behind resource writes.
//!
//! And the checkpointer: at a fixed interval (and on shutdown) it signs both chains' committed heads and
//! stores the checkpoint in `audit.db` (its own short transaction) and in the checkpoint file. It reads the
//! access head from memory and the change head from `navet.db`, so it never stalls the appender.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::StoreError;
use super::audit_sql;
use crate::audit::Encoded;
use crate::audit::chain::{Chain, Hash};
use crate::audit::checkpoint::{self, Checkpoint, CheckpointKey};

/// Records waiting beyond this are refused (503) rather than queued without bound.
const QUEUE: usize = 8192;
/// At most this many records share one commit.
const MAX_BATCH: usize = 2048;
/// How many of the newest records of each chain start-up verifies (the whole log is `navet audit verify`).
pub const TAIL_CHECKED: usize = 1000;
/// How often a checkpoint is signed when records were added.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// How often the checkpointer copies the access log's WAL into `audit.db` (SQLite's WAL checkpoint; not to be
/// confused with the signed checkpoints). The appender's own connection never does: SQLite's automatic
/// checkpoint would run on the committing connection, after a commit, holding every waiter of the next batch
/// for its writes and two more fsyncs.
pub const WAL_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// After this many records since it last did, the appender itself runs one PASSIVE WAL checkpoint between two
/// batches. The checkpointer's copies alone never let the WAL start over under sustained load: SQLite restarts
/// the WAL only once every frame has been copied back, and the appender adds frames while the checkpointer
/// copies (checkpoint starvation: the WAL reached 300-480 MB in 8 s of logged reads, and reads slowed as it
/// grew). With no writer running during the appender's own checkpoint it catches up, and the next commit
/// starts the WAL over. It only copies what the checkpointer has not yet (at most [`WAL_CHECKPOINT_INTERVAL`]
/// of records), so the stall it adds to one batch is short and bounded, and the WAL stays near
/// `CATCH_UP_RECORDS` records' frames (about 5.5 KB each).
const CATCH_UP_RECORDS: usize = 4096;

type Reply = oneshot::Sender<Result<i64, StoreError>>;

struct Pending {
    record: Encoded,
    reply: Reply,
}

/// A chain head: (seq, hash, time of the newest record).
type HeadState = (i64, Hash, i64);
/// The committed head of the access chain.
type Head = Arc<Mutex<HeadState>>;

pub struct Appender {
    sender: Mutex<Option<SyncSender<Pending>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    head: Head,
}

fn open_db(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open(format!(
            "could not enable WAL on {}",
            path.display()
        )));
    }
    // synchronous = FULL: a commit is on disk before any waiter is released (survives kill -9 and power loss).
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")?;
    super::sqlite::tune(&conn)?;
    Ok(conn)
}

/// The append-only triggers of a database that already has a log; their absence means it was altered
/// outside navet (the schema would quietly recreate them, so this is checked before the schema is applied).
pub fn check_triggers(conn: &Connection, data_dir: &Path, file: &Path) -> Result<(), StoreError> {
    let exists = |kind: &str, name: &str| -> Result<bool, StoreError> {
        Ok(conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = ?1 AND name = ?2")?
            .exists(params![kind, name])?)
    };
    let has_log = exists("table", "audit_log")?
        && !conn
            .prepare("SELECT 1 FROM pragma_table_info('audit_log') WHERE name = 'json'")?
            .exists([])?;
    if has_log {
        for trigger in audit_sql::APPEND_ONLY_TRIGGERS {
            if !exists("trigger", trigger)? {
                return Err(StoreError::Open(format!(
                    "the access log's append-only trigger {trigger} is missing from {}: the database was \
                     altered outside navet, so navet will not serve on it. Check the log with \
                     `navet audit verify --data-dir {}` and restore the data directory from a backup",
                    file.display(),
                    data_dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// The start-up refusal for a chain whose end does not verify.
pub fn broken_at_start(broken: &crate::audit::chain::Broken, data_dir: &Path) -> StoreError {
    StoreError::Open(format!(
        "the access log is broken at record {} of the {} chain (AuditEvent/{}): {}. navet will not serve on a \
         broken access log; `navet audit verify --data-dir {}` reports the whole log",
        broken.seq,
        broken.chain.name(),
        broken.id,
        broken.reason,
        data_dir.display()
    ))
}

/// The newest checkpoint of the database and the file (the start-up check compares the chains with it).
pub fn latest_checkpoint(
    conn: &Connection,
    data_dir: &Path,
    key: &CheckpointKey,
) -> Result<Option<Checkpoint>, StoreError> {
    let public = key.public();
    let all = audit_sql::all_checkpoints(conn, Some("main"), data_dir, &[], Some(public.as_slice()))
        .map_err(|reason| {
            StoreError::Open(format!(
                "the access log's checkpoints do not verify: {reason}. navet will not serve on a broken access \
                 log; `navet audit verify --data-dir {}` reports the whole log",
                data_dir.display()
            ))
        })?;
    Ok(all.into_iter().last())
}

impl Appender {
    /// Opens `audit.db` (creating it), checks the end of the access chain and the newest checkpoint, and
    /// starts the appender thread. `latest` is the newest checkpoint; the change chain is checked by the caller.
    pub fn open(
        data_dir: &Path,
        key: &CheckpointKey,
    ) -> Result<(Appender, Option<Checkpoint>), StoreError> {
        let path = data_dir.join(audit_sql::ACCESS_DB);
        let conn = open_db(&path)?;
        // The checkpointer's thread copies the WAL back ([`WAL_CHECKPOINT_INTERVAL`]); the appender only
        // catches up now and then ([`CATCH_UP_RECORDS`]).
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        check_triggers(&conn, data_dir, &path)?;
        conn.execute_batch(audit_sql::AUDIT_SCHEMA)?;
        let latest = latest_checkpoint(&conn, data_dir, key)?;
        let head = match audit_sql::check_tail(
            &conn,
            Chain::Access,
            "main",
            TAIL_CHECKED,
            latest.as_ref(),
        )? {
            Ok(head) => head,
            Err(broken) => return Err(broken_at_start(&broken, data_dir)),
        };
        let head: Head = Arc::new(Mutex::new(head));
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Pending>(QUEUE);
        let thread_head = head.clone();
        let thread = std::thread::Builder::new()
            .name("navet-audit-appender".into())
            .spawn(move || run(conn, receiver, &thread_head))
            .map_err(|e| {
                StoreError::Open(format!("could not start the access-log appender: {e}"))
            })?;
        Ok((
            Appender {
                sender: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
                head,
            },
            latest,
        ))
    }

    /// Appends a record; answers its sequence number once it is durable.
    pub async fn append(&self, record: Encoded) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let guard = self.sender.lock().map_err(|_| StoreError::Busy)?;
            let sender = guard.as_ref().ok_or(StoreError::Busy)?;
            match sender.try_send(Pending { record, reply }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    return Err(StoreError::Busy);
                }
            }
        }
        answer.await.map_err(|_| StoreError::Busy)?
    }

    /// The committed head (seq, hash).
    pub fn head(&self) -> (i64, Hash) {
        self.head
            .lock()
            .map(|h| (h.0, h.1))
            .unwrap_or((0, crate::audit::chain::GENESIS))
    }

    /// Stops taking records, commits what was queued, and waits for the thread.
    pub fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

fn run(mut conn: Connection, receiver: Receiver<Pending>, head: &Head) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    let mut since_catch_up = 0usize;
    while let Ok(first) = receiver.recv() {
        if since_catch_up >= CATCH_UP_RECORDS {
            since_catch_up = 0;
            // Before the batch is gathered, so no waiter's answer is held by it beyond this one batch.
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                tracing::warn!(error = %e, "the appender's WAL catch-up failed; the WAL grows until the next");
            }
        }
        batch.push(first);
        crate::audit::gather(&receiver, &mut batch, MAX_BATCH);
        metrics::histogram!("navet_audit_batch_size").record(batch.len() as f64);
        let started = (head.lock().map(|h| *h)).unwrap_or((0, crate::audit::chain::GENESIS, 0));
        match commit(&mut conn, &batch, started) {
            Ok((seqs, new_head)) => {
                since_catch_up = since_catch_up.saturating_add(batch.len());
                if let Ok(mut h) = head.lock() {
                    *h = new_head;
                }
                for (p, seq) in batch.drain(..).zip(seqs) {
                    let _ = p.reply.send(Ok(seq));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the access-log batch could not be committed; its requests fail");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(StoreError::Corrupt(format!(
                        "the access log could not be written: {e}"
                    ))));
                }
            }
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

/// One transaction for the batch: all of it commits, or none (and the head stays where it was).
fn commit(
    conn: &mut Connection,
    batch: &[Pending],
    start: HeadState,
) -> Result<(Vec<i64>, HeadState), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut head = (start.0, start.1);
    let mut time = start.2;
    let mut seqs = Vec::with_capacity(batch.len());
    for p in batch {
        time = crate::audit::next_time_us(time);
        head = audit_sql::insert(&tx, Chain::Access, head, &p.record, time)?;
        seqs.push(head.0);
    }
    tx.commit()?;
    Ok((seqs, (head.0, head.1, time)))
}

/// Signs checkpoints of both chains' heads.
pub struct Checkpointer {
    key: CheckpointKey,
    data_dir: PathBuf,
    /// Its own connections: `audit.db` to store checkpoints, `navet.db` to read the change head.
    conns: Mutex<(Connection, Connection, Option<Checkpoint>)>,
}

impl Checkpointer {
    pub fn new(
        data_dir: &Path,
        key: CheckpointKey,
        latest: Option<Checkpoint>,
    ) -> Result<Checkpointer, StoreError> {
        let access = open_db(&data_dir.join(audit_sql::ACCESS_DB))?;
        let change = Connection::open(data_dir.join("navet.db"))?;
        change.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1;")?;
        Ok(Checkpointer {
            key,
            data_dir: data_dir.to_owned(),
            conns: Mutex::new((access, change, latest)),
        })
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key.public()
    }

    /// Copies what the WAL of `audit.db` holds into the database file, without waiting for (or stopping) the
    /// appender or readers (`PRAGMA wal_checkpoint(PASSIVE)`, https://sqlite.org/pragma.html#pragma_wal_checkpoint);
    /// the appender then starts the WAL over. A failure is logged: the WAL only grows until the next try.
    pub fn checkpoint_wal(&self) {
        let Ok(guard) = self.conns.lock() else {
            return;
        };
        if let Err(e) = guard.0.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
            tracing::warn!(error = %e, "copying the access log's WAL into audit.db failed");
        }
    }

    /// Signs and stores a checkpoint of the committed heads, unless nothing was added since the last one;
    /// answers the checkpoint made.
    pub fn checkpoint(&self, access_head: (i64, Hash)) -> Result<Option<Checkpoint>, StoreError> {
        let mut guard = self.conns.lock().map_err(|_| StoreError::Busy)?;
        let (access, change, last) = &mut *guard;
        let (cseq, chash, _) = audit_sql::head(change, "main")?;
        let change_head = (cseq, chash);
        if let Some(l) = last.as_ref()
            && l.access == access_head
            && l.change == change_head
        {
            return Ok(None);
        }
        let n = last.as_ref().map_or(1, |l| l.n + 1);
        let now = jiff::Timestamp::now().as_millisecond();
        let c = self
            .key
            .sign(n, now, access_head, change_head)
            .map_err(StoreError::Corrupt)?;
        // The database first, then the file: after a crash between the two, the file lacks the newest
        // checkpoint (harmless) rather than holding one the database lacks.
        access.execute(
            "INSERT INTO audit_checkpoint (n, line) VALUES (?1, ?2)",
            params![c.n, c.line()],
        )?;
        checkpoint::append_to_file(&self.data_dir, &c).map_err(StoreError::Corrupt)?;
        *last = Some(c.clone());
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> (Pending, oneshot::Receiver<Result<i64, StoreError>>) {
        let record = crate::audit::Encoded::of(&crate::audit::AuditRecord::new(
            crate::audit::Action::Read,
            "read",
            "req-1",
        ));
        let (reply, answer) = oneshot::channel();
        (Pending { record, reply }, answer)
    }

    #[test]
    fn a_batch_takes_every_record_waiting_and_stops_when_the_senders_are_gone() {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Pending>(16);
        let mut answers = Vec::new();
        for _ in 0..5 {
            let (p, a) = pending();
            assert!(sender.try_send(p).is_ok(), "queued");
            answers.push(a);
        }
        drop(sender);
        let mut batch = Vec::new();
        crate::audit::gather(&receiver, &mut batch, MAX_BATCH);
        assert_eq!(batch.len(), 5);
        // Nothing more can come: the next gather returns with nothing rather than waiting.
        let mut more = Vec::new();
        crate::audit::gather(&receiver, &mut more, MAX_BATCH);
        assert_eq!(more.len(), 0);
    }

    #[test]
    fn records_of_requests_in_flight_are_each_taken_once() {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Pending>(16);
        let (first, _a) = pending();
        assert!(sender.try_send(first).is_ok(), "queued");
        // A request still being handled: the appender waits for its record instead of committing without it.
        let expected = crate::audit::Expected::start();
        let (second, _b) = pending();
        let late = std::thread::spawn(move || {
            let _ = sender.send(second);
            drop(expected);
        });
        let mut batch = Vec::new();
        crate::audit::gather(&receiver, &mut batch, MAX_BATCH);
        late.join().expect("sender thread");
        crate::audit::gather(&receiver, &mut batch, MAX_BATCH);
        // Both records are taken, whichever gather the second one arrived in; none is lost or duplicated.
        assert_eq!(batch.len(), 2);
    }
}
