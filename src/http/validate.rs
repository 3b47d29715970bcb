//! `$validate` (FHIR R4 4.0.1 resource-operation-validate): `POST /fhir/{type}/$validate` and
//! `POST /fhir/{type}/{id}/$validate`, with the resource as the body or in a Parameters (`resource`, `mode`,
//! `profile`). The answer is 200 with an OperationOutcome listing every issue (errors and warnings, each with
//! its FHIRPath location), or one informational issue when there are none; nothing is stored.
//!
//! What is checked is exactly what a write checks (`crate::fhir::validate`): the R4 base definitions
//! (structure, required bindings, invariants) and navet's Swedish rules. `mode=create` (the default) also
//! notes a body id the server will replace; `mode=update` needs the instance URL or a body id, and checks
//! that the resource exists, is visible to the caller and may be changed by it (the read is logged like any
//! read). `mode=delete` is not supported (501). A `profile` other than the type's base definition is not
//! validated against and says so in a warning: navet knows no other profiles yet.

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::Value;

use crate::audit::Action;
use crate::auth::Interaction;
use crate::error::ApiError;
use crate::fhir::json::IncomingResource;
use crate::fhir::outcome::{Issue, IssueCode, OperationOutcome};
use crate::fhir::validate::{Kind, Level};
use crate::http::Acting;
use crate::http::audit::{RequestContext, note_version};
use crate::http::fhir::{authorize, known_type, with_note};
use crate::http::negotiate::{check_accept, json_body, query_pairs};
use crate::http::respond;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/{type}/$validate", post(type_level))
        .route("/fhir/{type}/{id}/$validate", post(instance_level))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Update,
}

async fn type_level(
    state: State<AppState>,
    acting: Acting,
    rc: Extension<RequestContext>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    raw: RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    run(state, acting, rc, ty, None, headers, raw, body).await
}

async fn instance_level(
    state: State<AppState>,
    acting: Acting,
    rc: Extension<RequestContext>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    raw: RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    run(state, acting, rc, ty, Some(id), headers, raw, body).await
}

#[allow(clippy::too_many_arguments)]
async fn run(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    ty: String,
    id: Option<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    let pairs = query_pairs(raw.as_deref());
    let format = pairs.iter().find(|(k, _)| k == "_format").map(|(_, v)| v);
    check_accept(&headers, format.map(String::as_str))?;
    known_type(&state, &ty)?;
    let (bytes, _permit) = json_body(&state, &headers, body).await?.into_parts();
    let body: Value = crate::fhir::json::parse_strict(&bytes)?;
    let (resource, mut mode_text, profile) = unwrap_parameters(&ty, body)?;
    if let Some((_, m)) = pairs.iter().find(|(k, _)| k == "mode") {
        mode_text = Some(m.clone());
    }
    let mode = match mode_text.as_deref() {
        None | Some("create") => Mode::Create,
        Some("update") => Mode::Update,
        Some("delete") => {
            return Err(ApiError::NotSupported(
                "$validate mode=delete is not supported; navet validates create and update".into(),
            ));
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "mode '{other}' is not one of create, update (resource-validation-mode)"
            )));
        }
    };
    // Validating is asking whether a write would be accepted: it needs the scope of that write.
    let interaction = match mode {
        Mode::Create => Interaction::Create,
        Mode::Update => Interaction::Update,
    };
    let actor = authorize(&acting, &ty, interaction)?;

    let text = serde_json::to_vec(&resource).map_err(ApiError::internal)?;
    let incoming = IncomingResource::parse(&text)?;
    let mut issues = Vec::new();
    if incoming.resource_type() != ty {
        issues.push(
            Issue::error(
                IssueCode::Invalid,
                &format!(
                    "the resource is a {} but the URL names {ty}",
                    incoming.resource_type()
                ),
            )
            .at("resourceType"),
        );
    }
    if let Some(profile) = &profile
        && *profile != format!("http://hl7.org/fhir/StructureDefinition/{ty}")
    {
        issues.push(Issue::warning(
            IssueCode::NotSupported,
            &format!(
                "profile {profile} is not known to navet: validated against the FHIR R4 base definition of \
                 {ty} and navet's Swedish rules only"
            ),
        ));
    }
    for f in crate::fhir::validate::check(&state.fhir, incoming.value()) {
        let code = match f.kind {
            Kind::Structure => IssueCode::Structure,
            Kind::Code => IssueCode::CodeInvalid,
            Kind::Invariant => IssueCode::Invariant,
            Kind::Rule => IssueCode::BusinessRule,
        };
        let issue = match f.level {
            Level::Error => Issue::error(code, &f.message),
            Level::Warning => Issue::warning(code, &f.message),
        };
        issues.push(issue.at(&f.path));
    }

    let mut note = None;
    match mode {
        Mode::Create => {
            if incoming.body_id().is_some() {
                issues.push(
                    Issue::information(
                        "mode=create: navet assigns the id; the body's id is ignored",
                    )
                    .at(&format!("{ty}.id")),
                );
            }
        }
        Mode::Update => {
            let target = match (&id, incoming.body_id()) {
                (Some(url_id), Some(body_id)) if url_id != body_id => {
                    issues.push(
                        Issue::error(
                            IssueCode::Invalid,
                            &format!(
                                "the body's id '{body_id}' does not match the URL's id '{url_id}'"
                            ),
                        )
                        .at(&format!("{ty}.id")),
                    );
                    None
                }
                (_, None) => {
                    issues.push(
                        Issue::error(
                            IssueCode::Required,
                            "mode=update: an update must carry the resource's id in the body",
                        )
                        .at(&format!("{ty}.id")),
                    );
                    id.clone()
                }
                (_, Some(body_id)) => Some(body_id.to_owned()),
            };
            if let Some(target) = target {
                crate::fhir::ops::check_id(&target)?;
                let current = state.store.read(actor, &ty, &target, None).await?;
                match current {
                    Some(v) if !v.deleted => {
                        let may_change = crate::fhir::is_shared_master_data(&ty)
                            || v.owner == *actor.principal
                            || actor.is_system();
                        if !may_change {
                            issues.push(Issue::error(
                                IssueCode::Forbidden,
                                &format!(
                                    "{ty}/{target} is owned by {}; only its owner may change it",
                                    v.owner
                                ),
                            ));
                        }
                        let mut record = rc.record(caller, Action::Read, "validate");
                        note_version(&state.fhir.params, &mut record, &v);
                        note = Some(record);
                    }
                    _ => issues.push(Issue::error(
                        IssueCode::NotFound,
                        &format!("mode=update: {ty}/{target} does not exist"),
                    )),
                }
            }
        }
    }
    if issues.is_empty() {
        issues.push(Issue::information(
            "no issues: valid against the FHIR R4 4.0.1 base definitions and navet's Swedish rules",
        ));
    }
    let body = serde_json::to_string(&OperationOutcome::new(issues).to_json())
        .map_err(ApiError::internal)?;
    let response = respond::json_response(StatusCode::OK, body);
    Ok(match note {
        Some(record) => with_note(response, &ty, record),
        None => response,
    })
}

/// The resource, mode and profile of a `$validate` body: a Parameters (when the URL's type is not Parameters)
/// or the resource itself.
fn unwrap_parameters(
    ty: &str,
    body: Value,
) -> Result<(Value, Option<String>, Option<String>), ApiError> {
    if ty == "Parameters" || body.get("resourceType").and_then(Value::as_str) != Some("Parameters")
    {
        return Ok((body, None, None));
    }
    let mut resource = None;
    let mut mode = None;
    let mut profile = None;
    let parameters = body.get("parameter").and_then(Value::as_array);
    for p in parameters.into_iter().flatten() {
        match p.get("name").and_then(Value::as_str) {
            Some("resource") => resource = p.get("resource").cloned(),
            Some("mode") => {
                mode = p
                    .get("valueCode")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            Some("profile") => {
                profile = p
                    .get("valueUri")
                    .or_else(|| p.get("valueCanonical"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            _ => {}
        }
    }
    let resource = resource.ok_or_else(|| {
        ApiError::BadRequest(
            "the Parameters has no 'resource' parameter: send the resource to validate".into(),
        )
    })?;
    Ok((resource, mode, profile))
}
