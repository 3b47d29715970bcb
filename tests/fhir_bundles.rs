//! transaction and batch Bundles: all-or-nothing, urn:uuid rewriting, conditional entries.

mod common;

use common::*;
use serde_json::json;

fn transaction(entries: serde_json::Value) -> serde_json::Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[tokio::test]
async fn a_transaction_creates_everything_and_rewrites_urn_uuid_references() {
    let app = spawn_app().await;
    let bundle = transaction(json!([
        {"fullUrl": "urn:uuid:8f3e7c0a-0000-4000-8000-000000000001",
         "resource": patient("19121212-1212", "Tolvansson"),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:8f3e7c0a-0000-4000-8000-000000000002",
         "resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                      "subject": {"reference": "urn:uuid:8f3e7c0a-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "ServiceRequest"}}
    ]));
    let r = app.post("", &bundle).await;
    assert_eq!(r.status(), 200);
    let resp = json(r).await;
    assert_eq!(resp["type"], "transaction-response");
    let entries = resp["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    let patient_id = entries[0]["resource"]["id"].as_str().unwrap();
    let sr_location = entries[1]["response"]["location"].as_str().unwrap();
    let sr = json(app.get(sr_location.trim_end_matches("/_history/1")).await).await;
    assert_eq!(sr["subject"]["reference"], format!("Patient/{patient_id}"));
}

#[tokio::test]
async fn a_failing_entry_rolls_back_the_whole_transaction() {
    let app = spawn_app().await;
    let bundle = transaction(json!([
        {"resource": {"resourceType": "Organization", "name": "kept?"}, "request": {"method": "POST", "url": "Organization"}},
        {"resource": patient("19121212-1213", "Fel"), "request": {"method": "POST", "url": "Patient"}}
    ]));
    let r = app.post("", &bundle).await;
    assert_eq!(r.status(), 422);
    let text = outcome_text(&json(r).await);
    assert!(
        text.contains("Bundle.entry[1].resource.identifier[0].value"),
        "{text}"
    );
    let orgs = json(app.get("Organization?_summary=count").await).await;
    assert_eq!(orgs["total"], 0, "the first entry was rolled back");
}

#[tokio::test]
async fn conditional_entries_reuse_existing_resources_and_resolve_conditional_references() {
    let app = spawn_app().await;
    let existing = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let bundle = transaction(json!([
        {"fullUrl": "urn:uuid:8f3e7c0a-0000-4000-8000-00000000000a",
         "resource": patient("19121212-1212", "Tolvansson"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://electronichealth.se/identifier/personnummer|191212121212"}},
        {"resource": {"resourceType": "Task", "status": "requested", "intent": "order",
                      "for": {"reference": "urn:uuid:8f3e7c0a-0000-4000-8000-00000000000a"}},
         "request": {"method": "POST", "url": "Task"}},
        {"resource": {"resourceType": "Encounter", "status": "planned", "class": {"code": "HH"},
                      "subject": {"reference": "Patient?identifier=191212121212"}},
         "request": {"method": "POST", "url": "Encounter"}}
    ]));
    let r = app.post("", &bundle).await;
    let status = r.status();
    let resp = json(r).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["entry"][0]["response"]["status"], "200 OK");
    let pid = existing["id"].as_str().unwrap();
    assert_eq!(
        resp["entry"][1]["resource"]["for"]["reference"],
        format!("Patient/{pid}")
    );
    assert_eq!(
        resp["entry"][2]["resource"]["subject"]["reference"],
        format!("Patient/{pid}")
    );
}

#[tokio::test]
async fn a_batch_answers_each_entry_on_its_own() {
    let app = spawn_app().await;
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Organization", "name": "ok"}, "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Organization", "name": 5}, "request": {"method": "POST", "url": "Organization"}},
        {"request": {"method": "GET", "url": "Organization/nope"}}
    ]});
    let r = app.post("", &bundle).await;
    assert_eq!(r.status(), 200);
    let resp = json(r).await;
    assert_eq!(resp["type"], "batch-response");
    assert_eq!(resp["entry"][0]["response"]["status"], "201 Created");
    assert!(
        resp["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("422")
    );
    assert_eq!(
        resp["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert!(
        resp["entry"][2]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404")
    );
    let orgs = json(app.get("Organization?_summary=count").await).await;
    assert_eq!(orgs["total"], 1);
}

#[tokio::test]
async fn a_bundle_of_another_type_is_refused() {
    let app = spawn_app().await;
    let r = app
        .post("", &json!({"resourceType": "Bundle", "type": "collection"}))
        .await;
    assert_eq!(r.status(), 422);
    let r = app.post("", &json!({"resourceType": "Patient"})).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn the_demo_region_is_loaded_into_a_fresh_data_directory() {
    let app = spawn_app_with_demo().await;
    let patients = json(app.get("Patient?_summary=count").await).await;
    assert_eq!(patients["total"], 7);
    let orgs = json(
        app.get("Organization?identifier=urn:oid:1.2.752.29.4.19|SE2321000255-MTN01")
            .await,
    )
    .await;
    assert_eq!(orgs["entry"][0]["resource"]["name"], "MTN Kristianstad");
    let teams = json(app.get("HealthcareService?_summary=count").await).await;
    assert_eq!(teams["total"], 3);
}

#[tokio::test]
async fn urn_uuid_full_urls_on_conditional_updates_resolve_and_the_transaction_is_logged_once() {
    let app = spawn_app().await;
    let bundle = transaction(json!([
        {"fullUrl": "urn:uuid:5a1d7e2b-0000-4000-8000-000000000001",
         "resource": patient("19121212-1212", "Tolvansson"),
         "request": {"method": "PUT",
                     "url": "Patient?identifier=http://electronichealth.se/identifier/personnummer|191212121212"}},
        {"resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                      "subject": {"reference": "urn:uuid:5a1d7e2b-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "ServiceRequest"}}
    ]));
    for round in 0..2 {
        let r = app.post("", &bundle).await;
        assert_eq!(r.status(), 200);
        let resp = json(r).await;
        let patient_id = resp["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let sr_location = resp["entry"][1]["response"]["location"].as_str().unwrap();
        let sr = json(app.get(sr_location.trim_end_matches("/_history/1")).await).await;
        assert_eq!(
            sr["subject"]["reference"],
            format!("Patient/{patient_id}"),
            "round {round}"
        );
    }
    let patients = json(app.get("Patient?_summary=count").await).await;
    assert_eq!(
        patients["total"], 1,
        "the second round updated the same patient"
    );
    // One access-log record per transaction (plus one per read above).
    let executes = common::logged_events(&app)
        .iter()
        .filter(|(_, json)| json.contains("\"action\":\"E\""))
        .count();
    assert_eq!(executes, 2);
}

/// `n` entries creating an Organization each, with a `urn:uuid` fullUrl, each pointing at the one before
/// (`partOf`), so every entry's reference is rewritten.
fn chain_of_organizations(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            let mut org = json!({"resourceType": "Organization", "name": format!("org {i}")});
            if i > 0 {
                org["partOf"] =
                    json!({"reference": format!("urn:uuid:00000000-0000-4000-8000-{:012}", i - 1)});
            }
            json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{i:012}"),
                   "resource": org, "request": {"method": "POST", "url": "Organization"}})
        })
        .collect()
}

#[tokio::test]
async fn a_bundle_of_30000_entries_is_refused_with_413_before_its_entries_are_read() {
    let app = spawn_with(false, |s| s.max_body_bytes = 10 * 1024 * 1024).await;
    let mut entries = chain_of_organizations(30_000);
    // Entries past the cap are malformed (a 400) and invalid (a 422) if they were ever read: the answer
    // is the cap's 413, so reading stopped at entry 1,001.
    entries[1_500] = json!({"request": 5});
    entries[2_000]["resource"] = json!({"resourceType": "Organization", "name": 7});
    let r = app.post("", &transaction(json!(entries))).await;
    assert_eq!(r.status(), 413);
    let text = outcome_text(&json(r).await);
    assert!(
        text.contains("the Bundle has more than 1000 entries")
            && text.contains("max_bundle_entries"),
        "{text}"
    );
    let orgs = json(app.get("Organization?_summary=count").await).await;
    assert_eq!(orgs["total"], 0, "nothing was stored");
}

#[tokio::test]
async fn a_bundle_at_the_configured_cap_is_processed_and_one_more_entry_is_refused() {
    let app = spawn_with(false, |s| s.max_bundle_entries = 25).await;
    let at_cap = app
        .post("", &transaction(json!(chain_of_organizations(25))))
        .await;
    let status = at_cap.status();
    let resp = json(at_cap).await;
    assert_eq!(status, 200, "{resp}");
    let entries = resp["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 25);
    // Every reference was rewritten to the id its target got.
    for pair in entries.windows(2) {
        assert_eq!(
            pair[1]["resource"]["partOf"]["reference"],
            format!(
                "Organization/{}",
                pair[0]["resource"]["id"].as_str().unwrap()
            )
        );
    }
    for kind in ["transaction", "batch"] {
        let bundle =
            json!({"resourceType": "Bundle", "type": kind, "entry": chain_of_organizations(26)});
        let over = app.post("", &bundle).await;
        assert_eq!(over.status(), 413, "{kind}");
        assert!(outcome_text(&json(over).await).contains("more than 25 entries"));
    }
    let orgs = json(app.get("Organization?_summary=count").await).await;
    assert_eq!(orgs["total"], 25, "only the Bundle at the cap was stored");
}

#[tokio::test]
async fn one_resource_may_point_at_a_plain_and_a_conditional_create_of_the_same_transaction() {
    let app = spawn_app().await;
    let existing = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let bundle = transaction(json!([
        {"fullUrl": "urn:uuid:8f3e7c0a-0000-4000-8000-0000000000c1",
         "resource": patient("19121212-1212", "Tolvansson"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=191212121212"}},
        {"fullUrl": "urn:uuid:8f3e7c0a-0000-4000-8000-0000000000c2",
         "resource": {"resourceType": "Organization", "name": "Hemsjukvården"},
         "request": {"method": "POST", "url": "Organization"}},
        {"resource": {"resourceType": "Task", "status": "requested", "intent": "order",
                      "for": {"reference": "urn:uuid:8f3e7c0a-0000-4000-8000-0000000000c1"},
                      "owner": {"reference": "urn:uuid:8f3e7c0a-0000-4000-8000-0000000000c2"}},
         "request": {"method": "POST", "url": "Task"}}
    ]));
    let r = app.post("", &bundle).await;
    let status = r.status();
    let resp = json(r).await;
    assert_eq!(status, 200, "{resp}");
    let task = &resp["entry"][2]["resource"];
    assert_eq!(
        task["for"]["reference"],
        format!("Patient/{}", existing["id"].as_str().unwrap())
    );
    assert_eq!(
        task["owner"]["reference"],
        format!(
            "Organization/{}",
            resp["entry"][1]["resource"]["id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn a_name_given_twice_anywhere_in_a_bundle_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let entry = r#"{"resource":{"resourceType":"Organization","name":"a"},"request":{"method":"POST","url":"Organization"}}"#;
    let bodies = [
        // In an entry's resource, nested.
        format!(
            r#"{{"resourceType":"Bundle","type":"transaction","entry":[{entry},{{"resource":{{"resourceType":"Organization","name":"b","address":[{{"city":"x","city":"y"}}]}},"request":{{"method":"POST","url":"Organization"}}}}]}}"#
        ),
        // In an entry's request.
        format!(
            r#"{{"resourceType":"Bundle","type":"batch","entry":[{entry},{{"resource":{{"resourceType":"Organization"}},"request":{{"method":"POST","url":"Organization","url":"Patient"}}}}]}}"#
        ),
        // In the Bundle itself, a member navet does not read.
        format!(
            r#"{{"resourceType":"Bundle","type":"transaction","id":"a","id":"b","entry":[{entry}]}}"#
        ),
        format!(r#"{{"resourceType":"Bundle","type":"transaction","entry":[{entry}],"entry":[]}}"#),
    ];
    for body in bodies {
        let r = app
            .client
            .post(&app.fhir)
            .header("content-type", FHIR_JSON)
            .body(body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 400, "{body}");
        let text = outcome_text(&json(r).await);
        assert!(
            text.contains("twice") || text.contains("duplicate"),
            "{body}: {text}"
        );
    }
    let orgs = json(app.get("Organization?_summary=count").await).await;
    assert_eq!(orgs["total"], 0);
}
