//! What happened, from itACiH's event feed (spec/itacih.md v2 "Inbound"): navet polls
//! `GET {base}/api/v1/handelser?efter={cursor}&max=100`, translates each event into FHIR and commits the page's
//! resources, its dead letters and the new cursor in ONE transaction, so a restart resumes where it stopped.
//! Each event's `sekvens` is also remembered in that transaction, so a page served twice (or out of order)
//! applies nothing twice.
//!
//! Translations, every resource owned by the team's principal (the event's `enhet`):
//! - every event: its `kontaktId` is the EpisodeOfCare it belongs to (found or created);
//! - `INSKRIVNING` / `UTSKRIVNING`: the EpisodeOfCare starts / ends, with `uppdrag`, the referrer (`remittent`,
//!   `remittentHsaId`, `remittentKommun`), `kontaktorsak`, and `vidare` as the discharge disposition; the
//!   listed vårdcentral and the referrer get a Communication (an ambulance or läkarbil gets the outcome);
//! - `BESOK_UTFORT`: Encounter (class HH, finished, participants by staff category, reasonCode from
//!   kontaktorsak, location type from boende); for a planned visit its Task completes and, for a dose, a
//!   MedicationAdministration records it; the order completes after its last visit;
//! - `BESOK_INSTALLT`: Encounter cancelled; the Task goes back to the planner and a DetectedIssue (with a
//!   Communication to the orderer and the principal with medical responsibility) says a dose was missed;
//! - `TELEFONKONTAKT`: Encounter (class VR).
//!
//! A value given as `null` is recorded as not given (data-absent-reason), never as `ANNAN`. An event for an
//! unknown patient, unit or visit is a dead letter (`/admin/outbox?destination=itacih-feed`); the rest of the
//! page is applied.
//!
//! This file polls, pages and keeps the cursor; `translate` holds the translation of one event into FHIR
//! writes, the part that changes when the mapping does.

mod translate;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

use super::{FEED_DEAD_LETTERS, Link};
use crate::error::ApiError;
use crate::fhir::FhirContext;
use crate::store::outbox::{AttemptOutcome, ClaimRequest, NewMessage};
use crate::store::{Actor, Store, WriteTx};
use translate::apply_event;

/// The setting holding the feed cursor (the last `nasta` committed).
pub const CURSOR_KEY: &str = "itacih_feed_cursor";
/// Events remembered as applied (`remember_once` scope).
const APPLIED_SCOPE: &str = "itacih-event";
/// Unique-key scope mapping a `kontaktId` to its EpisodeOfCare.
const KONTAKT_SCOPE: &str = "itacih-kontakt";
/// The largest feed page navet reads.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// At most this many events per page are looked at (the request asks for 100).
const MAX_EVENTS: usize = 1000;
pub const PAGE_SIZE: u32 = 100;
const DAR: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";

/// One feed page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<Value>,
    pub nasta: i64,
}

/// Parses a feed page; anything unexpected is an error (never a panic).
pub fn parse_page(bytes: &[u8], link: &Link) -> Result<Page, String> {
    if bytes.len() > MAX_PAGE_BYTES {
        return Err(format!("the page is larger than {MAX_PAGE_BYTES} bytes"));
    }
    let f = &link.mapping.fields.inbound;
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the page is not JSON: {e}"))?;
    let events = v
        .get(&f.handelser)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the page has no '{}' list", f.handelser))?;
    if events.len() > MAX_EVENTS {
        return Err(format!("the page has more than {MAX_EVENTS} events"));
    }
    let nasta = match v.get(&f.nasta) {
        Some(n) => n
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("'{}' is not a sequence number", f.nasta))?,
        None => 0,
    };
    Ok(Page {
        events: events.clone(),
        nasta,
    })
}

/// Why an event is a dead letter.
#[derive(Debug)]
enum Unusable {
    Dead(String),
    Api(ApiError),
}

impl From<ApiError> for Unusable {
    fn from(e: ApiError) -> Self {
        Unusable::Api(e)
    }
}

impl From<crate::store::StoreError> for Unusable {
    fn from(e: crate::store::StoreError) -> Self {
        Unusable::Api(e.into())
    }
}

fn dead(reason: impl Into<String>) -> Unusable {
    Unusable::Dead(reason.into())
}

/// What applying a page did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The cursor moved forward.
    pub moved: bool,
    pub applied: usize,
    pub skipped: usize,
    pub dead: usize,
}

/// Applies a page in the transaction, with the cursor.
pub fn apply_page(
    ctx: &FhirContext,
    link: &Link,
    tx: &mut dyn WriteTx,
    page: &Page,
) -> Result<Applied, ApiError> {
    let f = &link.mapping.fields.inbound;
    let mut out = Applied::default();
    let before = tx
        .setting(CURSOR_KEY)?
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or(0);
    let mut highest = before;
    for event in &page.events {
        let Some(seq) = event.get(&f.sekvens).and_then(Value::as_i64) else {
            dead_letter(
                tx,
                &format!("no-sekvens-{}", uuid::Uuid::new_v4()),
                event,
                "the event has no sekvens",
            )?;
            out.dead += 1;
            continue;
        };
        highest = highest.max(seq);
        if !tx.remember_once(APPLIED_SCOPE, &seq.to_string(), i64::MAX / 2)? {
            out.skipped += 1;
            continue;
        }
        match apply_event(ctx, link, tx, event) {
            Ok(()) => out.applied += 1,
            Err(Unusable::Dead(reason)) => {
                dead_letter(tx, &format!("itacih-event-{seq}"), event, &reason)?;
                out.dead += 1;
            }
            Err(Unusable::Api(e)) => return Err(e),
        }
    }
    let cursor = highest.max(page.nasta);
    out.moved = cursor > before;
    tx.set_setting(CURSOR_KEY, &cursor.to_string())?;
    Ok(out)
}

fn dead_letter(
    tx: &mut dyn WriteTx,
    id: &str,
    event: &Value,
    reason: &str,
) -> Result<(), ApiError> {
    tx.enqueue(NewMessage {
        id: id.to_owned(),
        destination: FEED_DEAD_LETTERS.into(),
        patient: None,
        content_type: "application/json".into(),
        payload: event.to_string(),
        headers: Vec::new(),
    })?;
    tx.outbox_record(
        id,
        &AttemptOutcome::Dead {
            error: reason.to_owned(),
        },
    )?;
    tracing::warn!(dead_letter = %id, reason, "an itACiH event could not be applied");
    Ok(())
}

/// Fetches the page after `cursor`.
pub async fn fetch(http: &reqwest::Client, link: &Link, cursor: i64) -> Result<Page, String> {
    let p = &link.mapping.fields.paths;
    let mut url = link.url(&p.handelser).ok_or("no feed URL")?;
    url.query_pairs_mut()
        .append_pair(&p.efter, &cursor.to_string())
        .append_pair(&p.max, &PAGE_SIZE.to_string());
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the feed answered {}", response.status()));
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(format!("the page is larger than {MAX_PAGE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse_page(&body, link)
}

/// One poll: replayed dead letters first, then the next page. Answers whether there was anything.
pub async fn poll_once(
    http: &reqwest::Client,
    store: &dyn Store,
    ctx: &Arc<FhirContext>,
    link: &Link,
) -> Result<bool, String> {
    let replayed = retry_replayed(store, ctx, link)
        .await
        .map_err(|e| e.to_string())?;
    let cursor = store
        .get_setting(CURSOR_KEY)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|c| c.parse::<i64>().ok())
        .unwrap_or(0);
    let page = fetch(http, link, cursor).await?;
    if page.events.is_empty() {
        return Ok(replayed > 0);
    }
    let (ctx2, link2) = (ctx.clone(), link.clone());
    let applied = store
        .transact(&Actor::system(), move |tx| {
            apply_page(&ctx2, &link2, tx, &page)
        })
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(?applied, "itACiH feed page applied");
    Ok(applied.moved || applied.applied + applied.dead > 0)
}

/// Dead letters an admin replayed (pending rows of `itacih-feed`) are applied again.
async fn retry_replayed(
    store: &dyn Store,
    ctx: &Arc<FhirContext>,
    link: &Link,
) -> Result<usize, ApiError> {
    let request = ClaimRequest {
        destination: FEED_DEAD_LETTERS.into(),
        now_ms: jiff::Timestamp::now().as_millisecond(),
        limit: 50,
        lease_ms: 60_000,
        budget_ms: i64::MAX / 4,
    };
    let claim = store
        .transact(&Actor::system(), move |tx| Ok(tx.outbox_claim(&request)?))
        .await?;
    let n = claim.due.len();
    for m in claim.due {
        let (ctx, link) = (ctx.clone(), link.clone());
        store
            .transact(&Actor::system(), move |tx| {
                let event: Value = serde_json::from_str(&m.payload).unwrap_or(Value::Null);
                let outcome = match apply_event(&ctx, &link, tx, &event) {
                    Ok(()) => AttemptOutcome::Delivered,
                    Err(Unusable::Dead(reason)) => AttemptOutcome::Dead { error: reason },
                    Err(Unusable::Api(e)) => return Err(e),
                };
                tx.outbox_record(&m.id, &outcome)?;
                Ok(())
            })
            .await?;
    }
    Ok(n)
}

/// The poller: polls until stopped, at the link's pace when there is nothing new.
pub async fn run(
    store: Arc<dyn Store>,
    fhir: Arc<FhirContext>,
    link: Link,
    http: reqwest::Client,
    mut stop: watch::Receiver<bool>,
) {
    // The first failure of a run of failures is a warning; the rest are debug (itACiH down for hours must
    // not flood the log).
    let mut failing = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let more = match poll_once(&http, store.as_ref(), &fhir, &link).await {
            Ok(more) => {
                if failing {
                    tracing::info!("the itACiH feed answers again");
                }
                failing = false;
                more
            }
            Err(e) => {
                if failing {
                    tracing::debug!(error = %e, "itACiH feed poll failed; retrying");
                } else {
                    tracing::warn!(error = %e, "itACiH feed poll failed; retrying quietly until it answers");
                }
                failing = true;
                false
            }
        };
        if !more && super::push::sleep_or_stop(link.poll_interval, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::translate::id_from;
    use super::*;
    use crate::fhir::ops;
    use serde_json::json;

    fn link() -> Link {
        Link::for_tests(
            "http://127.0.0.1:1/".parse().unwrap(),
            &crate::caremap::CareMap::demo(),
        )
    }

    #[test]
    fn a_page_is_read_and_a_bad_one_refused() {
        let l = link();
        let p = parse_page(br#"{"handelser": [{"sekvens": 1}], "nasta": 1}"#, &l).unwrap();
        assert_eq!(p.nasta, 1);
        assert_eq!(p.events.len(), 1);
        assert!(parse_page(b"{}", &l).is_err());
        assert!(parse_page(br#"{"handelser": [], "nasta": -3}"#, &l).is_err());
        assert!(parse_page(b"[1,2", &l).is_err());
    }

    #[test]
    fn ids_made_from_itacih_values_are_valid_fhir_ids() {
        for v in ["it-k-5512", "å/ä?ö", "", &"x".repeat(500)] {
            let id = id_from("itacih-k", v);
            assert!(ops::check_id(&id).is_ok(), "{id}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_as_a_feed_page_are_read_or_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_page(&bytes, &link());
        }

        #[test]
        fn any_json_page_shape_is_read_or_refused(nasta in proptest::prelude::any::<i64>(), n in 0usize..5) {
            let events: Vec<Value> = (0..n).map(|i| json!({"sekvens": i})).collect();
            let text = json!({"handelser": events, "nasta": nasta}).to_string();
            let page = parse_page(text.as_bytes(), &link());
            proptest::prop_assert_eq!(page.is_ok(), nasta >= 0);
        }
    }
}
