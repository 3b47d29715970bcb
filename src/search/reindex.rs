//! Start-up migration of the search index: rebuilds the index rows of every stored resource when the rules
//! that derive them changed, so a data directory made by an earlier navet answers searches as a fresh one.
//! Version 2 (issue 14): every R4 type is indexed (before only 18), number, quantity and composite
//! parameters are indexed, and string values are accent-folded (`akesson` finds `Åkesson`).
//!
//! The access log (AuditEvent) is left as it is: its index is the auditor API's (issue 13).

use serde_json::Value;

use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::search::index::index_resource;
use crate::store::{Store, StoredVersion, WriteTx};

const SETTING: &str = "search_index_version";
const VERSION: &str = "2";

/// Brings every stored resource's index rows up to [`VERSION`]; answers how many it revisited.
pub async fn backfill(
    ctx: &std::sync::Arc<FhirContext>,
    store: &dyn Store,
) -> Result<usize, ApiError> {
    crate::fhir::relink::revisit_all(ctx, store, SETTING, VERSION, reindex).await
}

fn reindex(ctx: &FhirContext, tx: &mut dyn WriteTx, v: &StoredVersion) -> Result<(), ApiError> {
    if v.resource_type == crate::fhir::visibility::ACCESS_LOG_TYPE {
        return Ok(());
    }
    let Some(value) = v
        .json
        .as_deref()
        .and_then(|j| serde_json::from_str::<Value>(j).ok())
    else {
        return Ok(());
    };
    let mut rows = crate::search::index::with_owner_tag(
        index_resource(&ctx.params, &v.resource_type, &value),
        &v.owner,
    );
    // The same rule as the write path: a protected Patient is not found by address or telecom.
    if v.resource_type == "Patient" && crate::fhir::protected::is_protected(&value) {
        rows = crate::fhir::protected::unindexed(rows);
    }
    tx.set_index(&v.resource_type, &v.id, &rows)?;
    Ok(())
}
