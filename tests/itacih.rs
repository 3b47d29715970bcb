//! The itACiH link (spec/itacih.md v2) against the simulator: visits delivered exactly once and in order per
//! patient through outages and crashes; the feed applied once however its pages come; dead letters for what
//! cannot be applied.

mod common;
mod ordination_common;

use std::time::Duration;

use navet::itacih::Link;
use navet::itacih::sim::{self, Mode, Shared};
use navet::store::Actor;
use navet::store::outbox::{MessageStatus, OutboxFilter};
use ordination_common::*;
use serde_json::{Value, json};

struct Setup {
    app: common::TestApp,
    sim: Shared,
    link: Link,
}

async fn setup() -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: reqwest::Url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let sim = sim::spawn(listener);
    let care = navet::caremap::CareMap::demo();
    let link = Link::for_tests(url, &care);
    let l = link.clone();
    let app = common::spawn_with(true, move |s| {
        s.ordination = std::sync::Arc::new(navet::ordination::Ordination {
            rules: navet::ordination::rules::Rules::embedded(),
            care,
            itacih: Some(l),
            care_map_configured: false,
        });
    })
    .await;
    Setup { app, sim, link }
}

fn mode(sim: &Shared, m: Mode) {
    sim.lock().unwrap().mode = m;
}

fn received(sim: &Shared) -> Vec<sim::Insats> {
    sim.lock().unwrap().insatser.clone()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn wait_delivered(app: &common::TestApp) {
    for _ in 0..200 {
        if outbox(app, "itacih")
            .await
            .iter()
            .all(|r| r.status == MessageStatus::Delivered)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until the outbox has delivered everything");
}

async fn outbox(
    app: &common::TestApp,
    destination: &str,
) -> Vec<navet::store::outbox::OutboxMessage> {
    app.state
        .store
        .outbox_list(
            &Actor::system(),
            OutboxFilter {
                status: None,
                destination: Some(destination.into()),
                after_seq: 0,
                limit: 1000,
            },
        )
        .await
        .unwrap()
}

async fn count(app: &common::TestApp, ty: &str) -> Vec<Value> {
    let page = app
        .state
        .store
        .search(&Actor::system(), ty, Default::default(), 0, 1000)
        .await
        .unwrap();
    page.matches
        .iter()
        .map(|v| serde_json::from_str(v.json.as_deref().unwrap()).unwrap())
        .collect()
}

/// Two patients' orders: Tolvan in Kristianstad (6 visits), Karl in Ystad (4 visits).
async fn two_orders(s: &Setup) -> (String, String) {
    let csk = hospital(&s.app).await;
    let (st, a) = post_bundle(
        &csk,
        &s.app,
        &Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-25", "it-1").bundle(),
    )
    .await;
    assert_eq!(st, 200, "{a}");
    let (st, b) = post_bundle(
        &csk,
        &s.app,
        &Order::antibiotics(KARL, 4, "2026-11-24", "2026-11-24", "it-2").bundle(),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    (order_id(&a), order_id(&b))
}

/// Per patient, the planned starts in the order itACiH first received them.
fn arrival_per_patient(got: &[sim::Insats]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for i in got {
        let p = i.body["patient"]["personnummer"]
            .as_str()
            .unwrap()
            .to_owned();
        let start = i.body["planeradStart"].as_str().unwrap().to_owned();
        match out.iter_mut().find(|(q, _)| *q == p) {
            Some((_, v)) => v.push(start),
            None => out.push((p, vec![start])),
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn itacih_down_then_back_gets_every_visit_exactly_once_in_order_per_patient() {
    let s = setup().await;
    mode(
        &s.sim,
        Mode {
            down: true,
            ..Mode::default()
        },
    );
    two_orders(&s).await;
    assert_eq!(
        outbox(&s.app, "itacih").await.len(),
        10,
        "enqueued with the orders"
    );
    let running = navet::itacih::push::start(
        s.app.state.store.clone(),
        s.app.state.fhir.clone(),
        s.link.clone(),
    )
    .await
    .unwrap();
    // Down: attempts fail and are retried (the simulated outage stands for the spec's 30 minutes).
    for _ in 0..100 {
        let rows = outbox(&s.app, "itacih").await;
        if rows.iter().any(|r| r.attempts >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(received(&s.sim).is_empty());
    assert!(
        outbox(&s.app, "itacih")
            .await
            .iter()
            .all(|r| r.status == MessageStatus::Pending)
    );
    // Some 500s on the way back too.
    mode(
        &s.sim,
        Mode {
            fail_next: 3,
            ..Mode::default()
        },
    );
    wait_until("all ten are delivered", || received(&s.sim).len() == 10).await;
    wait_delivered(&s.app).await;
    let got = received(&s.sim);
    assert!(
        got.iter().all(|i| i.posts == 1),
        "exactly once: {:?}",
        got.iter().map(|i| i.posts).collect::<Vec<_>>()
    );
    for (patient, starts) in arrival_per_patient(&got) {
        let mut sorted = starts.clone();
        sorted.sort();
        assert_eq!(starts, sorted, "in order for {patient}");
    }
    // The contract's fields, from mappings/itacih/.
    let first = got
        .iter()
        .find(|i| {
            i.body["planeradStart"] == "2026-11-24T08:00:00+01:00"
                && i.body["enhet"] == "MTN-KRISTIANSTAD"
        })
        .unwrap();
    assert_eq!(first.body["typ"], "PUNKTINSATS");
    assert_eq!(first.body["kategori"], "IV_ANTIBIOTIKA");
    assert_eq!(first.body["planeradSlut"], "2026-11-24T08:45:00+01:00");
    assert_eq!(first.body["personalkategori"], "SSK");
    assert_eq!(first.body["remittent"], "SJUKHUS");
    assert_eq!(first.body["kontaktorsak"], "INFEKTION_FEBER");
    assert_eq!(
        first.body["ordination"],
        json!({"lakemedel": "Piperacillin/Tazobactam", "dos": "4 g", "vag": "IV", "ordinator": CSK_DOCTOR})
    );
    assert_eq!(first.body["anteckning"], "Dos 1 av 3 idag");
    assert!(first.externt_id.starts_with("navet:Task/") && first.externt_id.ends_with("/visit/1"));
    running.stop().await;
}

#[tokio::test]
async fn navet_killed_during_delivery_loses_and_doubles_nothing() {
    let s = setup().await;
    mode(
        &s.sim,
        Mode {
            slow_ms: 400,
            ..Mode::default()
        },
    );
    two_orders(&s).await;
    let running = navet::itacih::push::start(
        s.app.state.store.clone(),
        s.app.state.fhir.clone(),
        s.link.clone(),
    )
    .await
    .unwrap();
    // Killed while the first deliveries are in flight (received by itACiH, not yet recorded by navet).
    wait_until("itACiH has received some", || !received(&s.sim).is_empty()).await;
    running.abort();
    let before = received(&s.sim).len();
    assert!(before < 10, "killed mid-way");
    mode(&s.sim, Mode::default());
    let running = navet::itacih::push::start(
        s.app.state.store.clone(),
        s.app.state.fhir.clone(),
        s.link.clone(),
    )
    .await
    .unwrap();
    wait_delivered(&s.app).await;
    let got = received(&s.sim);
    assert_eq!(
        got.len(),
        10,
        "none lost, none doubled (a repeat of an externtId is recognised)"
    );
    let mut ids: Vec<&str> = got.iter().map(|i| i.externt_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    for (patient, starts) in arrival_per_patient(&got) {
        let mut sorted = starts.clone();
        sorted.sort();
        assert_eq!(starts, sorted, "in order for {patient}");
    }
    running.stop().await;
}

#[tokio::test]
async fn the_feed_is_applied_once_however_its_pages_come_and_unknown_patients_are_dead_letters() {
    let s = setup().await;
    let (tolvan_order, karl_order) = two_orders(&s).await;
    let running = navet::itacih::push::start(
        s.app.state.store.clone(),
        s.app.state.fhir.clone(),
        s.link.clone(),
    )
    .await
    .unwrap();
    wait_until("all ten are delivered", || received(&s.sim).len() == 10).await;
    // Duplicate and out-of-order pages from now on.
    mode(
        &s.sim,
        Mode {
            duplicate_pages: true,
            out_of_order: true,
            ..Mode::default()
        },
    );
    // Tolvan: enrolled, all six visits done. Karl: the first dose cancelled. And a patient navet does not know.
    sim::push_events(
        &s.sim,
        vec![json!({
            "typ": "INSKRIVNING", "kontaktId": "it-k-1", "patient": {"personnummer": TOLVAN}, "enhet": "MTN-KRISTIANSTAD",
            "tid": "2026-11-24T07:30:00+01:00", "uppdrag": "MTN", "remittent": "SJUKHUS", "kontaktorsak": null
        })],
    );
    for i in received(&s.sim) {
        if i.body["patient"]["personnummer"] == TOLVAN {
            sim::performed(&s.sim, &i.externt_id, "BESOK_UTFORT", "it-k-1").unwrap();
        }
    }
    let karl_first = received(&s.sim)
        .into_iter()
        .find(|i| i.externt_id == format!("navet:Task/{karl_order}-v1/visit/1"))
        .unwrap();
    sim::performed(&s.sim, &karl_first.externt_id, "BESOK_INSTALLT", "it-k-2").unwrap();
    sim::push_events(
        &s.sim,
        vec![json!({
            "typ": "BESOK_UTFORT", "kontaktId": "it-k-9", "patient": {"personnummer": "195001012383"},
            "enhet": "MTN-KRISTIANSTAD", "tid": "2026-11-24T09:00:00+01:00", "besokstyp": "HEMBESOK"
        })],
    );
    let expect_encounters = 6 + 1;
    for _ in 0..200 {
        if count(&s.app, "Encounter").await.len() >= expect_encounters
            && !outbox(&s.app, "itacih-feed").await.is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more polls of duplicated pages change nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    running.stop().await;
    let encounters = count(&s.app, "Encounter").await;
    assert_eq!(encounters.len(), expect_encounters, "each event once");
    let done: Vec<&Value> = encounters
        .iter()
        .filter(|e| e["status"] == "finished")
        .collect();
    assert_eq!(done.len(), 6);
    for e in &done {
        assert_eq!(e["class"]["code"], "HH");
        let owner = e["meta"]["tag"][0]["code"].as_str().unwrap();
        assert!(
            owner == "SE2321000255-MTN01" || owner == "SE2321000255-ASIH1",
            "owned by the team: {owner}"
        );
    }
    assert_eq!(count(&s.app, "MedicationAdministration").await.len(), 6);
    let episodes = count(&s.app, "EpisodeOfCare").await;
    let k1 = episodes
        .iter()
        .find(|e| e["identifier"][0]["value"] == "it-k-1")
        .expect("the enrolment");
    assert_eq!(k1["status"], "active");
    assert_eq!(k1["type"][0]["coding"][0]["code"], "MTN");
    // null kontaktorsak is "not given", not ANNAN.
    let orsak = k1["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("itacih-kontaktorsak"))
        .unwrap();
    assert!(orsak["valueCodeableConcept"].get("coding").is_none());
    assert_eq!(
        orsak["valueCodeableConcept"]["extension"][0]["valueCode"],
        "unknown"
    );
    // Tolvan's order is complete; Karl's cancelled dose raised a DetectedIssue and went back to the planner.
    let sr = count(&s.app, "ServiceRequest").await;
    let tolvan_sr = sr
        .iter()
        .find(|r| r["id"] == tolvan_order.as_str())
        .unwrap();
    assert_eq!(tolvan_sr["status"], "completed");
    let issues = count(&s.app, "DetectedIssue").await;
    assert_eq!(issues.len(), 1);
    assert_eq!(
        issues[0]["meta"]["tag"][0]["code"], "SE2321000255-CSK01",
        "for the orderer"
    );
    let tasks = count(&s.app, "Task").await;
    let karl_task = tasks
        .iter()
        .find(|t| t["id"] == format!("{karl_order}-v1"))
        .unwrap();
    assert_eq!(karl_task["status"], "requested");
    assert_eq!(
        karl_task["owner"]["identifier"]["value"], "SE2321000255-ASIH1",
        "back to Ystad's coordinator"
    );
    // The unknown patient is a dead letter, visible to admins.
    let dead = outbox(&s.app, "itacih-feed").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].status, MessageStatus::Dead);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("unknown patient")
    );

    // A restart that is served every page again from the start applies nothing twice.
    s.app
        .state
        .store
        .transact(&Actor::system(), |tx| {
            Ok(tx.set_setting(navet::itacih::feed::CURSOR_KEY, "0")?)
        })
        .await
        .unwrap();
    mode(&s.sim, Mode::default());
    let running = navet::itacih::push::start(
        s.app.state.store.clone(),
        s.app.state.fhir.clone(),
        s.link.clone(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(count(&s.app, "Encounter").await.len(), expect_encounters);
    assert_eq!(count(&s.app, "MedicationAdministration").await.len(), 6);
    assert_eq!(outbox(&s.app, "itacih-feed").await.len(), 1);
}

#[tokio::test]
async fn revoking_an_order_cancels_its_visits_at_itacih() {
    let s = setup().await;
    let csk = hospital(&s.app).await;
    let (st, a) = post_bundle(
        &csk,
        &s.app,
        &Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-24", "it-r").bundle(),
    )
    .await;
    assert_eq!(st, 200);
    let sr_id = order_id(&a);
    let running = navet::itacih::push::start(
        s.app.state.store.clone(),
        s.app.state.fhir.clone(),
        s.link.clone(),
    )
    .await
    .unwrap();
    wait_until("three are delivered", || received(&s.sim).len() == 3).await;
    let mut sr = common::json(
        csk.get(format!("{}/ServiceRequest/{sr_id}", s.app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    sr["status"] = json!("revoked");
    let r = csk
        .put(format!("{}/ServiceRequest/{sr_id}", s.app.fhir))
        .header("content-type", common::FHIR_JSON)
        .body(sr.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("itACiH has them cancelled", || {
        received(&s.sim).iter().all(|i| i.status == "MAKULERAD")
    })
    .await;
    running.stop().await;
    assert_eq!(received(&s.sim).len(), 3);
}
