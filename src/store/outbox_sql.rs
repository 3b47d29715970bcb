//! The outbox's SQLite statements (store/outbox.rs has the types, store/schema.rs the table).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use super::outbox::{
    AttemptOutcome, Claim, ClaimRequest, DestinationStats, MessageStatus, NewMessage, OutboxFilter,
    OutboxMessage, Replay,
};

const COLUMNS: &str = "seq, id, destination, patient, content_type, payload, headers, attempts, created_ms, \
     budget_start_ms, next_attempt_ms, status, last_error, done_ms";

fn row_to_message(r: &Row<'_>) -> rusqlite::Result<OutboxMessage> {
    let patient: String = r.get(3)?;
    let headers: String = r.get(6)?;
    let status: String = r.get(11)?;
    Ok(OutboxMessage {
        seq: r.get(0)?,
        id: r.get(1)?,
        destination: r.get(2)?,
        patient: (!patient.is_empty()).then_some(patient),
        content_type: r.get(4)?,
        payload: r.get(5)?,
        // Written by `enqueue` below; a row that does not parse shows no headers rather than failing a list.
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        attempts: r.get::<_, i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
        created_ms: r.get(8)?,
        budget_start_ms: r.get(9)?,
        next_attempt_ms: r.get(10)?,
        status: MessageStatus::parse(&status).unwrap_or(MessageStatus::Pending),
        last_error: r.get(12)?,
        done_ms: r.get(13)?,
    })
}

pub fn enqueue(conn: &Connection, now_ms: i64, m: &NewMessage) -> Result<(), StoreError> {
    let headers = serde_json::to_string(&m.headers)
        .map_err(|e| StoreError::Corrupt(format!("outbox headers: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO outbox (id, destination, patient, content_type, payload, headers, created_ms, \
           budget_start_ms, next_attempt_ms, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7, 'pending')",
    )?
    .execute(params![
        m.id,
        m.destination,
        m.patient.as_deref().unwrap_or(""),
        m.content_type,
        m.payload,
        headers,
        now_ms
    ])?;
    Ok(())
}

pub fn claim(conn: &Connection, q: &ClaimRequest) -> Result<Claim, StoreError> {
    // Rows past their budget become dead letters first (none that a live worker holds), so a destination
    // that is down longer than its budget empties into the dead-letter list instead of one row per probe.
    let expired = conn
        .prepare_cached(
            "UPDATE outbox SET status = 'dead', done_ms = ?2, claimed_until_ms = NULL, \
               last_error = 'retry budget exhausted; last error: ' || \
                 COALESCE(last_error, 'none (never attempted: the destination was paused or an earlier message waited)') \
             WHERE destination = ?1 AND status = 'pending' AND budget_start_ms + ?3 <= ?2 \
               AND (claimed_until_ms IS NULL OR claimed_until_ms <= ?2) \
             RETURNING id",
        )?
        .query_map(params![q.destination, q.now_ms, q.budget_ms], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    // Only the oldest pending row of each patient is a candidate: a later one waits until it is delivered
    // (or dead), which is what keeps the order per (destination, patient).
    let mut due = conn
        .prepare_cached(&format!(
            "UPDATE outbox SET claimed_until_ms = ?2 + ?3 WHERE seq IN ( \
               SELECT o.seq FROM (SELECT MIN(seq) AS seq FROM outbox \
                                  WHERE destination = ?1 AND status = 'pending' GROUP BY patient) h \
               JOIN outbox o ON o.seq = h.seq \
               WHERE o.next_attempt_ms <= ?2 AND (o.claimed_until_ms IS NULL OR o.claimed_until_ms <= ?2) \
               ORDER BY o.seq LIMIT ?4) \
             RETURNING {COLUMNS}"
        ))?
        .query_map(
            params![q.destination, q.now_ms, q.lease_ms, q.limit as i64],
            row_to_message,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    due.sort_by_key(|m| m.seq);
    Ok(Claim { due, expired })
}

/// Records one attempt's outcome; `false` when the row is no longer pending (nothing changed).
pub fn record(
    conn: &Connection,
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
    let changed = conn
        .prepare_cached(
            "UPDATE outbox SET status = ?2, attempts = attempts + 1, claimed_until_ms = NULL, \
               last_error = COALESCE(?3, last_error), next_attempt_ms = COALESCE(?4, next_attempt_ms), \
               done_ms = CASE WHEN ?2 = 'pending' THEN NULL ELSE ?5 END \
             WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![id, status, error, next, now_ms])?;
    Ok(changed == 1)
}

/// Puts dead letters back in the queue with a fresh budget; answers the (id, patient) of each.
pub fn replay(
    conn: &Connection,
    now_ms: i64,
    which: &Replay,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let (by_id, value) = match which {
        Replay::One(id) => (1i64, id.as_str()),
        Replay::Destination(d) => (0, d.as_str()),
    };
    let rows = conn
        .prepare_cached(
            "UPDATE outbox SET status = 'pending', budget_start_ms = ?1, next_attempt_ms = ?1, \
               claimed_until_ms = NULL, done_ms = NULL \
             WHERE status = 'dead' AND ((?2 = 1 AND id = ?3) OR (?2 = 0 AND destination = ?3)) \
             RETURNING id, patient",
        )?
        .query_map(params![now_ms, by_id, value], |r| {
            let patient: String = r.get(1)?;
            Ok((r.get(0)?, (!patient.is_empty()).then_some(patient)))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Drops every claim: at start-up of the (single) embedded node nobody else holds one.
pub fn release_claims(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE outbox SET claimed_until_ms = NULL WHERE claimed_until_ms IS NOT NULL",
        [],
    )?)
}

pub fn list(conn: &Connection, f: &OutboxFilter) -> Result<Vec<OutboxMessage>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE seq > ?1 AND (?2 IS NULL OR status = ?2) \
               AND (?3 IS NULL OR destination = ?3) ORDER BY seq LIMIT ?4"
        ))?
        .query_map(
            params![
                f.after_seq,
                f.status.map(MessageStatus::as_str),
                f.destination,
                f.limit as i64
            ],
            row_to_message,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))?
        .query_row(params![id], row_to_message)
        .optional()?)
}

pub fn stats(conn: &Connection) -> Result<Vec<DestinationStats>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT destination, SUM(status = 'pending'), SUM(status = 'dead'), \
               MIN(CASE WHEN status = 'pending' THEN created_ms END) \
             FROM outbox WHERE status IN ('pending', 'dead') GROUP BY destination ORDER BY destination",
        )?
        .query_map([], |r| {
            Ok(DestinationStats {
                destination: r.get(0)?,
                pending: r.get::<_, i64>(1)?.max(0) as u64,
                dead: r.get::<_, i64>(2)?.max(0) as u64,
                oldest_pending_ms: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
