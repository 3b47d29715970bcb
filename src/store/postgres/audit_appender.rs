//! The access chain's appender of one node (`audit.rs`): its own thread and connection, group commit of the
//! records of the requests in flight, each request answered after the commit; and the checkpoint signer, on a
//! timer and at close. A child of `audit.rs`, whose chain functions it calls.

use super::*;

/// The appender's connection.
type Conn = r2d2::PooledConnection<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>;

type Reply = oneshot::Sender<Result<(), StoreError>>;

struct Pending {
    record: Encoded,
    reply: Reply,
}

/// Signs checkpoints of both chains' heads with this node's key.
struct Signer {
    key: CheckpointKey,
    pool: super::super::Pool,
    data_dir: PathBuf,
}

impl Signer {
    /// Signs and stores a checkpoint of both chains' committed heads, unless no node added a record since the
    /// newest checkpoint (of any node); answers the checkpoint made.
    fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let mut conn = self.pool.get().map_err(super::super::error::pool)?;
        let mut tx = conn.transaction()?;
        // Numbers are one sequence for all nodes: one signer at a time (readers are not blocked), and the heads
        // are read after the lock, so a checkpoint never covers less than the one before it.
        tx.batch_execute("LOCK TABLE audit_checkpoint IN SHARE ROW EXCLUSIVE MODE")?;
        let last = match tx.query_typed_opt(
            "SELECT n, line FROM audit_checkpoint ORDER BY n DESC LIMIT 1",
            &[],
        )? {
            Some(row) => {
                let line: &str = row.try_get(1)?;
                Some(Checkpoint::parse(line).map_err(|e| {
                    StoreError::Corrupt(format!("the newest checkpoint in the database: {e}"))
                })?)
            }
            None => None,
        };
        let (aseq, ahash, _) = head(&mut tx, Chain::Access, false)?;
        let (cseq, chash, _) = head(&mut tx, Chain::Change, false)?;
        let (access, change) = ((aseq, ahash), (cseq, chash));
        if let Some(l) = &last
            && l.access == access
            && l.change == change
        {
            return Ok(None);
        }
        let n = last.as_ref().map_or(Some(1), |l| l.n.checked_add(1));
        let n = n.ok_or_else(|| StoreError::Corrupt("checkpoint numbers are exhausted".into()))?;
        let c = self
            .key
            .sign(n, jiff::Timestamp::now().as_millisecond(), access, change)
            .map_err(StoreError::Corrupt)?;
        let line = c.line();
        tx.query_typed(
            "INSERT INTO audit_checkpoint (n, line) VALUES ($1, $2)",
            &[(&c.n, Type::INT8), (&line, Type::TEXT)],
        )?;
        tx.commit()?;
        // The database first, then the file: after a crash between the two, the file lacks the newest
        // checkpoint (harmless) rather than holding one the database lacks.
        checkpoint::append_to_file(&self.data_dir, &c).map_err(StoreError::Corrupt)?;
        Ok(Some(c))
    }
}

/// The access chain's appender of this node: its own thread and connection, group commit; and the checkpoint
/// signer, on a timer and at close.
pub(in crate::store::postgres) struct AccessLog {
    sender: Mutex<Option<SyncSender<Pending>>>,
    appender: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
    signer: Arc<Signer>,
}

impl AccessLog {
    /// Checks the log (append-only triggers, the end of both chains, the checkpoints) and starts the appender
    /// (with a connection of its own, outside the pool) and the checkpoint timer.
    pub(in crate::store::postgres) fn open(
        pool: &super::super::Pool,
        data_dir: &Path,
        checkpoint_interval: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let key = CheckpointKey::load_or_generate(data_dir).map_err(StoreError::Open)?;
        {
            let mut conn = pool.get().map_err(super::super::error::pool)?;
            let missing = missing_triggers(&mut *conn)?;
            if let Some(trigger) = missing.first() {
                return Err(StoreError::Open(format!(
                    "the access log's append-only trigger {trigger} is missing or disabled in PostgreSQL: the \
                     database was altered outside navet, so navet will not serve on it. Check the log with {} \
                     and restore the database from a backup",
                    verify_command(data_dir)
                )));
            }
            let file = checkpoint::read_file(&data_dir.join(checkpoint::FILE)).map_err(|e| {
                StoreError::Open(format!(
                    "the access log's checkpoints do not verify: {e}. navet will not serve on a broken access \
                     log; {} reports the whole log",
                    verify_command(data_dir)
                ))
            })?;
            let public = key.public();
            let checkpoints = stored_checkpoints(&mut *conn)?
                .and_then(|database| all_checkpoints(database, file, data_dir, &public))
                .map_err(|reason| {
                    StoreError::Open(format!(
                        "the access log's checkpoints do not verify: {reason}. navet will not serve on a \
                         broken access log; {} reports the whole log",
                        verify_command(data_dir)
                    ))
                })?;
            for chain in Chain::ALL {
                if let Some(broken) =
                    check_tail(&mut *conn, chain, TAIL_CHECKED, checkpoints.last())?
                {
                    return Err(broken_at_start(&broken, data_dir));
                }
            }
        }
        // One connection of the pool is the appender's for as long as it runs (r2d2 cannot hand a
        // connection over for good, nor say how to make one): a request never waits for it, nor it for them.
        let client = pool.get().map_err(super::super::error::pool)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Pending>(QUEUE);
        let thread_pool = pool.clone();
        let appender = std::thread::Builder::new()
            .name("navet-audit-appender".into())
            .spawn(move || run(client, &thread_pool, &receiver))
            .map_err(|e| {
                StoreError::Open(format!("could not start the access-log appender: {e}"))
            })?;
        let signer = Arc::new(Signer {
            key,
            pool: pool.clone(),
            data_dir: data_dir.to_path_buf(),
        });
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let tick = checkpoint_interval.max(Duration::from_millis(10));
        let ticking = signer.clone();
        let ticker = std::thread::Builder::new()
            .name("navet-audit-checkpoints".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    if let Err(e) = ticking.checkpoint() {
                        tracing::error!(error = %e, "signing an access-log checkpoint failed");
                    }
                }
            });
        let ticker = match ticker {
            Ok(t) => t,
            Err(e) => {
                drop(sender);
                let _ = appender.join();
                return Err(StoreError::Open(format!(
                    "could not start the checkpointer: {e}"
                )));
            }
        };
        Ok(AccessLog {
            sender: Mutex::new(Some(sender)),
            appender: Mutex::new(Some(appender)),
            stop: Mutex::new(Some(stop)),
            ticker: Mutex::new(Some(ticker)),
            signer,
        })
    }

    /// Appends a record to the access chain; answers once it is committed (refused with `Busy` when the queue
    /// is full or the log is closing).
    pub(in crate::store::postgres) async fn append(
        &self,
        record: crate::audit::Encoded,
    ) -> Result<(), StoreError> {
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

    /// Signs a checkpoint now; `false` when nothing was logged since the newest one.
    pub(in crate::store::postgres) fn checkpoint(&self) -> Result<bool, StoreError> {
        self.signer.checkpoint().map(|c| c.is_some())
    }

    /// Verifies the whole log ([`verify_log`]) with this node's key.
    pub(in crate::store::postgres) fn verify(
        &self,
        c: &mut impl GenericClient,
        data_dir: &Path,
    ) -> Result<crate::audit::chain::Verification, StoreError> {
        verify_log(c, data_dir, &self.signer.key.public())
    }

    /// Stops taking records, commits what was queued, stops the timer and signs a last checkpoint.
    pub(in crate::store::postgres) fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        if let Some(t) = self.appender.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        if let Ok(mut s) = self.stop.lock() {
            s.take();
        }
        if let Some(t) = self.ticker.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        if let Err(e) = self.signer.checkpoint() {
            tracing::error!(error = %e, "the shutdown checkpoint of the access log failed");
        }
    }
}

/// The appender: takes every record waiting (and those of requests in flight), appends them in one
/// transaction, and answers each only after the commit. A broken connection is replaced before the next batch.
fn run(client: Conn, pool: &super::super::Pool, receiver: &Receiver<Pending>) {
    let mut client = Some(client);
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = receiver.recv() {
        batch.push(first);
        crate::audit::gather(receiver, &mut batch, MAX_BATCH);
        metrics::histogram!("navet_audit_batch_size").record(batch.len() as f64);
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            // The broken one goes back to the pool, which drops it (it checks a connection it takes back).
            drop(client.take());
            client = match pool.get() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "the access-log appender could not reconnect to PostgreSQL");
                    None
                }
            };
        }
        let result = match client.as_mut() {
            Some(c) => commit(&mut *c, &batch),
            None => Err(StoreError::database(
                crate::store::DbErrorKind::Unavailable,
                "the access-log appender has no connection to PostgreSQL",
            )),
        };
        match result {
            Ok(()) => {
                for p in batch.drain(..) {
                    let _ = p.reply.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the access-log batch could not be committed; its requests fail");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(copy_error(&e)));
                }
            }
        }
    }
}

/// One transaction for the batch: all of it commits, or none (and the head row stays where it was).
fn commit(client: &mut postgres::Client, batch: &[Pending]) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    let records: Vec<&Encoded> = batch.iter().map(|p| &p.record).collect();
    append_records(&mut tx, Chain::Access, &records)?;
    tx.commit()?;
    Ok(())
}
