//! Bounded work per request (issue 8): big bodies take turns, duplicate JSON names are refused.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// A valid Patient of about `bytes` bytes (many small extensions).
fn big_patient(bytes: usize) -> Value {
    let one = json!({"url": "http://navet.example/ext", "valueString": "abcdefghij"});
    let n = bytes / (one.to_string().len() + 1);
    let mut p = patient("19121212-1212", "Tolvansson");
    p["extension"] = Value::Array(vec![one; n]);
    p
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn big_bodies_take_turns_and_one_that_finds_no_turn_gets_503_with_retry_after() {
    let app = spawn_with(false, |s| {
        s.max_body_bytes = 1024 * 1024;
        s.big_body_bytes = 64 * 1024;
        s.big_body_concurrency = 1;
        s.big_body_wait_ms = 300;
    })
    .await;
    let gate = app.state.bounds.big_bodies.clone();
    let big = big_patient(200 * 1024);
    // A client that declares a big body and sends none of it: it holds the only permit while it is read.
    let token = token_for(
        &app.base,
        DEFAULT_CLIENT,
        Some(DEFAULT_USER),
        "system/*.cruds",
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: 300000\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    until("the slow upload holds the permit", || gate.in_use() == 1).await;

    let r = app.post("Patient", &big).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let outcome = json(r).await;
    assert_eq!(outcome["issue"][0]["code"], "transient", "{outcome}");
    // Small bodies never wait.
    let small = app
        .post("Patient", &patient("19400512-1233", "Nilsson"))
        .await;
    assert_eq!(small.status(), 201);

    drop(slow);
    until("the permit is released", || gate.in_use() == 0).await;
    let r = app.post("Patient", &big).await;
    assert_eq!(r.status(), 201, "the big body gets its turn");
    assert_eq!(gate.in_use(), 0, "and gives it back");
    let all = json(app.get("Patient?_summary=count").await).await;
    assert_eq!(all["total"], 2, "the shed request stored nothing");
}

#[tokio::test]
async fn a_body_that_names_a_member_twice_at_any_depth_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let stored = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let id = stored["id"].as_str().expect("id");
    let bodies = [
        r#"{"resourceType":"Patient","gender":"male","gender":"female"}"#.to_owned(),
        r#"{"resourceType":"Patient","name":[{"family":"A","family":"B"}]}"#.to_owned(),
        r#"{"resourceType":"Patient","identifier":[{"system":"http://electronichealth.se/identifier/personnummer","value":"194005121233","value":"191212121212"}]}"#.to_owned(),
        r#"{"resourceType":"Patient","extension":[{"url":"u","valueCodeableConcept":{"coding":[{"code":"a","code":"b"}]}}]}"#.to_owned(),
    ];
    for body in &bodies {
        let post = app
            .client
            .post(format!("{}/Patient", app.fhir))
            .header("content-type", FHIR_JSON)
            .body(body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(post.status(), 400, "POST {body}");
        assert!(outcome_text(&json(post).await).contains("appears twice"));
        let with_id = body.replacen('{', &format!(r#"{{"id":"{id}","#), 1);
        let put = app
            .client
            .put(format!("{}/Patient/{id}", app.fhir))
            .header("content-type", FHIR_JSON)
            .body(with_id.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(put.status(), 400, "PUT {with_id}");
    }
    let all = json(app.get("Patient?_summary=count").await).await;
    assert_eq!(all["total"], 1);
    let current = json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(current["meta"]["versionId"], "1", "no update went through");
}
