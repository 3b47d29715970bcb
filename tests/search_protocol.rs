//! Issue 14, end to end: search on every type (number, quantity, composite), chains, `_has`, `_revinclude`,
//! `_include:iterate`, compartment search, accent-insensitive strings, signed keyset paging, subsets,
//! PATCH, error bodies, conditional create from the URL, SMART discovery, OpenAPI, and a CapabilityStatement
//! that says what the router answers.

mod common;

use common::*;
use serde_json::{Value, json};

fn matches(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or(""),
                e["resource"]["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn included(bundle: &Value) -> std::collections::BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or(""),
                e["resource"]["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let r = app.get(path).await;
    let status = r.status();
    let body = json(r).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

async fn observation(app: &TestApp, patient: &str, code: &str, value: f64, when: &str) -> String {
    id(&app
        .create(&json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "mg/L", "system": "http://unitsofmeasure.org", "code": "mg/L"}
        }))
        .await)
}

#[tokio::test]
async fn observations_are_searched_by_patient_date_quantity_and_composite() {
    let app = spawn_app().await;
    let p1 = id(&app.create(&patient("19121212-1212", "Åkesson")).await);
    let p2 = id(&app.create(&patient("19400512-1233", "Nilsson")).await);
    let crp_high = observation(&app, &p1, "1988-5", 54.2, "2026-11-20T10:00:00Z").await;
    let crp_low = observation(&app, &p1, "1988-5", 5.4, "2026-11-25T10:00:00Z").await;
    let other = observation(&app, &p2, "1988-5", 60.0, "2026-11-20T10:00:00Z").await;

    let by_patient_and_date =
        get_ok(&app, &format!("Observation?patient={p1}&date=ge2026-11-24")).await;
    assert_eq!(
        matches(&by_patient_and_date),
        [format!("Observation/{crp_low}")]
    );
    let above_50 = get_ok(&app, "Observation?value-quantity=gt50").await;
    let mut found = matches(&above_50);
    found.sort();
    let mut expected = vec![
        format!("Observation/{crp_high}"),
        format!("Observation/{other}"),
    ];
    expected.sort();
    assert_eq!(found, expected);
    // 5.4 stands for 5.35..5.45; the unit narrows by system and code.
    let exact = get_ok(
        &app,
        "Observation?value-quantity=5.4|http://unitsofmeasure.org|mg/L",
    )
    .await;
    assert_eq!(matches(&exact), [format!("Observation/{crp_low}")]);
    let wrong_unit = get_ok(&app, "Observation?value-quantity=5.4||g/L").await;
    assert!(matches(&wrong_unit).is_empty());
    let composite = get_ok(
        &app,
        &format!(
            "Observation?subject=Patient/{p1}&code-value-quantity=http://loinc.org|1988-5$gt50"
        ),
    )
    .await;
    assert_eq!(matches(&composite), [format!("Observation/{crp_high}")]);
    // Not a number: a clear 400.
    let bad = app.get("Observation?value-quantity=high").await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn string_search_ignores_case_and_accents_and_exact_does_not() {
    let app = spawn_app().await;
    let p = id(&app.create(&patient("19121212-1212", "Åkesson")).await);
    let _ = app.create(&patient("19400512-1233", "Aberg")).await;
    for query in [
        "Patient?name=akesson",
        "Patient?family=AKES",
        "Patient?name=åkesson",
    ] {
        assert_eq!(
            matches(&get_ok(&app, query).await),
            [format!("Patient/{p}")],
            "{query}"
        );
    }
    assert!(matches(&get_ok(&app, "Patient?family:exact=Akesson").await).is_empty());
    assert_eq!(
        matches(&get_ok(&app, "Patient?family:exact=Åkesson").await),
        [format!("Patient/{p}")]
    );
}

#[tokio::test]
async fn a_chained_filter_finds_only_that_patients_tasks_and_is_never_dropped() {
    let app = spawn_app().await;
    let p1 = id(&app.create(&patient("19121212-1212", "Tolvansson")).await);
    let p2 = id(&app.create(&patient("19400512-1233", "Nilsson")).await);
    let task = |p: &str| {
        json!({"resourceType": "Task", "status": "requested", "intent": "order",
                                "for": {"reference": format!("Patient/{p}")}})
    };
    let t1 = id(&app.create(&task(&p1)).await);
    let _t2 = id(&app.create(&task(&p2)).await);
    let chained = get_ok(&app, "Task?patient.identifier=191212121212").await;
    assert_eq!(matches(&chained), [format!("Task/{t1}")]);
    let typed = get_ok(&app, "Task?subject:Patient.name=tolv").await;
    assert_eq!(matches(&typed), [format!("Task/{t1}")]);
    // A known filter that cannot be applied is refused even under lenient handling.
    for query in [
        "Task?patient.nosuch=1",
        "Task?patient.identifier:fuzzy=1",
        "Task?subject.name=x",
    ] {
        let r = app
            .client
            .get(format!("{}/{query}", app.fhir))
            .header("prefer", "handling=lenient")
            .send()
            .await
            .expect("request");
        let status = r.status();
        let body = json(r).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    // An unknown parameter name may be ignored under lenient handling, and is reported.
    let r = app
        .client
        .get(format!("{}/Task?nosuch=1&patient={p1}", app.fhir))
        .header("prefer", "handling=lenient")
        .send()
        .await
        .expect("request");
    let body = json(r).await;
    assert_eq!(matches(&body), [format!("Task/{t1}")]);
}

#[tokio::test]
async fn revinclude_has_include_iterate_and_compartment_search() {
    let app = spawn_app().await;
    let org = id(&app
        .create(&json!({"resourceType": "Organization", "name": "Vårdcentralen Näsby"}))
        .await);
    let mut p1 = patient("19121212-1212", "Tolvansson");
    p1["managingOrganization"] = json!({"reference": format!("Organization/{org}")});
    let p1 = id(&app.create(&p1).await);
    let p2 = id(&app.create(&patient("19400512-1233", "Nilsson")).await);
    let obs1 = observation(&app, &p1, "1988-5", 54.2, "2026-11-20T10:00:00Z").await;
    let obs2 = observation(&app, &p2, "718-7", 140.0, "2026-11-20T10:00:00Z").await;

    let rev = get_ok(
        &app,
        &format!("Patient?_id={p1}&_revinclude=Observation:patient"),
    )
    .await;
    assert_eq!(matches(&rev), [format!("Patient/{p1}")]);
    assert_eq!(
        included(&rev),
        [format!("Observation/{obs1}")].into_iter().collect()
    );

    let has = get_ok(&app, "Patient?_has:Observation:patient:code=718-7").await;
    assert_eq!(matches(&has), [format!("Patient/{p2}")]);

    let iterate = get_ok(
        &app,
        &format!(
            "Observation?_id={obs1}&_include=Observation:patient&_include:iterate=Patient:organization"
        ),
    )
    .await;
    assert_eq!(
        included(&iterate),
        [format!("Patient/{p1}"), format!("Organization/{org}")]
            .into_iter()
            .collect()
    );

    let compartment = get_ok(&app, &format!("Patient/{p2}/Observation")).await;
    assert_eq!(matches(&compartment), [format!("Observation/{obs2}")]);
    let missing = app.get("Patient/nosuch/Observation").await;
    assert_eq!(missing.status(), 404);
    let outside = app.get(&format!("Patient/{p2}/Organization")).await;
    assert_eq!(outside.status(), 400);
}

#[tokio::test]
async fn keyset_paging_neither_repeats_nor_skips_under_concurrent_inserts_and_cursors_are_bound() {
    let app = spawn_app().await;
    let p = id(&app.create(&patient("19121212-1212", "Tolvansson")).await);
    let mut all = std::collections::BTreeSet::new();
    for i in 0..7 {
        all.insert(format!(
            "Observation/{}",
            observation(&app, &p, "1988-5", f64::from(i), "2026-11-20T10:00:00Z").await
        ));
    }
    let mut seen = Vec::new();
    let mut page = get_ok(&app, "Observation?_count=3").await;
    seen.extend(matches(&page));
    let first_next = next_link(&page).expect("next");
    // Written during the walk: newer than every cursor, so the walk neither repeats nor shows it.
    let _ = observation(&app, &p, "1988-5", 99.0, "2026-11-20T10:00:00Z").await;
    let mut next = Some(first_next.clone());
    while let Some(url) = next {
        let r = app.client.get(&url).send().await.expect("request");
        assert_eq!(r.status(), 200);
        page = json(r).await;
        seen.extend(matches(&page));
        next = next_link(&page);
    }
    let unique: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no entry repeats: {seen:?}");
    assert_eq!(
        unique, all,
        "every entry of the walk, nothing written after it began"
    );

    // The cursor is bound to the query and to the caller.
    let cursor = first_next
        .split("_cursor=")
        .nth(1)
        .expect("cursor")
        .to_owned();
    let other_query = app
        .get(&format!(
            "Observation?_count=3&status=final&_cursor={cursor}"
        ))
        .await;
    assert_eq!(other_query.status(), 400);
    let other = app
        .client_as("demo-vc-nasby", Some("SE2321000255-P0301"), "system/*.rs")
        .await
        .get(&first_next)
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 400);
    let forged = app.get("Observation?_count=3&_cursor=bzM").await;
    assert_eq!(forged.status(), 400);
}

#[tokio::test]
async fn totals_subsets_and_if_modified_since() {
    let app = spawn_app().await;
    let p = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = id(&p);
    let _ = app.create(&patient("19400512-1233", "Nilsson")).await;
    let count = get_ok(&app, "Patient?_summary=count").await;
    assert_eq!(count["total"], 2);
    assert!(count.get("entry").is_none());
    assert_eq!(get_ok(&app, "Patient?_count=0").await["total"], 2);
    assert_eq!(get_ok(&app, "Patient?_total=estimate").await["total"], 2);
    // fhirpy 2.x's count() asks with Aidbox's `_totalMethod=count`.
    assert_eq!(
        get_ok(&app, "Patient?_count=0&_totalMethod=count").await["total"],
        2
    );
    assert_eq!(
        app.get("Patient?_totalMethod=sometimes").await.status(),
        400
    );
    assert!(
        get_ok(&app, "Patient?_total=none")
            .await
            .get("total")
            .is_none()
    );

    let elements = get_ok(&app, &format!("Patient?_id={pid}&_elements=gender")).await;
    let resource = &elements["entry"][0]["resource"];
    assert_eq!(resource["gender"], "female");
    assert!(resource.get("name").is_none());
    assert!(
        resource["meta"]["tag"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t["code"] == "SUBSETTED")
    );
    let summary = get_ok(&app, &format!("Patient/{pid}?_summary=true")).await;
    assert!(summary.get("name").is_some() && summary.get("birthDate").is_some());
    let bad = app.get(&format!("Patient/{pid}?foo=1")).await;
    assert_eq!(bad.status(), 400);

    let later = "Fri, 01 Jan 2100 00:00:00 GMT";
    let r = app
        .client
        .get(format!("{}/Patient/{pid}", app.fhir))
        .header("if-modified-since", later)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 304);
    let r = app
        .client
        .get(format!("{}/Patient/{pid}", app.fhir))
        .header("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn patch_takes_json_patch_and_fhirpath_patch_with_if_match_and_the_update_rules() {
    let app = spawn_app().await;
    let p = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let pid = id(&p);
    let patch = |body: String, ct: &'static str, if_match: Option<&'static str>| {
        let mut req = app
            .client
            .patch(format!("{}/Patient/{pid}", app.fhir))
            .header("content-type", ct)
            .body(body);
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        req.send()
    };
    let r = patch(
        r#"[{"op":"replace","path":"/gender","value":"male"}]"#.into(),
        "application/json-patch+json",
        Some("W/\"1\""),
    )
    .await
    .expect("request");
    let status = r.status();
    let body = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["gender"], "male");
    assert_eq!(body["meta"]["versionId"], "2");
    // A stale If-Match is 412 and changes nothing.
    let stale = patch(
        r#"[{"op":"replace","path":"/gender","value":"other"}]"#.into(),
        "application/json-patch+json",
        Some("W/\"1\""),
    )
    .await
    .expect("request");
    assert_eq!(stale.status(), 412);
    let fhirpath = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.name.family"},
        {"name": "value", "valueString": "Tolvan"}]}]});
    let r = patch(fhirpath.to_string(), "application/fhir+json", None)
        .await
        .expect("request");
    let body = json(r).await;
    assert_eq!(body["name"][0]["family"], "Tolvan");
    // Validation as for an update: an invalid result is refused.
    let invalid = patch(
        r#"[{"op":"replace","path":"/gender","value":42}]"#.into(),
        "application/json-patch+json",
        None,
    )
    .await
    .expect("request");
    assert!(invalid.status() == 400 || invalid.status() == 422);
    // Ownership and visibility as for an update: another principal that may not see a clinical record
    // gets 404 for it, and its patch is not even tried.
    let obs = observation(&app, &pid, "1988-5", 5.0, "2026-11-20T10:00:00Z").await;
    let other = app
        .client_as(
            "demo-vc-nasby",
            Some("SE2321000255-P0301"),
            "system/*.cruds",
        )
        .await;
    let r = other
        .patch(format!("{}/Observation/{obs}", app.fhir))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"replace","path":"/status","value":"cancelled"}]"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let current = get_ok(&app, &format!("Observation/{obs}")).await;
    assert_eq!(current["status"], "final");
    assert_eq!(current["meta"]["versionId"], "1");
    let patient_now = get_ok(&app, &format!("Patient/{pid}")).await;
    assert_eq!(patient_now["meta"]["versionId"], "3");
}

#[tokio::test]
async fn router_errors_have_operation_outcomes_and_url_conditions_are_honoured() {
    let app = spawn_app().await;
    for (method, path) in [
        (reqwest::Method::PATCH, "/fhir/Patient"),
        (reqwest::Method::OPTIONS, "/fhir/Patient"),
        (reqwest::Method::GET, "/fhir"),
        (reqwest::Method::DELETE, "/fhir/metadata"),
    ] {
        let r = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 405, "{method} {path}");
        let body = json(r).await;
        assert_eq!(body["resourceType"], "OperationOutcome", "{method} {path}");
    }
    let unknown = json(app.get("no/such/endpoint/here").await).await;
    assert_eq!(unknown["resourceType"], "OperationOutcome");
    // POST Task?identifier=… is a conditional create: the second one finds the first.
    let task = json!({"resourceType": "Task", "status": "requested", "intent": "order",
                      "identifier": [{"system": "urn:x", "value": "t-1"}]});
    let first = app.post("Task?identifier=urn:x|t-1", &task).await;
    assert_eq!(first.status(), 201);
    let second = app.post("Task?identifier=urn:x|t-1", &task).await;
    assert_eq!(second.status(), 200);
    let all = get_ok(&app, "Task?_summary=count").await;
    assert_eq!(all["total"], 1);
    let both = app
        .client
        .post(format!("{}/Task?identifier=urn:x|t-2", app.fhir))
        .header("content-type", FHIR_JSON)
        .header("if-none-exist", "identifier=urn:x|t-2")
        .body(task.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(both.status(), 400);
}

#[tokio::test]
async fn smart_discovery_and_openapi_are_served_without_a_token() {
    let app = spawn_app().await;
    for path in [
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
    ] {
        let r = app
            .anonymous
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.expect("json");
        assert!(
            v["token_endpoint"]
                .as_str()
                .expect("token")
                .ends_with("/auth/token")
        );
    }
    let r = app
        .anonymous
        .get(format!("{}/fhir/openapi.json", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.expect("json");
    assert!(doc["paths"]["/Observation"]["get"].is_object());
}

#[tokio::test]
async fn the_capability_statement_says_what_the_router_answers() {
    let app = spawn_app().await;
    let cap = get_ok(&app, "metadata").await;
    let resources = cap["rest"][0]["resource"].as_array().expect("resources");
    assert_eq!(resources.len(), 146);
    for r in resources {
        let ty = r["type"].as_str().expect("type");
        let claims = |code: &str| {
            r["interaction"]
                .as_array()
                .expect("interactions")
                .iter()
                .any(|i| i["code"] == code)
        };
        let search = app.get(&format!("{ty}?_count=0")).await.status();
        // Searching is claimed for every type and served (the access log only to auditors: 403 here).
        assert!(claims("search-type"), "{ty}");
        if ty == "AuditEvent" {
            assert_eq!(search, 403, "{ty}");
        } else {
            assert_eq!(search, 200, "{ty}");
        }
        let create = app.post(ty, &json!({"resourceType": ty})).await.status();
        if claims("create") {
            assert_ne!(create, 405, "{ty} claims create");
        } else {
            assert_eq!(create, 405, "{ty} does not claim create");
        }
        let patch = app
            .client
            .patch(format!("{}/{ty}/x", app.fhir))
            .header("content-type", "application/json-patch+json")
            .body("[]")
            .send()
            .await
            .expect("request")
            .status();
        if claims("patch") {
            assert_eq!(patch, 404, "{ty}: patching a missing resource");
        } else {
            assert_eq!(patch, 405, "{ty} does not claim patch");
        }
    }
}

#[tokio::test]
async fn the_token_endpoint_grants_the_allowed_subset_and_names_what_it_dropped() {
    let app = spawn_app().await;
    let token_url = format!("{}/auth/token", app.base);
    let assertion = |now: i64| {
        navet::auth::cli::client_assertion(
            "demo-auditor",
            &token_url,
            navet::auth::cli::demo_private_key("demo-auditor").expect("key"),
            None,
            now,
        )
        .expect("assertion")
    };
    let now = jiff::Timestamp::now().as_second();
    let r = app
        .anonymous
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/AuditEvent.rs system/Task.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion(now)),
        ])
        .send()
        .await
        .expect("request");
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "system/AuditEvent.rs");
    assert_eq!(body["scope_dropped"], "system/Task.rs");
    // Nothing allowed at all is still refused.
    let r = app
        .anonymous
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/Task.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion(now + 1)),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
}
