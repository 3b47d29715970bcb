//! Sammanhållen dokumentation (issue 4): reading another principal's records beyond participation needs a care
//! relationship and the patient's consent, a block hides a principal's records, and emergency access passes
//! consent and blocks and is logged for review.

mod common;

use common::*;
use navet::auth::PurposeOfUse;
use serde_json::{Value, json};

const HSA: &str = "urn:oid:1.2.752.29.4.19";
const VC: (&str, &str, &str) = ("demo-vc-nasby", "SE2321000255-P0301", "SE2321000255-VC101");
const KOMMUN: (&str, &str, &str) = (
    "demo-kommun-kristianstad",
    "SE2120000999-P1290A",
    "SE2120000999-HSJ1290",
);
const MTN: &str = "SE2321000255-MTN01";

async fn client(app: &TestApp, who: (&str, &str, &str), purpose: PurposeOfUse) -> reqwest::Client {
    user_client(app, who.0, who.1, purpose, "system/*.cruds").await
}

async fn post(c: &reqwest::Client, app: &TestApp, body: Value) -> Value {
    create_with(c, &app.fhir, &body).await
}

fn consent(patient: &str, actor: Option<&str>, deny: Option<&str>) -> Value {
    let mut provision = json!({"type": "permit"});
    if let Some(a) = actor {
        provision["actor"] = json!([{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                                     "reference": {"identifier": {"system": HSA, "value": a}}}]);
    }
    if let Some(d) = deny {
        provision["provision"] = json!([{"type": "deny",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                       "reference": {"identifier": {"system": HSA, "value": d}}}]}]);
    }
    json!({"resourceType": "Consent", "status": "active",
           "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
           "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "policyRule": {"text": "Lag 2022:913"},
           "patient": {"reference": format!("Patient/{patient}")},
           "provision": provision})
}

/// A patient and the mobile team's own clinical record about them (an Encounter naming no one else): the
/// record the other principals try to read.
async fn patient_with_encounter(app: &TestApp) -> (String, String) {
    let patient = app.create(&patient("19360617-2488", "Persson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let encounter = app
        .create(&json!({"resourceType": "Encounter", "status": "finished",
                         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
                         "subject": {"reference": format!("Patient/{patient}")}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (patient, format!("Encounter/{encounter}"))
}

async fn status(c: &reqwest::Client, app: &TestApp, path: &str) -> u16 {
    c.get(format!("{}/{path}", app.fhir))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn consent_care_relationship_blocks_and_emergency_access() {
    let app = spawn_app_with_demo().await;
    let (patient, path) = patient_with_encounter(&app).await;
    let vc = client(&app, VC, PurposeOfUse::Treat).await;
    assert_eq!(
        status(&vc, &app, &path).await,
        404,
        "no care relationship, no consent"
    );

    // The vårdcentral gets a care relationship: its own active referral for the patient.
    post(
        &vc,
        &app,
        json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                           "subject": {"reference": format!("Patient/{patient}")}}),
    )
    .await;
    assert_eq!(
        status(&vc, &app, &path).await,
        404,
        "a care relationship without consent is not enough"
    );

    // The patient consents to the vårdcentral.
    post(&vc, &app, consent(&patient, Some(VC.2), None)).await;
    assert_eq!(
        status(&vc, &app, &path).await,
        200,
        "care relationship and consent"
    );
    let found = json(
        vc.get(format!(
            "{}/Encounter?patient={patient}&_total=accurate",
            app.fhir
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(found["total"], 1);

    // The municipality has no care relationship: consent for all does not open it.
    let kommun = client(&app, KOMMUN, PurposeOfUse::Treat).await;
    post(&vc, &app, consent(&patient, None, None)).await;
    assert_eq!(status(&kommun, &app, &path).await, 404);
    let kommun_emergency = client(&app, KOMMUN, PurposeOfUse::Etreat).await;
    assert_eq!(
        status(&kommun_emergency, &app, &path).await,
        404,
        "emergency access still needs a care relationship"
    );

    // The patient blocks the mobile team's records: hidden from the vårdcentral again.
    post(&vc, &app, consent(&patient, None, Some(MTN))).await;
    assert_eq!(status(&vc, &app, &path).await, 404, "blocked");
    // Emergency access passes the block.
    let vc_emergency = client(&app, VC, PurposeOfUse::Etreat).await;
    assert_eq!(
        status(&vc_emergency, &app, &path).await,
        200,
        "ETREAT passes consent and blocks"
    );

    // The emergency read is listed for review.
    let key = navet::auth::cli::demo_private_key("demo-auditor").unwrap();
    let cfg = settings(std::path::PathBuf::from("unused"), false).auth;
    let user =
        navet::auth::cli::user_claims(&cfg, "SE2321000255-P0900", PurposeOfUse::Hoperat).unwrap();
    let token = navet::auth::cli::fetch_token(
        &app.base,
        "demo-auditor",
        key,
        "system/AuditEvent.rs",
        Some(&user),
    )
    .await
    .unwrap();
    let auditor = authorized_client(&token);
    let review = json(
        auditor
            .get(format!(
                "{}/AuditEvent?purpose=ETREAT&patient=Patient/{patient}&_total=accurate",
                app.fhir
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        review["total"], 2,
        "the municipality's refused and the vårdcentral's granted emergency reads: {review}"
    );
}

#[tokio::test]
async fn a_consent_naming_another_principal_or_withdrawn_opens_nothing() {
    let app = spawn_app_with_demo().await;
    let patient = app.create(&patient("19360617-2488", "Persson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let encounter = app
        .create(&json!({"resourceType": "Encounter", "status": "finished",
                         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
                         "subject": {"reference": format!("Patient/{patient}")}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("Encounter/{encounter}");
    let vc = client(&app, VC, PurposeOfUse::Treat).await;
    post(
        &vc,
        &app,
        json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                           "subject": {"reference": format!("Patient/{patient}")}}),
    )
    .await;
    // A consent for the municipality does not let the vårdcentral in.
    post(&vc, &app, consent(&patient, Some(KOMMUN.2), None)).await;
    assert_eq!(status(&vc, &app, &path).await, 404);
    let mine = post(&vc, &app, consent(&patient, Some(VC.2), None)).await;
    assert_eq!(status(&vc, &app, &path).await, 200);
    // Withdrawn: a new version that is no longer active takes the permit away.
    let mut withdrawn = mine.clone();
    withdrawn["status"] = json!("inactive");
    let r = vc
        .put(format!(
            "{}/Consent/{}",
            app.fhir,
            mine["id"].as_str().unwrap()
        ))
        .header("content-type", FHIR_JSON)
        .body(withdrawn.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status(&vc, &app, &path).await, 404);
}

/// Issue 12's part of issue 8's rule: which resources belong to a patient comes from the FHIR R4 Patient
/// compartment, so an Appointment naming the patient only in `participant.actor` is the patient's record too
/// (sammanhållen dokumentation applies, the access log names the patient), also for Appointments stored
/// before the rule (a start-up migration recomputes the links).
#[tokio::test]
async fn an_appointment_belongs_to_the_patient_in_its_participants_also_after_a_restart() {
    let app = spawn_app().await;
    let patient = app.create(&patient("19360617-2488", "Persson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let appointment = app
        .create(&json!({"resourceType": "Appointment", "status": "booked",
            "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:30:00Z",
            "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("Appointment/{appointment}");
    let vc = client(&app, VC, PurposeOfUse::Treat).await;
    assert_eq!(status(&vc, &app, &path).await, 404);
    post(
        &vc,
        &app,
        json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
               "subject": {"reference": format!("Patient/{patient}")}}),
    )
    .await;
    post(&vc, &app, consent(&patient, Some(VC.2), None)).await;
    assert_eq!(
        status(&vc, &app, &path).await,
        200,
        "care relationship and consent"
    );
    let patients = app
        .state
        .store
        .patients_of(&navet::store::Actor::system(), "Appointment", &appointment)
        .await
        .unwrap();
    assert_eq!(patients, [format!("Patient/{patient}")]);

    // A data directory from before the rule: the Appointment's link is gone and the migration not done.
    // (The same tables and columns on PostgreSQL.)
    let before_the_rule = "DELETE FROM patient_links WHERE type = 'Appointment'; \
                           DELETE FROM settings WHERE key = 'patient_links_version';";
    common::sql(&app, "navet.db", before_the_rule, before_the_rule).unwrap();
    assert_eq!(status(&vc, &app, &path).await, 404, "unlinked");
    let (dir, url) = (app.data_dir, app.database_url);
    app.state.store.close().await;
    let restarted = navet::startup::build_state(&restart_settings_at(dir.path(), url))
        .await
        .expect("starts");
    let patients = restarted
        .store
        .patients_of(&navet::store::Actor::system(), "Appointment", &appointment)
        .await
        .unwrap();
    assert_eq!(patients, [format!("Patient/{patient}")], "backfilled");
}

/// Every R4 type the Patient compartment lists links its patient the compartment's way, also where no top-level
/// subject/patient/for names it: a Provenance is about the Patient it `target`s, an Observation about a
/// patient who is its `performer`.
#[tokio::test]
async fn resources_of_every_compartment_type_link_their_patient() {
    let app = spawn_app().await;
    let patient = app.create(&patient("19360617-2488", "Persson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let provenance = app
        .create(
            &json!({"resourceType": "Provenance", "recorded": "2026-12-01T10:00:00+01:00",
            "target": [{"reference": format!("Patient/{patient}")}],
            "agent": [{"who": {"display": "navet"}}]}),
        )
        .await;
    let observation = app
        .create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "self-measured weight"},
            "performer": [{"reference": format!("Patient/{patient}")}]}))
        .await;
    for (ty, created) in [("Provenance", provenance), ("Observation", observation)] {
        let patients = app
            .state
            .store
            .patients_of(
                &navet::store::Actor::system(),
                ty,
                created["id"].as_str().unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(patients, [format!("Patient/{patient}")], "{ty}");
    }
}
