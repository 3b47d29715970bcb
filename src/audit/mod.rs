//! The access log (spec/timeline-and-audit.md "The access log"): one record per request that touches patient
//! data, refused and failed requests included, append-only, hash-chained, anchored by signed checkpoints.
//!
//! - [`record`]: what one request did, gathered by the HTTP layer ([`AuditRecord`]).
//! - [`format`]: the stored record ([`format::Entry`]) and its documented byte format (`FORMAT.md`).
//! - [`view`]: the FHIR AuditEvent (IHE BALP shape) of a stored record, rendered when an auditor reads.
//! - [`chain`]: the two hash chains and their verification; [`checkpoint`]: the signed checkpoints.
//! - [`query`]: `AuditEvent` search parameters turned into what the auditor indexes answer exactly.
//!
//! Two ways in: [`append`] inside a write job (the record commits with the change it records, on the change
//! chain), and [`log`] for everything else (the access-log appender, group commit, the access chain).

pub mod chain;
pub mod checkpoint;
pub mod format;
pub mod query;
pub mod record;
pub mod view;

pub use record::{Action, AuditRecord, Delivery, Outcome};

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use crate::error::ApiError;
use crate::store::{Actor, Store, WriteTx};

/// A record ready for a chain: its bytes (time still unset) and its index columns and keys.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub action: u8,
    pub outcome: u8,
    pub purpose: Option<String>,
    pub keys: Vec<String>,
}

impl Encoded {
    pub fn of(record: &AuditRecord) -> Encoded {
        let entry = format::Entry::from_record(record);
        Encoded {
            bytes: entry.encode(),
            action: entry.action,
            outcome: entry.outcome,
            purpose: entry.purpose_code().map(str::to_owned),
            keys: entry.index_keys(),
        }
    }
}

/// Appends `record` to the change chain inside the caller's transaction: if this fails, so does the
/// transaction, and the change it records is not made.
pub fn append(tx: &mut dyn WriteTx, record: &AuditRecord) -> Result<(), ApiError> {
    tx.append_audit(&Encoded::of(record))?;
    Ok(())
}

/// Appends `record` to the access chain (reads, searches, refusals) and returns once it is durable: the
/// caller answers only after this succeeds. Records of many requests share one commit.
pub async fn log(store: &dyn Store, actor: &Actor, record: &AuditRecord) -> Result<(), ApiError> {
    store.log_access(actor, Encoded::of(record)).await?;
    Ok(())
}

/// Requests being handled that may still send a record to the access-log appender (see [`Expected`]).
static EXPECTED: AtomicUsize = AtomicUsize::new(0);

/// Marks one request that may log an access record, from its start until its record is handed over (or it
/// ends without one). The appender waits briefly for these before it commits a batch: under load a commit per
/// two or three records cost more than the records themselves (issue 13: the commit's WAL frames and fsync
/// were most of the appender's time), so one commit for every record that is about to arrive is cheaper, and
/// when nothing is in flight (light load) the appender commits at once.
#[must_use = "the request counts as expected only while this is held"]
pub struct Expected(());

impl Expected {
    pub fn start() -> Expected {
        EXPECTED.fetch_add(1, Ordering::Relaxed);
        Expected(())
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        EXPECTED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many requests may still send a record (all servers of this process together: only a hint for batching).
pub fn expected() -> usize {
    EXPECTED.load(Ordering::Relaxed)
}

static LAST_TIME_US: AtomicI64 = AtomicI64::new(0);

/// The time of the next record: the wall clock in microseconds, but always later than every record this
/// process gave a time (and than `floor`, a chain head's time at start), so times are unique and each chain's
/// times increase with its sequence numbers even when the clock steps back.
pub fn next_time_us(floor: i64) -> i64 {
    let now = jiff::Timestamp::now().as_microsecond();
    let mut last = LAST_TIME_US.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1)).max(floor.saturating_add(1));
        match LAST_TIME_US.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// How long an appender waits, at most, for the records of requests still in flight before it commits what it
/// has ([`Expected`]); it stops waiting as soon as none is in flight. Bounds the latency the gathering adds to
/// a logged read; with nothing in flight it adds none.
const GATHER: std::time::Duration = std::time::Duration::from_micros(1000);
/// How often, while gathering, the appender looks again at how many requests are in flight.
const GATHER_STEP: std::time::Duration = std::time::Duration::from_micros(100);

/// Adds to `batch` every record waiting (up to `max`), then, while requests that may still send one are in
/// flight, waits for theirs (at most [`GATHER`]): one commit then serves them all. Both stores' appenders
/// (`store/appender.rs`, `store/postgres/audit.rs`) gather this way.
pub fn gather<T>(receiver: &std::sync::mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let deadline = std::time::Instant::now() + GATHER;
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(p) => {
                batch.push(p);
                continue;
            }
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {}
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if expected() == 0 || left.is_zero() {
            return;
        }
        match receiver.recv_timeout(left.min(GATHER_STEP)) {
            Ok(p) => batch.push(p),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_times_are_unique_and_increasing_even_below_a_floor_in_the_future() {
        let a = super::next_time_us(0);
        let b = super::next_time_us(0);
        assert!(b > a);
        let future = a + 1_000_000;
        assert!(super::next_time_us(future) > future);
        assert!(super::next_time_us(0) > future);
    }

    #[test]
    fn an_expected_request_counts_until_it_is_dropped() {
        // Other tests of this process may hold their own: compare with this test's own effect only.
        let a = super::Expected::start();
        let b = super::Expected::start();
        assert!(super::expected() >= 2);
        drop(a);
        drop(b);
        // No underflow: every start is matched by exactly one drop.
        assert!(super::expected() < usize::MAX / 2);
    }
}
