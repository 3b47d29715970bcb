//! Search end to end: parameters, modifiers, paging links, _include, _sort, _total, unknown parameters.

mod common;

use common::*;
use serde_json::{Value, json};

fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn setup(app: &TestApp) -> (String, String, String) {
    let p1 = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let p2 = app.create(&patient("19400512-1233", "Nilsson")).await;
    let p1_id = p1["id"].as_str().unwrap().to_owned();
    let sr = app
        .create(&json!({
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "code": {"coding": [{"system": "http://navet.example/CodeSystem/punktinsats", "code": "iv-antibiotika"}]},
            "subject": {"reference": format!("Patient/{p1_id}")},
            "authoredOn": "2026-11-23T09:00:00+01:00"
        }))
        .await;
    (
        p1_id,
        p2["id"].as_str().unwrap().to_owned(),
        sr["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn search_by_identifier_name_id_and_last_updated_finds_the_right_patients() {
    let app = spawn_app().await;
    let (p1, p2, _) = setup(&app).await;
    let by_id = json(
        app.get(
            "Patient?identifier=http://electronichealth.se/identifier/personnummer|191212121212",
        )
        .await,
    )
    .await;
    assert_eq!(ids(&by_id, "match"), [format!("Patient/{p1}")]);
    // Without a system, either written form of the number finds the patient.
    for written in ["19121212-1212", "191212121212"] {
        let found = json(app.get(&format!("Patient?identifier={written}")).await).await;
        assert_eq!(ids(&found, "match"), [format!("Patient/{p1}")], "{written}");
    }
    let by_name = json(app.get("Patient?name=nils").await).await;
    assert_eq!(ids(&by_name, "match"), [format!("Patient/{p2}")]);
    let by_logical = json(app.get(&format!("Patient?_id={p2}")).await).await;
    assert_eq!(ids(&by_logical, "match"), [format!("Patient/{p2}")]);
    let recent = json(
        app.get("Patient?_lastUpdated=gt2020-01-01&_total=accurate")
            .await,
    )
    .await;
    assert_eq!(recent["total"], 2);
    let future = json(
        app.get("Patient?_lastUpdated=gt2100-01-01&_total=accurate")
            .await,
    )
    .await;
    assert_eq!(future["total"], 0);
}

#[tokio::test]
async fn search_by_patient_subject_status_code_and_date() {
    let app = spawn_app().await;
    let (p1, p2, sr) = setup(&app).await;
    let want = [format!("ServiceRequest/{sr}")];
    for q in [
        format!("ServiceRequest?patient={p1}"),
        format!("ServiceRequest?subject=Patient/{p1}"),
        "ServiceRequest?status=active".to_owned(),
        "ServiceRequest?code=iv-antibiotika".to_owned(),
        "ServiceRequest?code=http://navet.example/CodeSystem/punktinsats|iv-antibiotika".to_owned(),
        "ServiceRequest?authored=2026-11-23".to_owned(),
        "ServiceRequest?authored=ge2026-11-01&authored=lt2026-12-01".to_owned(),
    ] {
        let b = json(app.get(&q).await).await;
        assert_eq!(ids(&b, "match"), want, "{q}");
    }
    for q in [
        format!("ServiceRequest?patient={p2}"),
        "ServiceRequest?status=completed".to_owned(),
        "ServiceRequest?code=blodtransfusion".to_owned(),
        "ServiceRequest?authored=lt2026-11-01".to_owned(),
    ] {
        let b = json(app.get(&q).await).await;
        assert!(ids(&b, "match").is_empty(), "{q} should find nothing");
    }
}

#[tokio::test]
async fn include_adds_the_referenced_patient_once() {
    let app = spawn_app().await;
    let (p1, _, sr) = setup(&app).await;
    let b = json(
        app.get("ServiceRequest?_include=ServiceRequest:subject")
            .await,
    )
    .await;
    assert_eq!(ids(&b, "match"), [format!("ServiceRequest/{sr}")]);
    assert_eq!(ids(&b, "include"), [format!("Patient/{p1}")]);
}

#[tokio::test]
async fn an_unknown_search_parameter_is_an_error_unless_handling_is_lenient() {
    let app = spawn_app().await;
    setup(&app).await;
    let r = app.get("Patient?colour=blue").await;
    assert_eq!(r.status(), 400);
    assert!(outcome_text(&json(r).await).contains("colour"));
    let lenient = app
        .client
        .get(format!("{}/Patient?colour=blue&_total=accurate", app.fhir))
        .header("prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(lenient.status(), 200);
    let b = json(lenient).await;
    assert_eq!(b["total"], 2);
    let self_link = b["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "self")
        .unwrap();
    assert!(
        !self_link["url"].as_str().unwrap().contains("colour"),
        "ignored parameters leave the self link"
    );
    assert!(
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["search"]["mode"] == "outcome")
    );
}

#[tokio::test]
async fn search_pages_follow_next_links_without_repeats_and_sort_is_honoured() {
    let app = spawn_app().await;
    for i in 0..7 {
        app.create(&json!({"resourceType": "Organization", "name": format!("Org {i}")}))
            .await;
    }
    let mut seen = Vec::new();
    let mut url = Some(format!(
        "{}/Organization?_count=3&_sort=-_lastUpdated",
        app.fhir
    ));
    while let Some(u) = url {
        let b = json(app.client.get(&u).send().await.unwrap()).await;
        let page: Vec<String> = ids(&b, "match");
        assert!(page.len() <= 3);
        seen.extend(page);
        url = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 7);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 7);
    let count = json(app.get("Organization?_summary=count").await).await;
    assert_eq!(count["total"], 7);
    assert!(count.get("entry").is_none());
}

#[tokio::test]
async fn deleted_resources_are_not_found_by_search() {
    let app = spawn_app().await;
    let (p1, _, _) = setup(&app).await;
    assert_eq!(app.delete(&format!("Patient/{p1}")).await.status(), 204);
    let b = json(
        app.get("Patient?identifier=191212121212&_total=accurate")
            .await,
    )
    .await;
    assert_eq!(b["total"], 0);
    // The national identity number is free again once its Patient is deleted.
    app.create(&patient("19121212-1212", "Ny")).await;
}

mod caps {
    use super::*;
    use navet::search::query::{
        MAX_INCLUDES, MAX_PARAMETERS, MAX_SORT_KEYS, MAX_VALUES, MAX_VALUES_PER_PARAMETER,
    };

    fn list(n: usize, item: impl Fn(usize) -> String) -> String {
        (0..n).map(item).collect::<Vec<_>>().join(",")
    }

    /// A 400 whose OperationOutcome names the cap and its limit.
    async fn refused(app: &TestApp, path: &str, expected: &str) {
        let r = app.get(path).await;
        let status = r.status();
        let text = outcome_text(&json(r).await);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }

    #[tokio::test]
    async fn each_search_cap_is_a_400_that_names_it_and_its_limit() {
        let app = spawn_app().await;
        let values = list(MAX_VALUES_PER_PARAMETER + 1, |i| format!("name{i}"));
        refused(
            &app,
            &format!("Patient?name={values}"),
            &format!(
                "name: too many values: one parameter takes at most {MAX_VALUES_PER_PARAMETER}"
            ),
        )
        .await;
        let params = list(MAX_PARAMETERS + 1, |i| format!("name=n{i}")).replace(',', "&");
        refused(
            &app,
            &format!("Patient?{params}"),
            &format!(
                "too many parameters: a search takes at most {MAX_PARAMETERS}, this one has {}",
                MAX_PARAMETERS + 1
            ),
        )
        .await;
        let full = list(MAX_VALUES_PER_PARAMETER, |i| format!("n{i}"));
        let total = (0..=MAX_VALUES / MAX_VALUES_PER_PARAMETER)
            .map(|_| format!("name={full}"))
            .collect::<Vec<_>>()
            .join("&");
        refused(
            &app,
            &format!("Patient?{total}"),
            &format!("a search takes at most {MAX_VALUES} values in all its parameters"),
        )
        .await;
        let sort = list(990, |_| "-birthdate".into());
        refused(
            &app,
            &format!("Patient?_sort={sort}"),
            &format!("_sort: too many _sort keys: at most {MAX_SORT_KEYS}, this one has 990"),
        )
        .await;
        let includes = list(MAX_INCLUDES + 1, |_| "_include=Task:owner".into()).replace(',', "&");
        refused(
            &app,
            &format!("Task?{includes}"),
            &format!(
                "a search takes at most {MAX_INCLUDES}, this one has {}",
                MAX_INCLUDES + 1
            ),
        )
        .await;
        // A conditional create's condition is a search too.
        let r = app
            .client
            .post(format!("{}/Patient", app.fhir))
            .header("content-type", FHIR_JSON)
            .header("if-none-exist", format!("name={values}"))
            .body(patient("19121212-1212", "Tolvansson").to_string())
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 400);
        let all = json(app.get("Patient?_summary=count").await).await;
        assert_eq!(
            all["total"], 0,
            "the refused conditional create stored nothing"
        );
    }

    /// The widest shapes the caps allow still run: the reference parameter with the most target types
    /// (a bare id binds one value per type), ORed strings, ANDed filters, every sort key and include.
    #[tokio::test]
    async fn a_search_at_every_cap_at_once_is_answered() {
        let app = spawn_app().await;
        let (p1, _, _) = setup(&app).await;
        let per_param = MAX_VALUES_PER_PARAMETER;
        let filters = MAX_VALUES / per_param;
        let ids = list(per_param, |i| format!("id{i}"));
        let wide = (0..filters)
            .map(|_| format!("recipient={ids}"))
            .collect::<Vec<_>>()
            .join("&");
        let includes =
            list(MAX_INCLUDES, |_| "_include=Communication:recipient".into()).replace(',', "&");
        let sort = list(MAX_SORT_KEYS, |_| "-sent".into());
        let r = app
            .get(&format!("Communication?{wide}&{includes}&_sort={sort}"))
            .await;
        let status = r.status();
        let body = json(r).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["resourceType"], "Bundle");
        // Many ANDed filters, together at the value cap: each ORs the patient's name among unknown ones.
        let names = list(MAX_VALUES / MAX_PARAMETERS, |i| {
            if i == 0 {
                "tolv".into()
            } else {
                format!("x{i}")
            }
        });
        let and = (0..MAX_PARAMETERS)
            .map(|_| format!("name={names}"))
            .collect::<Vec<_>>()
            .join("&");
        let r = app.get(&format!("Patient?{and}")).await;
        let status = r.status();
        let body = json(r).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(ids_of(&body), [format!("Patient/{p1}")]);
    }

    fn ids_of(bundle: &Value) -> Vec<String> {
        super::ids(bundle, "match")
    }

    #[test]
    fn arbitrary_query_strings_are_answered_never_with_a_500() {
        use proptest::prelude::*;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let app = rt.block_on(spawn_app());
        let key = "(_sort|_include|_revinclude|_count|_cursor|_total|_summary|_elements|_id|_lastUpdated|name|\
                   identifier|birthdate|gender|subject|patient|owner|status|[a-z_]{1,6})(:[a-zA-Z]{1,8})?";
        let value = r"([-a-zA-Z0-9|,:\\$/?=.+%_ ]|%[0-9A-F]{2}|%(C3|E2)%[89AB][0-9A-F]){0,30}";
        let pairs = proptest::collection::vec((key, value), 0..12);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 96,
            ..ProptestConfig::default()
        });
        runner
            .run(
                &(
                    pairs,
                    "(Patient|Task|Communication|Observation|Nope|AuditEvent)",
                ),
                |(pairs, ty)| {
                    let query = pairs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("&");
                    let status =
                        rt.block_on(async { app.get(&format!("{ty}?{query}")).await.status() });
                    prop_assert!(!status.is_server_error(), "{ty}?{query} answered {status}");
                    Ok(())
                },
            )
            .expect("no query string gets a 5xx");
        // Paging cursors at the edges of the integer range (a cursor is `o<offset>`, base64url).
        for cursor in [
            "bzE4NDQ2NzQ0MDczNzA5NTUxNjE1",
            "bzkyMjMzNzIwMzY4NTQ3NzU4MDc",
            "bzkyMjMzNzIwMzY4NTQ3NzU4MDg",
        ] {
            let status =
                rt.block_on(async { app.get(&format!("Patient?_cursor={cursor}")).await.status() });
            assert!(!status.is_server_error(), "{cursor}: {status}");
        }
    }
}
