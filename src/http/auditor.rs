//! The auditor API (spec/timeline-and-audit.md "Auditor API"): `/audit/verify`, `/audit/extract`,
//! `/audit/sample`, `/audit/export`, and `GET /fhir/AuditEvent[/{id}]` ([`search_events`], [`read_event`]),
//! all answered from the access log's own indexes (`crate::audit::query`, `store/audit_sql.rs`). Every
//! endpoint needs an auditor principal acting with purpose `HOPERAT`, and every use is itself logged.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::audit::{Action, AuditRecord};
use crate::auth::{Caller, PrincipalKind, PurposeOfUse};
use crate::error::ApiError;
use crate::http::Acting;
use crate::http::audit::RequestContext;
use crate::http::negotiate::query_pairs;
use crate::http::respond;
use crate::search::query::parse_query;
use crate::state::AppState;
use crate::store::Actor;

/// Export pages are read this many records at a time, so memory stays flat whatever the period.
const EXPORT_PAGE: usize = 1000;
const MAX_SAMPLE: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit/verify", get(verify))
        .route("/audit/extract", get(extract))
        .route("/audit/sample", get(sample))
        .route("/audit/export", get(export))
        .layer(axum::middleware::from_fn(add_context))
}

/// The request id these endpoints' own records carry (they sit outside the `/fhir` middleware).
async fn add_context(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    request.extensions_mut().insert(RequestContext {
        request_id: std::sync::Arc::from(uuid::Uuid::new_v4().to_string()),
        source_address: None,
    });
    next.run(request).await
}

fn require_auditor(caller: &Caller) -> Result<(), ApiError> {
    let hoperat = caller
        .user
        .as_ref()
        .is_some_and(|u| u.purpose == PurposeOfUse::Hoperat);
    if caller.principal.kind == PrincipalKind::Auditor && hoperat {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the access log is for auditor principals acting with purpose of use HOPERAT".into(),
        ))
    }
}

/// Reading the log is itself logged (on the access chain, before the answer goes out).
async fn log_use(state: &AppState, acting: &Acting, record: AuditRecord) -> Result<(), ApiError> {
    crate::audit::log(state.store.as_ref(), &acting.actor, &record).await
}

fn param(raw: &Option<String>, name: &str) -> Option<String> {
    query_pairs(raw.as_deref())
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn instant_ms(raw: &Option<String>, name: &str, default: i64) -> Result<i64, ApiError> {
    match param(raw, name) {
        None => Ok(default),
        Some(v) => {
            // A date means its first instant (UTC); an instant is taken as given.
            let ts = match v.parse::<jiff::Timestamp>() {
                Ok(ts) => Some(ts),
                Err(_) => v
                    .parse::<jiff::civil::Date>()
                    .ok()
                    .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                    .map(|z| z.timestamp()),
            };
            ts.map(|ts| ts.as_millisecond()).ok_or_else(|| {
                ApiError::BadRequest(format!("{name} '{v}' is not a date or an instant"))
            })
        }
    }
}

/// `from` and `to` (dates or instants) as epoch milliseconds, open-ended when absent.
fn period(raw: &Option<String>) -> Result<(i64, i64), ApiError> {
    Ok((
        instant_ms(raw, "from", 0)?,
        instant_ms(raw, "to", i64::MAX)?,
    ))
}

fn number<T: std::str::FromStr>(
    raw: &Option<String>,
    name: &str,
    default: T,
) -> Result<T, ApiError> {
    match param(raw, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("{name} '{v}' is not a number"))),
    }
}

/// `GET /audit/verify`: walks both hash chains and checks them against the signed checkpoints:
/// `{"records": n, "checkpoints": k, "intact": true}` or the first record affected.
async fn verify(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    require_auditor(caller)?;
    let report = state.store.verify_audit(&acting.actor).await?;
    let mut record = rc.record(caller, Action::Execute, "verify");
    record.query = Some(format!(
        "records={}&intact={}",
        report.records,
        report.first_broken.is_none()
    ));
    log_use(&state, &acting, record).await?;
    let body = json!({
        "records": report.records,
        "checkpoints": report.checkpoints,
        "intact": report.first_broken.is_none(),
        "firstBroken": report.first_broken,
    });
    Ok(respond::json_response(StatusCode::OK, body.to_string()))
}

/// `GET /audit/extract?patient=<personnummer>` (or `system|value`): the patient's log extract (loggutdrag,
/// PDL 8 kap. 5 §): which care units of which principals accessed the record, when, how and why. Staff are
/// named by role only.
async fn extract(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    require_auditor(caller)?;
    let wanted = param(&raw, "patient").ok_or_else(|| {
        ApiError::BadRequest("patient=<personnummer> (or system|value) is required".into())
    })?;
    let token = if wanted.contains('|') {
        wanted.clone()
    } else {
        format!("{}|{wanted}", crate::domain::PERSONNUMMER_SYSTEM)
    };
    let query = parse_query(
        &state.fhir.params,
        "Patient",
        &[("identifier".to_owned(), token)],
        false,
    )
    .map_err(|_| ApiError::BadRequest(format!("'{wanted}' is not an identifier")))?;
    // The auditor looks the patient up as navet: the extract covers the whole record, whoever owns it.
    let page = state
        .store
        .search(&Actor::system(), "Patient", query, 0, 2)
        .await?;
    let patient = match page.matches.as_slice() {
        [one] => format!("Patient/{}", one.id),
        [] => return Err(ApiError::NotFound("no Patient has that identifier".into())),
        _ => {
            return Err(ApiError::PreconditionFailed(
                "the identifier names more than one Patient".into(),
            ));
        }
    };
    let events = state
        .store
        .audit_for_patient(&acting.actor, &patient)
        .await?;
    let accesses: Vec<Value> = events
        .iter()
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .map(|e| extract_line(&e))
        .collect();
    let mut record = rc.record(caller, Action::Read, "extract");
    record.add_patient(patient.clone());
    log_use(&state, &acting, record).await?;
    let body = json!({"patient": patient, "identifier": wanted, "accesses": accesses});
    Ok(respond::json_response(StatusCode::OK, body.to_string()))
}

/// One line of a log extract, from an AuditEvent navet wrote.
fn extract_line(e: &Value) -> Value {
    let agents = e["agent"].as_array().cloned().unwrap_or_default();
    let user = agents
        .iter()
        .find(|a| a["requestor"] == true && a["location"].is_object());
    let principal = agents
        .iter()
        .find(|a| a["type"]["coding"][0]["code"] == "datacollector")
        .map(|a| json!({"hsaId": a["who"]["identifier"]["value"], "name": a["who"]["display"]}));
    json!({
        "recorded": e["recorded"],
        "action": e["action"],
        "operation": e["subtype"][0]["code"],
        "outcome": e["outcome"],
        "principal": principal,
        "careUnit": user.map(|u| u["location"]["identifier"]["value"].clone()),
        "role": user.map(|u| u["role"][0]["coding"][0]["code"].clone()),
        "purpose": e["purposeOfEvent"][0]["coding"][0]["code"],
    })
}

/// `GET /audit/sample?from=&to=&n=50&seed=`: a reproducible random sample of the period's accesses for the
/// systematic log check, weighted toward emergency access (`ETREAT`, weight 4) and refused accesses (weight 2:
/// trying records one has no part in ends as a refusal). The same log, period, n and seed give the same sample.
async fn sample(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    require_auditor(caller)?;
    let (from, to) = period(&raw)?;
    let n: usize = number(&raw, "n", 50)?.min(MAX_SAMPLE);
    let seed: u64 = number(&raw, "seed", 0)?;
    let actor = acting.actor.clone();
    // Weighted sampling without replacement (Efraimidis–Spirakis): key = u^(1/w), keep the n largest keys.
    let mut rng = SplitMix64(seed);
    let mut chosen: BTreeMap<(u64, i64), String> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = state
            .store
            .audit_page(&actor, from, to, after, EXPORT_PAGE)
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (seq, json) in page {
            let weight = access_weight(&json);
            let u = rng.next_unit();
            let key = u.powf(1.0 / weight);
            // Ordered by key (as integer bits of a positive float, which order like the floats), then seq.
            chosen.insert((key.to_bits(), seq), json);
            if chosen.len() > n {
                chosen.pop_first();
            }
        }
    }
    let sample: Vec<Value> = chosen
        .into_values()
        .rev()
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect();
    log_use(&state, &acting, rc.record(caller, Action::Read, "sample")).await?;
    let body = json!({"from": from, "to": to, "n": n, "seed": seed, "sample": sample});
    Ok(respond::json_response(StatusCode::OK, body.to_string()))
}

fn access_weight(json: &str) -> f64 {
    if json.contains(r#""code":"ETREAT""#) {
        4.0
    } else if json.contains(r#""outcome":"4""#) {
        2.0
    } else {
        1.0
    }
}

/// A small deterministic generator (SplitMix64, Steele et al. 2014): a sample must be reproducible from its
/// seed on any machine and any navet version, which a library's default RNG does not promise.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// `GET /audit/export?from=&to=`: the period's records as NDJSON (one AuditEvent per line, chain order), read
/// and sent a page at a time, for an external log-analysis tool.
async fn export(
    State(state): State<AppState>,
    acting: Acting,
    Extension(rc): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    require_auditor(caller)?;
    let (from, to) = period(&raw)?;
    log_use(
        &state,
        &acting,
        rc.record(caller, Action::Execute, "export"),
    )
    .await?;
    let actor = acting.actor.clone();
    let store = state.store.clone();
    let stream = futures_util::stream::unfold(Some(0i64), move |after| {
        let (store, actor) = (store.clone(), actor.clone());
        async move {
            let after = after?;
            match store.audit_page(&actor, from, to, after, EXPORT_PAGE).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|(seq, _)| *seq);
                    let mut chunk = String::new();
                    for (_, json) in page {
                        chunk.push_str(&json);
                        chunk.push('\n');
                    }
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), next))
                }
                // The status line is already sent: end the stream with an error so the client sees a broken
                // transfer rather than a silently short export.
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// `GET /fhir/AuditEvent/{id}`: one record's AuditEvent view (the caller was authorized for the log).
pub async fn read_event(
    state: &AppState,
    acting: &Acting,
    rc: &RequestContext,
    actor: &Actor,
    id: &str,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    let found = match crate::audit::chain::Chain::parse_id(id) {
        None => None,
        Some(key) => {
            let query = crate::audit::query::AuditQuery {
                ids: Some(vec![key]),
                ..Default::default()
            };
            let page = state.store.audit_search(actor, query, 0, 1, false).await?;
            page.events.into_iter().next()
        }
    };
    let event =
        found.ok_or_else(|| ApiError::NotFound(format!("AuditEvent/{id} does not exist")))?;
    let mut record = rc.record(caller, Action::Read, "read");
    note_event(&mut record, &event);
    let mut response = respond::json_response(StatusCode::OK, event.json);
    response.headers_mut().insert(
        axum::http::header::ETAG,
        HeaderValue::from_static("W/\"1\""),
    );
    Ok(crate::http::fhir::with_note(response, "AuditEvent", record))
}

/// An offset cursor for AuditEvent pages (the log only grows at its end, so an offset from the oldest record
/// neither skips nor repeats as records are added).
fn cursor_text(offset: usize) -> String {
    tagged_cursor('a', offset)
}

fn cursor_offset(text: &str) -> Result<usize, ApiError> {
    untag_cursor('a', text)
}

/// A page cursor of the auditor's views: a tag (which kind of page) and a number, base64url. Auditors may read
/// the whole log, so a forged cursor shows nothing they could not read; it only has to parse or be refused.
fn tagged_cursor(tag: char, n: impl std::fmt::Display) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{tag}{n}"))
}

fn untag_cursor<T: std::str::FromStr>(tag: char, text: &str) -> Result<T, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(tag).and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "_cursor is not one navet issued; follow the Bundle's links".into(),
            )
        })
}

/// `GET /fhir/AuditEvent?…`: a searchset answered exactly from the auditor indexes, or a refusal.
pub async fn search_events(
    state: &AppState,
    acting: &Acting,
    rc: &RequestContext,
    actor: &Actor,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = &acting.caller;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let count = match get("_count") {
        None => crate::http::search::DEFAULT_COUNT,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::BadRequest(format!("_count '{v}' is not a number")))?
            .min(crate::http::search::MAX_COUNT),
    };
    let offset = get("_cursor").map(cursor_offset).transpose()?.unwrap_or(0);
    let total = match get("_total") {
        None | Some("none") => false,
        Some("accurate") | Some("estimate") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "_total '{other}' is not none, estimate or accurate"
            )));
        }
    };
    let unresolved = crate::audit::query::parse(&pairs)?;
    let query =
        crate::audit::query::resolve(state.store.as_ref(), &state.fhir.params, unresolved).await?;
    let page = state
        .store
        .audit_search(actor, query, offset, count, total)
        .await?;
    let base = format!("{}/AuditEvent", state.fhir_base());
    let mut links = vec![respond::Link {
        relation: "self",
        url: respond::page_url(
            &base,
            &pairs,
            (offset > 0).then(|| cursor_text(offset)).as_deref(),
        ),
    }];
    if page.has_more {
        links.push(respond::Link {
            relation: "next",
            url: respond::page_url(&base, &pairs, Some(&cursor_text(offset + count))),
        });
    }
    let mut bundle = respond::BundleText::new("searchset", page.total, &links);
    let mut record = rc.record(caller, Action::Read, "search-type");
    record.query = Some(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .finish(),
    );
    for event in page.events {
        let full_url = format!("{base}/{}", event.id);
        note_event(&mut record, &event);
        bundle.entry(
            Some(&full_url),
            Some(&crate::fhir::protected::Outgoing::navet_made(event.json)),
            &[("search", json!({"mode": "match"}))],
        );
    }
    Ok(crate::http::fhir::with_note(
        respond::json_response(StatusCode::OK, bundle.finish()),
        "AuditEvent",
        record,
    ))
}

/// What the access-log record of an auditor's read says of one AuditEvent served: the record (its one
/// version) and the patients it names.
fn note_event(record: &mut AuditRecord, event: &crate::store::LoggedEvent) {
    record
        .entities
        .push(format!("AuditEvent/{}/_history/1", event.id));
    event
        .patients
        .iter()
        .for_each(|p| record.add_patient(p.clone()));
}

/// A history page's cursor: the recorded time (µs) of the last record given; the next page lists the records
/// recorded before it.
fn history_cursor_text(before_us: i64) -> String {
    tagged_cursor('h', before_us)
}

fn history_cursor(text: &str) -> Result<i64, ApiError> {
    untag_cursor('h', text)
}

/// `GET /fhir/AuditEvent/_history` and `GET /fhir/AuditEvent/{id}/_history` (FHIR R4 §3.1.0.9) for auditors.
/// A record is never changed or deleted, so an instance's history is its one version, created when it was
/// recorded; the type's history is the log itself, newest first, answered from the auditor indexes. Pages are
/// bounded by recorded time, which is unique per record and only grows along the log, so records added while
/// an auditor pages (their own reads of the log among them) neither shift nor repeat what the next page shows.
pub async fn history_events(
    state: &AppState,
    acting: &Acting,
    rc: &RequestContext,
    id: Option<&str>,
    pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let mut count = crate::http::search::DEFAULT_COUNT;
    let mut query = crate::audit::query::AuditQuery {
        newest_first: true,
        ..Default::default()
    };
    for (k, v) in &pairs {
        match k.as_str() {
            "_count" => {
                count = v
                    .parse::<usize>()
                    .map_err(|_| ApiError::BadRequest(format!("_count '{v}' is not a number")))?
                    .clamp(1, crate::http::search::MAX_COUNT)
            }
            "_since" => {
                let ts: jiff::Timestamp = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("_since '{v}' is not an instant")))?;
                query.from_us = Some(ts.as_microsecond());
            }
            "_cursor" => query.to_us = Some(history_cursor(v)?),
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "'{other}' is not a history parameter (supported: _count, _since, _cursor)"
                )));
            }
        }
    }
    if let Some(id) = id {
        // An id that is no record's names nothing: 404, as for a read.
        let key = crate::audit::chain::Chain::parse_id(id)
            .ok_or_else(|| ApiError::NotFound(format!("AuditEvent/{id} does not exist")))?;
        let exists = crate::audit::query::AuditQuery {
            ids: Some(vec![key]),
            ..Default::default()
        };
        if state
            .store
            .audit_search(&acting.actor, exists, 0, 1, false)
            .await?
            .events
            .is_empty()
        {
            return Err(ApiError::NotFound(format!(
                "AuditEvent/{id} does not exist"
            )));
        }
        query.ids = Some(vec![key]);
    }
    let page = state
        .store
        .audit_search(&acting.actor, query, 0, count, false)
        .await?;
    let base = match id {
        Some(id) => format!("{}/AuditEvent/{id}/_history", state.fhir_base()),
        None => format!("{}/AuditEvent/_history", state.fhir_base()),
    };
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let mut links = vec![respond::Link {
        relation: "self",
        url: respond::page_url(&base, &pairs, cursor),
    }];
    if page.has_more
        && let Some(last) = page.events.last()
    {
        links.push(respond::Link {
            relation: "next",
            url: respond::page_url(&base, &pairs, Some(&history_cursor_text(last.recorded_us))),
        });
    }
    let mut bundle = respond::BundleText::new("history", None, &links);
    let operation = if id.is_some() {
        "history-instance"
    } else {
        "history-type"
    };
    let mut record = rc.record(&acting.caller, Action::Read, operation);
    record.query = Some(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .finish(),
    );
    for event in page.events {
        note_event(&mut record, &event);
        let recorded = crate::store::sqlite::format_instant(event.recorded_us.div_euclid(1000));
        bundle.entry(
            Some(&format!("{}/AuditEvent/{}", state.fhir_base(), event.id)),
            Some(&crate::fhir::protected::Outgoing::navet_made(event.json)),
            &[
                ("request", json!({"method": "POST", "url": "AuditEvent"})),
                (
                    "response",
                    json!({"status": "201 Created", "etag": "W/\"1\"", "lastModified": recorded}),
                ),
            ],
        );
    }
    Ok(crate::http::fhir::with_note(
        respond::json_response(StatusCode::OK, bundle.finish()),
        "AuditEvent",
        record,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_reproducible_and_in_range() {
        let a: Vec<f64> = {
            let mut r = SplitMix64(42);
            (0..100).map(|_| r.next_unit()).collect()
        };
        let mut r = SplitMix64(42);
        let b: Vec<f64> = (0..100).map(|_| r.next_unit()).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|u| *u > 0.0 && *u <= 1.0));
        assert_ne!(SplitMix64(1).next_u64(), SplitMix64(2).next_u64());
    }

    proptest::proptest! {
        /// The page cursors come back from the network: any text is a number navet issued or a 400, never a
        /// panic; what navet issues reads back as itself, and one kind of cursor is not taken for the other.
        #[test]
        fn cursors_read_back_what_was_issued_and_refuse_anything_else(
            text in ".{0,40}", offset in proptest::prelude::any::<usize>(), before in proptest::prelude::any::<i64>()
        ) {
            let _ = cursor_offset(&text);
            let _ = history_cursor(&text);
            proptest::prop_assert_eq!(cursor_offset(&cursor_text(offset)).ok(), Some(offset));
            proptest::prop_assert_eq!(history_cursor(&history_cursor_text(before)).ok(), Some(before));
            proptest::prop_assert!(history_cursor(&cursor_text(offset)).is_err());
            proptest::prop_assert!(cursor_offset(&history_cursor_text(before)).is_err());
        }
    }
}
