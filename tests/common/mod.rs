//! The one spawn-app helper: navet's real router on a random loopback port with a temporary data directory.
#![allow(dead_code)]

use std::path::PathBuf;

use navet::config::{LogFormat, Settings};
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub fhir: String,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    pub state: navet::state::AppState,
}

pub fn settings(data_dir: PathBuf, seed_demo: bool) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir,
        base_url: String::new(),
        max_body_bytes: 64 * 1024,
        log_format: LogFormat::Text,
        seed_demo,
        config_dir: None,
        config_text: navet::config::DEMO_CONFIG.to_owned(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn(false).await
}

pub async fn spawn_app_with_demo() -> TestApp {
    spawn(true).await
}

async fn spawn(seed_demo: bool) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let mut s = settings(data_dir.path().to_path_buf(), seed_demo);
    s.base_url = base.clone();
    let state = navet::startup::build_state(&s).await.expect("state");
    let app = navet::startup::app(state.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    TestApp {
        fhir: format!("{base}/fhir"),
        base,
        client: reqwest::Client::new(),
        data_dir,
        state,
    }
}

pub const FHIR_JSON: &str = "application/fhir+json";

impl TestApp {
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/{path}", self.fhir))
            .header("content-type", FHIR_JSON)
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(format!("{}/{path}", self.fhir))
            .header("content-type", FHIR_JSON)
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/{path}", self.fhir))
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}/{path}", self.fhir))
            .send()
            .await
            .expect("request")
    }

    /// Creates a resource and answers its JSON as stored.
    pub async fn create(&self, body: &Value) -> Value {
        let ty = body["resourceType"].as_str().expect("resourceType");
        let r = self.post(ty, body).await;
        let status = r.status();
        let text = r.text().await.expect("body");
        assert_eq!(status, 201, "create {ty} failed: {text}");
        serde_json::from_str(&text).expect("json")
    }
}

pub async fn json(r: reqwest::Response) -> Value {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The diagnostics and expressions of an OperationOutcome, for assertions.
pub fn outcome_text(v: &Value) -> String {
    assert_eq!(v["resourceType"], "OperationOutcome", "not an OperationOutcome: {v}");
    v["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| format!("{} @ {}", i["diagnostics"].as_str().unwrap_or(""), i["expression"]))
        .collect::<Vec<_>>()
        .join(" | ")
}

pub fn patient(pnr: &str, family: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://electronichealth.se/identifier/personnummer", "value": pnr}],
        "name": [{"family": family, "given": ["Test"]}],
        "gender": "female",
        "birthDate": "1940-05-12"
    })
}
