//! The admin API of the outbox (issue 9): dead letters are never dropped silently, an admin lists, inspects
//! and replays them.
//!
//! - `GET /admin/outbox?status=dead&destination=…&after=…&limit=…`: rows oldest first (no payloads).
//! - `GET /admin/outbox/{id}`: one row with its payload.
//! - `POST /admin/outbox/{id}/$replay`: a dead letter back in the queue, with a fresh retry budget.
//! - `POST /admin/outbox/$replay?destination=…`: every dead letter of a destination.
//!
//! Only principals of kind `admin`. Outbox rows are patient data (payloads, patient keys), so every use is
//! access-logged like a FHIR read; a replay's record commits with the replay.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::audit::{Action, AuditRecord};
use crate::auth::{Authenticated, Caller, PrincipalKind};
use crate::error::ApiError;
use crate::http::negotiate::query_pairs;
use crate::http::respond;
use crate::state::AppState;
use crate::store::outbox::{MessageStatus, OutboxFilter, OutboxMessage, Replay};
use crate::store::sqlite::format_instant;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/outbox", get(list))
        .route("/admin/outbox/$replay", post(replay_destination))
        .route("/admin/outbox/{id}", get(inspect))
        .route("/admin/outbox/{id}/$replay", post(replay_one))
}

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.principal.kind == PrincipalKind::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the outbox is administered by admin principals only".into(),
        ))
    }
}

/// `GET /admin/outbox`'s query, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<MessageStatus>,
    pub destination: Option<String>,
    pub after: i64,
    pub limit: usize,
}

/// Destination names as configuration allows them (outbox/config.rs): letters, digits, - and _.
fn destination_name(v: &str) -> Result<String, ApiError> {
    if !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(v.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "destination '{v}' is not a destination name (letters, digits, - and _)"
        )))
    }
}

pub fn parse_list_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        status: None,
        destination: None,
        after: 0,
        limit: DEFAULT_LIMIT,
    };
    for (name, value) in query_pairs(raw) {
        match name.as_str() {
            "status" => {
                q.status = Some(MessageStatus::parse(&value).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "status '{value}' is not pending, delivered or dead"
                    ))
                })?)
            }
            "destination" => q.destination = Some(destination_name(&value)?),
            "after" => {
                q.after = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("after '{value}' is not a position"))
                    })?
            }
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("limit '{value}' is not 1 to {MAX_LIMIT}"))
                    })?
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter '{other}' (status, destination, after, limit)"
                )));
            }
        }
    }
    Ok(q)
}

/// `POST /admin/outbox/$replay`'s query: the destination, required.
pub fn parse_replay_query(raw: Option<&str>) -> Result<String, ApiError> {
    let mut destination = None;
    for (name, value) in query_pairs(raw) {
        match name.as_str() {
            "destination" => destination = Some(destination_name(&value)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter '{other}' (destination)"
                )));
            }
        }
    }
    destination.ok_or_else(|| ApiError::BadRequest("destination=<name> is required".into()))
}

/// A message id as the path names it: what navet and producers use (uuids, externtId-like keys).
pub fn parse_message_id(id: &str) -> Result<&str, ApiError> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(format!(
            "'{id}' is not an outbox message id"
        )))
    }
}

fn summary(m: &OutboxMessage) -> Value {
    json!({
        "id": m.id,
        "destination": m.destination,
        "patient": m.patient,
        "status": m.status.as_str(),
        "attempts": m.attempts,
        "created": format_instant(m.created_ms),
        "nextAttempt": (m.status == MessageStatus::Pending).then(|| format_instant(m.next_attempt_ms)),
        "done": m.done_ms.map(format_instant),
        "lastError": m.last_error,
    })
}

fn record(caller: &Caller, action: Action, operation: &str) -> AuditRecord {
    let mut r = AuditRecord::new(action, operation, uuid::Uuid::new_v4().to_string());
    r.caller = Some(caller.clone());
    r
}

/// Writes a read's record; the answer goes out only once it is durable.
async fn log_read(state: &AppState, caller: &Caller, record: AuditRecord) -> Result<(), ApiError> {
    state
        .store
        .transact(&crate::http::actor_of(caller), move |tx| {
            crate::audit::append(tx, &record)
        })
        .await
}

async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let q = parse_list_query(raw.as_deref())?;
    let filter = OutboxFilter {
        status: q.status,
        destination: q.destination.clone(),
        after_seq: q.after,
        limit: q.limit + 1,
    };
    let mut rows = state
        .store
        .outbox_list(&crate::http::actor_of(&caller), filter)
        .await?;
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    let mut r = record(&caller, Action::Read, "outbox-list");
    rows.iter()
        .filter_map(|m| m.patient.clone())
        .for_each(|p| r.add_patient(p));
    r.query = raw.clone();
    log_read(&state, &caller, r).await?;
    let next = match (more, rows.last()) {
        (true, Some(last)) => {
            let mut next = format!("/admin/outbox?after={}&limit={}", last.seq, q.limit);
            if let Some(s) = q.status {
                next.push_str(&format!("&status={}", s.as_str()));
            }
            if let Some(d) = &q.destination {
                next.push_str(&format!("&destination={d}"));
            }
            Some(next)
        }
        _ => None,
    };
    let body = json!({
        "messages": rows.iter().map(summary).collect::<Vec<_>>(),
        "next": next,
    });
    Ok(respond::json_response(StatusCode::OK, body.to_string()))
}

async fn inspect(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let id = parse_message_id(&id)?;
    let message = state
        .store
        .outbox_get(&crate::http::actor_of(&caller), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no outbox message {id}")))?;
    let mut r = record(&caller, Action::Read, "outbox-read");
    if let Some(p) = &message.patient {
        r.add_patient(p.clone());
    }
    log_read(&state, &caller, r).await?;
    let mut body = summary(&message);
    body["contentType"] = json!(message.content_type);
    body["headers"] = json!(message.headers);
    body["payload"] = json!(message.payload);
    Ok(respond::json_response(StatusCode::OK, body.to_string()))
}

/// Replays and records it in one transaction: a replay is never unlogged.
async fn replay(state: &AppState, caller: &Caller, which: Replay) -> Result<Vec<String>, ApiError> {
    let r = record(caller, Action::Execute, "outbox-replay");
    state
        .store
        .transact(&crate::http::actor_of(caller), move |tx| {
            let replayed = tx.outbox_replay(&which)?;
            if !replayed.is_empty() {
                let mut r = r;
                for (_, patient) in &replayed {
                    if let Some(p) = patient {
                        r.add_patient(p.clone());
                    }
                }
                crate::audit::append(tx, &r)?;
            }
            Ok(replayed.into_iter().map(|(id, _)| id).collect())
        })
        .await
}

async fn replay_one(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let id = parse_message_id(&id)?.to_owned();
    let replayed = replay(&state, &caller, Replay::One(id.clone())).await?;
    if replayed.is_empty() {
        // Tell a missing row from one that is not a dead letter (pending or delivered).
        return match state
            .store
            .outbox_get(&crate::http::actor_of(&caller), &id)
            .await?
        {
            None => Err(ApiError::NotFound(format!("no outbox message {id}"))),
            Some(m) => Err(ApiError::Conflict(format!(
                "outbox message {id} is {}; only dead letters are replayed",
                m.status.as_str()
            ))),
        };
    }
    let body = json!({"replayed": replayed.len(), "ids": replayed});
    Ok(respond::json_response(StatusCode::OK, body.to_string()))
}

async fn replay_destination(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let destination = parse_replay_query(raw.as_deref())?;
    let replayed = replay(&state, &caller, Replay::Destination(destination)).await?;
    let body = json!({"replayed": replayed.len(), "ids": replayed});
    Ok(respond::json_response(StatusCode::OK, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn list_queries_parse_or_say_what_is_wrong() {
        let q = parse_list_query(Some("status=dead&destination=itacih&after=7&limit=5")).unwrap();
        assert_eq!(
            q,
            ListQuery {
                status: Some(MessageStatus::Dead),
                destination: Some("itacih".into()),
                after: 7,
                limit: 5
            }
        );
        assert_eq!(parse_list_query(None).unwrap().limit, DEFAULT_LIMIT);
        for (bad, says) in [
            ("status=lost", "status 'lost'"),
            ("limit=0", "limit '0'"),
            ("limit=1001", "limit '1001'"),
            ("after=-1", "after '-1'"),
            ("destination=a/b", "destination 'a/b'"),
            ("patient=x", "unknown parameter 'patient'"),
        ] {
            let e = parse_list_query(Some(bad)).unwrap_err();
            assert!(matches!(e, ApiError::BadRequest(_)), "{bad}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        assert_eq!(
            parse_replay_query(Some("destination=svpl-1")).unwrap(),
            "svpl-1"
        );
        assert!(parse_replay_query(None).is_err());
        assert!(parse_message_id("0b6c-uuid_1.2:3").is_ok());
        assert!(parse_message_id("../etc").is_err());
        assert!(parse_message_id("").is_err());
    }

    proptest! {
        #[test]
        fn the_admin_parsers_never_panic(raw in ".{0,200}", id in "\\PC{0,200}") {
            let _ = parse_list_query(Some(&raw));
            let _ = parse_replay_query(Some(&raw));
            let _ = parse_message_id(&id);
        }

        #[test]
        fn any_accepted_query_is_within_bounds(raw in "(status|destination|after|limit|x)=[a-z0-9-]{0,12}(&(status|after|limit)=[0-9]{0,25})?") {
            if let Ok(q) = parse_list_query(Some(&raw)) {
                prop_assert!((1..=MAX_LIMIT).contains(&q.limit));
                prop_assert!(q.after >= 0);
            }
        }
    }
}
