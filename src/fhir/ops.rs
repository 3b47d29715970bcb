//! The FHIR write interactions (FHIR R4 4.0.1 §3.1.0 RESTful API): create, conditional create, update,
//! conditional update, delete, run inside a store transaction. Shared by single requests and Bundles, so
//! a transaction entry behaves exactly like the same request on its own.

use std::sync::Arc;

use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::fhir::json::IncomingResource;
use crate::fhir::rules;
use crate::search::index::index_resource;
use crate::search::query::{SearchQuery, parse_query};
use crate::store::{NewVersion, StoredVersion, WriteTx};

/// A resource that passed parsing, structure validation and the Swedish rules, ready to be written.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub resource: IncomingResource,
    /// Written as the translation of a received message (`crate::svpl::receive`): it sends no outbound
    /// message (`crate::svpl::outbound`), so nothing echoes back to where it came from.
    pub from_message: bool,
}

/// Parses, validates and checks a resource body for `expected_type` (the URL's type, if any).
pub fn prepare(
    ctx: &FhirContext,
    bytes: &[u8],
    expected_type: Option<&str>,
) -> Result<Prepared, ApiError> {
    let resource = IncomingResource::parse(bytes)?;
    prepare_parsed(ctx, resource, expected_type)
}

pub fn prepare_parsed(
    ctx: &FhirContext,
    resource: IncomingResource,
    expected_type: Option<&str>,
) -> Result<Prepared, ApiError> {
    if let Some(expected) = expected_type
        && resource.resource_type() != expected
    {
        return Err(ApiError::BadRequest(format!(
            "the body is a {} but the URL names {expected}",
            resource.resource_type()
        )));
    }
    if !ctx.structure.is_resource_type(resource.resource_type()) {
        return Err(ApiError::NotFound(format!(
            "'{}' is not a FHIR R4 resource type",
            resource.resource_type()
        )));
    }
    let mut resource = resource;
    // navet's mark on a redacted view is never stored: a client sending back what it read drops it here.
    resource.remove_meta_coding(
        "security",
        crate::fhir::protected::REDACTED_SYSTEM,
        crate::fhir::protected::REDACTED_CODE,
    );
    validate(ctx, &resource)?;
    Ok(Prepared {
        resource,
        from_message: false,
    })
}

/// Structure, bindings, invariants and Swedish rules (`crate::fhir::validate`): every error refuses the write
/// with its FHIRPath location; warnings do not. Run again after a transaction rewrote references.
fn validate(ctx: &FhirContext, resource: &IncomingResource) -> Result<(), ApiError> {
    let errors: Vec<crate::error::ElementIssue> =
        crate::fhir::validate::check(ctx, resource.value())
            .into_iter()
            .filter(|f| f.level == crate::fhir::validate::Level::Error)
            .map(|f| crate::error::ElementIssue {
                path: f.path,
                message: f.message,
            })
            .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// What a write did, for the response: the status and the version now current.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub status: WriteStatus,
    pub version: StoredVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    Created,
    Updated,
    /// A conditional create found the resource: nothing was written (200).
    Existing,
    Deleted,
    /// Delete of a resource already deleted: nothing changed (204 all the same; FHIR §3.1.0.7.1).
    AlreadyDeleted,
}

/// A parsed conditional query (If-None-Exist, conditional update/delete URL), with its normalised text
/// used as the database's unique key for conditional create.
#[derive(Debug, Clone)]
pub struct Condition {
    pub query: SearchQuery,
    pub key: String,
}

impl Condition {
    pub fn parse(
        ctx: &FhirContext,
        resource_type: &str,
        query_string: &str,
    ) -> Result<Self, ApiError> {
        let query_string = query_string.trim_start_matches('?');
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query_string.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.is_empty() {
            return Err(ApiError::BadRequest(
                "a conditional operation needs search parameters".into(),
            ));
        }
        let query = parse_query(&ctx.params, resource_type, &pairs, false)?;
        pairs.sort();
        let key = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        Ok(Condition { query, key })
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A valid FHIR id (R4 §2.24.0.1 id: `[A-Za-z0-9\-\.]{1,64}`).
pub fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "'{id}' is not a valid FHIR id"
        )))
    }
}

/// Only the owner changes or deletes a resource; shared master data any principal may change (DESIGN.md
/// "Record ownership and sharing"). The owner never changes: a version keeps its creator's principal.
pub fn check_may_change(tx: &dyn WriteTx, current: &StoredVersion) -> Result<(), ApiError> {
    let actor = tx.actor();
    if crate::fhir::is_shared_master_data(&current.resource_type)
        || current.owner == *actor.principal
        || actor.is_system()
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "{}/{} is owned by {}; only its owner may change or delete it",
        current.resource_type, current.id, current.owner
    )))
}

/// Writes `prepared` as version `version` of `Type/id` owned by `owner`: index, unique keys, the version row.
fn write_version(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    prepared: &Prepared,
    id: &str,
    version: i64,
    owner: &str,
) -> Result<StoredVersion, ApiError> {
    let prepared = &*crate::fhir::subscription::checked(ctx, tx, prepared, id, owner)?;
    let ty = prepared.resource.resource_type().to_owned();
    let value = prepared.resource.value_with_id(id);
    let keys = rules::check(&ty, &value)?;
    tx.release_unique(rules::PATIENT_IDENTIFIER_SCOPE, &ty, id)?;
    for (scope, key) in &keys {
        if let Some(holder) = tx.claim_unique(scope, key, &ty, id)? {
            return Err(ApiError::Conflict(format!(
                "a Patient with this national identity number already exists: Patient/{holder}; \
                 use a conditional create (If-None-Exist) to reuse it"
            )));
        }
    }
    let mut index =
        crate::search::index::with_owner_tag(index_resource(&ctx.params, &ty, &value), owner);
    let protected = ty == "Patient" && crate::fhir::protected::is_protected(&value);
    if protected {
        index = crate::fhir::protected::unindexed(index);
    }
    let (now, now_ms) = tx.now();
    let json = prepared.resource.render(id, version, &now, owner);
    let owner = owner.to_owned();
    let participants = crate::fhir::participants::collect(tx, &value)?;
    tx.set_participants(&ty, id, &participants)?;
    let patients = crate::fhir::participants::patients_in(&ctx.params, &ty, id, &value);
    crate::fhir::sharing::record(tx, &ty, id, &value, &owner, &patients, &participants)?;
    record_timeline(tx, &ty, id, &value, &patients, now_ms)?;
    crate::svpl::outbound::on_write(ctx, tx, prepared.from_message, &ty, id, &value)?;
    tx.put_version(NewVersion {
        resource_type: ty.clone(),
        id: id.to_owned(),
        version,
        last_updated: now.clone(),
        last_updated_ms: now_ms,
        owner: owner.clone(),
        deleted: false,
        json: Some(json.clone()),
        index,
        protected,
    })?;
    crate::fhir::subscription::notify(ctx, tx, &ty, id, version, &patients)?;
    Ok(StoredVersion {
        resource_type: ty,
        id: id.to_owned(),
        version,
        last_updated: now,
        owner,
        deleted: false,
        json: Some(json),
        protected,
    })
}

/// The version's timeline rows (`crate::timeline`): one per patient it is about, at its clinical time.
pub fn record_timeline(
    tx: &mut dyn WriteTx,
    ty: &str,
    id: &str,
    value: &serde_json::Value,
    patients: &[String],
    last_updated_ms: i64,
) -> Result<(), ApiError> {
    let patients: &[String] = if crate::timeline::on_timeline(ty) {
        patients
    } else {
        &[]
    };
    let time = crate::timeline::clinical_time(ty, value, last_updated_ms);
    tx.set_timeline(ty, id, patients, time)?;
    Ok(())
}

/// create (§3.1.0.6), with If-None-Exist (§3.1.0.8.1) when `condition` is given.
pub fn create(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    prepared: &Prepared,
    id: Option<String>,
    condition: Option<&Condition>,
) -> Result<WriteOutcome, ApiError> {
    let ty = prepared.resource.resource_type().to_owned();
    let id = id.unwrap_or_else(new_id);
    if let Some(cond) = condition {
        if let Some(existing) = find_single(tx, &ty, cond)? {
            return Ok(WriteOutcome {
                status: WriteStatus::Existing,
                version: existing,
            });
        }
        // No match: claim the condition's key in the database. A concurrent creator with the same
        // condition either already holds it (then its resource is the answer) or waits on us.
        let scope = format!("if-none-exist:{ty}");
        if let Some(holder) = tx.claim_unique(&scope, &cond.key, &ty, &id)? {
            if let Some(existing) = find_single(tx, &ty, cond)? {
                return Ok(WriteOutcome {
                    status: WriteStatus::Existing,
                    version: existing,
                });
            }
            // The holder no longer matches the condition (it was changed or deleted): the key moves.
            tracing::debug!(holder = %holder, "conditional-create key reassigned");
            tx.reassign_unique(&scope, &cond.key, &ty, &id)?;
        }
    }
    let owner = tx.actor().principal.to_string();
    let version = write_version(ctx, tx, prepared, &id, 1, &owner)?;
    Ok(WriteOutcome {
        status: WriteStatus::Created,
        version,
    })
}

/// create with a given owner and id: navet writing on a principal's behalf (ordination and itACiH: a
/// translated event is owned by the team it came from, `crate::itacih::feed`).
pub fn create_owned(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    prepared: &Prepared,
    id: &str,
    owner: &str,
) -> Result<WriteOutcome, ApiError> {
    check_id(id)?;
    let version = write_version(ctx, tx, prepared, id, 1, owner)?;
    Ok(WriteOutcome {
        status: WriteStatus::Created,
        version,
    })
}

/// The one current resource matching a condition; 412 when several do (§3.1.0.8.1).
fn find_single(
    tx: &mut dyn WriteTx,
    ty: &str,
    cond: &Condition,
) -> Result<Option<StoredVersion>, ApiError> {
    let ids = tx.search_ids(ty, &cond.query, 2)?;
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(tx.current(ty, id)?),
        _ => Err(ApiError::PreconditionFailed(format!(
            "the condition '{}' matches more than one {ty}",
            cond.key
        ))),
    }
}

/// update (§3.1.0.4) with `If-Match`. No update as create: a `PUT` to an id that does not exist is a 404, the
/// same answer as for a resource the caller may not see, so no id probe tells them apart (the
/// CapabilityStatement says `updateCreate: false`). Resources are created by `POST`, with server ids.
pub fn update(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    prepared: &Prepared,
    id: &str,
    if_match: Option<i64>,
) -> Result<WriteOutcome, ApiError> {
    let ty = prepared.resource.resource_type().to_owned();
    if let Some(body_id) = prepared.resource.body_id()
        && body_id != id
    {
        return Err(ApiError::BadRequest(format!(
            "the body's id '{body_id}' does not match the URL's id '{id}'"
        )));
    }
    let current = match tx.current(&ty, id)? {
        Some(current) if tx.visible(&ty, id)? => current,
        _ => return Err(ApiError::NotFound(format!("{ty}/{id} does not exist"))),
    };
    if let Some(expected) = if_match
        && expected != current.version
    {
        return Err(ApiError::PreconditionFailed(format!(
            "{ty}/{id} is at version {}, not {expected} (If-Match)",
            current.version
        )));
    }
    check_may_change(tx, &current)?;
    let mut checked = prepared.clone();
    crate::fhir::protected::check_update(tx.actor(), &current, &mut checked.resource)?;
    if unchanged(&checked, &current) {
        // FHIR R4 §3.1.0.4: an update that changes nothing need not make a version; navet answers the
        // current one, so a client re-sending what it read does not grow the history or notify anyone.
        return Ok(WriteOutcome {
            status: WriteStatus::Updated,
            version: current,
        });
    }
    let version = write_version(ctx, tx, &checked, id, current.version + 1, &current.owner)?;
    Ok(WriteOutcome {
        status: WriteStatus::Updated,
        version,
    })
}

/// Whether `prepared` as an update of `current` would store the same resource: equal JSON once the
/// server-owned `meta.versionId` and `meta.lastUpdated` are set aside (the owner tag is navet's either way).
fn unchanged(prepared: &Prepared, current: &StoredVersion) -> bool {
    let Some(stored) = current.json.as_deref().filter(|_| !current.deleted) else {
        return false;
    };
    let rendered = prepared.resource.render(
        &current.id,
        current.version,
        &current.last_updated,
        &current.owner,
    );
    let strip = |text: &str| -> Option<serde_json::Value> {
        let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
        if let Some(meta) = value
            .get_mut("meta")
            .and_then(serde_json::Value::as_object_mut)
        {
            meta.remove("versionId");
            meta.remove("lastUpdated");
        }
        Some(value)
    };
    matches!((strip(&rendered), strip(stored)), (Some(a), Some(b)) if a == b)
}

/// An update of `Type/id` carries its id in the body (FHIR R4 §3.1.0.4: "the resource SHALL have an id
/// element"): 400 without it. Conditional updates may leave it out.
pub fn check_body_id(prepared: &Prepared, id: &str) -> Result<(), ApiError> {
    match prepared.resource.body_id() {
        Some(_) => Ok(()),
        None => Err(ApiError::BadRequest(format!(
            "an update must carry the resource's id in the body: add \"id\": \"{id}\""
        ))),
    }
}

/// An update navet makes as the consequence of a message another participant sent (an SVPL kallelse completes
/// the requester's Task, `crate::svpl::receive`): no owner check and no If-Match; the owner stays the owner.
/// The caller has checked that the sender takes part in the case the resource belongs to.
pub fn update_as_consequence(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    prepared: &Prepared,
    id: &str,
) -> Result<WriteOutcome, ApiError> {
    let ty = prepared.resource.resource_type().to_owned();
    let current = match tx.current(&ty, id)? {
        Some(current) if !current.deleted => current,
        _ => return Err(ApiError::NotFound(format!("{ty}/{id} does not exist"))),
    };
    let version = write_version(ctx, tx, prepared, id, current.version + 1, &current.owner)?;
    Ok(WriteOutcome {
        status: WriteStatus::Updated,
        version,
    })
}

/// Conditional update (§3.1.0.4.3): no match creates, one match updates it, several are 412.
/// How a conditional update behaves: the version it expects when it matches, and what it does when nothing
/// matches (FHIR R4 §3.1.0.4.3: create with a server id; refused when the scopes do not allow it, or when
/// the body names an id, since navet does no update as create).
#[derive(Debug, Clone)]
pub struct IfNew {
    pub if_match: Option<i64>,
    /// The id navet chose for it while resolving a transaction's references (never the client's).
    pub id: Option<String>,
    pub may_create: bool,
}

pub fn conditional_update(
    ctx: &FhirContext,
    tx: &mut dyn WriteTx,
    prepared: &Prepared,
    condition: &Condition,
    options: IfNew,
) -> Result<WriteOutcome, ApiError> {
    let ty = prepared.resource.resource_type().to_owned();
    match find_single(tx, &ty, condition)? {
        Some(existing) => update(ctx, tx, prepared, &existing.id, options.if_match),
        None if !options.may_create => Err(ApiError::Forbidden(format!(
            "no {ty} matches the condition and the access token's scopes do not allow create on {ty}"
        ))),
        None => {
            // FHIR R4 §3.1.0.4.3: no match with an id given is an update as create, which navet does not
            // do (see [`update`]); without an id the server creates the resource.
            if let Some(id) = prepared.resource.body_id() {
                return Err(ApiError::BadRequest(format!(
                    "no {ty} matches the condition, and navet does not create a resource with a client-chosen \
                     id ('{id}'; no update as create): leave out the id, and navet assigns one"
                )));
            }
            create(ctx, tx, prepared, options.id, None)
        }
    }
}

/// delete (§3.1.0.7): a new version marked deleted; nothing is physically removed.
pub fn delete(
    tx: &mut dyn WriteTx,
    ty: &str,
    id: &str,
    if_match: Option<i64>,
) -> Result<WriteOutcome, ApiError> {
    let current = match tx.current(ty, id)? {
        Some(current) if tx.visible(ty, id)? => current,
        _ => return Err(ApiError::NotFound(format!("{ty}/{id} does not exist"))),
    };
    if let Some(expected) = if_match
        && expected != current.version
    {
        return Err(ApiError::PreconditionFailed(format!(
            "{ty}/{id} is at version {}, not {expected} (If-Match)",
            current.version
        )));
    }
    check_may_change(tx, &current)?;
    if current.deleted {
        return Ok(WriteOutcome {
            status: WriteStatus::AlreadyDeleted,
            version: current,
        });
    }
    let (now, now_ms) = tx.now();
    let owner = current.owner.clone();
    tx.release_unique(rules::PATIENT_IDENTIFIER_SCOPE, ty, id)?;
    crate::fhir::sharing::forget(tx, ty, id)?;
    tx.set_timeline(ty, id, &[], 0)?;
    let version = current.version + 1;
    tx.put_version(NewVersion {
        resource_type: ty.to_owned(),
        id: id.to_owned(),
        version,
        last_updated: now.clone(),
        last_updated_ms: now_ms,
        owner: owner.clone(),
        deleted: true,
        json: None,
        index: Vec::new(),
        protected: false,
    })?;
    Ok(WriteOutcome {
        status: WriteStatus::Deleted,
        version: StoredVersion {
            resource_type: ty.to_owned(),
            id: id.to_owned(),
            version,
            last_updated: now,
            owner,
            deleted: true,
            json: None,
            protected: false,
        },
    })
}

/// Conditional delete (§3.1.0.7.1), single-match form: several matches are 412.
pub fn conditional_delete(
    tx: &mut dyn WriteTx,
    ty: &str,
    condition: &Condition,
) -> Result<Option<WriteOutcome>, ApiError> {
    match find_single(tx, ty, condition)? {
        Some(existing) => delete(tx, ty, &existing.id, None).map(Some),
        None => Ok(None),
    }
}

/// Re-validates a resource after a transaction rewrote its references.
pub fn revalidate(ctx: &Arc<FhirContext>, prepared: &Prepared) -> Result<(), ApiError> {
    validate(ctx, &prepared.resource)
}

/// The version in an ETag-style header: `W/"3"`, `"3"` or `3` (FHIR R4 §3.1.0.5: weak ETags carry the
/// versionId).
pub fn parse_etag(v: &str) -> Result<i64, ApiError> {
    let t = v.trim();
    let t = t.strip_prefix("W/").unwrap_or(t).trim_matches('"');
    t.parse::<i64>()
        .map_err(|_| ApiError::BadRequest(format!("'{v}' is not a version ETag such as W/\"3\"")))
}
