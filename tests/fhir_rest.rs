//! The FHIR REST interactions end to end, over HTTP against the real router.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_created_resource_reads_back_with_location_etag_and_last_modified() {
    let app = spawn_app().await;
    let r = app
        .post("Patient", &patient("19121212-1212", "Tolvansson"))
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/Patient/", app.fhir))
            && location.ends_with("/_history/1"),
        "{location}"
    );
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(r.headers().contains_key("last-modified"));
    let created = json(r).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["meta"]["versionId"], "1");

    let r = app.get(&format!("Patient/{id}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let read = json(r).await;
    assert_eq!(read, created);
}

#[tokio::test]
async fn update_with_a_stale_if_match_is_refused_with_412_and_changes_nothing() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"resourceType": "Organization", "name": "A"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let mut body = created.clone();
    body["name"] = json!("B");
    let ok = app
        .client
        .put(format!("{}/Organization/{id}", app.fhir))
        .header("content-type", FHIR_JSON)
        .header("if-match", "W/\"1\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["etag"], "W/\"2\"");
    body["name"] = json!("C");
    let stale = app
        .client
        .put(format!("{}/Organization/{id}", app.fhir))
        .header("content-type", FHIR_JSON)
        .header("if-match", "W/\"1\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    assert!(outcome_text(&json(stale).await).contains("version 2"));
    let now = json(app.get(&format!("Organization/{id}")).await).await;
    assert_eq!(now["name"], "B");
    assert_eq!(now["meta"]["versionId"], "2");
}

#[tokio::test]
async fn vread_answers_each_version_and_history_lists_them_newest_first() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"resourceType": "Organization", "name": "v1"}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut body = created.clone();
    body["name"] = json!("v2");
    assert_eq!(
        app.put(&format!("Organization/{id}"), &body).await.status(),
        200
    );
    let v1 = json(app.get(&format!("Organization/{id}/_history/1")).await).await;
    assert_eq!(v1["name"], "v1");
    let v2 = json(app.get(&format!("Organization/{id}/_history/2")).await).await;
    assert_eq!(v2["name"], "v2");
    assert_eq!(
        app.get(&format!("Organization/{id}/_history/3"))
            .await
            .status(),
        404
    );
    let h = json(app.get(&format!("Organization/{id}/_history")).await).await;
    assert_eq!(h["type"], "history");
    let names: Vec<&str> = h["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v2", "v1"]);
}

#[tokio::test]
async fn a_deleted_resource_reads_as_gone_and_its_history_keeps_the_deletion() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"resourceType": "Organization", "name": "gone"}))
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("Organization/{id}")).await.status(),
        204
    );
    let r = app.get(&format!("Organization/{id}")).await;
    assert_eq!(r.status(), 410);
    assert!(outcome_text(&json(r).await).contains("deleted"));
    // Nothing is physically removed: version 1 still reads, and history shows the DELETE.
    assert_eq!(
        app.get(&format!("Organization/{id}/_history/1"))
            .await
            .status(),
        200
    );
    let h = json(app.get(&format!("Organization/{id}/_history")).await).await;
    assert_eq!(h["entry"][0]["request"]["method"], "DELETE");
    assert_eq!(app.get("Organization/does-not-exist").await.status(), 404);
}

#[tokio::test]
async fn type_history_pages_with_next_and_previous_links() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create(&json!({"resourceType": "Location", "name": format!("L{i}")}))
            .await;
    }
    let page1 = json(app.get("Location/_history?_count=2").await).await;
    assert_eq!(page1["entry"].as_array().unwrap().len(), 2);
    let next = link(&page1, "next").expect("next link");
    assert!(link(&page1, "previous").is_none());
    let page2 = json(app.client.get(&next).send().await.unwrap()).await;
    assert_eq!(page2["entry"].as_array().unwrap().len(), 2);
    assert!(link(&page2, "previous").is_some());
    let page3 = json(
        app.client
            .get(link(&page2, "next").unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page3["entry"].as_array().unwrap().len(), 1);
    assert!(link(&page3, "next").is_none());
    let mut names: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| {
            p["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["name"].as_str().unwrap().to_owned())
        })
        .collect();
    names.sort();
    assert_eq!(names, ["L0", "L1", "L2", "L3", "L4"]);
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn one_hundred_parallel_identical_conditional_creates_make_one_resource() {
    let app = spawn_app().await;
    let body = json!({"resourceType": "Organization", "name": "Once",
        "identifier": [{"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000255-ONCE1"}]})
    .to_string();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let client = app.client.clone();
        let url = format!("{}/Organization", app.fhir);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("content-type", FHIR_JSON)
                .header(
                    "if-none-exist",
                    "identifier=urn:oid:1.2.752.29.4.19|SE2321000255-ONCE1",
                )
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v["id"].as_str().unwrap().to_owned())
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert!(status == 201 || status == 200, "status {status}");
        created += usize::from(status == 201);
        ids.insert(id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    let found = json(
        app.get(
            "Organization?identifier=urn:oid:1.2.752.29.4.19|SE2321000255-ONCE1&_total=accurate",
        )
        .await,
    )
    .await;
    assert_eq!(found["total"], 1);
}

#[tokio::test]
async fn a_patient_with_a_bad_personnummer_is_refused_with_422_naming_the_element() {
    let app = spawn_app().await;
    let r = app.post("Patient", &patient("19121212-1213", "Fel")).await;
    assert_eq!(r.status(), 422);
    let text = outcome_text(&json(r).await);
    assert!(text.contains("Patient.identifier[0].value"), "{text}");
    let all = json(app.get("Patient?_summary=count").await).await;
    assert_eq!(all["total"], 0, "nothing was stored");
}

#[tokio::test]
async fn a_second_patient_with_the_same_personnummer_is_a_conflict_naming_the_first() {
    let app = spawn_app().await;
    let first = app.create(&patient("19121212-1212", "Tolvansson")).await;
    // Same number written another way (12 digits, no separator, OID system) is the same person.
    let mut second = patient("191212121212", "Annan");
    second["identifier"][0]["system"] = json!("urn:oid:1.2.752.129.2.1.3.1");
    let r = app.post("Patient", &second).await;
    assert_eq!(r.status(), 409);
    let text = outcome_text(&json(r).await);
    assert!(
        text.contains(&format!("Patient/{}", first["id"].as_str().unwrap())),
        "{text}"
    );
}

#[tokio::test]
async fn structurally_invalid_resources_get_422_with_fhirpath_locations() {
    let app = spawn_app().await;
    let r = app
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "gender": ["female"], "foo": 1}),
        )
        .await;
    assert_eq!(r.status(), 422);
    let text = outcome_text(&json(r).await);
    assert!(text.contains("Patient.gender"), "{text}");
    assert!(text.contains("Patient.foo"), "{text}");
}

#[tokio::test]
async fn malformed_json_is_400_and_unknown_types_are_404() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(format!("{}/Patient", app.fhir))
        .header("content-type", FHIR_JSON)
        .body("{\"resourceType\": \"Patient\",")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["resourceType"], "OperationOutcome");
    assert_eq!(app.get("Unicorn/1").await.status(), 404);
    assert_eq!(
        app.post("Unicorn", &json!({"resourceType": "Unicorn"}))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn media_types_and_body_size_are_checked() {
    let app = spawn_app().await;
    let xml = app
        .client
        .post(format!("{}/Patient", app.fhir))
        .header("content-type", "text/plain")
        .body("<Patient xmlns=\"http://hl7.org/fhir\"/>")
        .send()
        .await
        .unwrap();
    // FHIR XML is served (tests/validation.rs); other media types are not.
    assert_eq!(xml.status(), 415);
    assert_eq!(json(xml).await["resourceType"], "OperationOutcome");
    let accept_xml = app
        .client
        .get(format!("{}/metadata", app.fhir))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(accept_xml.status(), 406);
    let big = json!({"resourceType": "Organization", "name": "x".repeat(70 * 1024)});
    let r = app.post("Organization", &big).await;
    assert_eq!(r.status(), 413);
    assert_eq!(json(r).await["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn prefer_return_minimal_and_operation_outcome_are_honoured() {
    let app = spawn_app().await;
    let minimal = app
        .client
        .post(format!("{}/Organization", app.fhir))
        .header("content-type", FHIR_JSON)
        .header("prefer", "return=minimal")
        .body(json!({"resourceType": "Organization", "name": "m"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status(), 201);
    assert!(minimal.headers().contains_key("location"));
    assert!(minimal.text().await.unwrap().is_empty());
    let oo = app
        .client
        .post(format!("{}/Organization", app.fhir))
        .header("content-type", FHIR_JSON)
        .header("prefer", "return=OperationOutcome")
        .body(json!({"resourceType": "Organization", "name": "o"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(oo.status(), 201);
    assert_eq!(json(oo).await["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn the_capability_statement_is_served_without_authentication() {
    let app = spawn_app().await;
    for path in ["metadata", "../metadata"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let cs = json(r).await;
        assert_eq!(cs["resourceType"], "CapabilityStatement");
        assert_eq!(cs["fhirVersion"], "4.0.1");
        let patient = cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Patient")
            .unwrap();
        assert!(
            patient["searchParam"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "identifier")
        );
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
