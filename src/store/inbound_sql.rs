//! SQLite statements of the received messages (store/inbound.rs has the type, store/schema.rs the table).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;
use super::inbound::{InboundMessage, ReceiverReceipt};

const COLUMNS: &str = "format, sender, message_id, kind, received_ms, body, receipt, patient, case_ref, \
     parties, created, updated";

fn list(text: String) -> Vec<String> {
    // Written by `put` below as a JSON array; unreadable text reads as empty rather than failing the read.
    serde_json::from_str(&text).unwrap_or_default()
}

fn row_to_message(r: &Row<'_>) -> rusqlite::Result<InboundMessage> {
    Ok(InboundMessage {
        format: r.get(0)?,
        sender: r.get(1)?,
        message_id: r.get(2)?,
        kind: r.get(3)?,
        received_ms: r.get(4)?,
        body: r.get(5)?,
        receipt: r.get(6)?,
        patient: r.get(7)?,
        case_ref: r.get(8)?,
        parties: list(r.get(9)?),
        created: list(r.get(10)?),
        updated: list(r.get(11)?),
    })
}

pub fn get(
    conn: &Connection,
    format: &str,
    sender: &str,
    message_id: &str,
) -> Result<Option<InboundMessage>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM inbound_messages WHERE format = ?1 AND sender = ?2 AND message_id = ?3"
        ))?
        .query_row(params![format, sender, message_id], row_to_message)
        .optional()?)
}

pub fn by_id(
    conn: &Connection,
    format: &str,
    message_id: &str,
) -> Result<Vec<InboundMessage>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM inbound_messages WHERE format = ?1 AND message_id = ?2 ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![format, message_id], row_to_message)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn by_case(
    conn: &Connection,
    format: &str,
    case_ref: &str,
) -> Result<Vec<InboundMessage>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM inbound_messages WHERE format = ?1 AND case_ref = ?2 ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![format, case_ref], row_to_message)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts the message; `false` (and nothing written) when its key is taken.
pub fn put(conn: &Connection, m: &InboundMessage) -> Result<bool, StoreError> {
    let json = |v: &Vec<String>| {
        serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("inbound list: {e}")))
    };
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO inbound_messages (format, sender, message_id, kind, received_ms, body, \
             receipt, patient, case_ref, parties, created, updated) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            m.format,
            m.sender,
            m.message_id,
            m.kind,
            m.received_ms,
            m.body,
            m.receipt,
            m.patient,
            m.case_ref,
            json(&m.parties)?,
            json(&m.created)?,
            json(&m.updated)?
        ])?;
    Ok(inserted == 1)
}

/// Sets the receipt of a kept message (an outbound SVPL message's Kvittens, answered after it was kept).
pub fn set_receipt(
    conn: &Connection,
    format: &str,
    sender: &str,
    message_id: &str,
    receipt: &str,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE inbound_messages SET receipt = ?4 WHERE format = ?1 AND sender = ?2 AND message_id = ?3",
        )?
        .execute(params![format, sender, message_id, receipt])?;
    Ok(changed == 1)
}

/// Keeps a receiver's receipt row: a pending one (no receipt) is added once, an answer replaces it.
pub fn put_receiver_receipt(
    conn: &Connection,
    format: &str,
    sender: &str,
    message_id: &str,
    r: &ReceiverReceipt,
) -> Result<(), StoreError> {
    let sql = if r.receipt.is_some() {
        "INSERT INTO inbound_receipts (format, sender, message_id, receiver, receipt, answered_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (format, sender, message_id, receiver) \
         DO UPDATE SET receipt = excluded.receipt, answered_ms = excluded.answered_ms"
    } else {
        "INSERT OR IGNORE INTO inbound_receipts (format, sender, message_id, receiver, receipt, answered_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    };
    conn.prepare_cached(sql)?.execute(params![
        format,
        sender,
        message_id,
        r.receiver,
        r.receipt,
        r.answered_ms
    ])?;
    Ok(())
}

/// Every receiver's receipt row of a kept message, by receiver.
pub fn receiver_receipts(
    conn: &Connection,
    format: &str,
    sender: &str,
    message_id: &str,
) -> Result<Vec<ReceiverReceipt>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT receiver, receipt, answered_ms FROM inbound_receipts \
         WHERE format = ?1 AND sender = ?2 AND message_id = ?3 ORDER BY receiver",
    )?;
    let rows = stmt
        .query_map(params![format, sender, message_id], |r| {
            Ok(ReceiverReceipt {
                receiver: r.get(0)?,
                receipt: r.get(1)?,
                answered_ms: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
