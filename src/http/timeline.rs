//! The patient timeline and `$everything` (spec/timeline-and-audit.md "Timeline"):
//! `GET /fhir/Patient/{id}/$timeline`, `GET /fhir/Patient/$timeline?identifier=<system>|<value>` and
//! `GET /fhir/Patient/{id}/$everything` (FHIR R4 Patient-everything: `start`, `end`, `_since`, `_type`,
//! `_count`). Both answer a `searchset` Bundle, newest first by clinical time, paged by an opaque keyset
//! `_cursor`; what the caller may not see is left out inside the query ([`crate::timeline`]).

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::audit::Action;
use crate::auth::Interaction;
use crate::error::ApiError;
use crate::fhir::protected::outgoing;
use crate::fhir::visibility::Visibility;
use crate::http::Acting;
use crate::http::audit::{RequestContext, note_version};
use crate::http::fhir::{authorize, with_note};
use crate::http::negotiate::{check_accept, query_pairs};
use crate::http::respond::{self, BundleText, Link};
use crate::search::index::parse_date_range;
use crate::search::query::parse_query;
use crate::state::AppState;
use crate::store::{Actor, StoredVersion};
use crate::timeline::{DEFAULT_COUNT, MAX_COUNT, TimelineKey, TimelineQuery};

/// `search.extension` URLs on each entry: who owns it, where it came from, its clinical time.
pub const OWNER_EXTENSION: &str = "http://navet.example/StructureDefinition/timeline-owner";
pub const SOURCE_EXTENSION: &str = "http://navet.example/StructureDefinition/timeline-source";
pub const TIME_EXTENSION: &str = "http://navet.example/StructureDefinition/timeline-time";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Timeline,
    Everything,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Timeline => "timeline",
            Operation::Everything => "everything",
        }
    }
}

pub async fn timeline(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    run(
        &state,
        &acting,
        &rc,
        &headers,
        Some(id),
        pairs,
        Operation::Timeline,
    )
    .await
}

pub async fn timeline_by_identifier(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    run(
        &state,
        &acting,
        &rc,
        &headers,
        None,
        pairs,
        Operation::Timeline,
    )
    .await
}

pub async fn everything(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    run(
        &state,
        &acting,
        &rc,
        &headers,
        Some(id),
        pairs,
        Operation::Everything,
    )
    .await
}

/// The parameters of one call, checked.
struct Params {
    identifier: Option<String>,
    types: Option<Vec<String>>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    since_ms: Option<i64>,
    after: Option<TimelineKey>,
    count: usize,
    total: bool,
}

fn parse_params(
    state: &AppState,
    op: Operation,
    pairs: &[(String, String)],
) -> Result<Params, ApiError> {
    let mut p = Params {
        identifier: None,
        types: None,
        start_ms: None,
        end_ms: None,
        since_ms: None,
        after: None,
        count: DEFAULT_COUNT,
        total: false,
    };
    let date = |name: &str, v: &str| {
        parse_date_range(v).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}: '{v}' is not a FHIR date, dateTime or instant"
            ))
        })
    };
    for (k, v) in pairs {
        match k.as_str() {
            "identifier" if op == Operation::Timeline => p.identifier = Some(v.clone()),
            "_type" => {
                let mut types = Vec::new();
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !state.fhir.structure.is_resource_type(t) {
                        return Err(ApiError::BadRequest(format!(
                            "_type: '{t}' is not a FHIR R4 resource type"
                        )));
                    }
                    types.push(t.to_owned());
                }
                p.types = Some(types);
            }
            "start" => p.start_ms = Some(date("start", v)?.lo),
            // An end date covers its whole range: `end=2026-12-01` includes that day.
            "end" => p.end_ms = Some(date("end", v)?.hi.saturating_add(1)),
            "_since" => p.since_ms = Some(date("_since", v)?.lo),
            "_count" => {
                p.count = v
                    .parse::<usize>()
                    .map_err(|_| {
                        ApiError::BadRequest(format!("_count: '{v}' is not a whole number"))
                    })?
                    .min(MAX_COUNT);
            }
            "_cursor" => {
                p.after = Some(TimelineKey::decode(v).ok_or_else(|| {
                    ApiError::BadRequest(
                        "_cursor is not one navet issued; follow the Bundle's links".into(),
                    )
                })?)
            }
            "_total" => match v.as_str() {
                "accurate" => p.total = true,
                "none" | "estimate" => p.total = false,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "_total: '{other}' is not one of none, estimate, accurate"
                    )));
                }
            },
            "_format" | "_pretty" => {}
            other => {
                let supported = match op {
                    Operation::Timeline => {
                        "identifier, _type, start, end, _since, _count, _total, _cursor"
                    }
                    Operation::Everything => "_type, start, end, _since, _count, _total, _cursor",
                };
                return Err(ApiError::BadRequest(format!(
                    "'{other}' is not a ${} parameter (supported: {supported})",
                    op.name()
                )));
            }
        }
    }
    Ok(p)
}

async fn run(
    state: &AppState,
    acting: &Acting,
    rc: &RequestContext,
    headers: &HeaderMap,
    id: Option<String>,
    pairs: Vec<(String, String)>,
    op: Operation,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    check_accept(
        headers,
        pairs
            .iter()
            .find(|(k, _)| k == "_format")
            .map(|(_, v)| v.as_str()),
    )?;
    let actor = authorize(acting, "Patient", Interaction::Read)?;
    if matches!(actor.visibility, Visibility::Auditor { .. }) {
        return Err(ApiError::Forbidden(
            "auditor principals do not read clinical records (the timeline)".into(),
        ));
    }
    let params = parse_params(state, op, &pairs)?;
    let patient = find_patient(state, actor, id, params.identifier.as_deref()).await?;
    let patient_ref = format!("Patient/{}", patient.id);
    // Types the caller's scopes do not allow are left out inside the query, so pages stay full.
    let types = match params.types.clone() {
        None if caller.scopes.permits_every_type(Interaction::Read) => None,
        requested => Some(
            requested
                .unwrap_or_else(|| {
                    crate::timeline::timeline_types()
                        .map(str::to_owned)
                        .collect()
                })
                .into_iter()
                .filter(|t| authorize(acting, t, Interaction::Read).is_ok())
                .collect(),
        ),
    };
    let query = TimelineQuery {
        patient: patient_ref.clone(),
        types,
        start_ms: params.start_ms,
        end_ms: params.end_ms,
        since_ms: params.since_ms,
        after: params.after.clone(),
        count: params.count,
        total: params.total,
    };
    let page = state.store.timeline(actor, query).await?;

    let base = format!(
        "{}/Patient/{}/${}",
        state.fhir_base(),
        patient.id,
        op.name()
    );
    let url = |cursor: Option<&TimelineKey>| {
        respond::page_url(&base, &pairs, cursor.map(TimelineKey::encode).as_deref())
    };
    let mut links = vec![Link {
        relation: "self",
        url: url(params.after.as_ref()),
    }];
    if page.has_more
        && let Some((time_ms, last)) = page.entries.last()
    {
        let key = TimelineKey {
            time_ms: *time_ms,
            resource_type: last.resource_type.clone(),
            id: last.id.clone(),
        };
        links.push(Link {
            relation: "next",
            url: url(Some(&key)),
        });
    }
    let mut bundle = BundleText::new("searchset", page.total, &links);
    let mut record = rc.record(caller, Action::Read, op.name());
    record.add_patient(patient_ref);
    // $everything starts with the Patient itself, on its first page.
    if op == Operation::Everything && params.after.is_none() {
        let full_url = format!("{}/Patient/{}", state.fhir_base(), patient.id);
        bundle.entry(
            Some(&full_url),
            outgoing(actor, &patient).as_ref(),
            &[("search", json!({"mode": "match"}))],
        );
        note_version(&state.fhir.params, &mut record, &patient);
    }
    for (time_ms, v) in &page.entries {
        let full_url = format!("{}/{}/{}", state.fhir_base(), v.resource_type, v.id);
        bundle.entry(
            Some(&full_url),
            outgoing(actor, v).as_ref(),
            &[("search", search_member(*time_ms, v))],
        );
        note_version(&state.fhir.params, &mut record, v);
    }
    Ok(with_note(
        respond::json_response(StatusCode::OK, bundle.finish()),
        "Patient",
        record,
    ))
}

/// The patient by id or by identifier; 404 when it does not exist (or was deleted): never an empty timeline.
async fn find_patient(
    state: &AppState,
    actor: &Actor,
    id: Option<String>,
    identifier: Option<&str>,
) -> Result<StoredVersion, ApiError> {
    let not_found = || ApiError::NotFound("no such patient".into());
    let found = match (id, identifier) {
        (Some(id), _) => state.store.read(actor, "Patient", &id, None).await?,
        (None, Some(identifier)) => {
            let query = parse_query(
                &state.fhir.params,
                "Patient",
                &[("identifier".to_owned(), identifier.to_owned())],
                false,
            )?;
            let page = state.store.search(actor, "Patient", query, 0, 2).await?;
            match page.matches.as_slice() {
                [one] => Some(one.clone()),
                [] => None,
                _ => {
                    return Err(ApiError::PreconditionFailed(
                        "the identifier matches more than one Patient".into(),
                    ));
                }
            }
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "Patient/$timeline needs identifier=<system>|<value> (or use Patient/{id}/$timeline)"
                    .into(),
            ));
        }
    };
    found.filter(|p| !p.deleted).ok_or_else(not_found)
}

/// An entry's `search`: mode, and its owner, source and clinical time as extensions.
fn search_member(time_ms: i64, v: &StoredVersion) -> Value {
    let time = crate::store::sqlite::format_instant(time_ms);
    json!({
        "mode": "match",
        "extension": [
            {"url": OWNER_EXTENSION, "valueIdentifier": {"system": crate::domain::HSA_ID_SYSTEM, "value": v.owner}},
            {"url": SOURCE_EXTENSION, "valueCode": source_of(v)},
            {"url": TIME_EXTENSION, "valueInstant": time}
        ]
    })
}

/// Where a resource came from: `svpl` or `itacih` when navet translated it from those messages (their
/// translation marks `meta.source` with `urn:navet:svpl` / `urn:navet:itacih`), else `fhir`.
fn source_of(v: &StoredVersion) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Meta {
        source: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct WithMeta {
        meta: Option<Meta>,
    }
    let source = v
        .json
        .as_deref()
        .and_then(|j| serde_json::from_str::<WithMeta>(j).ok())
        .and_then(|m| m.meta)
        .and_then(|m| m.source);
    match source.as_deref() {
        Some(s) if s.starts_with("urn:navet:svpl") => "svpl",
        Some(s) if s.starts_with("urn:navet:itacih") => "itacih",
        _ => "fhir",
    }
}
