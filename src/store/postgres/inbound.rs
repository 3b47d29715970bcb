//! Received (and sent) SVPL messages and their receipts in PostgreSQL: the primary key (format, sender,
//! message id) is the idempotency key across nodes.

use postgres::GenericClient;

use crate::store::StoreError;
use crate::store::inbound::{InboundMessage, ReceiverReceipt};

/// This area's tables (applied by `migrate.rs`): `store/schema.rs`'s message tables in PostgreSQL's types.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE inbound_messages (
    seq         BIGSERIAL PRIMARY KEY,
    format      TEXT   NOT NULL,
    sender      TEXT   NOT NULL,
    message_id  TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    received_ms BIGINT NOT NULL,
    body        BYTEA  NOT NULL,
    receipt     TEXT   NOT NULL,
    patient     TEXT,
    case_ref    TEXT,
    parties     TEXT   NOT NULL,
    created     TEXT   NOT NULL,
    updated     TEXT   NOT NULL,
    UNIQUE (format, sender, message_id)
);
CREATE INDEX inbound_messages_id ON inbound_messages (format, message_id);
CREATE INDEX inbound_messages_case ON inbound_messages (format, case_ref);

CREATE TABLE inbound_receipts (
    format      TEXT NOT NULL,
    sender      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    receiver    TEXT NOT NULL,
    receipt     TEXT,
    answered_ms BIGINT,
    PRIMARY KEY (format, sender, message_id, receiver)
);
"#;

fn todo<T>(what: &str) -> Result<T, StoreError> {
    Err(StoreError::Corrupt(format!(
        "not yet on PostgreSQL: {what}"
    )))
}

pub(super) fn get(
    c: &mut impl GenericClient,
    format: &str,
    sender: &str,
    message_id: &str,
) -> Result<Option<InboundMessage>, StoreError> {
    todo("get")
}
pub(super) fn by_id(
    c: &mut impl GenericClient,
    format: &str,
    message_id: &str,
) -> Result<Vec<InboundMessage>, StoreError> {
    todo("by_id")
}
pub(super) fn by_case(
    c: &mut impl GenericClient,
    format: &str,
    case_ref: &str,
) -> Result<Vec<InboundMessage>, StoreError> {
    todo("by_case")
}
pub(super) fn put(c: &mut impl GenericClient, m: &InboundMessage) -> Result<bool, StoreError> {
    todo("put")
}
pub(super) fn set_receipt(
    c: &mut impl GenericClient,
    format: &str,
    sender: &str,
    message_id: &str,
    receipt: &str,
) -> Result<bool, StoreError> {
    todo("set_receipt")
}
pub(super) fn put_receiver_receipt(
    c: &mut impl GenericClient,
    format: &str,
    sender: &str,
    message_id: &str,
    receipt: &ReceiverReceipt,
) -> Result<(), StoreError> {
    todo("put_receiver_receipt")
}
pub(super) fn receiver_receipts(
    c: &mut impl GenericClient,
    format: &str,
    sender: &str,
    message_id: &str,
) -> Result<Vec<ReceiverReceipt>, StoreError> {
    todo("receiver_receipts")
}
