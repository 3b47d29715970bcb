//! `POST /svpl` (spec/svpl-messages.md "Transport"): one SVPL message in, always a `Kvittens` out; and
//! `GET /svpl/messages/{sender}/{id}` (and `/kvittens`): a kept message as it arrived (its receipt), for its
//! sender and for auditors doing audit work. The work is `crate::svpl::receive`; this is HTTP only.
//!
//! `/kvittens` of a message navet sent to several receivers lists each receiver and what it answered
//! (`crate::svpl::delivery::receipts_index`); `?mottagare={HSA-id}` answers that receiver's Kvittens byte for
//! byte. A message with one receiver (and every received message) answers its receipt as before. Admins may
//! read receipts too (not the messages): they operate the outbox (`/admin/outbox`, which shows them the
//! payloads already), and a Kvittens carries no patient data beyond references (message id, status, `Fel`
//! codes, resource ids). Every read is access-logged naming the patient, as for the sender.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::audit::{Action, AuditRecord, Outcome};
use crate::auth::{Caller, Interaction, PrincipalKind};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Actor;
use crate::svpl::kvittens::{Fel, FelCode, Kvittens, NAVET_SENDER, Status};
use crate::svpl::receive::{self, Answer};
use crate::svpl::{FORMAT, MAX_MESSAGE_BYTES, XML_CONTENT_TYPE};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/svpl", post(post_message))
        .route("/svpl/messages/{sender}/{id}", get(original))
        .route("/svpl/messages/{sender}/{id}/kvittens", get(receipt))
}

/// The access-log operation of a received message.
pub const TRANSLATE_IN: &str = "translate-in";

fn xml(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(XML_CONTENT_TYPE));
    r
}

/// A refusal answered before the message is read (authentication, media type, size).
fn early_refusal(state: &AppState, status: u16, code: FelCode, text: String) -> Response {
    let k = Kvittens {
        id: format!("kvittens-{}", uuid::Uuid::new_v4()),
        created: jiff::Timestamp::now().to_string(),
        sender: NAVET_SENDER.into(),
        recipient: None,
        reference: None,
        status: Status::Avvisad,
        errors: vec![Fel {
            code,
            field: "/".into(),
            text,
        }],
        resources: Vec::new(),
    };
    xml(status, k.to_xml(&state.svpl.mapping))
}

/// [`early_refusal`], with the request's access-log record.
async fn logged_refusal(
    state: &AppState,
    actor: &Actor,
    mut record: AuditRecord,
    status: u16,
    code: FelCode,
    text: String,
) -> Response {
    record.status = status;
    record.outcome = Outcome::from_status(status);
    match state
        .store
        .transact(actor, move |tx| crate::audit::append(tx, &record))
        .await
    {
        Ok(()) => early_refusal(state, status, code, text),
        Err(e) => e.into_response(),
    }
}

/// What the handlers need of the request besides its body (taken before any await: a request is not `Sync`).
struct Meta {
    authorization: Option<String>,
    request_id: String,
    source_address: Option<String>,
}

impl Meta {
    fn of(request: &Request) -> Meta {
        Meta {
            authorization: request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned),
            request_id: crate::http::edge::request_id_of(request)
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            source_address: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip().to_string()),
        }
    }

    fn record(&self, caller: Option<&Caller>, operation: &str) -> AuditRecord {
        let action = if operation == TRANSLATE_IN {
            Action::Create
        } else {
            Action::Read
        };
        let mut record = AuditRecord::new(action, operation, self.request_id.clone());
        record.caller = caller.cloned();
        record.source_address = self.source_address.clone();
        record
    }
}

async fn post_message(State(state): State<AppState>, request: Request) -> Response {
    let meta = Meta::of(&request);
    let caller = match state.auth.authenticate(meta.authorization.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let mut record = meta.record(None, TRANSLATE_IN);
            record.status = e.status().as_u16();
            record.outcome = Outcome::from_status(record.status);
            if let Err(err) = state
                .store
                .transact(&Actor::system(), move |tx| {
                    crate::audit::append(tx, &record)
                })
                .await
            {
                return err.into_response();
            }
            let mut r = early_refusal(
                &state,
                e.status().as_u16(),
                FelCode::Avsandare,
                e.to_string(),
            );
            if let Ok(v) = HeaderValue::from_str(&e.www_authenticate()) {
                r.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
            return r;
        }
    };
    let record = meta.record(Some(&caller), TRANSLATE_IN);
    let media = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let actor = crate::http::actor_of(&caller);
    if media != "application/xml" && media != "text/xml" {
        let text =
            format!("Content-Type '{media}' is not supported; send application/xml or text/xml");
        return logged_refusal(&state, &actor, record, 415, FelCode::Schema, text).await;
    }
    if let Err(e) = caller.require_patient_data_access() {
        return logged_refusal(
            &state,
            &actor,
            record,
            403,
            FelCode::Avsandare,
            e.to_string(),
        )
        .await;
    }
    let permits: receive::Permits = {
        let caller = caller.clone();
        Arc::new(move |ty: &str, i: Interaction| caller.scopes.permits(ty, i))
    };
    let body: Body = request.into_body();
    let incoming = match crate::http::negotiate::read_limited(body, MAX_MESSAGE_BYTES).await {
        Ok(b) => receive::Incoming::Bytes(b.to_vec()),
        // Past the limit nothing more is read: the refusal is answered on what is known.
        Err(ApiError::PayloadTooLarge(_)) => receive::Incoming::TooLarge,
        Err(e) => {
            return logged_refusal(&state, &actor, record, 400, FelCode::Schema, e.to_string())
                .await;
        }
    };
    match receive::receive(
        state.svpl.clone(),
        state.fhir.clone(),
        state.store.as_ref(),
        &actor,
        permits,
        record,
        incoming,
    )
    .await
    {
        Ok(Answer {
            status, receipt, ..
        }) => xml(status, receipt),
        Err(e) => e.into_response(),
    }
}

/// What a caller fetches of a kept message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Message,
    Receipts,
}

/// Whether `caller` may fetch `part` of a kept message of `sender`: its sender, or an auditor doing audit
/// work; the receipts also an admin (the module comment says why).
fn may_fetch(caller: &Caller, sender: &str, part: Part) -> bool {
    caller.principal.hsa_id.as_str() == sender
        || crate::http::visibility_of(caller).reads_access_log()
        || (part == Part::Receipts && caller.principal.kind == PrincipalKind::Admin)
}

async fn kept(
    state: &AppState,
    meta: Meta,
    sender: &str,
    id: &str,
    part: Part,
) -> Result<(crate::store::inbound::InboundMessage, AuditRecord, Actor), ApiError> {
    let caller = state.auth.authenticate(meta.authorization.as_deref())?;
    let actor = crate::http::actor_of(&caller);
    let not_found = || ApiError::NotFound(format!("no SVPL message {id} from {sender}"));
    if !may_fetch(&caller, sender, part) {
        return Err(not_found());
    }
    let message = state
        .store
        .inbound_message(&actor, FORMAT, sender, id)
        .await?
        .ok_or_else(not_found)?;
    let mut record = meta.record(Some(&caller), "read");
    if let Some(p) = &message.patient {
        record.add_patient(p.clone());
    }
    record.entities.push(format!("svpl-message/{sender}/{id}"));
    Ok((message, record, actor))
}

async fn answer_logged(
    state: &AppState,
    actor: &Actor,
    record: AuditRecord,
    body: String,
) -> Response {
    let written = state
        .store
        .transact(actor, move |tx| crate::audit::append(tx, &record))
        .await;
    match written {
        Ok(()) => xml(200, body),
        Err(e) => e.into_response(),
    }
}

async fn original(
    State(state): State<AppState>,
    Path((sender, id)): Path<(String, String)>,
    request: Request,
) -> Response {
    match kept(&state, Meta::of(&request), &sender, &id, Part::Message).await {
        Ok((message, record, actor)) => {
            let body = String::from_utf8_lossy(&message.body).into_owned();
            answer_logged(&state, &actor, record, body).await
        }
        Err(e) => e.into_response(),
    }
}

/// `?mottagare={HSA-id}`, the only parameter `/kvittens` takes, parsed once.
fn receiver_query(raw: Option<&str>) -> Result<Option<crate::domain::HsaId>, ApiError> {
    let mut receiver = None;
    for (k, v) in crate::http::negotiate::query_pairs(raw) {
        match k.as_str() {
            "mottagare" if receiver.is_none() => {
                receiver = Some(crate::domain::HsaId::parse(&v).map_err(|e| {
                    ApiError::BadRequest(format!("mottagare: '{v}' is no HSA-id: {e}"))
                })?);
            }
            "mottagare" => return Err(ApiError::BadRequest("mottagare is given twice".into())),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter '{k}'; /kvittens takes mottagare={{HSA-id}}"
                )));
            }
        }
    }
    Ok(receiver)
}

async fn receipt(
    State(state): State<AppState>,
    Path((sender, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> Response {
    let receiver = match receiver_query(raw.as_deref()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (message, mut record, actor) =
        match kept(&state, Meta::of(&request), &sender, &id, Part::Receipts).await {
            Ok(k) => k,
            Err(e) => return e.into_response(),
        };
    let receipts = match state
        .store
        .receiver_receipts(&actor, FORMAT, &sender, &id)
        .await
    {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    record.query = raw;
    let body = match receiver {
        Some(h) => match receipts.into_iter().find(|r| r.receiver == h.as_str()) {
            Some(crate::store::inbound::ReceiverReceipt {
                receipt: Some(text),
                ..
            }) => text,
            Some(_) => {
                return ApiError::NotFound(format!("{h} has not answered SVPL message {id} yet"))
                    .into_response();
            }
            None => {
                return ApiError::NotFound(format!("SVPL message {id} was not sent to {h}"))
                    .into_response();
            }
        },
        // One receiver (or a received message): its receipt, as always.
        None if receipts.len() < 2 => message.receipt,
        None => crate::svpl::delivery::receipts_index(&state.svpl.mapping, &sender, &id, &receipts),
    };
    answer_logged(&state, &actor, record, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_query_parses_or_says_what_is_wrong() {
        assert_eq!(receiver_query(None).unwrap(), None);
        assert_eq!(
            receiver_query(Some("mottagare=SE2120000999-HSJ1290"))
                .unwrap()
                .map(|h| h.to_string()),
            Some("SE2120000999-HSJ1290".to_owned())
        );
        for (bad, says) in [
            ("mottagare=inte%20ett", "no HSA-id"),
            (
                "mottagare=SE2120000999-HSJ1290&mottagare=SE2321000255-VC101",
                "twice",
            ),
            ("vem=SE2120000999-HSJ1290", "unknown parameter"),
        ] {
            match receiver_query(Some(bad)) {
                Err(ApiError::BadRequest(text)) => assert!(text.contains(says), "{bad}: {text}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        /// The query is network input: any text parses or is refused, never a panic.
        #[test]
        fn any_receiver_query_parses_or_is_refused(raw in "\\PC{0,200}") {
            let _ = receiver_query(Some(&raw));
        }
    }
}
