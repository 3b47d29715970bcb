//! The FHIR RESTful interactions on `/fhir` (FHIR R4 4.0.1 §3.1.0): read, vread, create, update, delete,
//! conditional update/delete, transaction/batch and the CapabilityStatement. Search and history live in
//! `search.rs`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::header::IF_NONE_MATCH;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::audit::{Action, AuditRecord};
use crate::auth::Interaction;
use crate::error::ApiError;
use crate::fhir::bundle::{self, BundleKind, EntryResult};
use crate::fhir::ops::{self, Condition, WriteOutcome, WriteStatus};
use crate::fhir::protected::outgoing;
use crate::fhir::visibility::ACCESS_LOG_TYPE;
use crate::http::Acting;
use crate::http::audit::{AuditNote, Audited, RequestContext, note_version};
use crate::http::negotiate::{Prefer, Return, check_accept, json_body, query_pairs};
use crate::http::respond::{self, BundleText, etag};
use crate::http::{search, timeline};
use crate::state::AppState;
use crate::store::{Actor, Current, StoredVersion};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir", post(transaction))
        // Some clients post bundles to the base with a trailing slash.
        .route("/fhir/", post(transaction))
        .route("/fhir/metadata", get(capability))
        .route("/metadata", get(capability))
        .route("/fhir/_history", get(search::system_history))
        .route(
            "/fhir/{type}",
            get(search::search_get)
                .post(create)
                .put(conditional_update)
                .delete(conditional_delete),
        )
        .route("/fhir/{type}/_search", post(search::search_post))
        .route("/fhir/{type}/_history", get(search::type_history))
        .route(
            "/fhir/{type}/{id}",
            get(read)
                .put(update)
                .delete(delete)
                .patch(crate::http::patch::patch),
        )
        // Issue 14: compartment search, and the OpenAPI document generated from the CapabilityStatement.
        .route(
            "/fhir/{type}/{id}/{target}",
            get(search::compartment_search),
        )
        .route("/fhir/openapi.json", get(crate::http::openapi::document))
        .route("/fhir/{type}/{id}/_history", get(search::instance_history))
        .route("/fhir/{type}/{id}/_history/{vid}", get(vread))
        .route(
            "/fhir/Patient/$timeline",
            get(timeline::timeline_by_identifier),
        )
        .route("/fhir/Patient/{id}/$timeline", get(timeline::timeline))
        .route("/fhir/Patient/{id}/$everything", get(timeline::everything))
        .merge(crate::http::validate::routes())
}

/// Checks that the caller's scopes allow `interaction` on `ty` and, for patient data, that the token names an
/// acting user or belongs to a system integration (spec/auth.md); answers the actor the store calls take.
pub fn authorize<'a>(
    acting: &'a Acting,
    ty: &str,
    interaction: Interaction,
) -> Result<&'a Actor, ApiError> {
    check(acting, ty, interaction)?;
    Ok(&acting.actor)
}

fn check(acting: &Acting, ty: &str, interaction: Interaction) -> Result<(), ApiError> {
    let caller = &acting.caller;
    if ty == ACCESS_LOG_TYPE
        && interaction != Interaction::Read
        && interaction != Interaction::Search
    {
        // Append-only: only navet writes the access log.
        return Err(ApiError::MethodNotAllowed(
            "the access log is append-only and written by navet; AuditEvent cannot be created, changed or deleted"
                .into(),
        ));
    }
    caller.require(ty, interaction)?;
    // The type-level part of the visibility rule answers 403 here, before any store work; which resources
    // of the type are visible is the store's query under the same rule.
    if !acting.actor.visibility.may_see_type(ty) {
        return Err(ApiError::Forbidden(if ty == ACCESS_LOG_TYPE {
            "the access log is read by auditor principals with purpose of use HOPERAT".into()
        } else {
            // Auditors read the log, not clinical content (they may look up who a patient is).
            format!("auditor principals do not read clinical records ({ty})")
        }));
    }
    if ty == ACCESS_LOG_TYPE {
        return Ok(());
    }
    if !crate::fhir::DIRECTORY_TYPES.contains(&ty) {
        caller.require_patient_data_access()?;
    }
    Ok(())
}

fn format_param(raw: &Option<String>) -> Option<String> {
    query_pairs(raw.as_deref())
        .into_iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v)
}

/// 404 for a name that is no R4 resource type (FHIR R4 §3.1.0.1.1).
pub fn known_type(state: &AppState, ty: &str) -> Result<(), ApiError> {
    if state.fhir.structure.is_resource_type(ty) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "'{ty}' is not a FHIR R4 resource type"
        )))
    }
}

fn location(state: &AppState, v: &StoredVersion) -> String {
    format!(
        "{}/{}/{}/_history/{}",
        state.fhir_base(),
        v.resource_type,
        v.id,
        v.version
    )
}

async fn capability(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: RawQuery,
) -> Result<Response, ApiError> {
    check_accept(&headers, format_param(&raw.0).as_deref())?;
    Ok(respond::json_response(
        StatusCode::OK,
        state.capability.to_string(),
    ))
}

async fn read(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    raw: RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    check_accept(&headers, format_param(&raw.0).as_deref())?;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Read)?;
    if ty == ACCESS_LOG_TYPE {
        return crate::http::auditor::read_event(&state, &acting, &rc, actor, &id).await;
    }
    let (response, current) = read_resource(&state, actor, &ty, &id, &headers, &raw.0).await?;
    if crate::fhir::DIRECTORY_TYPES.contains(&ty.as_str()) {
        // Directory reads are not patient data: no record.
        return Ok(response);
    }
    let v = &current.version;
    let mut record = rc.record(caller, Action::Read, "read");
    record.entities.push(format!(
        "{}/{}/_history/{}",
        v.resource_type, v.id, v.version
    ));
    // The patients the store keeps for the resource (its patient links), read with it: no parse of its JSON.
    current
        .patients
        .into_iter()
        .for_each(|p| record.add_patient(p));
    Ok(with_note(response, &ty, record))
}

/// Hands a read's record to the access-log middleware; directory reads are not patient data.
pub fn with_note(mut response: Response, ty: &str, record: AuditRecord) -> Response {
    if !crate::fhir::DIRECTORY_TYPES.contains(&ty) {
        response.extensions_mut().insert(AuditNote(record));
    }
    response
}

/// Marks a response whose record was written in its own transaction.
pub(crate) fn audited(mut response: Response) -> Response {
    response.extensions_mut().insert(Audited);
    response
}

/// Completes a write's record with what was written and appends it inside the write's transaction.
pub(crate) fn append_write(
    ctx: &crate::fhir::FhirContext,
    tx: &mut dyn crate::store::WriteTx,
    mut record: AuditRecord,
    outcome: &WriteOutcome,
) -> Result<(), ApiError> {
    note_version(&ctx.params, &mut record, &outcome.version);
    record.status = match outcome.status {
        WriteStatus::Created => 201,
        WriteStatus::Updated | WriteStatus::Existing => 200,
        WriteStatus::Deleted | WriteStatus::AlreadyDeleted => 204,
    };
    crate::audit::append(tx, &record)
}

/// [`append_write`] noting the resources an order's intake wrote with it (Tasks, Communications).
fn append_write_with(
    ctx: &crate::fhir::FhirContext,
    tx: &mut dyn crate::store::WriteTx,
    mut record: AuditRecord,
    outcome: &WriteOutcome,
    made: &[StoredVersion],
) -> Result<(), ApiError> {
    for v in made {
        note_version(&ctx.params, &mut record, v);
    }
    append_write(ctx, tx, record, outcome)
}

/// Warnings of a write (an order of more than 4 doses a day) as `Warning: 199` headers (RFC 9111 §5.5 is
/// obsolete, but the header is what a single create has besides its body).
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("199 navet \"{}\"", w.replace(['"', '\\'], "'"));
        if let Ok(v) =
            axum::http::HeaderValue::from_str(&text.replace(|c: char| !c.is_ascii(), "?"))
        {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

/// read (§3.1.0.2) once the caller is authorized: the current version and its patients in one store query,
/// answered with the stored text itself (taken out of the version: the returned `Current` has no JSON left).
/// Public so the benchmarks can measure what authentication and the access log add on top of it.
pub async fn read_resource(
    state: &AppState,
    actor: &Actor,
    ty: &str,
    id: &str,
    headers: &HeaderMap,
    raw: &Option<String>,
) -> Result<(Response, Current), ApiError> {
    let mut current = state
        .store
        .read_current(actor, ty, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{ty}/{id} does not exist")))?;
    let v = &mut current.version;
    if v.deleted {
        return Err(ApiError::Gone(format!(
            "{ty}/{id} was deleted (version {})",
            v.version
        )));
    }
    // _summary and _elements on read (search.html#summary), If-Modified-Since (RFC 9110 §13.1.3).
    if let Some(variant) = crate::http::search::read_variants(state, actor, v, headers, raw)? {
        return Ok((variant, current));
    }
    // A client holding the current version gets 304 and no body (RFC 9110 §13.1.2).
    if let Some(inm) = headers.get(IF_NONE_MATCH).and_then(|h| h.to_str().ok())
        && inm
            .split(',')
            .any(|t| ops::parse_etag(t).ok() == Some(v.version))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().extend(respond::version_headers(v));
        return Ok((r, current));
    }
    let response = respond::read_answer(actor, v);
    Ok((response, current))
}

async fn vread(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path((ty, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
    raw: RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    check_accept(&headers, format_param(&raw.0).as_deref())?;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Read)?;
    if ty == ACCESS_LOG_TYPE {
        // Every record has one version, `1`.
        if vid != "1" {
            return Err(ApiError::NotFound(format!(
                "{ty}/{id} has no version '{vid}'"
            )));
        }
        return crate::http::auditor::read_event(&state, &acting, &rc, actor, &id).await;
    }
    let version: i64 = vid
        .parse()
        .map_err(|_| ApiError::NotFound(format!("{ty}/{id} has no version '{vid}'")))?;
    let v = state
        .store
        .read(actor, &ty, &id, Some(version))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{ty}/{id} has no version {version}")))?;
    if v.deleted {
        return Err(ApiError::Gone(format!(
            "{ty}/{id} version {version} is a deletion"
        )));
    }
    let mut record = rc.record(caller, Action::Read, "vread");
    note_version(&state.fhir.params, &mut record, &v);
    Ok(with_note(
        respond::resource(actor, StatusCode::OK, &v, Return::Representation, None),
        &ty,
        record,
    ))
}

pub(crate) fn write_response(
    state: &AppState,
    actor: &Actor,
    outcome: &WriteOutcome,
    prefer: Prefer,
) -> Response {
    let status = match outcome.status {
        WriteStatus::Created => StatusCode::CREATED,
        WriteStatus::Updated | WriteStatus::Existing => StatusCode::OK,
        WriteStatus::Deleted | WriteStatus::AlreadyDeleted => StatusCode::NO_CONTENT,
    };
    let loc = matches!(
        outcome.status,
        WriteStatus::Created | WriteStatus::Updated | WriteStatus::Existing
    )
    .then(|| location(state, &outcome.version));
    respond::resource(actor, status, &outcome.version, prefer.ret, loc)
}

pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    headers
        .get("if-match")
        .map(|h| {
            h.to_str()
                .map_err(|_| ApiError::BadRequest("If-Match is not text".into()))
                .and_then(ops::parse_etag)
        })
        .transpose()
}

async fn create(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    raw: RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    check_accept(&headers, format_param(&raw.0).as_deref())?;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Create)?;
    let record = rc.record(caller, Action::Create, "create");
    let prefer = Prefer::from_headers(&headers);
    let bytes = json_body(&state, &headers, body).await?;
    let prepared = ops::prepare(&state.fhir, &bytes, Some(&ty))?;
    // The parsed resource is all the write needs: the bytes go, a big body's permit stays to the end.
    let _permit = bytes.into_parts().1;
    let header_condition = headers
        .get("if-none-exist")
        .map(|h| {
            h.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::BadRequest("If-None-Exist is not text".into()))
        })
        .transpose()?;
    // Search parameters on the create URL (`POST Task?identifier=…`, fhirpy's get_or_create) are a
    // conditional create, never silently ignored (issue 14).
    let url_condition = crate::http::search::create_condition(raw.0.as_deref());
    let condition_text = match (header_condition, url_condition) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "a create takes its condition either in If-None-Exist or in the URL's query, not both"
                    .into(),
            ));
        }
        (Some(h), None) => Some(h),
        (None, url) => url,
    };
    let condition = condition_text
        .map(|q| {
            // The header may carry the query with or without the `Type?` prefix.
            let q = q.strip_prefix(&format!("{ty}?")).unwrap_or(&q).to_owned();
            Condition::parse(&state.fhir, &ty, &q)
        })
        .transpose()?;
    // An order sent again (same identifier) is stored once (spec/ordination.md v2).
    let condition = match condition {
        Some(c) => Some(c),
        None => crate::ordination::intake::implicit_condition(&state.fhir, &prepared, false)?,
    };
    let ctx = state.fhir.clone();
    let (outcome, warnings) = state
        .store
        .transact(actor, move |tx| {
            let outcome = ops::create(&ctx, tx, &prepared, None, condition.as_ref())?;
            let (outcome, warnings, made) =
                crate::ordination::intake::after_single(&ctx, tx, outcome)?;
            append_write_with(&ctx, tx, record, &outcome, &made)?;
            Ok((outcome, warnings))
        })
        .await?;
    Ok(audited(with_warnings(
        write_response(&state, actor, &outcome, prefer),
        &warnings,
    )))
}

async fn update(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    raw: RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    check_accept(&headers, format_param(&raw.0).as_deref())?;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Update)?;
    let record = rc.record(caller, Action::Update, "update");
    ops::check_id(&id)?;
    let prefer = Prefer::from_headers(&headers);
    let expected = if_match(&headers)?;
    let bytes = json_body(&state, &headers, body).await?;
    let prepared = ops::prepare(&state.fhir, &bytes, Some(&ty))?;
    ops::check_body_id(&prepared, &id)?;
    // The parsed resource is all the write needs: the bytes go, a big body's permit stays to the end.
    let _permit = bytes.into_parts().1;
    let ctx = state.fhir.clone();
    let (outcome, warnings) = state
        .store
        .transact(actor, move |tx| {
            let outcome = ops::update(&ctx, tx, &prepared, &id, expected)?;
            let (outcome, warnings, made) =
                crate::ordination::intake::after_single(&ctx, tx, outcome)?;
            append_write_with(&ctx, tx, record, &outcome, &made)?;
            Ok((outcome, warnings))
        })
        .await?;
    Ok(audited(with_warnings(
        write_response(&state, actor, &outcome, prefer),
        &warnings,
    )))
}

async fn conditional_update(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Update)?;
    let record = rc.record(caller, Action::Update, "update");
    let prefer = Prefer::from_headers(&headers);
    let expected = if_match(&headers)?;
    let condition = Condition::parse(&state.fhir, &ty, raw.as_deref().unwrap_or(""))?;
    let options = ops::IfNew {
        if_match: expected,
        id: None,
        may_create: check(&acting, &ty, Interaction::Create).is_ok(),
    };
    let bytes = json_body(&state, &headers, body).await?;
    let prepared = ops::prepare(&state.fhir, &bytes, Some(&ty))?;
    // The parsed resource is all the write needs: the bytes go, a big body's permit stays to the end.
    let _permit = bytes.into_parts().1;
    let ctx = state.fhir.clone();
    let (outcome, warnings) = state
        .store
        .transact(actor, move |tx| {
            let outcome = ops::conditional_update(&ctx, tx, &prepared, &condition, options)?;
            let (outcome, warnings, made) =
                crate::ordination::intake::after_single(&ctx, tx, outcome)?;
            append_write_with(&ctx, tx, record, &outcome, &made)?;
            Ok((outcome, warnings))
        })
        .await?;
    Ok(audited(with_warnings(
        write_response(&state, actor, &outcome, prefer),
        &warnings,
    )))
}

async fn delete(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Delete)?;
    let record = rc.record(caller, Action::Delete, "delete");
    let expected = if_match(&headers)?;
    let ctx = state.fhir.clone();
    let outcome = state
        .store
        .transact(actor, move |tx| {
            let outcome = ops::delete(tx, &ty, &id, expected)?;
            append_write(&ctx, tx, record, &outcome)?;
            Ok(outcome)
        })
        .await?;
    Ok(audited(write_response(
        &state,
        actor,
        &outcome,
        Prefer::from_headers(&headers),
    )))
}

async fn conditional_delete(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Delete)?;
    let record = rc.record(caller, Action::Delete, "delete");
    let condition = Condition::parse(&state.fhir, &ty, raw.as_deref().unwrap_or(""))?;
    let ctx = state.fhir.clone();
    let outcome = state
        .store
        .transact(actor, move |tx| {
            let outcome = ops::conditional_delete(tx, &ty, &condition)?;
            match &outcome {
                Some(o) => append_write(&ctx, tx, record, o)?,
                None => {
                    let mut record = record;
                    record.status = 204;
                    crate::audit::append(tx, &record)?;
                }
            }
            Ok(outcome)
        })
        .await?;
    let response = match outcome {
        Some(o) => write_response(&state, actor, &o, Prefer::from_headers(&headers)),
        None => StatusCode::NO_CONTENT.into_response(),
    };
    Ok(audited(response))
}

async fn transaction(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    raw: RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    check_accept(&headers, format_param(&raw.0).as_deref())?;
    let prefer = Prefer::from_headers(&headers);
    // The permit (for a big Bundle) is held until the answer is built; the bytes go once parsed.
    let (bytes, _permit) = json_body(&state, &headers, body).await?.into_parts();
    let actor = &acting.actor;
    let authorize = |ty: &str, interaction: Interaction| check(&acting, ty, interaction);
    let record = rc.record(caller, Action::Execute, "transaction");
    let (kind, results) = bundle::process_body(
        state.fhir.clone(),
        state.store.as_ref(),
        actor,
        &authorize,
        Some(record),
        state.bounds.max_bundle_entries,
        bytes,
    )
    .await?;
    let kind_name = match kind {
        BundleKind::Transaction => "transaction-response",
        BundleKind::Batch => "batch-response",
    };
    let mut out = BundleText::new(kind_name, None, &[]);
    for r in &results {
        entry_response(&state, actor, &mut out, r, prefer.ret);
    }
    Ok(audited(respond::json_response(
        StatusCode::OK,
        out.finish(),
    )))
}

fn status_text(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim().to_owned()
}

fn entry_response(
    state: &AppState,
    actor: &Actor,
    out: &mut BundleText,
    r: &EntryResult,
    ret: Return,
) {
    if let Some(err) = &r.error {
        out.entry(
            None,
            None,
            &[(
                "response",
                serde_json::json!({"status": status_text(err.status), "outcome": err.outcome}),
            )],
        );
        return;
    }
    let version = r.outcome.as_ref().map(|o| &o.version).or(r.read.as_ref());
    match version {
        Some(v) => {
            let mut response = serde_json::json!({
                "status": status_text(r.status),
                "etag": etag(v.version),
                "lastModified": v.last_updated,
            });
            if !r.warnings.is_empty() {
                let issues = r
                    .warnings
                    .iter()
                    .map(|w| {
                        crate::fhir::outcome::Issue::warning(
                            crate::fhir::outcome::IssueCode::Informational,
                            w,
                        )
                    })
                    .collect();
                response["outcome"] = crate::fhir::outcome::OperationOutcome::new(issues).to_json();
            }
            if r.status != 204 {
                response["location"] = serde_json::Value::String(format!(
                    "{}/{}/_history/{}",
                    v.resource_type, v.id, v.version
                ));
            }
            let full_url = format!("{}/{}/{}", state.fhir_base(), v.resource_type, v.id);
            let resource = match ret {
                Return::Representation if !v.deleted => outgoing(actor, v),
                _ => None,
            };
            out.entry(
                (!v.deleted).then_some(full_url.as_str()),
                resource.as_ref(),
                &[("response", response)],
            );
        }
        None => out.entry(
            None,
            None,
            &[(
                "response",
                serde_json::json!({"status": status_text(r.status)}),
            )],
        ),
    }
}
