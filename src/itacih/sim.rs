//! A simulated itACiH implementing navet's contract (spec/itacih.md v2), for the tests and the README demo
//! (`navet itacih-sim`). In memory; its failure modes are switched at run time:
//!
//! - `POST /sim/mode` `{"down": true, "slow_ms": 3000, "fail_next": 3, "duplicate_pages": true,
//!   "out_of_order": true}`: down answers every API call 503; slow delays each answer; fail_next answers the
//!   next n calls 500; duplicate_pages serves each feed page twice (the second time as if the cursor had not
//!   moved); out_of_order serves a page's events newest first.
//! - `GET /sim/insatser`: what was received: every insats with its id, status and how often it was POSTed,
//!   and the order of first arrival.
//! - `POST /sim/events`: appends events to the feed (a `sekvens` is given where missing).
//! - `POST /sim/perform` `{"externtId": "…", "typ": "BESOK_UTFORT"}`: the team records a planned visit as
//!   done (or `BESOK_INSTALLT`), as a feed event built from the insats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Mode {
    pub down: bool,
    pub slow_ms: u64,
    pub fail_next: u32,
    pub duplicate_pages: bool,
    pub out_of_order: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Insats {
    pub id: String,
    pub externt_id: String,
    pub body: Value,
    pub status: String,
    pub posts: u32,
}

#[derive(Debug, Default)]
pub struct SimState {
    pub mode: Mode,
    pub insatser: Vec<Insats>,
    by_externt: HashMap<String, usize>,
    pub events: Vec<Value>,
    /// Feed requests answered, to serve duplicates every other time.
    feed_calls: u64,
    last_page: Option<Value>,
}

pub type Shared = Arc<Mutex<SimState>>;

/// The simulator's router.
pub fn app(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/insatser", post(create))
        .route("/api/v1/insatser/{id}", patch(update))
        .route("/api/v1/handelser", get(feed))
        .route("/sim/mode", post(set_mode).get(get_mode))
        .route("/sim/insatser", get(list))
        .route("/sim/events", post(add_events))
        .route("/sim/perform", post(perform))
        .with_state(state)
}

/// Runs the simulator on `listener` until the task is dropped; answers its state.
pub fn spawn(listener: tokio::net::TcpListener) -> Shared {
    let state: Shared = Arc::default();
    let router = app(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    state
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, SimState> {
    // A panicked handler leaves the data as it was: the simulator keeps serving.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The failure modes every API call goes through: `Some(answer)` when it fails.
async fn failing(state: &Shared) -> Option<Response> {
    let (down, slow, fail) = {
        let mut s = lock(state);
        let fail = s.mode.fail_next > 0;
        if fail {
            s.mode.fail_next -= 1;
        }
        (s.mode.down, s.mode.slow_ms, fail)
    };
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow.min(120_000))).await;
    }
    if down {
        return Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "itACiH is down (simulated)",
            )
                .into_response(),
        );
    }
    if fail {
        return Some((StatusCode::INTERNAL_SERVER_ERROR, "simulated failure").into_response());
    }
    None
}

async fn create(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    if let Some(r) = failing(&state).await {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let Some(externt) = body
        .get("externtId")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return (StatusCode::BAD_REQUEST, "externtId is missing").into_response();
    };
    let mut s = lock(&state);
    if let Some(&i) = s.by_externt.get(&externt) {
        s.insatser[i].posts += 1;
        let id = s.insatser[i].id.clone();
        return (StatusCode::OK, Json(json!({"id": id}))).into_response();
    }
    let id = format!("it-{}", 88000 + s.insatser.len());
    let n = s.insatser.len();
    s.by_externt.insert(externt.clone(), n);
    s.insatser.push(Insats {
        id: id.clone(),
        externt_id: externt,
        body,
        status: "PLANERAD".into(),
        posts: 1,
    });
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

async fn update(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = failing(&state).await {
        return r;
    }
    let mut s = lock(&state);
    match s.insatser.iter_mut().find(|i| i.id == id) {
        Some(i) => {
            if let Some(st) = body.get("status").and_then(Value::as_str) {
                i.status = st.to_owned();
            }
            (StatusCode::OK, Json(json!({"id": id}))).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such insats").into_response(),
    }
}

#[derive(Deserialize)]
struct FeedQuery {
    efter: Option<i64>,
    max: Option<usize>,
}

async fn feed(State(state): State<Shared>, Query(q): Query<FeedQuery>) -> Response {
    if let Some(r) = failing(&state).await {
        return r;
    }
    let mut s = lock(&state);
    s.feed_calls += 1;
    // Duplicate pages: every second call serves the previous page again.
    if s.mode.duplicate_pages
        && s.feed_calls.is_multiple_of(2)
        && let Some(page) = s.last_page.clone()
    {
        return Json(page).into_response();
    }
    let after = q.efter.unwrap_or(0);
    let max = q.max.unwrap_or(100).clamp(1, 1000);
    let mut events: Vec<Value> = s
        .events
        .iter()
        .filter(|e| e.get("sekvens").and_then(Value::as_i64).unwrap_or(0) > after)
        .take(max)
        .cloned()
        .collect();
    let nasta = events
        .iter()
        .filter_map(|e| e.get("sekvens").and_then(Value::as_i64))
        .max()
        .unwrap_or(after);
    if s.mode.out_of_order {
        events.reverse();
    }
    let page = json!({"handelser": events, "nasta": nasta});
    s.last_page = Some(page.clone());
    Json(page).into_response()
}

async fn set_mode(State(state): State<Shared>, Json(mode): Json<Mode>) -> Json<Mode> {
    lock(&state).mode = mode.clone();
    Json(mode)
}

async fn get_mode(State(state): State<Shared>) -> Json<Mode> {
    Json(lock(&state).mode.clone())
}

async fn list(State(state): State<Shared>) -> Json<Value> {
    let s = lock(&state);
    Json(json!({"insatser": s.insatser}))
}

/// Appends events; answers the sequence numbers given.
pub fn push_events(state: &Shared, events: Vec<Value>) -> Vec<i64> {
    let mut s = lock(state);
    let mut out = Vec::new();
    for mut e in events {
        let next = s
            .events
            .iter()
            .filter_map(|x| x.get("sekvens").and_then(Value::as_i64))
            .max()
            .unwrap_or(1000)
            + 1;
        let seq = e.get("sekvens").and_then(Value::as_i64).unwrap_or(next);
        e["sekvens"] = json!(seq);
        out.push(seq);
        s.events.push(e);
    }
    s.events
        .sort_by_key(|e| e.get("sekvens").and_then(Value::as_i64).unwrap_or(0));
    out
}

async fn add_events(State(state): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let events = match body {
        Value::Array(a) => a,
        other => vec![other],
    };
    Json(json!({"sekvens": push_events(&state, events)}))
}

#[derive(Deserialize)]
struct Perform {
    #[serde(rename = "externtId")]
    externt_id: String,
    typ: Option<String>,
    #[serde(rename = "kontaktId")]
    kontakt_id: Option<String>,
}

/// A feed event for a received insats, as the team would record it.
pub fn performed(state: &Shared, externt_id: &str, typ: &str, kontakt_id: &str) -> Option<i64> {
    let insats = {
        let s = lock(state);
        s.insatser
            .iter()
            .find(|i| i.externt_id == externt_id)
            .cloned()?
    };
    let b = &insats.body;
    let start = b.get("planeradStart").cloned().unwrap_or(Value::Null);
    let event = json!({
        "typ": typ,
        "kontaktId": kontakt_id,
        "besokstyp": "PUNKTINSATS",
        "insatsId": insats.id,
        "externtId": insats.externt_id,
        "patient": b.get("patient").cloned().unwrap_or(Value::Null),
        "enhet": b.get("enhet").cloned().unwrap_or(Value::Null),
        "tid": start,
        "slut": b.get("planeradSlut").cloned().unwrap_or(Value::Null),
        "personal": [{"kategori": b.get("personalkategori").cloned().unwrap_or(json!("SSK"))}],
        "boende": "ORDINART",
        "kontaktorsak": b.get("kontaktorsak").cloned().unwrap_or(Value::Null),
        "remittent": b.get("remittent").cloned().unwrap_or(Value::Null),
        "punktinsats": true,
        "vidare": null
    });
    push_events(state, vec![event]).first().copied()
}

async fn perform(State(state): State<Shared>, Json(p): Json<Perform>) -> Response {
    let typ = p.typ.unwrap_or_else(|| "BESOK_UTFORT".into());
    let kontakt = p.kontakt_id.unwrap_or_else(|| "it-k-1".into());
    match performed(&state, &p.externt_id, &typ, &kontakt) {
        Some(seq) => Json(json!({"sekvens": seq})).into_response(),
        None => (StatusCode::NOT_FOUND, "no insats with this externtId").into_response(),
    }
}
