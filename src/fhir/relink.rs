//! Start-up migration: recomputes the sharing facts (patient links, care relationships, consent decisions) and
//! the timeline rows of every stored resource when the rule that derives them changed. Version 2: patient links follow the FHIR R4
//! Patient compartment ([`crate::fhir::participants::patients_in`]); before, only top-level
//! subject/patient/beneficiary/for counted, so an Appointment naming its patient in `participant.actor` was not
//! linked (no sammanhållen dokumentation, and the access log did not name the patient).

use serde_json::Value;

use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::store::{Actor, Store, StoredVersion, WriteTx};

/// The setting that records which derivation the stored links follow.
const SETTING: &str = "patient_links_version";
/// Version 3 adds the timeline rows; version 4 the compartment of the types navet does not serve for search.
const VERSION: &str = "4";
/// Resources per write job: small jobs keep the writer free for requests between them.
const BATCH: usize = 500;

/// Brings every stored resource's sharing facts up to [`VERSION`]; answers how many resources it revisited
/// (0 when they were already current).
pub async fn backfill(
    ctx: &std::sync::Arc<FhirContext>,
    store: &dyn Store,
) -> Result<usize, ApiError> {
    revisit_all(ctx, store, SETTING, VERSION, relink).await
}

/// One start-up migration's walk: unless `setting` already holds `version`, hands every current resource to
/// `each` in (type, id) order, [`BATCH`] per write job, and records `version` in the job that finishes the walk
/// (so an interrupted walk starts again at the next start). Answers how many resources it revisited.
pub async fn revisit_all(
    ctx: &std::sync::Arc<FhirContext>,
    store: &dyn Store,
    setting: &'static str,
    version: &'static str,
    each: fn(&FhirContext, &mut dyn WriteTx, &StoredVersion) -> Result<(), ApiError>,
) -> Result<usize, ApiError> {
    if store.get_setting(setting).await?.as_deref() == Some(version) {
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
                    each(&job_ctx, tx, v)?;
                }
                let last = batch
                    .last()
                    .map(|v| (v.resource_type.clone(), v.id.clone()));
                if batch.len() < BATCH {
                    tx.set_setting(setting, version)?;
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

fn relink(ctx: &FhirContext, tx: &mut dyn WriteTx, v: &StoredVersion) -> Result<(), ApiError> {
    // The access log is written by navet and shared with no one.
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
    let patients =
        crate::fhir::participants::patients_in(&ctx.params, &v.resource_type, &v.id, &value);
    let participants = tx.participants_of(&v.resource_type, &v.id)?;
    crate::fhir::sharing::record(
        tx,
        &v.resource_type,
        &v.id,
        &value,
        &v.owner,
        &patients,
        &participants,
    )?;
    let last_updated_ms = v
        .last_updated
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .unwrap_or(0);
    crate::fhir::ops::record_timeline(
        tx,
        &v.resource_type,
        &v.id,
        &value,
        &patients,
        last_updated_ms,
    )
}
