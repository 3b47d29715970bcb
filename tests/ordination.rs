//! Story 2 (spec/ordination.md v2): a hospital orders a point intervention; navet checks it, plans the visits,
//! creates the work, and answers exactly who sees what.

mod common;
mod ordination_common;

use ordination_common::*;
use serde_json::{Value, json};

const MTN_K: &str = "SE2321000255-MTN01";
const ASIH: &str = "SE2321000255-ASIH1";

async fn tasks_of(client: &reqwest::Client, app: &common::TestApp, order: &str) -> Vec<Value> {
    search_all(
        client,
        &format!(
            "{}/Task?based-on=ServiceRequest/{order}&_count=100",
            app.fhir
        ),
    )
    .await
}

#[tokio::test]
async fn an_order_becomes_a_plan_of_tasks_owned_by_the_performing_teams() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    // Tuesday 24 – Wednesday 25 November 2026, three a day from 08:00, Tolvan in Kristianstad.
    let order = Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-25", "csk-1");
    let (status, answer) = post_bundle(&csk, &app, &order.bundle()).await;
    assert_eq!(status, 200, "{answer}");
    let sr_id = order_id(&answer);
    assert_eq!(answer["entry"][1]["response"]["status"], "201 Created");
    assert!(
        answer["entry"][1]["response"].get("outcome").is_none(),
        "3 a day: no warning"
    );

    let tasks = tasks_of(&csk, &app, &sr_id).await;
    let mut plan: Vec<(String, String)> = tasks
        .iter()
        .map(|t| {
            (
                t["executionPeriod"]["start"].as_str().unwrap().to_owned(),
                t["owner"]["identifier"]["value"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    plan.sort();
    let want: Vec<(String, String)> = [
        ("2026-11-24T08:00:00+01:00", MTN_K),
        ("2026-11-24T16:00:00+01:00", MTN_K),
        ("2026-11-25T00:00:00+01:00", ASIH),
        ("2026-11-25T08:00:00+01:00", MTN_K),
        ("2026-11-25T16:00:00+01:00", MTN_K),
        ("2026-11-26T00:00:00+01:00", ASIH),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(plan, want);
    let first = tasks
        .iter()
        .find(|t| t["id"] == format!("{sr_id}-v1"))
        .expect("visit 1");
    assert_eq!(
        first["basedOn"][0]["reference"],
        format!("ServiceRequest/{sr_id}")
    );
    assert_eq!(first["restriction"]["repetitions"], 1);
    assert_eq!(
        first["meta"]["tag"][0]["code"], "SE2321000255-CSK01",
        "written for the orderer"
    );
    assert!(
        first["description"]
            .as_str()
            .unwrap()
            .contains("Piperacillin/Tazobactam 4 g")
    );

    // The order now names the coordinating team and the medical responsibility (the listed vårdcentral).
    let sr = common::json(
        csk.get(format!("{}/ServiceRequest/{sr_id}", app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(sr["performer"][0]["identifier"]["value"], MTN_K);
    let resp = sr["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "http://navet.example/StructureDefinition/medical-responsibility")
        .expect("medical responsibility");
    assert_eq!(
        resp["valueReference"]["identifier"]["value"],
        "SE2321000255-VC101"
    );

    // Who sees which Tasks: exactly these sets.
    let all = ids(&tasks);
    assert_eq!(all.len(), 6);
    let asih_tasks: Vec<String> = ids(&tasks
        .iter()
        .filter(|t| t["owner"]["identifier"]["value"] == ASIH)
        .cloned()
        .collect::<Vec<_>>());
    let mtn = app.client.clone();
    assert_eq!(
        ids(&tasks_of(&mtn, &app, &sr_id).await),
        all,
        "MTN coordinates: every visit"
    );
    // ASIH has no demo user: what its actor finds in the store, under the same visibility rule.
    let asih = navet::store::Actor {
        principal: ASIH.into(),
        client_id: Some("demo-asih".into()),
        user: None,
        visibility: navet::fhir::visibility::Visibility::Care {
            sees: vec![ASIH.to_owned()].into(),
            emergency: false,
        },
        population_register: false,
    };
    let page = app
        .state
        .store
        .search(&asih, "Task", Default::default(), 0, 100)
        .await
        .unwrap();
    let mut asih_seen: Vec<String> = page.matches.iter().map(|v| v.id.clone()).collect();
    asih_seen.sort();
    assert_eq!(asih_seen, asih_tasks, "ASIH: its own visits");
    let vc_ystad = app
        .client_as(
            "demo-vc-ystad",
            Some("SE2321000255-P0401"),
            "system/*.cruds",
        )
        .await;
    assert!(
        search_all(&vc_ystad, &format!("{}/Task", app.fhir))
            .await
            .is_empty()
    );
    assert!(
        search_all(&vc_ystad, &format!("{}/Communication", app.fhir))
            .await
            .is_empty()
    );
    // The listed vårdcentral is told the point intervention starts.
    let vc = app
        .client_as(
            "demo-vc-nasby",
            Some("SE2321000255-P0301"),
            "system/*.cruds",
        )
        .await;
    let told = search_all(&vc, &format!("{}/Communication", app.fhir)).await;
    assert_eq!(ids(&told), vec![format!("{sr_id}-cstart")]);
    assert!(
        told[0]["payload"][0]["contentString"]
            .as_str()
            .unwrap()
            .contains("MTN Kristianstad")
    );
    assert!(
        search_all(&vc, &format!("{}/Task", app.fhir))
            .await
            .is_empty()
    );

    // The same order again creates nothing new.
    let (status, again) = post_bundle(&csk, &app, &order.bundle()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(order_id(&again), sr_id);
    assert_eq!(again["entry"][1]["response"]["status"], "200 OK");
    assert_eq!(ids(&tasks_of(&csk, &app, &sr_id).await), all);
}

#[tokio::test]
async fn invalid_orders_are_refused_with_every_failing_element_and_store_nothing() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    let base = Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-25", "bad");
    let refused = |b: Value| {
        let (csk, app) = (csk.clone(), &app);
        async move {
            let (status, answer) = post_bundle(&csk, app, &b).await;
            assert_eq!(status, 422, "{answer}");
            let mut paths: Vec<String> = answer["issue"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
                .map(|e| e.as_str().unwrap().to_owned())
                .collect();
            paths.sort();
            paths
        }
    };
    // No dose timing.
    let mut b = base.bundle();
    b["entry"][0]["resource"]["dosageInstruction"][0]
        .as_object_mut()
        .unwrap()
        .remove("timing");
    assert_eq!(
        refused(b).await,
        ["Bundle.entry[0].resource.dosageInstruction[0].timing.repeat"]
    );
    // Frequency 0.
    let mut o = base.clone();
    o.per_day = Some(0);
    assert_eq!(
        refused(o.bundle()).await,
        ["Bundle.entry[0].resource.dosageInstruction[0].timing.repeat.frequency"]
    );
    // End before start: R4's per-1 invariant refuses both entries' Periods before the order rules run, each
    // located at its Period, in one answer.
    let mut o = base.clone();
    o.start = "2026-11-26".into();
    assert_eq!(
        refused(o.bundle()).await,
        [
            "Bundle.entry[0].resource.dosageInstruction[0].timing.repeat.boundsPeriod",
            "Bundle.entry[1].resource.occurrencePeriod"
        ]
    );
    // Unknown patient: a literal reference to a Patient that does not exist.
    let mut b = base.bundle();
    b["entry"][0]["resource"]["subject"] = json!({"reference": "Patient/nobody"});
    b["entry"][1]["resource"]["subject"] = json!({"reference": "Patient/nobody"});
    assert_eq!(refused(b).await, ["Bundle.entry[1].resource.subject"]);
    // The performer is not a team.
    let mut o = base.clone();
    o.performer = Some("SE2321000255-VC101".into());
    assert_eq!(
        refused(o.bundle()).await,
        ["Bundle.entry[1].resource.performer[0]"]
    );
    // A bad identifier.
    let mut b = base.bundle();
    b["entry"][1]["resource"]["identifier"] = json!([{"system": "csk ordination", "value": ""}]);
    assert_eq!(
        refused(b).await,
        [
            "Bundle.entry[1].resource.identifier[0].system",
            "Bundle.entry[1].resource.identifier[0].value"
        ]
    );
    // An intervention no team offers (not in the code system).
    let mut o = base.clone();
    o.code = "akupunktur".into();
    o.per_day = None;
    let mut b = o.bundle();
    b["entry"].as_array_mut().unwrap().truncate(1);
    b["entry"][0]["resource"]["code"]["coding"][0]["code"] = json!("akupunktur");
    assert_eq!(refused(b).await, ["Bundle.entry[0].resource.code"]);
    // A patient in no team's area: a patient in Malmö (1280).
    let mut b = base.bundle();
    let elsewhere = common::create_with(&csk, &app.fhir, &json!({
        "resourceType": "Patient",
        "extension": [{"url": "http://navet.example/StructureDefinition/municipality",
                       "valueCoding": {"system": "urn:oid:1.2.752.129.2.2.1.17", "code": "1280"}}],
        "name": [{"family": "Malmöbo"}]
    }))
    .await;
    let elsewhere = format!("Patient/{}", elsewhere["id"].as_str().unwrap());
    b["entry"][0]["resource"]["subject"] = json!({"reference": elsewhere});
    b["entry"][1]["resource"]["subject"] = json!({"reference": elsewhere});
    assert_eq!(refused(b).await, ["Bundle.entry[1].resource.subject"]);
    // Nothing of any of them was stored.
    assert!(
        search_all(&csk, &format!("{}/ServiceRequest", app.fhir))
            .await
            .is_empty()
    );
    assert!(
        search_all(&csk, &format!("{}/MedicationRequest", app.fhir))
            .await
            .is_empty()
    );
    assert!(
        search_all(&csk, &format!("{}/Task", app.fhir))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn more_than_four_doses_a_day_is_accepted_with_a_warning() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    let order = Order::antibiotics(TOLVAN, 6, "2026-11-24", "2026-11-24", "csk-6");
    let (status, answer) = post_bundle(&csk, &app, &order.bundle()).await;
    assert_eq!(status, 200, "{answer}");
    let outcome = &answer["entry"][1]["response"]["outcome"];
    assert_eq!(outcome["issue"][0]["severity"], "warning", "{answer}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("6 doses a day")
    );
    assert_eq!(tasks_of(&csk, &app, &order_id(&answer)).await.len(), 6);
}

#[tokio::test]
async fn a_draft_is_seen_by_the_coordinator_and_planned_only_when_active_and_revoking_cancels() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    let mut order = Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-24", "csk-draft");
    order.status = "draft".into();
    let (status, answer) = post_bundle(&csk, &app, &order.bundle()).await;
    assert_eq!(status, 200, "{answer}");
    let sr_id = order_id(&answer);
    assert!(
        tasks_of(&csk, &app, &sr_id).await.is_empty(),
        "a draft plans nothing"
    );
    let seen = search_all(&app.client, &format!("{}/ServiceRequest", app.fhir)).await;
    assert_eq!(ids(&seen), vec![sr_id.clone()], "MTN sees the notice");
    // Activated: planned.
    let mut sr = common::json(
        csk.get(format!("{}/ServiceRequest/{sr_id}", app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    sr["status"] = json!("active");
    let r = csk
        .put(format!("{}/ServiceRequest/{sr_id}", app.fhir))
        .header("content-type", common::FHIR_JSON)
        .body(sr.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let tasks = tasks_of(&csk, &app, &sr_id).await;
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t["status"] == "requested"));
    // Revoked: every remaining Task is cancelled.
    let mut sr = common::json(
        csk.get(format!("{}/ServiceRequest/{sr_id}", app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    sr["status"] = json!("revoked");
    let r = csk
        .put(format!("{}/ServiceRequest/{sr_id}", app.fhir))
        .header("content-type", common::FHIR_JSON)
        .body(sr.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tasks = tasks_of(&csk, &app, &sr_id).await;
    assert_eq!(tasks.len(), 3);
    assert!(
        tasks.iter().all(|t| t["status"] == "cancelled"),
        "{tasks:?}"
    );
}

#[tokio::test]
async fn separate_creates_plan_when_the_medication_request_arrives() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    let order = Order::antibiotics(TOLVAN, 4, "2026-11-24", "2026-11-24", "csk-sep");
    let sr = common::create_with(&csk, &app.fhir, &{
        let mut sr = order.service_request(None);
        sr["subject"] = json!({"reference": patient_ref(&csk, &app, TOLVAN).await});
        sr
    })
    .await;
    let sr_id = sr["id"].as_str().unwrap().to_owned();
    assert!(tasks_of(&csk, &app, &sr_id).await.is_empty());
    let mut mr = order.medication_request();
    mr["subject"] = json!({"reference": patient_ref(&csk, &app, TOLVAN).await});
    mr["basedOn"] = json!([{"reference": format!("ServiceRequest/{sr_id}")}]);
    common::create_with(&csk, &app.fhir, &mr).await;
    let tasks = tasks_of(&csk, &app, &sr_id).await;
    assert_eq!(tasks.len(), 4, "08, 14, 20, 02");
}

async fn patient_ref(client: &reqwest::Client, app: &common::TestApp, pnr: &str) -> String {
    let found = search_all(
        client,
        &format!("{}/Patient?identifier={PNR}|{pnr}", app.fhir),
    )
    .await;
    format!("Patient/{}", found[0]["id"].as_str().unwrap())
}

/// The care map: "which team can do this, here, now", for any principal, the ambulance included.
#[tokio::test]
async fn the_care_map_answers_which_team_can_do_this_here_now() {
    let app = common::spawn_app_with_demo().await;
    // The ambulance's system client, without a user: the directory is not patient data.
    let amb = app
        .client_as(
            "demo-ambulans",
            None,
            "system/HealthcareService.rs system/Location.rs",
        )
        .await;
    let ask = |q: String| {
        let amb = amb.clone();
        let url = format!("{}/HealthcareService?{q}", app.fhir);
        async move {
            let found = search_all(&amb, &url).await;
            let mut names: Vec<String> = found
                .iter()
                .map(|h| h["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            names
        }
    };
    let at = |t: &str| t.replace('+', "%2B");
    let weekday_noon = at("2026-11-24T12:00:00+01:00");
    let saturday_noon = at("2026-11-28T12:00:00+01:00");
    let holiday_noon = at("2026-12-25T12:00:00+01:00");
    let night = at("2026-11-24T03:00:00+01:00");
    for m in ["1290", "1256", "1272"] {
        assert_eq!(
            ask(format!(
                "municipality={m}&available-at={weekday_noon}&service-type=iv-antibiotika"
            ))
            .await,
            ["ASIH Skåne (demo unit)", "MTN Kristianstad"],
            "{m}"
        );
        assert_eq!(
            ask(format!("municipality={m}&available-at={saturday_noon}")).await,
            ["ASIH Skåne (demo unit)"]
        );
        assert_eq!(
            ask(format!("municipality={m}&available-at={holiday_noon}")).await,
            ["ASIH Skåne (demo unit)"]
        );
        assert_eq!(
            ask(format!("municipality={m}&available-at={night}")).await,
            ["ASIH Skåne (demo unit)"]
        );
    }
    for m in ["1286", "1291", "1265", "1264", "1270"] {
        assert_eq!(
            ask(format!(
                "municipality={m}&available-at={weekday_noon}&service-type=iv-antibiotika"
            ))
            .await,
            ["ASIH Skåne (demo unit)", "MTN Ystad"],
            "{m}"
        );
        assert_eq!(
            ask(format!("municipality={m}&available-at={saturday_noon}")).await,
            ["ASIH Skåne (demo unit)", "MTN Ystad"]
        );
        assert_eq!(
            ask(format!("municipality={m}&available-at={holiday_noon}")).await,
            ["ASIH Skåne (demo unit)", "MTN Ystad"]
        );
        assert_eq!(
            ask(format!("municipality={m}&available-at={night}")).await,
            ["ASIH Skåne (demo unit)"]
        );
        // MTN Ystad's physicians work 07:30–16:00 on vardagar only.
        assert_eq!(
            ask(format!(
                "municipality={m}&available-at={saturday_noon}&service-type=lakarbesok"
            ))
            .await,
            ["ASIH Skåne (demo unit)"]
        );
    }
    // A child: ASIH only. A psychiatric main need: no team.
    assert_eq!(
        ask(format!(
            "municipality=1290&available-at={weekday_noon}&patient-age=12"
        ))
        .await,
        ["ASIH Skåne (demo unit)"]
    );
    assert!(
        ask(format!(
            "municipality=1286&available-at={weekday_noon}&main-need=psykiatri"
        ))
        .await
        .is_empty()
    );
    // basonkologi: MTN Ystad and ASIH offer it, MTN Kristianstad does not.
    assert_eq!(
        ask("municipality=1290&service-type=basonkologi".to_string()).await,
        ["ASIH Skåne (demo unit)"]
    );
    // The standard coverage-area, by the municipality's Location.
    let loc = search_all(
        &amb,
        &format!(
            "{}/Location?identifier=urn:oid:1.2.752.129.2.2.1.17|1286",
            app.fhir
        ),
    )
    .await;
    let loc_id = loc[0]["id"].as_str().unwrap();
    assert_eq!(
        ask(format!(
            "coverage-area=Location/{loc_id}&available-at={weekday_noon}"
        ))
        .await,
        ["ASIH Skåne (demo unit)", "MTN Ystad"]
    );
    // Bad input is a 400 naming it.
    let r = amb
        .get(format!(
            "{}/HealthcareService?available-at=tomorrow",
            app.fhir
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The parameters are in the CapabilityStatement.
    let cs = common::json(
        app.anonymous
            .get(format!("{}/metadata", app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let hs = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "HealthcareService")
        .unwrap();
    let names: Vec<&str> = hs["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "municipality",
        "available-at",
        "coverage-area",
        "service-type",
    ] {
        assert!(names.contains(&p), "{p}");
    }
}
