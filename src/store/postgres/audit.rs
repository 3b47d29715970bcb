//! The access log in PostgreSQL: both chains in one database for all nodes. The change chain is appended in
//! the write's own transaction; the access chain by each node's appender (group commit). Either append locks
//! its chain's head row first, so the chain stays one verifiable sequence with several writers.
//!
//! The stored records, hashes and checkpoint lines are exactly those of `src/audit/FORMAT.md`; what differs
//! from the SQLite files (`store/audit_sql.rs`, `store/appender.rs`), and why:
//!
//! - **One set of tables, a `chain` column** (`'a'` access, `'c'` change: the letter the hash covers) rather
//!   than two table sets. The auditor's search and the export read both chains merged in recorded order; in
//!   one table that is one scan of one time index, not a `UNION ALL` and a sort.
//! - **Record times are unique across nodes** (`LoggedEvent::recorded_us`; the export's cursor resumes
//!   after the time of the last record it got). Along a chain they increase because each append takes the
//!   time after it holds the head: `next_time_us` of the later of both chains' heads, so also after every
//!   record already stored (imported ones included). Across the two chains, two nodes could pick the same
//!   microsecond, so access records get odd times and change records even ones (at most 1 µs later than the
//!   clock). The time index is not `UNIQUE` all the same: a log imported from SQLite may hold two records of
//!   one time (a clock stepped back across a restart there), and an import must not fail on it; order is
//!   then (time, chain, seq), the same on every read.
//! - **Several writers, one sequence.** `audit_head` holds one row per chain (seq, hash, time of the newest
//!   record); an append locks it (`SELECT … FOR UPDATE`), inserts after it and moves it, in one transaction.
//!   A second node's append waits for the lock, then continues from the new head. The head row is also a
//!   check: a chain whose last record disagrees with its head row lost (or gained) records outside navet,
//!   which no signed checkpoint could show yet.
//! - **Append-only in the database.** A trigger refuses `UPDATE`, `DELETE` and `TRUNCATE` on the log, its
//!   keys and its checkpoints; start-up refuses to serve when one is missing or disabled.
//! - **Checkpoints from several nodes.** Each node signs with its own key (`audit-checkpoint.key.pem` in its
//!   data directory); checkpoints are numbered in one sequence in `audit_checkpoint` (taken under a table
//!   lock) and each node also appends the ones it signs to its own `audit-checkpoints.log`. A checkpoint
//!   line names its key, and verification checks every checkpoint against the key it names. Which keys are
//!   trusted: this node's, plus those listed in [`TRUSTED_KEYS_FILE`] in the data directory when that file
//!   exists — then a checkpoint signed by any other key breaks the log. Without the file, other nodes' keys
//!   are accepted as long as their signatures verify (a forged or edited line still fails); list every
//!   node's public key there to refuse checkpoints under a key an intruder made. `verify` reads the
//!   database's checkpoints and this node's file; another node's file is that node's copy, compared when
//!   the log is verified there.
//! - **The appender** (group commit, bounded queue, an answer only after the commit, as `store/appender.rs`)
//!   holds one of the pool's connections for as long as it runs; its batch is one transaction of two
//!   statements (lock the head; insert records, keys and the new head), so nodes take turns per batch.
//! - **Search** mirrors `audit_sql`'s conditions on the one table, with lists bound as arrays (`= ANY($n)`)
//!   rather than `IN (?, ?, …)`: the statement text does not grow with a list.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::GenericClient;
use postgres::types::{ToSql, Type};
use tokio::sync::oneshot;

use crate::audit::Encoded;
use crate::audit::chain::{Broken, Chain, GENESIS, Hash, Verification, Walk};
use crate::audit::checkpoint::{self, Checkpoint, CheckpointKey};
use crate::audit::format::{Entry, set_time};
use crate::audit::query::AuditQuery;
use crate::store::audit_sql::Logged;
use crate::store::{AuditPage, LoggedEvent, StoreError};

/// This area's tables (applied by `migrate.rs`). Integers are BIGINT; `record` and `hash` are what the
/// chain covers (FORMAT.md), the other columns copies for the auditor's filters.
pub(super) const SCHEMA: &str = r#"
-- One row per record of either chain (src/audit/FORMAT.md).
CREATE TABLE audit_log (
    chain   TEXT   NOT NULL CHECK (chain IN ('a', 'c')),   -- a: access, c: change
    seq     BIGINT NOT NULL,                               -- 1, 2, 3, … in chain order
    t_us    BIGINT NOT NULL,                               -- recorded, µs since the epoch; increases with seq
    action  BIGINT NOT NULL,                               -- C R U D E (ASCII)
    outcome BIGINT NOT NULL,                               -- 0 4 8
    purpose TEXT,                                          -- TREAT ETREAT HOPERAT SYSTEM-INTEGRATION, or NULL
    record  BYTEA  NOT NULL,
    hash    BYTEA  NOT NULL,                               -- SHA-256(previous hash ‖ chain ‖ seq ‖ record)
    PRIMARY KEY (chain, seq)
);
-- Both chains in recorded order (search, export); (chain, seq) orders records of one time, if ever.
CREATE INDEX audit_log_time ON audit_log (t_us, chain, seq);
-- The auditor indexes: p|Patient/{id}, h|{HSA-id} (user, care unit, principal, receiver), c|{client id}.
CREATE TABLE audit_key (
    k     TEXT   NOT NULL,
    chain TEXT   NOT NULL,
    seq   BIGINT NOT NULL,
    PRIMARY KEY (k, chain, seq)
);
-- Each chain's newest record, locked by every append: one sequence with several writers.
CREATE TABLE audit_head (
    chain TEXT   PRIMARY KEY CHECK (chain IN ('a', 'c')),
    seq   BIGINT NOT NULL,
    hash  BYTEA  NOT NULL,
    t_us  BIGINT NOT NULL
);
INSERT INTO audit_head (chain, seq, hash, t_us)
VALUES ('a', 0, decode(repeat('00', 32), 'hex'), 0), ('c', 0, decode(repeat('00', 32), 'hex'), 0);
-- Signed checkpoints (audit/checkpoint.rs) of every node, one canonical line each, numbered in one sequence.
CREATE TABLE audit_checkpoint (
    n    BIGINT PRIMARY KEY,
    line TEXT   NOT NULL
);
CREATE FUNCTION navet_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the access log is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION navet_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION navet_audit_append_only();
CREATE TRIGGER audit_key_append_only BEFORE UPDATE OR DELETE ON audit_key
    FOR EACH ROW EXECUTE FUNCTION navet_audit_append_only();
CREATE TRIGGER audit_key_no_truncate BEFORE TRUNCATE ON audit_key
    FOR EACH STATEMENT EXECUTE FUNCTION navet_audit_append_only();
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION navet_audit_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION navet_audit_append_only();
"#;

/// The append-only triggers, checked at every start (one missing or disabled means the database was altered
/// outside navet).
const APPEND_ONLY_TRIGGERS: [(&str, &str); 6] = [
    ("audit_log", "audit_log_append_only"),
    ("audit_log", "audit_log_no_truncate"),
    ("audit_key", "audit_key_append_only"),
    ("audit_key", "audit_key_no_truncate"),
    ("audit_checkpoint", "audit_checkpoint_append_only"),
    ("audit_checkpoint", "audit_checkpoint_no_truncate"),
];

/// The data directory's list of checkpoint keys to trust besides this node's: one public key per line, in
/// hex as a checkpoint line's `key=` (65-byte uncompressed P-256 point); `#` starts a comment.
pub const TRUSTED_KEYS_FILE: &str = "audit-checkpoint-trusted-keys";

/// Records waiting beyond this are refused (`StoreError::Busy`, 503) rather than queued without bound.
const QUEUE: usize = 8192;
/// At most this many records share one commit.
const MAX_BATCH: usize = 2048;
/// How many of the newest records of each chain start-up verifies (the whole log is `verify`).
const TAIL_CHECKED: usize = crate::store::appender::TAIL_CHECKED;
/// Records read per query while verifying (a long log is walked in pages, not held in memory).
const WALK_PAGE: i64 = 4096;

fn letter(chain: Chain) -> &'static str {
    match chain {
        Chain::Access => "a",
        Chain::Change => "c",
    }
}

fn chain_of(letter: &str) -> Result<Chain, StoreError> {
    match letter {
        "a" => Ok(Chain::Access),
        "c" => Ok(Chain::Change),
        other => Err(StoreError::Corrupt(format!(
            "the access log holds a record of an unknown chain '{other}'"
        ))),
    }
}

/// The time of the next record of `chain` after one recorded at `floor` (the later head of both chains):
/// later than it (and than every time this process gave), odd on the access chain and even on the change
/// chain, so no two records of the log, from any node, share a time.
fn record_time(chain: Chain, floor: i64) -> i64 {
    let t = crate::audit::next_time_us(floor);
    let odd = chain == Chain::Access;
    if (t.rem_euclid(2) == 1) == odd {
        t
    } else {
        t.saturating_add(1)
    }
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut h = GENESIS;
    if bytes.len() == 32 {
        h.copy_from_slice(bytes);
    }
    h
}

/// A chain's head row: (seq, hash, time of the newest record); locked until the transaction ends when
/// `lock`, and then the time is the later of both chains' heads (the floor of the next record's time).
fn head(
    c: &mut impl GenericClient,
    chain: Chain,
    lock: bool,
) -> Result<(i64, Hash, i64), StoreError> {
    // After waiting for the lock, PostgreSQL answers the head as the other append left it; the other chain's
    // head may be older than that (the statement's snapshot), which only lowers a floor the clock is past.
    let sql = if lock {
        "SELECT seq, hash, GREATEST(t_us, (SELECT max(t_us) FROM audit_head)) FROM audit_head \
         WHERE chain = $1 FOR UPDATE"
    } else {
        "SELECT seq, hash, t_us FROM audit_head WHERE chain = $1"
    };
    let row = c
        .query_typed_opt(sql, &[(&letter(chain), Type::TEXT)])?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the head row of the {} chain is missing from audit_head",
                chain.name()
            ))
        })?;
    let hash: Vec<u8> = row.try_get(1)?;
    Ok((row.try_get(0)?, to_hash(&hash), row.try_get(2)?))
}

/// Appends `records` to `chain` in the caller's transaction, after locking the chain's head (held until that
/// transaction ends); answers their sequence numbers. Two statements whatever the number of records: the
/// lock, then the records, their index keys and the new head.
fn append_records(
    c: &mut impl GenericClient,
    chain: Chain,
    records: &[&Encoded],
) -> Result<Vec<i64>, StoreError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let (mut seq, mut hash, mut time) = head(c, chain, true)?;
    let n = records.len();
    let (mut seqs, mut times) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut actions, mut outcomes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut purposes, mut bytes_list, mut hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut keys, mut key_seqs) = (Vec::new(), Vec::new());
    for record in records {
        seq = seq
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("the {} chain is full", chain.name())))?;
        time = record_time(chain, time);
        let mut bytes = record.bytes.clone();
        set_time(&mut bytes, time);
        hash = crate::audit::chain::link_hash(&hash, chain, seq, &bytes);
        seqs.push(seq);
        times.push(time);
        actions.push(i64::from(record.action));
        outcomes.push(i64::from(record.outcome));
        purposes.push(record.purpose.as_deref());
        bytes_list.push(bytes);
        hashes.push(hash.to_vec());
        for k in &record.keys {
            keys.push(k.as_str());
            key_seqs.push(seq);
        }
    }
    let chain_letter = letter(chain);
    let head_hash = hash.to_vec();
    // One statement (one round trip) for the records, their index keys and the new head: the head is already
    // locked, and the three changes commit or roll back together with the caller's transaction.
    c.query_typed(
        "WITH records AS ( \
             INSERT INTO audit_log (chain, seq, t_us, action, outcome, purpose, record, hash) \
             SELECT $1, s, t, a, o, p, r, h FROM unnest($2, $3, $4, $5, $6, $7, $8) AS u(s, t, a, o, p, r, h) \
         ), keys AS ( \
             INSERT INTO audit_key (k, chain, seq) SELECT k, $1, s FROM unnest($9, $10) AS u(k, s) \
         ) \
         UPDATE audit_head SET seq = $11, hash = $12, t_us = $13 WHERE chain = $1",
        &[
            (&chain_letter, Type::TEXT),
            (&seqs, Type::INT8_ARRAY),
            (&times, Type::INT8_ARRAY),
            (&actions, Type::INT8_ARRAY),
            (&outcomes, Type::INT8_ARRAY),
            (&purposes, Type::TEXT_ARRAY),
            (&bytes_list, Type::BYTEA_ARRAY),
            (&hashes, Type::BYTEA_ARRAY),
            (&keys, Type::TEXT_ARRAY),
            (&key_seqs, Type::INT8_ARRAY),
            (&seq, Type::INT8),
            (&head_hash, Type::BYTEA),
            (&time, Type::INT8),
        ],
    )?;
    Ok(seqs)
}

/// Appends one record to the change chain inside the caller's transaction (the tests; a write job's records
/// go through [`append_changes`] just before its commit, `tx.rs`).
#[cfg(test)]
pub(super) fn append_change(
    c: &mut impl GenericClient,
    record: &crate::audit::Encoded,
) -> Result<(), StoreError> {
    append_records(c, Chain::Change, &[record]).map(|_| ())
}

/// Appends several records to the change chain in one go, in the caller's transaction. A job's records can
/// be gathered and appended just before its commit: the head is then locked for the commit only, and, taken
/// last, never in a lock cycle with the resource rows a job locks (two jobs that each locked a resource and
/// wait for the head held by the other would deadlock).
pub(super) fn append_changes(
    c: &mut impl GenericClient,
    records: &[crate::audit::Encoded],
) -> Result<(), StoreError> {
    let refs: Vec<&Encoded> = records.iter().collect();
    append_records(c, Chain::Change, &refs).map(|_| ())
}

/// Bound values for a query built at run time, numbered `$1`, `$2`, … as they are pushed.
#[derive(Default)]
struct Params {
    values: Vec<(Box<dyn ToSql + Sync>, Type)>,
}

impl Params {
    /// Adds a value; answers its placeholder.
    fn push(&mut self, value: impl ToSql + Sync + 'static, ty: Type) -> String {
        self.values.push((Box::new(value), ty));
        format!("${}", self.values.len())
    }

    fn refs(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        self.values
            .iter()
            .map(|(v, t)| (v.as_ref() as &(dyn ToSql + Sync), t.clone()))
            .collect()
    }
}

/// The WHERE clause of a search over both chains (`audit_sql::conditions`, in one table).
fn conditions(q: &AuditQuery, p: &mut Params) -> String {
    let mut sql = String::from(" WHERE TRUE");
    if let Some(from) = q.from_us {
        sql.push_str(&format!(" AND l.t_us >= {}", p.push(from, Type::INT8)));
    }
    if let Some(to) = q.to_us {
        sql.push_str(&format!(" AND l.t_us < {}", p.push(to, Type::INT8)));
    }
    if let Some(ids) = &q.ids {
        let of = |chain: Chain| -> Vec<i64> {
            ids.iter()
                .filter(|(c, _)| *c == chain)
                .map(|(_, s)| *s)
                .collect()
        };
        let (access, change) = (of(Chain::Access), of(Chain::Change));
        sql.push_str(&format!(
            " AND ((l.chain = 'a' AND l.seq = ANY({})) OR (l.chain = 'c' AND l.seq = ANY({})))",
            p.push(access, Type::INT8_ARRAY),
            p.push(change, Type::INT8_ARRAY)
        ));
    }
    if let Some(outcomes) = &q.outcomes {
        let v: Vec<i64> = outcomes.iter().map(|o| i64::from(*o)).collect();
        sql.push_str(&format!(
            " AND l.outcome = ANY({})",
            p.push(v, Type::INT8_ARRAY)
        ));
    }
    if let Some(actions) = &q.actions {
        let v: Vec<i64> = actions.iter().map(|a| i64::from(*a)).collect();
        sql.push_str(&format!(
            " AND l.action = ANY({})",
            p.push(v, Type::INT8_ARRAY)
        ));
    }
    if let Some(purposes) = &q.purposes {
        sql.push_str(&format!(
            " AND l.purpose = ANY({})",
            p.push(purposes.clone(), Type::TEXT_ARRAY)
        ));
    }
    for group in &q.key_groups {
        sql.push_str(&format!(
            " AND (l.chain, l.seq) IN (SELECT k.chain, k.seq FROM audit_key k WHERE k.k = ANY({}))",
            p.push(group.clone(), Type::TEXT_ARRAY)
        ));
    }
    sql
}

/// A stored record, decoded (a record that is not of the documented format is corrupt data).
fn logged(chain: Chain, seq: i64, bytes: &[u8]) -> Result<Logged, StoreError> {
    Entry::decode(bytes)
        .map(|entry| Logged { chain, seq, entry })
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", chain.id(seq))))
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A page of search matches in recorded order (newest first when asked), whether more follow, and the
/// number of matches when asked (`audit_sql::search`).
fn search_logged(
    c: &mut impl GenericClient,
    q: &AuditQuery,
    offset: usize,
    count: usize,
    total: bool,
) -> Result<(Vec<Logged>, bool, Option<u64>), StoreError> {
    if q.matches_nothing() {
        return Ok((Vec::new(), false, total.then_some(0)));
    }
    let mut p = Params::default();
    let cond = conditions(q, &mut p);
    let counted = p.values.len();
    let order = if q.newest_first { "DESC" } else { "ASC" };
    let lim = p.push(limit(count.saturating_add(1)), Type::INT8);
    let off = p.push(limit(offset), Type::INT8);
    let rows = c.query_typed(
        &format!(
            "SELECT l.chain, l.seq, l.record FROM audit_log l{cond} ORDER BY l.t_us {order}, l.chain {order}, l.seq {order} LIMIT {lim} OFFSET {off}"
        ),
        &p.refs(),
    )?;
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        let (ch, seq, record): (&str, i64, Vec<u8>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        found.push(logged(chain_of(ch)?, seq, &record)?);
    }
    let more = found.len() > count;
    found.truncate(count);
    let total = if total {
        let mut refs = p.refs();
        refs.truncate(counted);
        let row = c.query_typed_one(&format!("SELECT count(*) FROM audit_log l{cond}"), &refs)?;
        let n: i64 = row.try_get(0)?;
        Some(u64::try_from(n).unwrap_or(0))
    } else {
        None
    };
    Ok((found, more, total))
}

/// Records recorded in `[from_us, to_us)` after the record recorded at `after` (µs), oldest first, as
/// (time, AuditEvent view with the stored record and its hash): the export and the sample page through the
/// log with the time of the last record they got (`audit_sql::page`).
pub(super) fn page(
    c: &mut impl GenericClient,
    from_us: i64,
    to_us: i64,
    after: i64,
    limit_n: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    let lim = limit(limit_n);
    let rows = c.query_typed(
        "SELECT chain, seq, record, t_us, hash FROM audit_log \
         WHERE t_us > $1 AND t_us >= $2 AND t_us < $3 ORDER BY t_us, chain, seq LIMIT $4",
        &[
            (&after, Type::INT8),
            (&from_us, Type::INT8),
            (&to_us, Type::INT8),
            (&lim, Type::INT8),
        ],
    )?;
    rows.into_iter()
        .map(|row| {
            let (ch, seq, record, t, hash): (&str, i64, Vec<u8>, i64, Vec<u8>) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
            );
            let found = logged(chain_of(ch)?, seq, &record)?;
            Ok((t, found.json_with_record(&record, &hash)))
        })
        .collect()
}

pub(super) fn search(
    c: &mut impl GenericClient,
    query: &crate::audit::query::AuditQuery,
    offset: usize,
    count: usize,
    total: bool,
) -> Result<AuditPage, StoreError> {
    let (found, has_more, total) = search_logged(c, query, offset, count, total)?;
    Ok(AuditPage {
        events: found
            .into_iter()
            .map(|l| LoggedEvent {
                id: l.id(),
                recorded_us: l.entry.time_us,
                json: l.json(),
                patients: l.entry.patients,
            })
            .collect(),
        has_more,
        total,
    })
}

/// Every record naming `patient` (`Patient/{id}`), as AuditEvent views in recorded order.
pub(super) fn for_patient(
    c: &mut impl GenericClient,
    patient: &str,
) -> Result<Vec<String>, StoreError> {
    let query = AuditQuery {
        key_groups: vec![vec![format!("p|{patient}")]],
        ..Default::default()
    };
    let (found, _, _) = search_logged(c, &query, 0, usize::MAX - 1, false)?;
    Ok(found.iter().map(Logged::json).collect())
}

/// The checkpoints stored in the database, oldest first.
fn stored_checkpoints(
    c: &mut impl GenericClient,
) -> Result<Result<Vec<Checkpoint>, String>, StoreError> {
    let rows = c.query_typed("SELECT n, line FROM audit_checkpoint ORDER BY n", &[])?;
    let mut list = Vec::with_capacity(rows.len());
    for row in rows {
        let (n, line): (i64, &str) = (row.try_get(0)?, row.try_get(1)?);
        let checkpoint = match Checkpoint::parse(line) {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("checkpoint {n} in the database: {e}"))),
        };
        if checkpoint.n != n {
            return Ok(Err(format!(
                "checkpoint row {n} holds checkpoint {}",
                checkpoint.n
            )));
        }
        list.push(checkpoint);
    }
    Ok(Ok(list))
}

/// The keys checkpoints may be signed with: `None` when the data directory lists none (any key whose
/// signature verifies), else this node's and the listed ones.
fn trusted_keys(data_dir: &Path, own: &[u8]) -> Result<Option<Vec<Vec<u8>>>, String> {
    let path = data_dir.join(TRUSTED_KEYS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut keys = vec![own.to_vec()];
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match crate::audit::chain::from_hex(line) {
            Some(key) if key.len() == 65 => keys.push(key),
            _ => {
                return Err(format!(
                    "{} line {}: not a checkpoint public key (130 hex digits)",
                    path.display(),
                    i.saturating_add(1)
                ));
            }
        }
    }
    Ok(Some(keys))
}

/// The checkpoints of the database and of this node's checkpoint file, merged and checked (signatures,
/// numbering, copies agree, never shrinking, trusted keys); an error is a broken log.
fn all_checkpoints(
    database: Vec<Checkpoint>,
    file: Vec<Checkpoint>,
    data_dir: &Path,
    own_key: &[u8],
) -> Result<Vec<Checkpoint>, String> {
    let file_name = data_dir.join(checkpoint::FILE).display().to_string();
    let merged = checkpoint::merge(
        &[("the database", database), (file_name.as_str(), file)],
        None,
    )?;
    if let Some(trusted) = trusted_keys(data_dir, own_key)?
        && let Some(c) = merged.iter().find(|c| !trusted.contains(&c.key))
    {
        return Err(format!(
            "checkpoint {} is signed by a key that is neither this node's checkpoint key nor listed in {}",
            c.n,
            data_dir.join(TRUSTED_KEYS_FILE).display()
        ));
    }
    Ok(merged)
}

/// A verification that found the checkpoints broken.
fn broken_checkpoints(reason: String) -> Verification {
    Verification {
        records: 0,
        checkpoints: 0,
        first_broken: Some(Broken {
            chain: Chain::Access,
            seq: 0,
            id: "checkpoints".into(),
            reason,
        }),
    }
}

/// Whether the end of a walked chain is where its head row says: a difference is records removed from the
/// end (or added) outside navet, which a checkpoint shows only once one covers them.
fn head_mismatch(chain: Chain, walked: (i64, Hash), head: (i64, Hash)) -> Option<Broken> {
    let at = |seq: i64, reason: String| Broken {
        chain,
        seq,
        id: chain.id(seq),
        reason,
    };
    let (last, head_seq) = (walked.0, head.0);
    if head_seq > last {
        let first = last.saturating_add(1);
        Some(at(
            first,
            format!(
                "the chain ends at record {last}, but its head says {head_seq} records were appended: records \
                 {first}..={head_seq} were removed"
            ),
        ))
    } else if head_seq < last {
        let first = head_seq.saturating_add(1);
        Some(at(
            first,
            format!(
                "the chain's head says it ends at record {head_seq}, but records up to {last} are stored: \
                 records from {first} on were not appended by navet"
            ),
        ))
    } else if head_seq > 0 && walked.1 != head.1 {
        Some(at(
            last,
            format!(
                "record {last} does not have the hash its chain's head holds: the end of the chain was changed \
                 or recomputed"
            ),
        ))
    } else {
        None
    }
}

/// Walks one chain from its first record (in pages), then compares it with the checkpoints and its head row.
fn walk_chain(
    c: &mut impl GenericClient,
    chain: Chain,
    checkpoints: &[Checkpoint],
) -> Result<(u64, Option<Broken>), StoreError> {
    let mut walk = Walk::new(chain, checkpoints);
    let chain_letter = letter(chain);
    let mut after: Option<i64> = None;
    'pages: loop {
        let rows = match after {
            None => c.query_typed(
                "SELECT seq, record, hash FROM audit_log WHERE chain = $1 ORDER BY seq LIMIT $2",
                &[(&chain_letter, Type::TEXT), (&WALK_PAGE, Type::INT8)],
            )?,
            Some(after) => c.query_typed(
                "SELECT seq, record, hash FROM audit_log WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[
                    (&chain_letter, Type::TEXT),
                    (&after, Type::INT8),
                    (&WALK_PAGE, Type::INT8),
                ],
            )?,
        };
        let full = rows.len() >= usize::try_from(WALK_PAGE).unwrap_or(usize::MAX);
        for row in rows {
            let (seq, record, hash): (i64, Vec<u8>, Vec<u8>) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            after = Some(seq);
            if !walk.check(seq, &record, &hash) {
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    let records = walk.records;
    let walked = walk.head();
    let mut broken = walk.finish(checkpoints);
    if broken.is_none() {
        let (seq, hash, _) = head(c, chain, false)?;
        broken = head_mismatch(chain, walked, (seq, hash));
    }
    Ok((records, broken))
}

/// Checks the newest `n` records of a chain (hash, link, no gap), that its head row matches its last
/// record, and that the newest checkpoint matches the chain; answers the broken record if any. Start-up
/// runs it, so navet neither appends to nor serves on a log whose end was changed, cut off or recomputed
/// (`audit_sql::check_tail`).
fn check_tail(
    c: &mut impl GenericClient,
    chain: Chain,
    n: usize,
    latest: Option<&Checkpoint>,
) -> Result<Option<Broken>, StoreError> {
    let chain_letter = letter(chain);
    let (head_seq, head_hash, _) = head(c, chain, false)?;
    let last = c
        .query_typed_opt(
            "SELECT seq, hash FROM audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
            &[(&chain_letter, Type::TEXT)],
        )?
        .map(|row| -> Result<(i64, Hash), StoreError> {
            let hash: Vec<u8> = row.try_get(1)?;
            Ok((row.try_get(0)?, to_hash(&hash)))
        })
        .transpose()?
        .unwrap_or((0, GENESIS));
    if let Some(broken) = head_mismatch(chain, last, (head_seq, head_hash)) {
        return Ok(Some(broken));
    }
    let start = last
        .0
        .saturating_sub(i64::try_from(n).unwrap_or(i64::MAX))
        .max(0);
    let anchor = if start == 0 {
        GENESIS
    } else {
        match hash_at(c, chain, start)? {
            Some(h) => to_hash(&h),
            None => {
                return Ok(Some(Broken {
                    chain,
                    seq: start,
                    id: chain.id(start),
                    reason: "the record is missing".into(),
                }));
            }
        }
    };
    let mut walk = Walk::from(chain, start, anchor);
    let rows = c.query_typed(
        "SELECT seq, record, hash FROM audit_log WHERE chain = $1 AND seq > $2 ORDER BY seq",
        &[(&chain_letter, Type::TEXT), (&start, Type::INT8)],
    )?;
    for row in rows {
        let (seq, record, hash): (i64, Vec<u8>, Vec<u8>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if !walk.check(seq, &record, &hash) {
            break;
        }
    }
    if let Some(broken) = walk.finish(&[]) {
        return Ok(Some(broken));
    }
    if let Some(cp) = latest {
        let (seq, hash) = cp.head(chain);
        if seq > last.0 {
            let first = last.0.saturating_add(1);
            return Ok(Some(Broken {
                chain,
                seq: first,
                id: chain.id(first),
                reason: format!(
                    "the chain ends at record {}, but signed checkpoint {} covers {seq} records (truncated)",
                    last.0, cp.n
                ),
            }));
        }
        if seq > 0 && hash_at(c, chain, seq)?.as_deref() != Some(&hash[..]) {
            return Ok(Some(Broken {
                chain,
                seq,
                id: chain.id(seq),
                reason: format!(
                    "record {seq} does not have the hash signed in checkpoint {}: the chain was recomputed",
                    cp.n
                ),
            }));
        }
    }
    Ok(None)
}

/// The stored hash of record `seq` of `chain`, if there is such a record.
fn hash_at(
    c: &mut impl GenericClient,
    chain: Chain,
    seq: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = c.query_typed_opt(
        "SELECT hash FROM audit_log WHERE chain = $1 AND seq = $2",
        &[(&letter(chain), Type::TEXT), (&seq, Type::INT8)],
    )?;
    Ok(match row {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// Verifies both chains from their first record against the checkpoints (of the database and of the
/// checkpoint file in `data_dir`, trusted as the module doc says, `own_key` being this node's public key)
/// and the chains' head rows, in one snapshot of the database. Needs no running appender: a tool can run it.
pub(super) fn verify_log(
    c: &mut impl GenericClient,
    data_dir: &Path,
    own_key: &[u8],
) -> Result<Verification, StoreError> {
    // The file before the snapshot: every checkpoint in it was committed before it was written, so the
    // snapshot holds it and the records it covers.
    let file = match checkpoint::read_file(&data_dir.join(checkpoint::FILE)) {
        Ok(f) => f,
        Err(reason) => return Ok(broken_checkpoints(reason)),
    };
    let mut tx = c.transaction()?;
    tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    let checkpoints = match stored_checkpoints(&mut tx)?
        .and_then(|database| all_checkpoints(database, file, data_dir, own_key))
    {
        Ok(c) => c,
        Err(reason) => return Ok(broken_checkpoints(reason)),
    };
    let mut records = 0u64;
    let mut first_broken = None;
    for chain in Chain::ALL {
        let (n, broken) = walk_chain(&mut tx, chain, &checkpoints)?;
        records = records.saturating_add(n);
        if first_broken.is_none() {
            first_broken = broken;
        }
    }
    tx.commit()?;
    Ok(Verification {
        records,
        checkpoints: u64::try_from(checkpoints.len()).unwrap_or(u64::MAX),
        first_broken,
    })
}

/// The append-only triggers that are missing or disabled.
fn missing_triggers(c: &mut impl GenericClient) -> Result<Vec<&'static str>, StoreError> {
    let mut missing = Vec::new();
    for (table, trigger) in APPEND_ONLY_TRIGGERS {
        let present = c
            .query_typed_opt(
                "SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2 AND tgenabled <> 'D'",
                &[(&table, Type::TEXT), (&trigger, Type::TEXT)],
            )?
            .is_some();
        if !present {
            missing.push(trigger);
        }
    }
    Ok(missing)
}

/// The command that reports the whole log, for start-up refusals (as the SQLite store names it). The URL is
/// not repeated: it may hold a password, and the operator has it.
fn verify_command(data_dir: &Path) -> String {
    format!(
        "`navet audit verify --data-dir {} --database-url <the database's URL>`",
        data_dir.display()
    )
}

/// The start-up refusal for a log whose end does not verify.
fn broken_at_start(broken: &Broken, data_dir: &Path) -> StoreError {
    StoreError::Open(format!(
        "the access log in PostgreSQL is broken at record {} of the {} chain (AuditEvent/{}): {}. navet will \
         not serve on a broken access log; {} reports the whole log",
        broken.seq,
        broken.chain.name(),
        broken.id,
        broken.reason,
        verify_command(data_dir)
    ))
}

fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Database(db) => StoreError::Database(db.clone()),
        StoreError::Busy => StoreError::Busy,
        other => StoreError::Corrupt(format!("the access log could not be written: {other}")),
    }
}

#[path = "audit_appender.rs"]
mod appender;
pub(super) use appender::AccessLog;

/// The log's tables in `navet export` / `navet import` (`store/dump.rs`): a dump names them per chain
/// (`access.audit_log`, `change.audit_key`, …) with SQLite's columns; here they are one table set with a
/// `chain` column. `postgres/dump.rs` calls these.
pub(super) mod dump {
    use postgres::Transaction;

    use crate::store::StoreError;
    use crate::store::dump::Cell;

    /// A dump's chain name as the chain letter of this table set (`None`: no such chain).
    fn letter(chain: &str) -> Option<&'static str> {
        match chain {
            "access" => Some("a"),
            "change" => Some("c"),
            _ => None,
        }
    }

    /// The query reading one chain's part of a log table, with the dump's columns and in the dump's order,
    /// and its name in the dump. Checkpoints belong to the access chain's table, as on SQLite (`audit.db`).
    pub(in crate::store::postgres) fn select(chain: &str, table: &str) -> (String, String) {
        let name = format!("{chain}.{table}");
        let Some(l) = letter(chain) else {
            return (format!("SELECT * FROM {table} WHERE false"), name);
        };
        let sql = match table {
            "audit_log" => format!(
                "SELECT seq, t_us, action, outcome, purpose, record, hash FROM audit_log \
                 WHERE chain = '{l}' ORDER BY seq"
            ),
            "audit_key" => {
                format!("SELECT k, seq FROM audit_key WHERE chain = '{l}' ORDER BY k, seq")
            }
            "audit_checkpoint" if l == "a" => {
                "SELECT n, line FROM audit_checkpoint ORDER BY n".into()
            }
            "audit_checkpoint" => "SELECT n, line FROM audit_checkpoint WHERE false".into(),
            other => format!("SELECT * FROM {other} WHERE false"),
        };
        (sql, name)
    }

    /// An SQL expression counting the log's records (an import goes only into an empty log).
    pub(in crate::store::postgres) fn count() -> String {
        "SELECT count(*) FROM audit_log".into()
    }

    /// The table a dump row of `chain.table` goes into, and the columns to add to it (its chain).
    pub(in crate::store::postgres) fn target(
        chain: &str,
        table: &str,
    ) -> (String, Vec<(String, Cell)>) {
        match (letter(chain), table) {
            (Some(l), "audit_log" | "audit_key") => (
                table.to_owned(),
                vec![("chain".into(), Cell::Text(l.into()))],
            ),
            (Some(_), _) => (table.to_owned(), Vec::new()),
            // Not a chain: a name no table has, so the insert fails (the dump reader refuses it earlier).
            (None, _) => (format!("{chain}.{table}"), Vec::new()),
        }
    }

    /// After the rows: each chain's head row is its last imported record, so appends continue the chain.
    pub(in crate::store::postgres) fn after_import(
        tx: &mut Transaction<'_>,
    ) -> Result<(), StoreError> {
        tx.query_typed(
            "UPDATE audit_head h SET seq = l.seq, hash = l.hash, t_us = l.t_us \
             FROM (SELECT DISTINCT ON (chain) chain, seq, hash, t_us FROM audit_log \
                   ORDER BY chain, seq DESC) l \
             WHERE h.chain = l.chain",
            &[],
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
