//! Received (and sent) SVPL messages and their receipts in PostgreSQL: the primary key (format, sender,
//! message id) is the idempotency key across nodes.

use postgres::GenericClient;
use postgres::types::Type;

use crate::store::StoreError;
use crate::store::inbound::{InboundMessage, ReceiverReceipt};

/// This area's tables (applied by `migrate.rs`): `store/schema.rs`'s message tables in PostgreSQL's types.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE inbound_messages (
    seq         BIGSERIAL PRIMARY KEY,
    format      TEXT COLLATE "C"   NOT NULL,
    sender      TEXT COLLATE "C"   NOT NULL,
    message_id  TEXT COLLATE "C"   NOT NULL,
    kind        TEXT COLLATE "C"   NOT NULL,
    received_ms BIGINT NOT NULL,
    body        BYTEA  NOT NULL,
    receipt     TEXT   NOT NULL,
    patient     TEXT COLLATE "C",
    case_ref    TEXT COLLATE "C",
    parties     TEXT   NOT NULL,
    created     TEXT   NOT NULL,
    updated     TEXT   NOT NULL,
    UNIQUE (format, sender, message_id)
);
CREATE INDEX inbound_messages_id ON inbound_messages (format, message_id);
CREATE INDEX inbound_messages_case ON inbound_messages (format, case_ref);

CREATE TABLE inbound_receipts (
    format      TEXT COLLATE "C" NOT NULL,
    sender      TEXT COLLATE "C" NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    receiver    TEXT COLLATE "C" NOT NULL,
    receipt     TEXT,
    answered_ms BIGINT,
    PRIMARY KEY (format, sender, message_id, receiver)
);
"#;

// `store/inbound_sql.rs` in PostgreSQL's dialect (statements go out with `query_typed`/`execute_typed`: one
// round trip each). The body is BYTEA: the bytes as they arrived.

const COLUMNS: &str = "format, sender, message_id, kind, received_ms, body, receipt, patient, case_ref, \
     parties, created, updated";

fn list(text: String) -> Vec<String> {
    // Written by `put` below as a JSON array; unreadable text reads as empty rather than failing the read.
    serde_json::from_str(&text).unwrap_or_default()
}

fn row_to_message(r: &postgres::Row) -> Result<InboundMessage, StoreError> {
    Ok(InboundMessage {
        format: r.try_get(0)?,
        sender: r.try_get(1)?,
        message_id: r.try_get(2)?,
        kind: r.try_get(3)?,
        received_ms: r.try_get(4)?,
        body: r.try_get(5)?,
        receipt: r.try_get(6)?,
        patient: r.try_get(7)?,
        case_ref: r.try_get(8)?,
        parties: list(r.try_get(9)?),
        created: list(r.try_get(10)?),
        updated: list(r.try_get(11)?),
    })
}

pub(super) fn get(
    c: &mut impl GenericClient,
    format: &str,
    sender: &str,
    message_id: &str,
) -> Result<Option<InboundMessage>, StoreError> {
    c.query_typed_opt(
        &format!(
            "SELECT {COLUMNS} FROM inbound_messages WHERE format = $1 AND sender = $2 AND message_id = $3"
        ),
        &[
            (&format, Type::TEXT),
            (&sender, Type::TEXT),
            (&message_id, Type::TEXT),
        ],
    )?
    .as_ref()
    .map(row_to_message)
    .transpose()
}

pub(super) fn by_id(
    c: &mut impl GenericClient,
    format: &str,
    message_id: &str,
) -> Result<Vec<InboundMessage>, StoreError> {
    c.query_typed(
        &format!(
            "SELECT {COLUMNS} FROM inbound_messages WHERE format = $1 AND message_id = $2 ORDER BY seq"
        ),
        &[(&format, Type::TEXT), (&message_id, Type::TEXT)],
    )?
    .iter()
    .map(row_to_message)
    .collect()
}

pub(super) fn by_case(
    c: &mut impl GenericClient,
    format: &str,
    case_ref: &str,
) -> Result<Vec<InboundMessage>, StoreError> {
    c.query_typed(
        &format!(
            "SELECT {COLUMNS} FROM inbound_messages WHERE format = $1 AND case_ref = $2 ORDER BY seq"
        ),
        &[(&format, Type::TEXT), (&case_ref, Type::TEXT)],
    )?
    .iter()
    .map(row_to_message)
    .collect()
}

/// Inserts the message; `false` (and nothing written) when its key is taken. The key decides between
/// nodes: a concurrent put of the same message waits for the first transaction, then does nothing.
pub(super) fn put(c: &mut impl GenericClient, m: &InboundMessage) -> Result<bool, StoreError> {
    let json = |v: &Vec<String>| {
        serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("inbound list: {e}")))
    };
    let (parties, created, updated) = (json(&m.parties)?, json(&m.created)?, json(&m.updated)?);
    let inserted = c.execute_typed(
        "INSERT INTO inbound_messages (format, sender, message_id, kind, received_ms, body, \
         receipt, patient, case_ref, parties, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (format, sender, message_id) DO NOTHING",
        &[
            (&m.format, Type::TEXT),
            (&m.sender, Type::TEXT),
            (&m.message_id, Type::TEXT),
            (&m.kind, Type::TEXT),
            (&m.received_ms, Type::INT8),
            (&m.body, Type::BYTEA),
            (&m.receipt, Type::TEXT),
            (&m.patient, Type::TEXT),
            (&m.case_ref, Type::TEXT),
            (&parties, Type::TEXT),
            (&created, Type::TEXT),
            (&updated, Type::TEXT),
        ],
    )?;
    Ok(inserted == 1)
}

/// Sets the receipt of a kept message (an outbound SVPL message's Kvittens, answered after it was kept).
pub(super) fn set_receipt(
    c: &mut impl GenericClient,
    format: &str,
    sender: &str,
    message_id: &str,
    receipt: &str,
) -> Result<bool, StoreError> {
    let changed = c.execute_typed(
        "UPDATE inbound_messages SET receipt = $4 WHERE format = $1 AND sender = $2 AND message_id = $3",
        &[
            (&format, Type::TEXT),
            (&sender, Type::TEXT),
            (&message_id, Type::TEXT),
            (&receipt, Type::TEXT),
        ],
    )?;
    Ok(changed == 1)
}

/// Keeps a receiver's receipt row: a pending one (no receipt) is added once, an answer replaces it.
pub(super) fn put_receiver_receipt(
    c: &mut impl GenericClient,
    format: &str,
    sender: &str,
    message_id: &str,
    receipt: &ReceiverReceipt,
) -> Result<(), StoreError> {
    let on_conflict = if receipt.receipt.is_some() {
        "DO UPDATE SET receipt = excluded.receipt, answered_ms = excluded.answered_ms"
    } else {
        "DO NOTHING"
    };
    c.execute_typed(
        &format!(
            "INSERT INTO inbound_receipts (format, sender, message_id, receiver, receipt, answered_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (format, sender, message_id, receiver) {on_conflict}"
        ),
        &[
            (&format, Type::TEXT),
            (&sender, Type::TEXT),
            (&message_id, Type::TEXT),
            (&receipt.receiver, Type::TEXT),
            (&receipt.receipt, Type::TEXT),
            (&receipt.answered_ms, Type::INT8),
        ],
    )?;
    Ok(())
}

/// Every receiver's receipt row of a kept message, by receiver (byte order, as SQLite's BINARY collation).
pub(super) fn receiver_receipts(
    c: &mut impl GenericClient,
    format: &str,
    sender: &str,
    message_id: &str,
) -> Result<Vec<ReceiverReceipt>, StoreError> {
    c.query_typed(
        "SELECT receiver, receipt, answered_ms FROM inbound_receipts \
         WHERE format = $1 AND sender = $2 AND message_id = $3 ORDER BY receiver COLLATE \"C\"",
        &[
            (&format, Type::TEXT),
            (&sender, Type::TEXT),
            (&message_id, Type::TEXT),
        ],
    )?
    .iter()
    .map(|r| {
        Ok(ReceiverReceipt {
            receiver: r.try_get(0)?,
            receipt: r.try_get(1)?,
            answered_ms: r.try_get(2)?,
        })
    })
    .collect()
}
