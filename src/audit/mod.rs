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
pub fn append(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    record: &AuditRecord,
) -> Result<(), ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let (now, now_ms) = tx.now();
    let json = record.to_audit_event(&id, &now);
    let value: serde_json::Value = serde_json::from_str(&json)
        .map_err(|e| ApiError::internal(format!("audit event JSON: {e}")))?;
    tx.put_version(NewVersion {
        resource_type: "AuditEvent".into(),
        id: id.clone(),
        version: 1,
        last_updated: now,
        last_updated_ms: now_ms,
        owner: AUDIT_OWNER.into(),
        deleted: false,
        index: index_resource(&ctx.params, "AuditEvent", &value),
        json: Some(json.clone()),
    })?;
    tx.append_chain(&id, now_ms, &json)?;
    Ok(())
}
