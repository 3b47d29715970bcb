//! `PATCH [type]/[id]` (FHIR R4 4.0.1 §3.1.0.7): JSON Patch (`application/json-patch+json`) or FHIRPath
//! Patch (a `Parameters` in `application/fhir+json`), with `If-Match`. The patched resource goes through
//! the update path inside the same transaction that read the current version: the same ownership check
//! (before the patch is even applied, so a non-owner cannot probe a resource with `test` operations),
//! validation, protected-identity rule and access-log record as `PUT`.

use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;

use crate::audit::Action;
use crate::auth::Interaction;
use crate::error::ApiError;
use crate::fhir::ops;
use crate::fhir::patch::{PatchError, apply_fhirpath_patch, apply_json_patch};
use crate::http::Acting;
use crate::http::audit::RequestContext;
use crate::http::fhir::{append_write, audited, authorize, if_match, known_type, write_response};
use crate::http::negotiate::{Prefer, check_accept, query_pairs, read_limited};
use crate::state::AppState;

enum Format {
    JsonPatch,
    FhirPathPatch,
}

impl From<PatchError> for ApiError {
    fn from(e: PatchError) -> Self {
        match e {
            PatchError::Malformed(m) => ApiError::BadRequest(m),
            PatchError::Failed(m) => ApiError::invalid("patch", m),
        }
    }
}

pub async fn patch(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    let format_param = query_pairs(raw.as_deref())
        .into_iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v);
    check_accept(&headers, format_param.as_deref())?;
    known_type(&state, &ty)?;
    let actor = authorize(&acting, &ty, Interaction::Update)?;
    let record = rc.record(caller, Action::Update, "patch");
    ops::check_id(&id)?;
    let prefer = Prefer::from_headers(&headers);
    let expected = if_match(&headers)?;
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match media.as_str() {
        "application/json-patch+json" => Format::JsonPatch,
        "application/fhir+json" | "application/json" => Format::FhirPathPatch,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "PATCH takes application/json-patch+json (JSON Patch) or application/fhir+json \
                 (FHIRPath Patch Parameters), not '{other}'"
            )));
        }
    };
    let bytes = read_limited(body, state.max_body_bytes).await?;
    let fhirpath = match format {
        Format::FhirPathPatch => Some(
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?,
        ),
        Format::JsonPatch => None,
    };
    let ctx = state.fhir.clone();
    let outcome = state
        .store
        .transact(actor, move |tx| {
            let current = match tx.current(&ty, &id)? {
                Some(current) if tx.visible(&ty, &id)? => current,
                _ => return Err(ApiError::NotFound(format!("{ty}/{id} does not exist"))),
            };
            if current.deleted {
                return Err(ApiError::Gone(format!("{ty}/{id} was deleted")));
            }
            if let Some(e) = expected
                && e != current.version
            {
                return Err(ApiError::PreconditionFailed(format!(
                    "{ty}/{id} is at version {}, not {e} (If-Match)",
                    current.version
                )));
            }
            ops::check_may_change(tx, &current)?;
            let mut value: serde_json::Value =
                serde_json::from_str(current.json.as_deref().unwrap_or("{}"))
                    .map_err(ApiError::internal)?;
            match &fhirpath {
                None => apply_json_patch(&mut value, &bytes)?,
                Some(parameters) => {
                    let valid = |v: &serde_json::Value| ctx.structure.validate(v).is_ok();
                    apply_fhirpath_patch(&mut value, parameters, &valid)?
                }
            }
            let patched = serde_json::to_vec(&value).map_err(ApiError::internal)?;
            let prepared = ops::prepare(&ctx, &patched, Some(&ty))?;
            let outcome = ops::update(&ctx, tx, &prepared, &id, Some(current.version))?;
            append_write(&ctx, tx, record, &outcome)?;
            Ok(outcome)
        })
        .await?;
    Ok(audited(write_response(&state, actor, &outcome, prefer)))
}
