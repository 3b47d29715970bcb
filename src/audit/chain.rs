//! The hash chains over the access log, and their verification against the signed checkpoints.
//!
//! Two chains, one per writer (FORMAT.md "Why two chains"): the **change** chain holds the records of writes,
//! appended inside the write's own transaction by the resource writer; the **access** chain holds every other
//! record (reads, searches, refusals, auditor use), appended by the access-log appender with group commit.
//! Record *n* of a chain stores `SHA-256(hash(n−1) ‖ chain letter ‖ n as u64 BE ‖ record bytes)`, so changing,
//! removing or reordering a record breaks the chain there; a signed checkpoint of both heads catches what a
//! chain alone cannot: its end cut off, or the whole chain recomputed after an edit.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::checkpoint::Checkpoint;
use super::format::Entry;

pub type Hash = [u8; 32];

/// The predecessor hash of the first record of a chain.
pub const GENESIS: Hash = [0; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Reads, searches, refusals, auditor use: the appender's chain (in `audit.db`).
    Access,
    /// Records of writes, in the write's transaction (in `navet.db`).
    Change,
}

impl Chain {
    pub const ALL: [Chain; 2] = [Chain::Access, Chain::Change];

    /// The byte the hash covers and the AuditEvent id starts with.
    pub fn letter(self) -> u8 {
        match self {
            Chain::Access => b'a',
            Chain::Change => b'c',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Chain::Access => "access",
            Chain::Change => "change",
        }
    }

    /// The AuditEvent id of record `seq`: `a-17`, `c-3`.
    pub fn id(self, seq: i64) -> String {
        format!("{}-{seq}", self.letter() as char)
    }

    /// The chain and sequence number an AuditEvent id names.
    pub fn parse_id(id: &str) -> Option<(Chain, i64)> {
        let (letter, seq) = id.split_once('-')?;
        let chain = match letter {
            "a" => Chain::Access,
            "c" => Chain::Change,
            _ => return None,
        };
        let seq: i64 = seq.parse().ok().filter(|s| *s > 0)?;
        // One spelling per record: `a-017` is not `a-17`.
        (seq.to_string() == seq_text(id)).then_some((chain, seq))
    }
}

fn seq_text(id: &str) -> &str {
    id.split_once('-').map_or("", |(_, s)| s)
}

/// The hash of record `seq` of `chain`.
pub fn link_hash(prev: &Hash, chain: Chain, seq: i64, record: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update([chain.letter()]);
    hasher.update((seq as u64).to_be_bytes());
    hasher.update(record);
    hasher.finalize().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// Records checked, both chains.
    pub records: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// `None` when every record and checkpoint verifies.
    pub first_broken: Option<Broken>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Broken {
    pub chain: Chain,
    /// The sequence number (1-based, in its chain) of the first record affected.
    pub seq: i64,
    /// Its AuditEvent id.
    pub id: String,
    pub reason: String,
}

impl Broken {
    fn at(chain: Chain, seq: i64, reason: String) -> Broken {
        Broken {
            chain,
            seq,
            id: chain.id(seq),
            reason,
        }
    }
}

/// Checks the records of one chain in order: sequence, hash, format; remembers the hashes the checkpoints
/// name, to compare them once the walk is done.
pub struct Walk {
    chain: Chain,
    next: i64,
    prev: Hash,
    pub records: u64,
    wanted: BTreeMap<i64, Option<Hash>>,
    broken: Option<Broken>,
}

impl Walk {
    /// A walk from record 1 that will compare its hashes with `checkpoints`.
    pub fn new(chain: Chain, checkpoints: &[Checkpoint]) -> Walk {
        let wanted = checkpoints
            .iter()
            .map(|c| c.head(chain).0)
            .filter(|seq| *seq > 0)
            .map(|seq| (seq, None))
            .collect();
        Walk {
            chain,
            next: 1,
            prev: GENESIS,
            records: 0,
            wanted,
            broken: None,
        }
    }

    /// A walk that starts after record `seq` whose hash is `hash` (the tail check at start-up).
    pub fn from(chain: Chain, seq: i64, hash: Hash) -> Walk {
        Walk {
            chain,
            next: seq.saturating_add(1),
            prev: hash,
            records: 0,
            wanted: BTreeMap::new(),
            broken: None,
        }
    }

    /// Checks the next stored record; `false` once the chain is broken (the walk can stop).
    pub fn check(&mut self, seq: i64, record: &[u8], stored_hash: &[u8]) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.records += 1;
        let reason = if seq != self.next {
            Some(if seq > self.next {
                format!(
                    "expected record {} here, found {seq}: records are missing",
                    self.next
                )
            } else {
                format!(
                    "expected record {} here, found {seq}: records are out of order",
                    self.next
                )
            })
        } else if link_hash(&self.prev, self.chain, seq, record) != stored_hash {
            Some("its content does not match its hash: it was changed, or moved".to_owned())
        } else if Entry::decode(record).is_err() {
            Some("it is not a record of the documented format".to_owned())
        } else {
            None
        };
        if let Some(reason) = reason {
            self.broken = Some(Broken::at(self.chain, seq, reason));
            return false;
        }
        let hash = self.prev_for(stored_hash);
        if let Some(slot) = self.wanted.get_mut(&seq) {
            *slot = Some(hash);
        }
        self.prev = hash;
        self.next = seq.saturating_add(1);
        true
    }

    fn prev_for(&self, stored: &[u8]) -> Hash {
        let mut h = GENESIS;
        if stored.len() == 32 {
            h.copy_from_slice(stored);
        }
        h
    }

    /// The verdict: the first broken record, else the first checkpoint the chain does not reach or match.
    pub fn finish(self, checkpoints: &[Checkpoint]) -> Option<Broken> {
        if self.broken.is_some() {
            return self.broken;
        }
        let last = self.next.saturating_sub(1);
        // The records up to the last checkpoint that matched are vouched for by its signature.
        let mut vouched = 0;
        for checkpoint in checkpoints {
            let (seq, hash) = checkpoint.head(self.chain);
            if seq == 0 {
                continue;
            }
            if seq > last {
                return Some(Broken::at(
                    self.chain,
                    last.saturating_add(1),
                    format!(
                        "the chain ends at record {last}, but signed checkpoint {} covers {seq} records: \
                         records {}..={seq} were removed (truncated)",
                        checkpoint.n,
                        last.saturating_add(1)
                    ),
                ));
            }
            if self.wanted.get(&seq).copied().flatten() != Some(hash) {
                return Some(Broken::at(
                    self.chain,
                    vouched + 1,
                    format!(
                        "record {seq} does not have the hash signed in checkpoint {}: the chain was recomputed \
                         after a change at or after record {} (the last record a checkpoint vouches for is {vouched})",
                        checkpoint.n,
                        vouched + 1
                    ),
                ));
            }
            vouched = vouched.max(seq);
        }
        None
    }

    /// The hash of the last record checked (the chain head once the walk is done).
    pub fn head(&self) -> (i64, Hash) {
        (self.next.saturating_sub(1), self.prev)
    }
}

/// Verifies the log of the data directory `data_dir` (both chains, against the checkpoints of the database
/// and of the checkpoint file), opened read-only: `navet audit verify` runs this offline.
pub fn verify_data_dir(data_dir: &std::path::Path) -> Result<Verification, String> {
    crate::store::audit_sql::verify_data_dir_with(data_dir, &[])
}

pub use crate::store::audit_sql::{events_in_data_dir, verify_data_dir_with};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_every_part_of_the_link() {
        let base = link_hash(&GENESIS, Chain::Access, 1, b"x");
        assert_ne!(base, link_hash(&GENESIS, Chain::Change, 1, b"x"));
        assert_ne!(base, link_hash(&GENESIS, Chain::Access, 2, b"x"));
        assert_ne!(base, link_hash(&GENESIS, Chain::Access, 1, b"y"));
        assert_ne!(base, link_hash(&base, Chain::Access, 1, b"x"));
    }

    #[test]
    fn ids_name_the_chain_and_the_sequence_in_one_spelling() {
        assert_eq!(Chain::Access.id(17), "a-17");
        assert_eq!(Chain::parse_id("a-17"), Some((Chain::Access, 17)));
        assert_eq!(Chain::parse_id("c-3"), Some((Chain::Change, 3)));
        for bad in [
            "a-017",
            "a-0",
            "a--1",
            "b-1",
            "a-",
            "a17",
            "",
            "a-99999999999999999999",
        ] {
            assert_eq!(Chain::parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(from_hex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("é1"), None);
    }
}
