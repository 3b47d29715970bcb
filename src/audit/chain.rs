//! The hash chain over the access log: record *n* stores SHA-256 over a canonical form that includes record
//! *n−1*'s hash, so changing, removing or reordering any record breaks the chain at that record.
//!
//! Canonical form (UTF-8): `{prev_hash}\n{seq}\n{id}\n{recorded_ms}\n{json}`, where `prev_hash` is the
//! lowercase hex hash of the predecessor (64 zeros for the first record).

use rusqlite::Connection;
use sha2::{Digest, Sha256};

/// The predecessor hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one record.
pub fn link_hash(prev_hash: &str, seq: i64, id: &str, recorded_ms: i64, json: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(seq.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(id.as_bytes());
    hasher.update(b"\n");
    hasher.update(recorded_ms.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(json.as_bytes());
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// Records checked.
    pub records: u64,
    /// `None` when the chain is intact.
    pub first_broken: Option<Broken>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Broken {
    /// The position (1-based sequence number) of the first record that does not verify.
    pub seq: i64,
    /// Its AuditEvent id.
    pub id: String,
    pub reason: String,
}

/// Walks the whole chain in order. Reads only; works on a copy of the database too (`navet audit verify`).
pub fn verify(conn: &Connection) -> rusqlite::Result<Verification> {
    let mut stmt = conn.prepare(
        "SELECT seq, id, recorded_ms, json, prev_hash, hash FROM audit_log ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = GENESIS.to_owned();
    let mut expected_seq = 1i64;
    let mut records = 0u64;
    while let Some(row) = rows.next()? {
        let (seq, id, recorded_ms, json, prev, hash): (i64, String, i64, String, String, String) = (
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        );
        records += 1;
        let broken = |reason: String| Verification {
            records,
            first_broken: Some(Broken {
                seq,
                id: id.clone(),
                reason,
            }),
        };
        if seq != expected_seq {
            return Ok(broken(format!(
                "expected record {expected_seq} here, found {seq}: records are missing"
            )));
        }
        if prev != expected_prev {
            return Ok(broken(
                "its predecessor hash does not match the record before it".into(),
            ));
        }
        if link_hash(&prev, seq, &id, recorded_ms, &json) != hash {
            return Ok(broken(
                "its content does not match its hash: it was changed".into(),
            ));
        }
        expected_prev = hash;
        expected_seq += 1;
    }
    Ok(Verification {
        records,
        first_broken: None,
    })
}

/// Verifies the newest `n` records: each one's hash, its link to the one before it, and no gap in the
/// sequence. Start-up runs it, so navet neither appends to nor serves on a log whose end was changed.
pub fn verify_tail(conn: &Connection, n: usize) -> rusqlite::Result<Verification> {
    let mut stmt = conn.prepare(
        "SELECT seq, id, recorded_ms, json, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT ?1",
    )?;
    let mut rows: Vec<(i64, String, i64, String, String, String)> = stmt
        .query_map([i64::try_from(n).unwrap_or(i64::MAX)], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.reverse();
    let mut before: Option<(i64, String)> = None;
    let mut records = 0u64;
    for (seq, id, recorded_ms, json, prev, hash) in rows {
        records += 1;
        let broken = |reason: String| Verification {
            records,
            first_broken: Some(Broken {
                seq,
                id: id.clone(),
                reason,
            }),
        };
        let expected_prev = match &before {
            Some((s, _)) if s.checked_add(1) != Some(seq) => {
                return Ok(broken(format!(
                    "expected record {} here, found {seq}: records are missing",
                    s.saturating_add(1)
                )));
            }
            Some((_, h)) => Some(h.as_str()),
            None if seq == 1 => Some(GENESIS),
            // The oldest record checked: its predecessor is outside the tail.
            None => None,
        };
        if expected_prev.is_some_and(|p| p != prev) {
            return Ok(broken(
                "its predecessor hash does not match the record before it".into(),
            ));
        }
        if link_hash(&prev, seq, &id, recorded_ms, &json) != hash {
            return Ok(broken(
                "its content does not match its hash: it was changed".into(),
            ));
        }
        before = Some((seq, hash));
    }
    Ok(Verification {
        records,
        first_broken: None,
    })
}

/// Verifies the chain of the database in `data_dir`, opened read-only: `navet audit verify` runs this
/// offline, on a live data directory or a copy of one.
pub fn verify_data_dir(data_dir: &std::path::Path) -> Result<Verification, String> {
    let path = data_dir.join("navet.db");
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    verify(&conn).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_every_part_of_the_canonical_form() {
        let base = link_hash(GENESIS, 1, "a", 5, "{}");
        assert_eq!(base.len(), 64);
        assert_ne!(base, link_hash(GENESIS, 2, "a", 5, "{}"));
        assert_ne!(base, link_hash(GENESIS, 1, "b", 5, "{}"));
        assert_ne!(base, link_hash(GENESIS, 1, "a", 6, "{}"));
        assert_ne!(base, link_hash(GENESIS, 1, "a", 5, "{ }"));
        assert_ne!(base, link_hash(&base, 1, "a", 5, "{}"));
    }
}
