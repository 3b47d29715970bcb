//! Search (FHIR R4 4.0.1 §3.1.0.9 and search.html) and history (§3.1.0.10) as `searchset`/`history` Bundles
//! with `self`/`next`/`previous` links. Paging uses an opaque `_cursor`; the first page needs none.

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::audit::Action;
use crate::auth::{Authenticated, Caller, Interaction};
use crate::error::ApiError;
use crate::fhir::outcome::{Issue, IssueCode, OperationOutcome};
use crate::fhir::protected::{Outgoing, outgoing};
use crate::http::audit::{RequestContext, note_version};
use crate::http::fhir::{authorize, fresh_log, known_type, with_note};
use crate::http::negotiate::{Prefer, check_accept, query_pairs, read_limited};
use crate::http::respond::{self, BundleText, Link};
use crate::search::query::{SearchQuery, TotalMode, parse_query};
use crate::state::AppState;
use crate::store::{Actor, HistoryQuery, StoredVersion};

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;

/// Parameters that shape the answer, not the match; kept in links but not given to the query parser.
const PASSTHROUGH: [&str; 3] = ["_format", "_pretty", "_cursor"];

fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("o{offset}"))
}

fn decode_cursor(cursor: &str) -> Result<usize, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix('o').and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "_cursor is not one navet issued; follow the Bundle's links".into(),
            )
        })
}

/// `self`, `next` and `previous` links for a page at `offset`.
fn links(
    base: &str,
    pairs: &[(String, String)],
    offset: usize,
    count: usize,
    has_more: bool,
) -> Vec<Link<'static>> {
    let url_with = |cursor: Option<usize>| {
        let cursor = cursor.filter(|c| *c > 0).map(encode_cursor);
        respond::page_url(base, pairs, cursor.as_deref())
    };
    let mut out = vec![Link {
        relation: "self",
        url: url_with(Some(offset)),
    }];
    if has_more {
        out.push(Link {
            relation: "next",
            url: url_with(Some(offset + count)),
        });
    }
    if offset > 0 {
        out.push(Link {
            relation: "previous",
            url: url_with(Some(offset.saturating_sub(count))),
        });
    }
    out
}

pub async fn search_get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Extension(rc): Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    search(&state, &caller, &rc, &ty, &headers, pairs).await
}

/// `POST [type]/_search` with `application/x-www-form-urlencoded` parameters (§3.1.0.9.1).
pub async fn search_post(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
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
    search(&state, &caller, &rc, &ty, &headers, pairs).await
}

async fn search(
    state: &AppState,
    caller: &Caller,
    rc: &RequestContext,
    ty: &str,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let format = pairs
        .iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v.clone());
    check_accept(headers, format.as_deref())?;
    known_type(state, ty)?;
    let actor = authorize(caller, ty, Interaction::Search)?;
    fresh_log(state, Some(ty)).await?;
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
            &actor,
            pairs,
        )
        .await?
    } else {
        pairs
    };
    let offset = match pairs.iter().find(|(k, _)| k == "_cursor") {
        Some((_, c)) => decode_cursor(c)?,
        None => 0,
    };
    let query_pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !PASSTHROUGH.contains(&k.as_str()))
        .cloned()
        .collect();
    let query: SearchQuery = parse_query(&state.fhir.params, ty, &query_pairs, prefer.lenient)?;
    let summary_count = match query.summary.as_deref() {
        None | Some("false") => false,
        Some("count") => true,
        Some(other) => {
            return Err(ApiError::NotSupported(format!(
                "_summary={other} is not supported; use _summary=count or _summary=false"
            )));
        }
    };
    if query.elements.is_some() {
        return Err(ApiError::NotSupported(
            "_elements is not supported yet".into(),
        ));
    }
    let count = if summary_count {
        0
    } else {
        query.count.unwrap_or(DEFAULT_COUNT).min(MAX_COUNT)
    };
    let want_total = summary_count || matches!(query.total, TotalMode::Accurate);
    let ignored = query.ignored.clone();
    let mut query = query;
    if want_total {
        query.total = TotalMode::Accurate;
    }
    let page = state.store.search(&actor, ty, query, offset, count).await?;
    // Links keep what the client asked, minus parameters ignored under lenient handling.
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| !ignored.contains(k))
        .collect();
    let base = format!("{}/{ty}", state.fhir_base());
    let page_links = links(
        &base,
        &kept,
        offset,
        count.max(1),
        page.has_more && !summary_count,
    );
    let mut bundle = BundleText::new(
        "searchset",
        if want_total { page.total } else { None },
        &page_links,
    );
    for v in &page.matches {
        add_entry(state, &actor, &mut bundle, v, "match");
    }
    // An included resource of a type the caller may not read is left out, as if it were not referenced.
    for v in page
        .included
        .iter()
        .filter(|v| authorize(caller, &v.resource_type, Interaction::Read).is_ok())
    {
        add_entry(state, &actor, &mut bundle, v, "include");
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

fn add_entry(
    state: &AppState,
    actor: &Actor,
    bundle: &mut BundleText,
    v: &StoredVersion,
    mode: &str,
) {
    let full_url = format!("{}/{}/{}", state.fhir_base(), v.resource_type, v.id);
    bundle.entry(
        Some(&full_url),
        outgoing(actor, v).as_ref(),
        &[("search", serde_json::json!({"mode": mode}))],
    );
}

pub async fn system_history(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    // Every type's changes: only for a token that may search every type, with an acting user.
    if !caller.scopes.permits_every_type(Interaction::Search) {
        return Err(ApiError::Forbidden(
            "the system history needs a scope for every resource type (system/*.s)".into(),
        ));
    }
    caller.require_patient_data_access()?;
    let record = rc.record(&caller, Action::Read, "history-system");
    history(
        &state,
        &crate::http::actor_of(&caller),
        record,
        None,
        None,
        &headers,
        raw,
    )
    .await
}

pub async fn type_history(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Extension(rc): Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    known_type(&state, &ty)?;
    let actor = authorize(&caller, &ty, Interaction::Search)?;
    let record = rc.record(&caller, Action::Read, "history-type");
    history(&state, &actor, record, Some(ty), None, &headers, raw).await
}

pub async fn instance_history(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Extension(rc): Extension<RequestContext>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    known_type(&state, &ty)?;
    let actor = authorize(&caller, &ty, Interaction::Read)?;
    let record = rc.record(&caller, Action::Read, "history-instance");
    history(&state, &actor, record, Some(ty), Some(id), &headers, raw).await
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
    fresh_log(state, ty.as_deref()).await?;
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
            "_cursor" => offset = decode_cursor(v)?,
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
    let base = match (&ty, &id) {
        (Some(t), Some(i)) => format!("{}/{t}/{i}/_history", state.fhir_base()),
        (Some(t), None) => format!("{}/{t}/_history", state.fhir_base()),
        _ => format!("{}/_history", state.fhir_base()),
    };
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
    let page_links = links(&base, &pairs, offset, count, more);
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
