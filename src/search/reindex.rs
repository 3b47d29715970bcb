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
use crate::store::{Actor, Store};

const SETTING: &str = "search_index_version";
const VERSION: &str = "2";
/// Resources per write job: small jobs keep the writer free for requests between them.
const BATCH: usize = 500;

/// Brings every stored resource's index rows up to [`VERSION`]; answers how many it revisited.
pub async fn backfill(
    ctx: &std::sync::Arc<FhirContext>,
    store: &dyn Store,
) -> Result<usize, ApiError> {
    if store.get_setting(SETTING).await?.as_deref() == Some(VERSION) {
        return Ok(0);
    }
    let mut after: Option<(String, String)> = None;
    let mut total = 0;
    loop {
        let job_ctx = ctx.clone();
        let from = after.clone();
        let (done, last) = store
            .transact(&Actor::system(), move |tx| {
                let from = from.as_ref().map(|(t, i)| (t.as_str(), i.as_str()));
                let batch = tx.current_after(from, BATCH)?;
                for v in &batch {
                    if v.resource_type == crate::fhir::visibility::ACCESS_LOG_TYPE {
                        continue;
                    }
                    let Some(value) = v
                        .json
                        .as_deref()
                        .and_then(|j| serde_json::from_str::<Value>(j).ok())
                    else {
                        continue;
                    };
                    let mut rows = crate::search::index::with_owner_tag(
                        index_resource(&job_ctx.params, &v.resource_type, &value),
                        &v.owner,
                    );
                    // The same rule as the write path: a protected Patient is not found by address or telecom.
                    if v.resource_type == "Patient" && crate::fhir::protected::is_protected(&value)
                    {
                        rows = crate::fhir::protected::unindexed(rows);
                    }
                    tx.set_index(&v.resource_type, &v.id, &rows)?;
                }
                let last = batch
                    .last()
                    .map(|v| (v.resource_type.clone(), v.id.clone()));
                if batch.len() < BATCH {
                    tx.set_setting(SETTING, VERSION)?;
                }
                Ok((batch.len(), last))
            })
            .await?;
        total += done;
        match last {
            Some(last) if done == BATCH => after = Some(last),
            _ => break,
        }
    }
    Ok(total)
}
