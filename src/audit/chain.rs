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

/// One stored record of the chain.
struct Link {
    seq: i64,
    id: String,
    recorded_ms: i64,
    json: String,
    prev: String,
    hash: String,
}

const LINK_COLUMNS: &str = "seq, id, recorded_ms, json, prev_hash, hash";

fn link(row: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        seq: row.get(0)?,
        id: row.get(1)?,
        recorded_ms: row.get(2)?,
        json: row.get(3)?,
        prev: row.get(4)?,
        hash: row.get(5)?,
    })
}

/// Checks records in chain order. `next` is what the next record must be: its sequence number and its
/// predecessor's hash (`None` at the start of a walk that begins mid-chain, whose predecessor is not read).
struct Walk {
    next: Option<(i64, String)>,
    records: u64,
}

impl Walk {
    fn new(first: &Link) -> Self {
        let next = (first.seq == 1).then(|| (1, GENESIS.to_owned()));
        Walk { next, records: 0 }
    }

    /// The verdict when `link` does not verify.
    fn check(&mut self, link: Link) -> Option<Verification> {
        self.records += 1;
        let reason = match &self.next {
            Some((seq, _)) if *seq != link.seq => Some(format!(
                "expected record {seq} here, found {}: records are missing",
                link.seq
            )),
            Some((_, prev)) if *prev != link.prev => {
                Some("its predecessor hash does not match the record before it".to_owned())
            }
            _ if link_hash(&link.prev, link.seq, &link.id, link.recorded_ms, &link.json)
                != link.hash =>
            {
                Some("its content does not match its hash: it was changed".to_owned())
            }
            _ => None,
        };
        if let Some(reason) = reason {
            return Some(Verification {
                records: self.records,
                first_broken: Some(Broken {
                    seq: link.seq,
                    id: link.id,
                    reason,
                }),
            });
        }
        self.next = Some((link.seq.saturating_add(1), link.hash));
        None
    }

    fn intact(self) -> Verification {
        Verification {
            records: self.records,
            first_broken: None,
        }
    }
}

/// Walks the whole chain in order. Reads only; works on a copy of the database too (`navet audit verify`).
pub fn verify(conn: &Connection) -> rusqlite::Result<Verification> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {LINK_COLUMNS} FROM audit_log ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    // An empty log, or one whose first record is not record 1 (the walk then expects 1 and names the gap).
    let mut walk = Walk {
        next: Some((1, GENESIS.to_owned())),
        records: 0,
    };
    while let Some(row) = rows.next()? {
        if let Some(broken) = walk.check(link(row)?) {
            return Ok(broken);
        }
    }
    Ok(walk.intact())
}

/// Verifies the newest `n` records: each one's hash, its link to the one before it, and no gap in the
/// sequence. Start-up runs it, so navet neither appends to nor serves on a log whose end was changed.
pub fn verify_tail(conn: &Connection, n: usize) -> rusqlite::Result<Verification> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {LINK_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT ?1"
    ))?;
    let mut links: Vec<Link> = stmt
        .query_map([i64::try_from(n).unwrap_or(i64::MAX)], link)?
        .collect::<Result<_, _>>()?;
    links.reverse();
    let Some(first) = links.first() else {
        return Ok(Verification {
            records: 0,
            first_broken: None,
        });
    };
    let mut walk = Walk::new(first);
    for link in links {
        if let Some(broken) = walk.check(link) {
            return Ok(broken);
        }
    }
    Ok(walk.intact())
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

    /// A log of `n` linked records in an in-memory database.
    fn log(n: i64) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::store::schema::SQLITE_SCHEMA)
            .unwrap();
        let mut prev = GENESIS.to_owned();
        for seq in 1..=n {
            let (id, json) = (format!("e{seq}"), format!("{{\"n\":{seq}}}"));
            let hash = link_hash(&prev, seq, &id, seq, &json);
            conn.execute(
                "INSERT INTO audit_log (seq, id, recorded_ms, json, prev_hash, hash) VALUES (?1, ?2, ?1, ?3, ?4, ?5)",
                rusqlite::params![seq, id, json, prev, hash],
            )
            .unwrap();
            prev = hash;
        }
        conn
    }

    #[test]
    fn the_tail_check_starts_mid_chain_and_finds_a_change_or_a_gap_in_it() {
        let conn = log(6);
        assert_eq!(verify_tail(&conn, 3).unwrap().first_broken, None);
        assert_eq!(verify_tail(&conn, 100).unwrap().records, 6);
        assert_eq!(verify_tail(&log(0), 10).unwrap().first_broken, None);
        conn.execute_batch(
            "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
             UPDATE audit_log SET json = '{}' WHERE seq = 5;",
        )
        .unwrap();
        assert_eq!(verify_tail(&conn, 3).unwrap().first_broken.unwrap().seq, 5);
        conn.execute_batch("UPDATE audit_log SET json = '{\"n\":5}' WHERE seq = 5; DELETE FROM audit_log WHERE seq = 5;")
            .unwrap();
        let gap = verify_tail(&conn, 3).unwrap().first_broken.unwrap();
        assert_eq!((gap.seq, gap.reason.contains("missing")), (6, true));
        // Outside the tail, the same gap is for `navet audit verify` to find.
        assert_eq!(verify_tail(&conn, 1).unwrap().first_broken, None);
        assert_eq!(verify(&conn).unwrap().first_broken.unwrap().seq, 6);
    }
}
