//! The access log at the HTTP edge: every `/fhir` request that touches patient data leaves one AuditEvent
//! (spec/timeline-and-audit.md), refused and failed requests included.
//!
//! - Writes record their AuditEvent inside the write job (same transaction) and mark the response
//!   [`Audited`].
//! - Reads and searches attach an [`AuditNote`] naming what they returned; [`audit_requests`] hands it to
//!   the access-log appender (`crate::audit::log`: group commit) and lets the response leave only once it is
//!   durable. If that write fails the client gets a 500, never the data.
//! - Anything else (refused by the extractor, a scope, a 404, a failed write) is recorded here from the
//!   method, the path and the status.
//!
//! Reads and searches of the directory (Organization, Practitioner, …) are not patient data and are not
//! logged; writes to it are (DESIGN.md: "changes logged with the changing principal").

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::audit::{Action, AuditRecord, Outcome};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Actor, StoredVersion};

/// Per-request facts the middleware knows and handlers need for their records.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    pub source_address: Option<String>,
}

impl RequestContext {
    pub fn record(&self, caller: &Caller, action: Action, operation: &str) -> AuditRecord {
        let mut record = AuditRecord::new(action, operation, &*self.request_id);
        record.caller = Some(caller.clone());
        record.source_address = self.source_address.clone();
        record
    }
}

/// A read's or search's record, for the middleware to write before the response goes out.
#[derive(Debug, Clone)]
pub struct AuditNote(pub AuditRecord);

/// The request's record was written in its own transaction.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// Adds what a stored version contributes to a record: the version as entity, its patients.
pub fn note_version(
    params: &crate::search::params::SearchParams,
    record: &mut AuditRecord,
    v: &StoredVersion,
) {
    record.entities.push(format!(
        "{}/{}/_history/{}",
        v.resource_type, v.id, v.version
    ));
    if v.resource_type == "Patient" {
        // A Patient is its own patient: no need to parse the stored JSON (the hot path of a logged read).
        record.add_patient(format!("Patient/{}", v.id));
    } else if let Some(json) = &v.json {
        for patient in
            crate::fhir::participants::patients_in_json(params, &v.resource_type, &v.id, json)
        {
            record.add_patient(patient);
        }
    }
}

/// `/fhir/{type}[/{id}…]`: the type and id a path names, and the interaction.
fn describe(
    method: &Method,
    path: &str,
) -> Option<(Action, &'static str, Option<String>, Option<String>)> {
    let rest = path.strip_prefix("/fhir")?.trim_start_matches('/');
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let owned = |s: &str| Some(s.to_owned());
    let described = match (method.as_str(), segments.as_slice()) {
        (_, ["metadata"]) => return None,
        ("POST", []) => (Action::Execute, "transaction", None, None),
        ("GET", ["_history"]) => (Action::Read, "history-system", None, None),
        ("GET", ["Patient", "$timeline"]) => (Action::Read, "timeline", owned("Patient"), None),
        ("GET", ["Patient", id, "$timeline"]) => {
            (Action::Read, "timeline", owned("Patient"), owned(id))
        }
        ("GET", ["Patient", id, "$everything"]) => {
            (Action::Read, "everything", owned("Patient"), owned(id))
        }
        ("GET", [ty]) => (Action::Read, "search-type", owned(ty), None),
        ("POST", [ty, "_search"]) => (Action::Read, "search-type", owned(ty), None),
        ("GET", [ty, "_history"]) => (Action::Read, "history-type", owned(ty), None),
        ("GET", [ty, id]) => (Action::Read, "read", owned(ty), owned(id)),
        ("GET", [ty, id, "_history"]) => (Action::Read, "history-instance", owned(ty), owned(id)),
        ("GET", [ty, id, "_history", _]) => (Action::Read, "vread", owned(ty), owned(id)),
        ("POST", [ty]) => (Action::Create, "create", owned(ty), None),
        ("PUT", [ty]) => (Action::Update, "update", owned(ty), None),
        ("PUT", [ty, id]) => (Action::Update, "update", owned(ty), owned(id)),
        ("DELETE", [ty]) => (Action::Delete, "delete", owned(ty), None),
        ("DELETE", [ty, id]) => (Action::Delete, "delete", owned(ty), owned(id)),
        _ => return None,
    };
    Some(described)
}

/// The middleware on every `/fhir` route. See the module documentation.
pub async fn audit_requests(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    // Counted until its record is handed to the appender (or it ends without one): the appender gathers the
    // records of requests in flight into one commit.
    let expected = crate::audit::Expected::start();
    let context = RequestContext {
        // The edge's request id (taken from X-Request-ID or made there), so the AuditEvent, the log lines and
        // the client's response header name the same id. A fresh one only when the app runs without the edge.
        request_id: crate::http::edge::request_id_of(&request)
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string())),
        source_address: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_string()),
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    // The caller, for refusals the handler never saw; a bad token simply gives an anonymous record.
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    request.extensions_mut().insert(context.clone());
    let slot = crate::http::ActingSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    // The caller and actor the handler's extractor made, if it got that far.
    let acting = slot.0.get();

    if response.extensions().get::<Audited>().is_some() {
        return response;
    }
    let status = response.status().as_u16();
    let record = match response.extensions_mut().remove::<AuditNote>() {
        Some(AuditNote(mut record)) => {
            record.status = status;
            record.outcome = Outcome::from_status(status);
            record
        }
        None => {
            let Some((action, operation, ty, id)) = describe(&method, &path) else {
                return response;
            };
            // Directory reads that failed are not patient data either.
            if action == Action::Read
                && ty
                    .as_deref()
                    .is_some_and(|t| crate::fhir::DIRECTORY_TYPES.contains(&t))
            {
                return response;
            }
            let mut record = AuditRecord::new(action, operation, &*context.request_id);
            record.caller = match acting {
                Some(a) => Some(a.caller.clone()),
                None => header
                    .as_deref()
                    .and_then(|h| state.auth.authenticate(Some(h)).ok()),
            };
            record.source_address = context.source_address.clone();
            record.status = status;
            record.outcome = Outcome::from_status(status);
            match (ty, id) {
                (Some(ty), Some(id)) => {
                    if ty == "Patient" {
                        record.add_patient(format!("Patient/{id}"));
                    } else if let Ok(patients) =
                        state.store.patients_of(&Actor::system(), &ty, &id).await
                    {
                        // The log names whose record was tried, even when the caller may not see it.
                        patients.into_iter().for_each(|p| record.add_patient(p));
                    }
                    record.entities.push(format!("{ty}/{id}"));
                }
                (Some(ty), None) => record.entities.push(ty),
                _ => {}
            }
            if action == Action::Read {
                record.query = query;
            }
            record
        }
    };
    let actor = match (acting, &record.caller) {
        (Some(a), _) => a.actor.clone(),
        (None, Some(caller)) => crate::http::actor_of(caller),
        (None, None) => Actor::system(),
    };
    // The access chain's appender: group commit with other requests' records, never behind resource writes.
    drop(expected);
    let written = crate::audit::log(state.store.as_ref(), &actor, &record).await;
    match written {
        Ok(()) => response,
        Err(e) => {
            // No unlogged access: the answer is withheld when its record cannot be written.
            tracing::error!(error = %e, "the access-log record could not be written; the response is withheld");
            ApiError::internal("the access log could not be written").into_response()
        }
    }
}
