//! A write job in one PostgreSQL transaction: [`WriteTx`] over `postgres::Transaction`, delegating to the
//! area files. Jobs are not batched as on SQLite: each commits on its own, and nodes write concurrently.

use std::panic::AssertUnwindSafe;

use postgres::Transaction;

use super::{audit, inbound, outbox, reads, resources};
use crate::search::index::IndexRow;
use crate::search::query::SearchQuery;
use crate::store::inbound::{InboundMessage, ReceiverReceipt};
use crate::store::outbox::{AttemptOutcome, Claim, ClaimRequest, NewMessage, Replay};
use crate::store::{Actor, JobOutput, NewVersion, StoreError, StoredVersion, WriteJob, WriteTx};

/// Runs `job` in a transaction: committed when it answers `commit: true`, rolled back otherwise (and when it
/// panics). The output comes back after the commit, so what is acknowledged is durable.
pub(super) fn run(
    conn: &mut postgres::Client,
    actor: &Actor,
    job: WriteJob,
) -> Result<JobOutput, StoreError> {
    let now = super::now();
    // The writer's metrics (README "Metrics"), in PostgreSQL's terms: every job is a batch of one, committed
    // on its own; nothing queues in navet (the pool's wait is the database's), so the queue depth is 0.
    let started = std::time::Instant::now();
    metrics::histogram!("navet_writer_batch_size").record(1.0);
    metrics::gauge!("navet_writer_queue_depth").set(0.0);
    let mut transaction = conn.transaction()?;
    let mut changes = Vec::new();
    let out = {
        let mut tx = PgTx {
            tx: &mut transaction,
            actor,
            now: &now,
            changes: &mut changes,
        };
        std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut tx)))
    };
    match out {
        Ok(out) if out.commit => {
            // The job's change-chain records, appended last: the chain's head is locked for the commit only,
            // and never before a resource row (a job locking a row while another holds the head, and the
            // other waiting for that row, would deadlock).
            if !changes.is_empty() {
                audit::append_changes(&mut transaction, &changes)?;
            }
            transaction.commit()?;
            metrics::histogram!("navet_writer_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            Ok(out)
        }
        Ok(out) => {
            transaction.rollback()?;
            Ok(out)
        }
        Err(_) => {
            let _ = transaction.rollback();
            Err(StoreError::JobPanicked)
        }
    }
}

struct PgTx<'a, 'c> {
    tx: &'a mut Transaction<'c>,
    actor: &'a Actor,
    now: &'a (String, i64),
    /// Change-chain records of this job, appended just before its commit ([`run`]).
    changes: &'a mut Vec<crate::audit::Encoded>,
}

impl WriteTx for PgTx<'_, '_> {
    fn actor(&self) -> &Actor {
        self.actor
    }

    fn now(&self) -> (String, i64) {
        self.now.clone()
    }

    fn current(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError> {
        // Locks the current row until commit: a concurrent `If-Match` update of the same resource on any node
        // waits here and then sees the new version.
        resources::current_for_update(self.tx, resource_type, id)
    }

    fn search_ids(
        &mut self,
        resource_type: &str,
        query: &SearchQuery,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        reads::matching_ids(self.tx, self.actor, resource_type, query, limit)
    }

    fn search_ids_as(
        &mut self,
        actor: &Actor,
        resource_type: &str,
        query: &SearchQuery,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        reads::matching_ids(self.tx, actor, resource_type, query, limit)
    }

    fn put_version(&mut self, version: NewVersion) -> Result<(), StoreError> {
        resources::put_version(self.tx, version)
    }

    fn set_index(
        &mut self,
        resource_type: &str,
        id: &str,
        rows: &[IndexRow],
    ) -> Result<(), StoreError> {
        resources::set_index(self.tx, resource_type, id, rows)
    }

    fn claim_unique(
        &mut self,
        scope: &str,
        key: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        resources::claim_unique(self.tx, scope, key, resource_type, id)
    }

    fn reassign_unique(
        &mut self,
        scope: &str,
        key: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        resources::reassign_unique(self.tx, scope, key, resource_type, id)
    }

    fn release_unique(
        &mut self,
        scope: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        resources::release_unique(self.tx, scope, resource_type, id)
    }

    fn serialize_on(&mut self, scope: &str, key: &str) -> Result<(), StoreError> {
        // A transaction-scoped advisory lock on the key's 64-bit hash: released at commit or rollback. Two
        // keys sharing a hash only wait for each other, never more.
        self.tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("{scope}\u{1f}{key}")],
        )?;
        Ok(())
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        resources::set_setting(self.tx, key, value)
    }

    fn remember_once(
        &mut self,
        scope: &str,
        key: &str,
        expires_at_unix: i64,
    ) -> Result<bool, StoreError> {
        resources::remember_once(self.tx, scope, key, expires_at_unix)
    }

    fn set_participants(
        &mut self,
        resource_type: &str,
        id: &str,
        hsa_ids: &[String],
    ) -> Result<(), StoreError> {
        resources::set_participants(self.tx, resource_type, id, hsa_ids)
    }

    fn participants_of(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<String>, StoreError> {
        resources::participants_of(self.tx, resource_type, id)
    }

    fn set_patient_links(
        &mut self,
        resource_type: &str,
        id: &str,
        patients: &[String],
    ) -> Result<(), StoreError> {
        resources::set_patient_links(self.tx, resource_type, id, patients)
    }

    fn set_timeline(
        &mut self,
        resource_type: &str,
        id: &str,
        patients: &[String],
        time_ms: i64,
    ) -> Result<(), StoreError> {
        resources::set_timeline(self.tx, resource_type, id, patients, time_ms)
    }

    fn set_care_relations(
        &mut self,
        resource_type: &str,
        id: &str,
        relations: &[(String, String)],
    ) -> Result<(), StoreError> {
        resources::set_care_relations(self.tx, resource_type, id, relations)
    }

    fn set_consents(
        &mut self,
        resource_type: &str,
        id: &str,
        decisions: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        resources::set_consents(self.tx, resource_type, id, decisions)
    }

    fn visible(&mut self, resource_type: &str, id: &str) -> Result<bool, StoreError> {
        reads::visible(self.tx, self.actor, resource_type, id)
    }

    fn setting(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        resources::setting(self.tx, key)
    }

    fn current_after(
        &mut self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        reads::current_after(self.tx, after, limit)
    }

    fn append_audit(&mut self, record: &crate::audit::Encoded) -> Result<(), StoreError> {
        self.changes.push(record.clone());
        Ok(())
    }

    fn enqueue(&mut self, message: NewMessage) -> Result<(), StoreError> {
        outbox::enqueue(self.tx, self.now.1, &message)
    }

    fn outbox_claim(&mut self, request: &ClaimRequest) -> Result<Claim, StoreError> {
        outbox::claim(self.tx, request)
    }

    fn outbox_record(&mut self, id: &str, outcome: &AttemptOutcome) -> Result<bool, StoreError> {
        outbox::record(self.tx, self.now.1, id, outcome)
    }

    fn outbox_replay(
        &mut self,
        which: &Replay,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        outbox::replay(self.tx, self.now.1, which)
    }

    fn outbox_release_claims(&mut self) -> Result<usize, StoreError> {
        outbox::release_claims(self.tx)
    }

    fn inbound_message(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<InboundMessage>, StoreError> {
        inbound::get(self.tx, format, sender, message_id)
    }

    fn inbound_by_id(
        &mut self,
        format: &str,
        message_id: &str,
    ) -> Result<Vec<InboundMessage>, StoreError> {
        inbound::by_id(self.tx, format, message_id)
    }

    fn inbound_by_case(
        &mut self,
        format: &str,
        case_ref: &str,
    ) -> Result<Vec<InboundMessage>, StoreError> {
        inbound::by_case(self.tx, format, case_ref)
    }

    fn put_inbound(&mut self, message: &InboundMessage) -> Result<bool, StoreError> {
        inbound::put(self.tx, message)
    }

    fn set_inbound_receipt(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
        receipt: &str,
    ) -> Result<bool, StoreError> {
        inbound::set_receipt(self.tx, format, sender, message_id, receipt)
    }

    fn put_receiver_receipt(
        &mut self,
        format: &str,
        sender: &str,
        message_id: &str,
        receipt: &ReceiverReceipt,
    ) -> Result<(), StoreError> {
        inbound::put_receiver_receipt(self.tx, format, sender, message_id, receipt)
    }
}
