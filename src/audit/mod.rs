//! The access log (spec/timeline-and-audit.md "The access log"): one AuditEvent per request that touches
//! patient data, shaped after IHE BALP (Basic Audit Log Patterns) and HSLF-FS 2016:40 4 kap. 9 §, written in
//! the same database transaction as the change it records, append-only and hash-chained.
//!
//! - [`record`]: what one request did, gathered by the HTTP layer, and its AuditEvent JSON.
//! - [`chain`]: the SHA-256 chain over the stored records, and its verification (also offline).
//! - [`append`]: stores a record inside a write job: as an `AuditEvent` resource (so the auditor API searches
//!   it with the ordinary FHIR search) and as the next link of the chain.

pub mod chain;
pub mod record;

pub use record::{Action, AuditRecord, Outcome};

use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::search::index::index_resource;
use crate::store::{NewVersion, WriteTx};

/// The owner of every stored AuditEvent: navet writes the log, no principal owns (or may change) it.
pub const AUDIT_OWNER: &str = crate::store::SYSTEM_PRINCIPAL;

/// Appends `record` to the log inside the caller's transaction: if this fails, so does the transaction.
///
/// Only the chain row is written here (one insert): that is the durable record. The AuditEvent resource and its
/// search index rows, which only auditors use, are written by [`index_pending`] a moment later, and always
/// before an auditor searches or reads the log; a read of patient data so pays one small insert, not an
/// indexed resource write.
pub fn append(tx: &mut dyn WriteTx, record: &AuditRecord) -> Result<(), ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let (now, now_ms) = tx.now();
    let json = record.to_audit_event(&id, &now);
    tx.append_chain(&id, now_ms, &json)?;
    Ok(())
}

/// Setting holding the last chain sequence number whose AuditEvent is searchable.
pub const INDEXED_UP_TO: &str = "audit_indexed_seq";
/// How many records one indexing job takes: small, so a job never holds the writer (and the requests queued
/// behind it) for long.
pub const INDEX_BATCH: usize = 64;

/// Makes up to [`INDEX_BATCH`] logged records searchable as AuditEvent resources; answers how many it did.
pub fn index_pending(ctx: &FhirContext, tx: &mut dyn WriteTx) -> Result<usize, ApiError> {
    let done: i64 = tx
        .setting(INDEXED_UP_TO)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rows = tx.audit_after(done, INDEX_BATCH)?;
    let Some(last) = rows.last().map(|r| r.0) else {
        return Ok(0);
    };
    for (_, id, recorded_ms, json) in &rows {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ApiError::internal(format!("audit event JSON: {e}")))?;
        let recorded = value["recorded"].as_str().unwrap_or_default().to_owned();
        tx.put_version(NewVersion {
            resource_type: "AuditEvent".into(),
            id: id.clone(),
            version: 1,
            last_updated: recorded,
            last_updated_ms: *recorded_ms,
            owner: AUDIT_OWNER.into(),
            deleted: false,
            index: index_resource(&ctx.params, "AuditEvent", &value),
            protected: false,
            json: Some(json.clone()),
        })?;
    }
    tx.set_setting(INDEXED_UP_TO, &last.to_string())?;
    Ok(rows.len())
}

/// Brings the AuditEvent search index up to date with the chain: before an auditor searches or reads the log.
pub async fn catch_up(
    ctx: &std::sync::Arc<FhirContext>,
    store: &dyn crate::store::Store,
) -> Result<(), ApiError> {
    loop {
        let job_ctx = ctx.clone();
        let done = store
            .transact(&crate::store::Actor::system(), move |tx| {
                index_pending(&job_ctx, tx)
            })
            .await?;
        if done < INDEX_BATCH {
            return Ok(());
        }
    }
}
