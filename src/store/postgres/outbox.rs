//! The outbox in PostgreSQL: rows claimed with `FOR UPDATE SKIP LOCKED`, so two nodes' workers never hold
//! the same row at once.

use postgres::GenericClient;

use crate::store::StoreError;
use crate::store::outbox::{
    AttemptOutcome, Claim, ClaimRequest, DestinationStats, NewMessage, OutboxFilter, OutboxMessage,
    Replay,
};

/// This area's tables (applied by `migrate.rs`): `store/schema.rs`'s outbox in PostgreSQL's types.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE outbox (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT   NOT NULL UNIQUE,
    destination      TEXT   NOT NULL,
    patient          TEXT   NOT NULL,
    content_type     TEXT   NOT NULL,
    payload          TEXT   NOT NULL,
    headers          TEXT   NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_ms       BIGINT NOT NULL,
    budget_start_ms  BIGINT NOT NULL,
    next_attempt_ms  BIGINT NOT NULL,
    claimed_until_ms BIGINT,
    status           TEXT   NOT NULL,
    last_error       TEXT,
    done_ms          BIGINT
);
CREATE INDEX outbox_queue ON outbox (destination, status, patient, seq);
CREATE INDEX outbox_status ON outbox (status, seq);
"#;

fn todo<T>(what: &str) -> Result<T, StoreError> {
    Err(StoreError::Corrupt(format!(
        "not yet on PostgreSQL: {what}"
    )))
}

pub(super) fn enqueue(
    c: &mut impl GenericClient,
    now_ms: i64,
    m: &NewMessage,
) -> Result<(), StoreError> {
    todo("enqueue")
}
pub(super) fn claim(c: &mut impl GenericClient, q: &ClaimRequest) -> Result<Claim, StoreError> {
    todo("claim")
}
pub(super) fn record(
    c: &mut impl GenericClient,
    now_ms: i64,
    id: &str,
    outcome: &AttemptOutcome,
) -> Result<bool, StoreError> {
    todo("record")
}
pub(super) fn replay(
    c: &mut impl GenericClient,
    now_ms: i64,
    which: &Replay,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    todo("replay")
}
pub(super) fn release_claims(c: &mut impl GenericClient) -> Result<usize, StoreError> {
    todo("release_claims")
}
pub(super) fn list(
    c: &mut impl GenericClient,
    f: &OutboxFilter,
) -> Result<Vec<OutboxMessage>, StoreError> {
    todo("list")
}
pub(super) fn get(
    c: &mut impl GenericClient,
    id: &str,
) -> Result<Option<OutboxMessage>, StoreError> {
    todo("get")
}
pub(super) fn stats(c: &mut impl GenericClient) -> Result<Vec<DestinationStats>, StoreError> {
    todo("stats")
}
