//! Planned visits to itACiH (spec/itacih.md v2 "Outbound"): one outbox row per visit, enqueued in the
//! order's transaction, with the visit's stable `externtId` as the message id; a worker that claims the
//! rows (in order per patient: the outbox claims only a patient's oldest pending row), POSTs them with
//! bounded timeouts, retries with backoff and records the outcome with its access-log record.
//!
//! A cancelled visit is `PATCH {base}/insatser/{id}` with `{"status": "MAKULERAD"}`; `id` is itACiH's id,
//! remembered (a setting `itacih-id:{externtId}`) when the visit's POST was answered. The cancellation is
//! queued behind the visit's own POST (same patient), so the id is known when it is sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{DESTINATION, Link};
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::ordination::intake::Order;
use crate::ordination::plan::Visit;
use crate::ordination::work::{externt_id, fhir_time};
use crate::store::outbox::{AttemptOutcome, ClaimRequest, NewMessage, OutboxMessage};
use crate::store::{Actor, Store, StoredVersion, WriteTx};

/// The header that marks a cancellation row (never sent: the worker reads it).
const OP_HEADER: &str = "x-navet-itacih-op";
const OP_CANCEL: &str = "makulera";
/// The setting that remembers itACiH's id of a delivered visit.
pub fn id_setting(externt_id: &str) -> String {
    format!("itacih-id:{externt_id}")
}

/// The insats JSON of one visit, with the mapping's field names and codes.
pub fn insats(
    ctx: &FhirContext,
    link: &Link,
    order: &Order,
    visit: &Visit,
    task_id: &str,
    remittent: Option<&str>,
) -> Value {
    let m = &link.mapping;
    let f = &m.fields.outbound;
    let c = &m.codes;
    let mut out = Map::new();
    let text = |s: &str| Value::String(s.to_owned());
    let opt = |s: Option<&str>| s.map(text).unwrap_or(Value::Null);
    out.insert(
        f.externt_id.clone(),
        text(&externt_id(task_id, visit.number)),
    );
    out.insert(f.enhet.clone(), opt(m.unit_of(&visit.performer)));
    let mut patient = Map::new();
    patient.insert(f.personnummer.clone(), opt(order.national_id.as_deref()));
    out.insert(f.patient.clone(), Value::Object(patient));
    out.insert(
        f.typ.clone(),
        opt(c.insatstyp.get(&order.category).map(String::as_str)),
    );
    out.insert(
        f.kategori.clone(),
        opt(c.kategori.get(&visit.code).map(String::as_str)),
    );
    out.insert(f.planerad_start.clone(), text(&fhir_time(&visit.start)));
    out.insert(f.planerad_slut.clone(), text(&fhir_time(&visit.end)));
    let role = visit.role.as_deref().unwrap_or("default");
    out.insert(
        f.personalkategori.clone(),
        opt(c
            .personalkategori
            .get(role)
            .or(c.personalkategori.get("default"))
            .map(String::as_str)),
    );
    out.insert(f.remittent.clone(), opt(remittent));
    // The per-site mapping of the order's reason; a reason not mapped is null ("not given"), never ANNAN.
    let site = ctx.ordination.care.site_of(&order.facts.municipality);
    let kontaktorsak = site
        .and_then(|s| c.kontaktorsak_by_site.get(&s.name))
        .and_then(|map| order.reasons.iter().find_map(|r| map.get(r)));
    out.insert(
        f.kontaktorsak.clone(),
        opt(kontaktorsak.map(String::as_str)),
    );
    if visit.dose.is_some()
        && let Some(med) = &order.medication
    {
        let mut o = Map::new();
        o.insert(f.lakemedel.clone(), opt(med.name.as_deref()));
        o.insert(f.dos.clone(), opt(med.dose.as_deref()));
        o.insert(
            f.vag.clone(),
            opt(med
                .route
                .as_deref()
                .and_then(|r| c.vag.get(r))
                .map(String::as_str)),
        );
        o.insert(f.ordinator.clone(), opt(order.ordinator.as_deref()));
        out.insert(f.ordination.clone(), Value::Object(o));
    }
    out.insert(f.anteckning.clone(), text(&visit.note));
    Value::Object(out)
}

/// The orderer's kind as itACiH's remittent code: from its Organization's `type` (principal kind). A kind the
/// mapping does not list is `None` (sent as null, not ANNAN).
pub(crate) fn remittent_of(
    link: &Link,
    tx: &mut dyn WriteTx,
    ctx: &FhirContext,
    hsa: &str,
) -> Option<String> {
    let kind = crate::ordination::intake::principal_kind(ctx, tx, hsa)
        .ok()
        .flatten()?;
    link.mapping.codes.remittent_by_kind.get(&kind).cloned()
}

/// Enqueues a planned visit, in the order's transaction. `remittent` is [`remittent_of`] the orderer.
pub fn enqueue_visit(
    ctx: &FhirContext,
    link: &Link,
    tx: &mut dyn WriteTx,
    order: &Order,
    visit: &Visit,
    task_id: &str,
    remittent: Option<&str>,
) -> Result<(), ApiError> {
    let body = insats(ctx, link, order, visit, task_id, remittent);
    tx.enqueue(NewMessage {
        id: externt_id(task_id, visit.number),
        destination: DESTINATION.into(),
        patient: Some(format!("Patient/{}", order.patient_id)),
        content_type: "application/json".into(),
        payload: body.to_string(),
        headers: Vec::new(),
    })?;
    Ok(())
}

/// Enqueues the cancellation of a visit's Task (revoked order), behind its POST.
pub fn enqueue_cancel(
    link: &Link,
    tx: &mut dyn WriteTx,
    task: &StoredVersion,
) -> Result<(), ApiError> {
    let value: Value = task
        .json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    let Some(externt) = value
        .get("identifier")
        .and_then(Value::as_array)
        .and_then(|ids| {
            ids.iter().find(|i| {
                i.get("system").and_then(Value::as_str)
                    == Some(crate::ordination::EXTERNT_ID_SYSTEM)
            })
        })
        .and_then(|i| i.get("value").and_then(Value::as_str))
    else {
        return Ok(());
    };
    let patient = value
        .pointer("/for/reference")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut body = Map::new();
    body.insert(
        link.mapping.fields.outbound.status.clone(),
        Value::String("MAKULERAD".into()),
    );
    tx.enqueue(NewMessage {
        id: format!("{externt}#makulerad"),
        destination: DESTINATION.into(),
        patient,
        content_type: "application/json".into(),
        payload: Value::Object(body).to_string(),
        headers: vec![
            (OP_HEADER.into(), OP_CANCEL.into()),
            ("x-navet-externt-id".into(), externt.to_owned()),
        ],
    })?;
    Ok(())
}

/// The result of one attempt: the outcome, and itACiH's id of a delivered visit.
type Attempt = (AttemptOutcome, Option<(String, String)>);

/// The largest answer body read from itACiH (its answers are `{"id": "…"}`).
const MAX_ANSWER: usize = 64 * 1024;

/// One attempt at a row.
async fn attempt(
    http: &reqwest::Client,
    store: &dyn Store,
    link: &Link,
    m: &OutboxMessage,
) -> Attempt {
    let d = &link.destination;
    let header = |name: &str| {
        m.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let retry = |error: String| {
        let delay = crate::outbox::backoff(
            m.attempts.saturating_add(1),
            d.initial_backoff,
            d.max_backoff,
        );
        let next = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let budget_end = m
            .budget_start_ms
            .saturating_add(i64::try_from(d.retry_budget.as_millis()).unwrap_or(i64::MAX));
        if next >= budget_end {
            AttemptOutcome::Dead {
                error: format!("retry budget exhausted; last error: {error}"),
            }
        } else {
            AttemptOutcome::Retry {
                error,
                next_attempt_ms: next,
            }
        }
    };
    let insatser = link.mapping.fields.paths.insatser.clone();
    let request = if header(OP_HEADER) == Some(OP_CANCEL) {
        let externt = header("x-navet-externt-id").unwrap_or_default();
        let id = match store.get_setting(&id_setting(externt)).await {
            Ok(Some(id)) => id,
            // Its POST never got through (a dead letter): there is nothing at itACiH to cancel.
            Ok(None) => {
                return (
                    AttemptOutcome::Dead {
                        error: "the visit was never delivered; nothing to cancel".into(),
                    },
                    None,
                );
            }
            Err(e) => return (retry(e.to_string()), None),
        };
        let mut encoded = String::new();
        for part in percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC) {
            encoded.push_str(part);
        }
        let Some(url) = link.url(&format!("{insatser}/{encoded}")) else {
            return (
                AttemptOutcome::Dead {
                    error: "no URL for the cancellation".into(),
                },
                None,
            );
        };
        http.patch(url)
    } else {
        let Some(url) = link.url(&insatser) else {
            return (
                AttemptOutcome::Dead {
                    error: "no URL for insatser".into(),
                },
                None,
            );
        };
        http.post(url)
    };
    let answer = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(crate::clients::MESSAGE_ID_HEADER, m.id.as_str())
        .body(m.payload.clone())
        .send()
        .await;
    let response = match answer {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return (retry(format!("timed out: {e}")), None),
        Err(e) if e.is_connect() => return (retry(format!("could not connect: {e}")), None),
        Err(e) => return (retry(e.to_string()), None),
    };
    let status = response.status();
    if status.is_success() {
        let body = match read_capped(response).await {
            Ok(b) => b,
            Err(e) => return (retry(e), None),
        };
        let id = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            v.get(&link.mapping.fields.outbound.id)
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let remember = match (header(OP_HEADER), id) {
            (None, Some(id)) if id.len() <= 256 => Some((id_setting(&m.id), id)),
            _ => None,
        };
        (AttemptOutcome::Delivered, remember)
    } else if status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        (retry(format!("itACiH answered {status}")), None)
    } else {
        (
            AttemptOutcome::Dead {
                error: format!("itACiH refused the message: {status}"),
            },
            None,
        )
    }
}

/// The body, at most [`MAX_ANSWER`] bytes.
pub async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Deliveries in flight at once (to different patients).
const CONCURRENCY: usize = 16;

/// Claims due rows, attempts them, records the outcomes (and the deliveries' access-log records) in one
/// transaction. Answers how many rows were attempted.
pub async fn round(
    http: &reqwest::Client,
    store: &dyn Store,
    link: &Link,
) -> Result<usize, ApiError> {
    let d = &link.destination;
    let request = ClaimRequest {
        destination: DESTINATION.into(),
        now_ms: now_ms(),
        limit: CONCURRENCY,
        lease_ms: i64::try_from((d.connect_timeout + d.request_timeout).as_millis())
            .unwrap_or(i64::MAX)
            + 30_000,
        budget_ms: i64::try_from(d.retry_budget.as_millis()).unwrap_or(i64::MAX),
    };
    let claim = store
        .transact(&Actor::system(), move |tx| Ok(tx.outbox_claim(&request)?))
        .await?;
    if claim.due.is_empty() {
        return Ok(0);
    }
    let attempts =
        futures_util::future::join_all(claim.due.iter().map(|m| attempt(http, store, link, m)))
            .await;
    let n = attempts.len();
    let destination = d.clone();
    let rows: Vec<(OutboxMessage, Attempt)> = claim.due.into_iter().zip(attempts).collect();
    store
        .transact(&Actor::system(), move |tx| {
            for (message, (outcome, remember)) in &rows {
                if !tx.outbox_record(&message.id, outcome)? {
                    continue;
                }
                if *outcome == AttemptOutcome::Delivered {
                    if let Some((key, id)) = remember {
                        tx.set_setting(key, id)?;
                    }
                    if message.patient.is_some() {
                        crate::outbox::log_delivery(tx, message, &destination)?;
                    }
                }
            }
            Ok(())
        })
        .await?;
    Ok(n)
}

/// The running pusher and feed poller.
pub struct Running {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops both; a round in flight finishes and is recorded first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for h in self.handles {
            let _ = h.await;
        }
    }

    /// Ends both at once, as a crash would: a delivery in flight is not recorded (tests of restarts).
    pub fn abort(self) {
        for h in self.handles {
            h.abort();
        }
    }
}

/// The HTTP client for itACiH: its timeouts, no redirects, no proxy from the environment.
pub fn client(link: &Link) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(link.destination.connect_timeout)
        .timeout(link.destination.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("navet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("itACiH client: {e}"))
}

/// Starts the pusher and the feed poller. Claims left by an earlier process are released first (the
/// embedded store has one node, so nobody else can hold them), so a crash's deliveries are attempted again.
pub async fn start(
    store: Arc<dyn Store>,
    fhir: Arc<FhirContext>,
    link: Link,
) -> Result<Running, String> {
    let http = client(&link)?;
    store
        .transact(&Actor::system(), |tx| Ok(tx.outbox_release_claims()?))
        .await
        .map_err(|e| format!("the outbox could not be opened: {e}"))?;
    let (stop, stop_rx) = watch::channel(false);
    let pusher = {
        let (store, link, http, mut stop) =
            (store.clone(), link.clone(), http.clone(), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                let worked = match round(&http, store.as_ref(), &link).await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "itACiH delivery round failed; retrying");
                        false
                    }
                };
                if !worked && sleep_or_stop(link.poll_interval, &mut stop).await {
                    return;
                }
                if *stop.borrow() {
                    return;
                }
            }
        })
    };
    let poller = tokio::spawn(super::feed::run(store, fhir, link, http, stop_rx));
    Ok(Running {
        stop,
        handles: vec![pusher, poller],
    })
}

pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    let started = Instant::now();
    tokio::select! {
        _ = tokio::time::sleep(d.saturating_sub(started.elapsed())) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
