//! Search (FHIR R4 4.0.1 §3.1.0.9 and search.html), compartment search (§3.1.0.9.2) and history
//! (§3.1.0.10) as `searchset`/`history` Bundles with `self`/`next` (`first`, `previous`) links. Paging uses
//! an opaque `_cursor`, signed and bound to the query and the caller (`search::cursor`); the first page needs
//! none.

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::audit::Action;
use crate::auth::Interaction;
use crate::error::ApiError;
use crate::fhir::ops;
use crate::fhir::outcome::{Issue, IssueCode, OperationOutcome};
use crate::fhir::protected::{Outgoing, outgoing};
use crate::http::Acting;
use crate::http::audit::{RequestContext, note_version};
use crate::http::fhir::{authorize, known_type, with_note};
use crate::http::negotiate::{Prefer, check_accept, query_pairs, read_limited};
use crate::http::respond::{self, BundleText, Link};
use crate::search::cursor::{self, Position};
use crate::search::query::{PageKey, SearchQuery, TotalMode, parse_query};
use crate::search::summary::Shape;
use crate::state::AppState;
use crate::store::{Actor, HistoryQuery, StoredVersion};

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;

/// Parameters that shape the answer, not the match; kept in links but not given to the query parser.
const PASSTHROUGH: [&str; 3] = ["_format", "_pretty", "_cursor"];

fn bad_cursor() -> ApiError {
    ApiError::BadRequest(
        "_cursor is not one navet issued for this query and caller; follow the Bundle's links"
            .into(),
    )
}

/// The cursor of a request, checked against its binding (`search::cursor`).
fn open_cursor(
    state: &AppState,
    binding: &str,
    pairs: &[(String, String)],
) -> Result<Option<Position>, ApiError> {
    match pairs.iter().find(|(k, _)| k == "_cursor") {
        Some((_, c)) => state
            .cursor_key
            .open(binding, c)
            .map(Some)
            .ok_or_else(bad_cursor),
        None => Ok(None),
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `self`, `next` and `previous` links for a history page at `offset`.
fn links(
    state: &AppState,
    binding: &str,
    base: &str,
    pairs: &[(String, String)],
    offset: usize,
    count: usize,
    has_more: bool,
) -> Vec<Link<'static>> {
    let url_with = |cursor: usize| {
        let token = (cursor > 0).then(|| {
            state.cursor_key.mint(
                binding,
                &Position::Offset {
                    offset: cursor,
                    snapshot_ms: 0,
                },
            )
        });
        respond::page_url(base, pairs, token.as_deref())
    };
    let mut out = vec![Link {
        relation: "self",
        url: url_with(offset),
    }];
    if has_more {
        out.push(Link {
            relation: "next",
            url: url_with(offset.saturating_add(count)),
        });
    }
    if offset > 0 {
        out.push(Link {
            relation: "previous",
            url: url_with(offset.saturating_sub(count)),
        });
    }
    out
}

pub async fn search_get(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    search(&state, &acting, &rc, &ty, &headers, pairs).await
}

/// `POST [type]/_search` with `application/x-www-form-urlencoded` parameters (§3.1.0.9.1).
pub async fn search_post(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::UnsupportedMediaType(
            "POST _search takes application/x-www-form-urlencoded parameters".into(),
        ));
    }
    let bytes = read_limited(body, state.max_body_bytes).await?;
    let mut pairs = query_pairs(raw.as_deref());
    pairs.extend(query_pairs(std::str::from_utf8(&bytes).ok()));
    search(&state, &acting, &rc, &ty, &headers, pairs).await
}

async fn search(
    state: &AppState,
    acting: &Acting,
    rc: &RequestContext,
    ty: &str,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    search_in(state, acting, rc, ty, headers, pairs, None).await
}

/// `GET [Compartment]/{id}/[type]` (FHIR R4 4.0.1 §3.1.0.9.2): a search restricted to the patient's
/// compartment. navet serves the Patient compartment; the patient must exist for the caller.
pub async fn compartment_search(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path((compartment, id, ty)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if ty.starts_with('$') {
        return Err(ApiError::NotFound(format!(
            "{compartment}/{id}/{ty}: navet serves no operation {ty} on {compartment} instances \
             (the CapabilityStatement lists the operations)"
        )));
    }
    known_type(&state, &compartment)?;
    if compartment != "Patient" {
        return Err(ApiError::NotSupported(format!(
            "compartment search is served for the Patient compartment, not {compartment}"
        )));
    }
    known_type(&state, &ty)?;
    if ty != "Patient" && state.fhir.params.patient_compartment_params(&ty).is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{ty} is not in the Patient compartment (FHIR R4 CompartmentDefinition patient)"
        )));
    }
    let actor = authorize(&acting, "Patient", Interaction::Read)?;
    ops::check_id(&id)?;
    match state.store.read(actor, "Patient", &id, None).await? {
        Some(v) if !v.deleted => {}
        _ => return Err(ApiError::NotFound(format!("Patient/{id} does not exist"))),
    }
    let pairs = query_pairs(raw.as_deref());
    search_in(
        &state,
        &acting,
        &rc,
        &ty,
        &headers,
        pairs,
        Some(format!("Patient/{id}")),
    )
    .await
}

async fn search_in(
    state: &AppState,
    acting: &Acting,
    rc: &RequestContext,
    ty: &str,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
    compartment: Option<String>,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    let format = pairs
        .iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v.clone());
    check_accept(headers, format.as_deref())?;
    known_type(state, ty)?;
    let actor = authorize(acting, ty, Interaction::Search)?;
    if ty == crate::fhir::visibility::ACCESS_LOG_TYPE {
        // The access log is searched on its own indexes (`crate::audit::query`), never the general one.
        return crate::http::auditor::search_events(state, acting, rc, actor, pairs).await;
    }
    if !state.fhir.is_searchable(ty) {
        return Err(ApiError::MethodNotAllowed(format!(
            "search is not served for {ty}; the CapabilityStatement lists the searchable types"
        )));
    }
    let prefer = Prefer::from_headers(headers);
    // The care map's "which team can do this, here, now" (caremap/search.rs).
    let pairs = if ty == "HealthcareService" {
        crate::caremap::search::rewrite(
            &state.fhir.ordination.care,
            state.store.as_ref(),
            actor,
            pairs,
        )
        .await?
    } else {
        pairs
    };
    let path = match &compartment {
        Some(c) => format!("/{c}/{ty}"),
        None => format!("/{ty}"),
    };
    let binding = cursor::binding(&path, &pairs, actor);
    let position = open_cursor(state, &binding, &pairs)?;
    let query_pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !PASSTHROUGH.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut query: SearchQuery = parse_query(&state.fhir.params, ty, &query_pairs, prefer.lenient)?;
    // A chain, _has or include reads other types: the caller must be allowed to search each of them.
    for other in query.referenced_types() {
        authorize(acting, &other, Interaction::Search)?;
    }
    let summary_count = query.summary.as_deref() == Some("count");
    let shape = Shape::from_params(query.summary.as_deref(), query.elements.as_deref())
        .map_err(ApiError::BadRequest)?;
    query.compartment = compartment;
    let count = if summary_count {
        0
    } else {
        query.count.unwrap_or(DEFAULT_COUNT).min(MAX_COUNT)
    };
    // _total (search.html#total): accurate and estimate are both counted exactly; none never; unasked, a
    // count-only page (_summary=count, _count=0) still says how many match.
    let want_total = match query.total {
        TotalMode::Accurate | TotalMode::Estimate => true,
        TotalMode::None => false,
        TotalMode::Unspecified => count == 0,
    };
    query.total = if want_total {
        TotalMode::Accurate
    } else {
        TotalMode::None
    };
    // The page position: keyset in the default order, offset into a snapshot under _sort.
    let keyset = query.sort.is_empty();
    let (offset, snapshot_ms) = match (&position, keyset) {
        (None, true) => (0, None),
        (None, false) => (0, Some(now_ms())),
        (Some(Position::After { lu_ms, id }), true) => {
            query.after = Some(PageKey {
                lu_ms: *lu_ms,
                id: id.clone(),
            });
            (0, None)
        }
        (
            Some(Position::Offset {
                offset,
                snapshot_ms,
            }),
            false,
        ) => (*offset, Some(*snapshot_ms)),
        _ => return Err(bad_cursor()),
    };
    query.snapshot_ms = snapshot_ms;
    let ignored = query.ignored.clone();
    let page = state.store.search(actor, ty, query, offset, count).await?;
    // Links keep what the client asked, minus parameters ignored under lenient handling.
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| !ignored.contains(k))
        .collect();
    let base = format!("{}{path}", state.fhir_base());
    let kept_binding = cursor::binding(&path, &kept, actor);
    let mint = |p: &Position| state.cursor_key.mint(&kept_binding, p);
    let mut page_links = vec![Link {
        relation: "self",
        url: respond::page_url(&base, &kept, position.as_ref().map(mint).as_deref()),
    }];
    if page.has_more && !summary_count {
        let next = match (keyset, page.matches.last()) {
            (true, Some(last)) => Some(Position::After {
                lu_ms: instant_ms(&last.last_updated),
                id: last.id.clone(),
            }),
            (false, _) => Some(Position::Offset {
                offset: offset.saturating_add(count),
                snapshot_ms: snapshot_ms.unwrap_or(0),
            }),
            _ => None,
        };
        if let Some(next) = next {
            page_links.push(Link {
                relation: "next",
                url: respond::page_url(&base, &kept, Some(&mint(&next))),
            });
        }
    }
    if position.is_some() {
        page_links.push(Link {
            relation: "first",
            url: respond::page_url(&base, &kept, None),
        });
    }
    let mut bundle = BundleText::new(
        "searchset",
        if want_total { page.total } else { None },
        &page_links,
    );
    for v in &page.matches {
        add_entry(state, actor, &mut bundle, v, "match", shape.as_ref());
    }
    // An included resource of a type the caller may not read is left out, as if it were not referenced.
    for v in page
        .included
        .iter()
        .filter(|v| authorize(acting, &v.resource_type, Interaction::Read).is_ok())
    {
        add_entry(state, actor, &mut bundle, v, "include", shape.as_ref());
    }
    if !ignored.is_empty() {
        let text = format!(
            "ignored unknown search parameters (Prefer: handling=lenient): {}",
            ignored.join(", ")
        );
        let oo =
            OperationOutcome::new(vec![Issue::warning(IssueCode::NotSupported, &text)]).to_json();
        bundle.entry(
            None,
            Some(&Outgoing::navet_made(oo.to_string())),
            &[("search", serde_json::json!({"mode": "outcome"}))],
        );
    }
    let mut record = rc.record(caller, Action::Read, "search-type");
    record.query = Some(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept.iter())
            .finish(),
    );
    for v in page.matches.iter().chain(page.included.iter()) {
        note_version(&state.fhir.params, &mut record, v);
    }
    Ok(with_note(
        respond::json_response(StatusCode::OK, bundle.finish()),
        ty,
        record,
    ))
}

/// Epoch milliseconds of a stored FHIR instant (navet writes them, so they parse; 0 otherwise).
fn instant_ms(instant: &str) -> i64 {
    instant
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .unwrap_or(0)
}

/// What `actor` may see of `v`, reduced to `shape` when the client asked for a subset.
pub fn shaped<'a>(
    state: &AppState,
    actor: &Actor,
    v: &'a StoredVersion,
    shape: Option<&Shape>,
) -> Option<Outgoing<'a>> {
    let out = outgoing(actor, v)?;
    match shape {
        None => Some(out),
        Some(shape) => Some(
            match state
                .fhir
                .params
                .summary
                .apply(&v.resource_type, shape, out.as_str())
            {
                Some(text) => Outgoing::navet_made(text),
                None => out,
            },
        ),
    }
}

fn add_entry(
    state: &AppState,
    actor: &Actor,
    bundle: &mut BundleText,
    v: &StoredVersion,
    mode: &str,
    shape: Option<&Shape>,
) {
    let full_url = format!("{}/{}/{}", state.fhir_base(), v.resource_type, v.id);
    bundle.entry(
        Some(&full_url),
        shaped(state, actor, v, shape).as_ref(),
        &[("search", serde_json::json!({"mode": mode}))],
    );
}

/// The `_format` parameter of a raw query.
fn format_of(raw: &Option<String>) -> Option<String> {
    query_pairs(raw.as_deref())
        .into_iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v)
}

pub async fn system_history(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    // Every type's changes: only for a token that may search every type, with an acting user.
    if !caller.scopes.permits_every_type(Interaction::Search) {
        return Err(ApiError::Forbidden(
            "the system history needs a scope for every resource type (system/*.s)".into(),
        ));
    }
    caller.require_patient_data_access()?;
    let record = rc.record(caller, Action::Read, "history-system");
    history(&state, &acting.actor, record, None, None, &headers, raw).await
}

pub async fn type_history(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Search)?;
    if ty == crate::fhir::visibility::ACCESS_LOG_TYPE {
        check_accept(&headers, format_of(&raw).as_deref())?;
        let pairs = query_pairs(raw.as_deref());
        return crate::http::auditor::history_events(&state, &acting, &rc, None, pairs).await;
    }
    let record = rc.record(caller, Action::Read, "history-type");
    history(&state, actor, record, Some(ty), None, &headers, raw).await
}

pub async fn instance_history(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Read)?;
    if ty == crate::fhir::visibility::ACCESS_LOG_TYPE {
        check_accept(&headers, format_of(&raw).as_deref())?;
        let pairs = query_pairs(raw.as_deref());
        return crate::http::auditor::history_events(&state, &acting, &rc, Some(&id), pairs).await;
    }
    let record = rc.record(caller, Action::Read, "history-instance");
    history(&state, actor, record, Some(ty), Some(id), &headers, raw).await
}

async fn history(
    state: &AppState,
    actor: &Actor,
    mut record: crate::audit::AuditRecord,
    ty: Option<String>,
    id: Option<String>,
    headers: &HeaderMap,
    raw: Option<String>,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let mut count = DEFAULT_COUNT;
    let mut since_ms = None;
    let mut offset = 0;
    let mut format = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "_count" => {
                count = v
                    .parse::<usize>()
                    .map_err(|_| ApiError::BadRequest(format!("_count '{v}' is not a number")))?
                    .min(MAX_COUNT)
            }
            "_since" => {
                let ts: jiff::Timestamp = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("_since '{v}' is not an instant")))?;
                since_ms = Some(ts.as_millisecond());
            }
            "_cursor" => {}
            "_format" => format = Some(v.clone()),
            "_pretty" => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "'{other}' is not a history parameter (supported: _count, _since, _cursor)"
                )));
            }
        }
    }
    check_accept(headers, format.as_deref())?;
    let count = count.max(1);
    let path = match (&ty, &id) {
        (Some(t), Some(i)) => format!("/{t}/{i}/_history"),
        (Some(t), None) => format!("/{t}/_history"),
        _ => "/_history".to_owned(),
    };
    let base = format!("{}{path}", state.fhir_base());
    // History cursors are offsets (newest first), signed and bound to the query and caller like search's.
    let binding = cursor::binding(&path, &pairs, actor);
    match open_cursor(state, &binding, &pairs)? {
        None => {}
        Some(Position::Offset { offset: o, .. }) => offset = o,
        Some(Position::After { .. }) => return Err(bad_cursor()),
    }
    let instance = id.is_some();
    let (versions, more) = state
        .store
        .history(
            actor,
            HistoryQuery {
                resource_type: ty.clone(),
                id: id.clone(),
                since_ms,
                offset,
                count,
            },
        )
        .await?;
    if instance && versions.is_empty() && offset == 0 {
        let (t, i) = (ty.unwrap_or_default(), id.unwrap_or_default());
        return Err(ApiError::NotFound(format!("{t}/{i} does not exist")));
    }
    let page_links = links(state, &binding, &base, &pairs, offset, count, more);
    let mut bundle = BundleText::new("history", None, &page_links);
    for v in &versions {
        let full_url = format!("{}/{}/{}", state.fhir_base(), v.resource_type, v.id);
        let (method, url, status) = if v.deleted {
            (
                "DELETE",
                format!("{}/{}", v.resource_type, v.id),
                "204 No Content",
            )
        } else if v.version == 1 {
            ("POST", v.resource_type.clone(), "201 Created")
        } else {
            ("PUT", format!("{}/{}", v.resource_type, v.id), "200 OK")
        };
        bundle.entry(
            Some(&full_url),
            outgoing(actor, v).as_ref(),
            &[
                ("request", serde_json::json!({"method": method, "url": url})),
                (
                    "response",
                    serde_json::json!({"status": status, "etag": respond::etag(v.version), "lastModified": v.last_updated}),
                ),
            ],
        );
    }
    for v in &versions {
        note_version(&state.fhir.params, &mut record, v);
    }
    // The system history mixes every type, so it is always logged.
    let noted_as = ty.as_deref().unwrap_or("*");
    Ok(with_note(
        respond::json_response(StatusCode::OK, bundle.finish()),
        noted_as,
        record,
    ))
}

/// The query of a create URL as a conditional-create condition, less the parameters that only shape the
/// answer (`_format`, `_pretty`); `None` when nothing is left.
pub fn create_condition(raw: Option<&str>) -> Option<String> {
    let pairs: Vec<(String, String)> = query_pairs(raw)
        .into_iter()
        .filter(|(k, _)| k != "_format" && k != "_pretty")
        .collect();
    (!pairs.is_empty()).then(|| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    })
}

/// The answer to a read when it differs from the plain one: `304` for `If-Modified-Since` at or after the
/// version's `lastUpdated` (HTTP dates have whole seconds), or the `_summary`/`_elements` subset. Any other
/// read parameter is refused (400), so none is silently ignored.
pub fn read_variants(
    state: &AppState,
    actor: &Actor,
    v: &StoredVersion,
    headers: &HeaderMap,
    raw: &Option<String>,
) -> Result<Option<Response>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let mut summary = None;
    let mut elements: Option<Vec<String>> = None;
    for (k, value) in &pairs {
        match k.as_str() {
            "_format" | "_pretty" => {}
            "_summary" => summary = Some(value.as_str()),
            "_elements" => elements
                .get_or_insert_with(Vec::new)
                .extend(value.split(',').map(|e| e.trim().to_owned())),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "'{other}' is not a read parameter (supported: _summary, _elements, _format, _pretty)"
                )));
            }
        }
    }
    if let Some(ims) = headers
        .get(axum::http::header::IF_MODIFIED_SINCE)
        .and_then(|h| h.to_str().ok())
        && let Ok(since) = jiff::fmt::rfc2822::parse(ims.trim())
        && instant_ms(&v.last_updated) / 1000 <= since.timestamp().as_second()
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().extend(respond::version_headers(v));
        return Ok(Some(r));
    }
    if summary == Some("count") {
        return Err(ApiError::BadRequest(
            "_summary=count applies to searches, not to a read".into(),
        ));
    }
    let Some(shape) =
        Shape::from_params(summary, elements.as_deref()).map_err(ApiError::BadRequest)?
    else {
        return Ok(None);
    };
    let Some(body) = shaped(state, actor, v, Some(&shape)) else {
        return Ok(None);
    };
    let mut r = respond::json_response(StatusCode::OK, body.as_str().to_owned());
    r.headers_mut().extend(respond::version_headers(v));
    Ok(Some(r))
}
