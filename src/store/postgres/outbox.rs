//! The outbox in PostgreSQL: rows claimed with `FOR UPDATE SKIP LOCKED`, so two nodes' workers never hold
//! the same row at once.

use postgres::GenericClient;
use postgres::types::Type;

use crate::store::StoreError;
use crate::store::outbox::{
    AttemptOutcome, Claim, ClaimRequest, DestinationStats, MessageStatus, NewMessage, OutboxFilter,
    OutboxMessage, Replay,
};

/// This area's tables (applied by `migrate.rs`): `store/schema.rs`'s outbox in PostgreSQL's types.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE outbox (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT COLLATE "C"   NOT NULL UNIQUE,
    destination      TEXT COLLATE "C"   NOT NULL,
    patient          TEXT COLLATE "C"   NOT NULL,
    content_type     TEXT COLLATE "C"   NOT NULL,
    payload          TEXT   NOT NULL,
    headers          TEXT   NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_ms       BIGINT NOT NULL,
    budget_start_ms  BIGINT NOT NULL,
    next_attempt_ms  BIGINT NOT NULL,
    claimed_until_ms BIGINT,
    claimed_by       BIGINT,                    -- the claiming node's anchor pid (release_claims)
    status           TEXT COLLATE "C"   NOT NULL,
    last_error       TEXT,
    done_ms          BIGINT
);
CREATE INDEX outbox_queue ON outbox (destination, status, patient, seq);
CREATE INDEX outbox_status ON outbox (status, seq);
"#;

// `store/outbox_sql.rs` in PostgreSQL's dialect. Statements go out with `query_typed`/`execute_typed`: one
// round trip each. Sums of epoch milliseconds are computed in Rust with saturating arithmetic and bound as
// parameters (`budget_start_ms <= now - budget` rather than `budget_start_ms + budget <= now`): BIGINT
// overflow is an error in PostgreSQL, which would abort the transaction.

const COLUMNS: &str = "seq, id, destination, patient, content_type, payload, headers, attempts, created_ms, \
     budget_start_ms, next_attempt_ms, status, last_error, done_ms";

fn row_to_message(r: &postgres::Row) -> Result<OutboxMessage, StoreError> {
    let patient: String = r.try_get(3)?;
    let headers: String = r.try_get(6)?;
    let status: String = r.try_get(11)?;
    let attempts: i64 = r.try_get(7)?;
    Ok(OutboxMessage {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        destination: r.try_get(2)?,
        patient: (!patient.is_empty()).then_some(patient),
        content_type: r.try_get(4)?,
        payload: r.try_get(5)?,
        // Written by `enqueue` below; a row that does not parse shows no headers rather than failing a list.
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        created_ms: r.try_get(8)?,
        budget_start_ms: r.try_get(9)?,
        next_attempt_ms: r.try_get(10)?,
        status: MessageStatus::parse(&status).unwrap_or(MessageStatus::Pending),
        last_error: r.try_get(12)?,
        done_ms: r.try_get(13)?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn enqueue(
    c: &mut impl GenericClient,
    now_ms: i64,
    m: &NewMessage,
) -> Result<(), StoreError> {
    let headers = serde_json::to_string(&m.headers)
        .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?;
    let patient = m.patient.as_deref().unwrap_or("");
    c.execute_typed(
        "INSERT INTO outbox (id, destination, patient, content_type, payload, headers, created_ms, \
           budget_start_ms, next_attempt_ms, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, 'pending')",
        &[
            (&m.id, Type::TEXT),
            (&m.destination, Type::TEXT),
            (&patient, Type::TEXT),
            (&m.content_type, Type::TEXT),
            (&m.payload, Type::TEXT),
            (&headers, Type::TEXT),
            (&now_ms, Type::INT8),
        ],
    )?;
    Ok(())
}

/// Claims the due rows of one destination, after turning the rows past their budget into dead letters.
///
/// Several nodes' workers claim at once, so candidate rows are locked with `FOR UPDATE SKIP LOCKED`: a row
/// another transaction holds (another node's claim, a `record`, a `replay`) is passed over, never waited for,
/// and never claimed twice; a row another node claimed and committed is not due (its `claimed_until_ms`).
///
/// The order rule (only the oldest pending row of each (destination, patient) is due) is kept by choosing the
/// heads first, over every pending row whether locked or not, and only then locking the heads, skipping the
/// locked ones. A locked head means its patient gets nothing this round: the next row of that patient is
/// never a candidate while an older one is pending. (Locking pending rows with SKIP LOCKED first and picking
/// heads among what was locked would be wrong: a head held elsewhere would be skipped and the patient's
/// second row would look like the oldest.) A head that another transaction changed after this statement's
/// snapshot is re-checked on its latest version once locked (READ COMMITTED), so one delivered or claimed
/// meanwhile is dropped, not claimed; its successor waits for the next round.
pub(super) fn claim(c: &mut impl GenericClient, q: &ClaimRequest) -> Result<Claim, StoreError> {
    let budget_start_before = q.now_ms.saturating_sub(q.budget_ms);
    // Rows past their budget become dead letters first (none that a live worker holds), so a destination
    // that is down longer than its budget empties into the dead-letter list instead of one row per probe.
    // Rows another transaction holds are skipped here too: they are in hand, and a later claim sees them.
    let expired = c
        .query_typed(
            "WITH x AS MATERIALIZED ( \
               SELECT seq FROM outbox \
               WHERE destination = $1 AND status = 'pending' AND budget_start_ms <= $3 \
                 AND (claimed_until_ms IS NULL OR claimed_until_ms <= $2) \
               FOR UPDATE SKIP LOCKED) \
             UPDATE outbox o SET status = 'dead', done_ms = $2, claimed_until_ms = NULL, \
               last_error = 'retry budget exhausted; last error: ' || \
                 COALESCE(o.last_error, 'none (never attempted: the destination was paused or an earlier message waited)') \
             FROM x WHERE o.seq = x.seq \
             RETURNING o.id",
            &[
                (&q.destination, Type::TEXT),
                (&q.now_ms, Type::INT8),
                (&budget_start_before, Type::INT8),
            ],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    let claimed_until = q.now_ms.saturating_add(q.lease_ms);
    let mut due = c
        .query_typed(
            &format!(
                "WITH heads AS MATERIALIZED ( \
                   SELECT o.seq AS head FROM (SELECT MIN(seq) AS seq FROM outbox \
                                              WHERE destination = $1 AND status = 'pending' GROUP BY patient) h \
                   JOIN outbox o ON o.seq = h.seq \
                   WHERE o.destination = $1 AND o.status = 'pending' AND o.next_attempt_ms <= $2 \
                     AND (o.claimed_until_ms IS NULL OR o.claimed_until_ms <= $2) \
                   ORDER BY o.seq LIMIT $4 \
                   FOR UPDATE OF o SKIP LOCKED) \
                 UPDATE outbox SET claimed_until_ms = $3, \
                   claimed_by = NULLIF(current_setting('navet.node', true), '')::bigint \
                 FROM heads WHERE seq = heads.head \
                 RETURNING {COLUMNS}"
            ),
            &[
                (&q.destination, Type::TEXT),
                (&q.now_ms, Type::INT8),
                (&claimed_until, Type::INT8),
                (&limit(q.limit), Type::INT8),
            ],
        )?
        .iter()
        .map(row_to_message)
        .collect::<Result<Vec<_>, _>>()?;
    due.sort_by_key(|m| m.seq);
    Ok(Claim { due, expired })
}

/// Records one attempt's outcome; `false` when the row is no longer pending (nothing changed).
pub(super) fn record(
    c: &mut impl GenericClient,
    now_ms: i64,
    id: &str,
    outcome: &AttemptOutcome,
) -> Result<bool, StoreError> {
    let (status, error, next) = match outcome {
        AttemptOutcome::Delivered => ("delivered", None, None),
        AttemptOutcome::Retry {
            error,
            next_attempt_ms,
        } => ("pending", Some(error.as_str()), Some(*next_attempt_ms)),
        AttemptOutcome::Dead { error } => ("dead", Some(error.as_str()), None),
        AttemptOutcome::Dropped { reason } => ("dropped", Some(reason.as_str()), None),
    };
    let changed = c.execute_typed(
        "UPDATE outbox SET status = $2, attempts = attempts + 1, claimed_until_ms = NULL, \
           last_error = COALESCE($3, last_error), next_attempt_ms = COALESCE($4, next_attempt_ms), \
           done_ms = CASE WHEN $2 = 'pending' THEN NULL ELSE $5 END \
         WHERE id = $1 AND status = 'pending'",
        &[
            (&id, Type::TEXT),
            (&status, Type::TEXT),
            (&error, Type::TEXT),
            (&next, Type::INT8),
            (&now_ms, Type::INT8),
        ],
    )?;
    Ok(changed == 1)
}

/// Puts dead letters back in the queue with a fresh budget; answers the (id, patient) of each, oldest first.
pub(super) fn replay(
    c: &mut impl GenericClient,
    now_ms: i64,
    which: &Replay,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    // Two statements rather than SQLite's `(?2 = 1 AND id = ?3) OR (…)`: each has a plain predicate its
    // index serves.
    let (filter, value) = match which {
        Replay::One(id) => ("id = $2", id.as_str()),
        Replay::Destination(d) => ("destination = $2", d.as_str()),
    };
    c.query_typed(
        &format!(
            "WITH r AS (UPDATE outbox SET status = 'pending', budget_start_ms = $1, next_attempt_ms = $1, \
               claimed_until_ms = NULL, done_ms = NULL \
             WHERE status = 'dead' AND {filter} \
             RETURNING seq, id, patient) \
             SELECT id, patient FROM r ORDER BY seq"
        ),
        &[(&now_ms, Type::INT8), (&value, Type::TEXT)],
    )?
    .iter()
    .map(|r| {
        let patient: String = r.try_get(1)?;
        Ok((r.try_get(0)?, (!patient.is_empty()).then_some(patient)))
    })
    .collect()
}

/// Releases the claims a starting worker may take over: this node's own (a worker restarted, as SQLite's
/// embedded node releases all of its claims at start), and those of nodes that are gone. A claim records its
/// node's anchor pid (`mod.rs`, `navet.node`); a node is gone when its anchor connection is no longer in
/// `pg_stat_activity` (it died with its process). Other live nodes keep theirs. A pid the server reused since
/// only keeps a claim until its lease ends (`ClaimRequest::lease_ms`), the safe side.
pub(super) fn release_claims(c: &mut impl GenericClient) -> Result<usize, StoreError> {
    let released = c.execute(
        "UPDATE outbox SET claimed_until_ms = NULL, claimed_by = NULL \
         WHERE status = 'pending' AND claimed_until_ms IS NOT NULL \
           AND (claimed_by IS NULL \
                OR claimed_by = NULLIF(current_setting('navet.node', true), '')::bigint \
                OR claimed_by NOT IN (SELECT pid FROM pg_stat_activity))",
        &[],
    )?;
    Ok(usize::try_from(released).unwrap_or(usize::MAX))
}

pub(super) fn list(
    c: &mut impl GenericClient,
    f: &OutboxFilter,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let status = f.status.map(MessageStatus::as_str);
    c.query_typed(
        &format!(
            "SELECT {COLUMNS} FROM outbox WHERE seq > $1 AND ($2::text IS NULL OR status = $2) \
               AND ($3::text IS NULL OR destination = $3) ORDER BY seq LIMIT $4"
        ),
        &[
            (&f.after_seq, Type::INT8),
            (&status, Type::TEXT),
            (&f.destination, Type::TEXT),
            (&limit(f.limit), Type::INT8),
        ],
    )?
    .iter()
    .map(row_to_message)
    .collect()
}

pub(super) fn get(
    c: &mut impl GenericClient,
    id: &str,
) -> Result<Option<OutboxMessage>, StoreError> {
    c.query_typed_opt(
        &format!("SELECT {COLUMNS} FROM outbox WHERE id = $1"),
        &[(&id, Type::TEXT)],
    )?
    .as_ref()
    .map(row_to_message)
    .transpose()
}

pub(super) fn stats(c: &mut impl GenericClient) -> Result<Vec<DestinationStats>, StoreError> {
    // Destinations in byte order, as SQLite's BINARY collation.
    c.query_typed(
        "SELECT destination, COUNT(*) FILTER (WHERE status = 'pending'), \
           COUNT(*) FILTER (WHERE status = 'dead'), \
           MIN(created_ms) FILTER (WHERE status = 'pending') \
         FROM outbox WHERE status IN ('pending', 'dead') \
         GROUP BY destination ORDER BY destination COLLATE \"C\"",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(DestinationStats {
            destination: r.try_get(0)?,
            pending: u64::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0),
            dead: u64::try_from(r.try_get::<_, i64>(2)?).unwrap_or(0),
            oldest_pending_ms: r.try_get(3)?,
        })
    })
    .collect()
}
