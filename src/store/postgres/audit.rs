//! The access log in PostgreSQL: both chains in one database for all nodes. The change chain is appended in
//! the write's own transaction; the access chain by each node's appender (group commit). Either append locks
//! its chain's head row first, so the chain stays one verifiable sequence with several writers.

use std::path::Path;

use postgres::GenericClient;

use crate::store::{AuditPage, StoreError};

/// This area's tables (applied by `migrate.rs`).
pub(super) const SCHEMA: &str = "";

fn todo<T>(what: &str) -> Result<T, StoreError> {
    Err(StoreError::Corrupt(format!(
        "not yet on PostgreSQL: {what}"
    )))
}

/// Appends a record to the change chain inside the caller's transaction.
pub(super) fn append_change(
    c: &mut impl GenericClient,
    record: &crate::audit::Encoded,
) -> Result<(), StoreError> {
    todo("append_change")
}
pub(super) fn page(
    c: &mut impl GenericClient,
    from_us: i64,
    to_us: i64,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    todo("page")
}
pub(super) fn search(
    c: &mut impl GenericClient,
    query: &crate::audit::query::AuditQuery,
    offset: usize,
    count: usize,
    total: bool,
) -> Result<AuditPage, StoreError> {
    todo("search")
}
pub(super) fn for_patient(
    c: &mut impl GenericClient,
    patient: &str,
) -> Result<Vec<String>, StoreError> {
    todo("for_patient")
}

/// The access chain's appender of this node.
pub(super) struct AccessLog {}

impl AccessLog {
    pub(super) fn open(
        pool: &super::Pool,
        data_dir: &Path,
        checkpoint_interval: std::time::Duration,
    ) -> Result<Self, StoreError> {
        Ok(AccessLog {})
    }
    pub(super) async fn append(&self, record: crate::audit::Encoded) -> Result<(), StoreError> {
        todo("append")
    }
    pub(super) fn checkpoint(&self) -> Result<bool, StoreError> {
        todo("checkpoint")
    }
    pub(super) fn verify(
        &self,
        c: &mut impl GenericClient,
        data_dir: &Path,
    ) -> Result<crate::audit::chain::Verification, StoreError> {
        todo("verify")
    }
    pub(super) fn close(&self) {}
}
