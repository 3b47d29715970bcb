//! Issue 11: a transaction with several invalid entries is refused with every failing element of every entry
//! (FHIRPath located, `Bundle.entry[i].resource.…`) in one 422 OperationOutcome, and stores nothing.

mod common;
mod ordination_common;

use ordination_common::*;
use serde_json::{Value, json};

/// The located paths of a 422 answer, sorted.
fn paths(answer: &Value) -> Vec<String> {
    let mut paths: Vec<String> = answer["issue"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|i| i["severity"] == "error")
        .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    paths.sort();
    paths
}

async fn nothing_stored(csk: &reqwest::Client, app: &common::TestApp) {
    for ty in [
        "ServiceRequest",
        "MedicationRequest",
        "Task",
        "Communication",
    ] {
        assert_eq!(
            search_all(csk, &format!("{}/{ty}", app.fhir)).await.len(),
            0,
            "{ty}"
        );
    }
}

#[tokio::test]
async fn structural_errors_in_several_entries_are_all_reported_at_once() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    let mut b = Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-25", "multi-1").bundle();
    // Entry 0: a status outside its required value set; entry 1: an intent that is not a code, and a second
    // error in the same entry.
    b["entry"][0]["resource"]["status"] = json!("pågår");
    b["entry"][1]["resource"]["intent"] = json!(12);
    b["entry"][1]["resource"]["priority"] = json!("bråttom");
    let (status, answer) = post_bundle(&csk, &app, &b).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["resourceType"], "OperationOutcome");
    assert_eq!(
        paths(&answer),
        [
            "Bundle.entry[0].resource.status",
            "Bundle.entry[1].resource.intent",
            "Bundle.entry[1].resource.priority",
        ],
        "{answer}"
    );
    nothing_stored(&csk, &app).await;
}

#[tokio::test]
async fn order_rule_errors_in_the_medication_and_the_order_are_all_reported_at_once() {
    let app = common::spawn_app_with_demo().await;
    let csk = hospital(&app).await;
    // Well-formed FHIR, but against the order rules: doses every other day in the MedicationRequest (entry 0),
    // an identifier system that is no absolute URI and an unknown intervention in the ServiceRequest (entry 1).
    let mut b = Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-25", "multi-2").bundle();
    b["entry"][0]["resource"]["dosageInstruction"][0]["timing"]["repeat"]["period"] = json!(2);
    b["entry"][1]["resource"]["identifier"] = json!([{"system": "csk-ordination", "value": "x"}]);
    b["entry"][1]["resource"]["code"]["coding"][0]["code"] = json!("akupunktur");
    let (status, answer) = post_bundle(&csk, &app, &b).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        paths(&answer),
        [
            "Bundle.entry[0].resource.dosageInstruction[0].timing.repeat.period",
            "Bundle.entry[1].resource.code",
            "Bundle.entry[1].resource.identifier[0].system",
        ],
        "{answer}"
    );
    nothing_stored(&csk, &app).await;
}

#[tokio::test]
async fn a_forbidden_entry_is_answered_before_the_invalid_ones() {
    let app = common::spawn_app_with_demo().await;
    // A client allowed to write ServiceRequests only: the MedicationRequest entry is refused with 403 whatever
    // else is wrong, so the caller first learns what it may not do.
    let narrow = app
        .client_as(
            CSK,
            Some("SE2321000255-P0001"),
            "system/ServiceRequest.cruds system/Patient.rs",
        )
        .await;
    let mut b = Order::antibiotics(TOLVAN, 3, "2026-11-24", "2026-11-25", "multi-3").bundle();
    b["entry"][1]["resource"]["intent"] = json!(12);
    let (status, answer) = post_bundle(&narrow, &app, &b).await;
    assert_eq!(status, 403, "{answer}");
}
