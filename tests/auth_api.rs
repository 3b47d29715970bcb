//! Authentication end to end through the FHIR API (issue 3): which endpoints need a token, scopes and the
//! acting user, the owner a write records, replay protection across a restart, tokens of another instance,
//! HTTPS and mutual TLS with the real binary. The token endpoint's attack tests live in `src/auth/tests.rs`.

mod common;

use common::*;
use navet::auth::TokenRequest;
use navet::auth::service::JWT_BEARER;
use serde_json::json;

#[tokio::test]
async fn every_fhir_endpoint_needs_a_token_and_the_public_ones_do_not() {
    let app = spawn_app().await;
    let anonymous = &app.anonymous;
    let fhir = &app.fhir;
    let protected = [
        anonymous.get(format!("{fhir}/Patient")),
        anonymous.get(format!("{fhir}/Patient/x")),
        anonymous.get(format!("{fhir}/Patient/x/_history")),
        anonymous.get(format!("{fhir}/Patient/x/_history/1")),
        anonymous.get(format!("{fhir}/Patient/_history")),
        anonymous.get(format!("{fhir}/_history")),
        anonymous
            .post(format!("{fhir}/Patient"))
            .header("content-type", FHIR_JSON)
            .body("{}"),
        anonymous.post(format!("{fhir}/Patient/_search")),
        anonymous
            .put(format!("{fhir}/Patient/x"))
            .header("content-type", FHIR_JSON)
            .body("{}"),
        anonymous.delete(format!("{fhir}/Patient/x")),
        anonymous
            .post(fhir.clone())
            .header("content-type", FHIR_JSON)
            .body("{}"),
    ];
    for request in protected {
        let r = request.send().await.expect("request");
        let url = r.url().to_string();
        assert_eq!(r.status(), 401, "{url}");
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer realm="navet""#,
            "{url}"
        );
        let body = json(r).await;
        assert_eq!(body["issue"][0]["code"], "login", "{url}: {body}");
    }
    for path in [
        "/metadata",
        "/fhir/metadata",
        "/.well-known/smart-configuration",
        "/auth/jwks",
        "/healthz",
        "/readyz",
    ] {
        let r = anonymous
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{path} is public");
    }
}

#[tokio::test]
async fn a_malformed_or_foreign_authorization_header_is_refused_without_echoing_it() {
    let app = spawn_app().await;
    let url = format!("{}/Organization", app.fhir);
    // (header, status): a foreign scheme and a malformed token are bad requests, a forged token is refused.
    let mut forged = None;
    for (header, status) in [
        ("Basic c2VjcmV0OnNlY3JldA==", 400),
        ("Bearer not a token", 400),
        ("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", 401),
    ] {
        let r = app
            .anonymous
            .get(&url)
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{header}");
        forged = Some(r);
    }
    let forged = forged.expect("the last request");
    let text = forged.text().await.unwrap();
    assert!(
        !text.contains("eyJhbGciOiJub25lIn0"),
        "the token is not echoed: {text}"
    );
}

#[tokio::test]
async fn a_missing_scope_is_403_with_an_operation_outcome_and_changes_nothing() {
    let app = spawn_app().await;
    let reader = app
        .client_as(DEFAULT_CLIENT, Some(DEFAULT_USER), "system/Patient.rs")
        .await;
    let r = reader
        .post(format!("{}/Patient", app.fhir))
        .header("content-type", FHIR_JSON)
        .body(patient("19121212-1212", "Tolvansson").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer realm="navet", error="insufficient_scope""#
    );
    let body = json(r).await;
    assert_eq!(body["issue"][0]["code"], "forbidden");
    assert!(outcome_text(&body).contains("create on Patient"), "{body}");
    let count = json(
        reader
            .get(format!("{}/Patient?_summary=count", app.fhir))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(count["total"], 0, "nothing was stored");
    // The same token may read what its scope names, and nothing else.
    let other = reader
        .get(format!("{}/ServiceRequest", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
}

#[tokio::test]
async fn a_transaction_with_one_entry_beyond_the_scopes_is_refused_whole() {
    let app = spawn_app().await;
    let limited = app
        .client_as(DEFAULT_CLIENT, Some(DEFAULT_USER), "system/Patient.cruds")
        .await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b7c1a52-0000-4000-8000-000000000001",
         "resource": patient("19121212-1212", "Tolvansson"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                      "subject": {"reference": "urn:uuid:0b7c1a52-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "ServiceRequest"}}
    ]});
    let r = limited
        .post(&app.fhir)
        .header("content-type", FHIR_JSON)
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(outcome_text(&json(r).await).contains("Bundle.entry[1]"));
    let count = json(app.get("Patient?_summary=count").await).await;
    assert_eq!(
        count["total"], 0,
        "the allowed entry was rolled back with the refused one"
    );
}

#[tokio::test]
async fn a_conditional_update_that_would_create_needs_the_create_scope() {
    let app = spawn_app().await;
    let updater = app
        .client_as(DEFAULT_CLIENT, Some(DEFAULT_USER), "system/Patient.rus")
        .await;
    let r = updater
        .put(format!(
            "{}/Patient?identifier=http://electronichealth.se/identifier/personnummer|191212121212",
            app.fhir
        ))
        .header("content-type", FHIR_JSON)
        .body(patient("19121212-1212", "Tolvansson").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Once the patient exists, the same request is an update and allowed.
    app.create(&patient("19121212-1212", "Tolvansson")).await;
    let r = updater
        .put(format!(
            "{}/Patient?identifier=http://electronichealth.se/identifier/personnummer|191212121212",
            app.fhir
        ))
        .header("content-type", FHIR_JSON)
        .body(patient("19121212-1212", "Tolvan").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn patient_data_needs_an_acting_user_unless_the_client_is_a_system_integration() {
    let app = spawn_app_with_demo().await;
    let no_user = app.client_as(DEFAULT_CLIENT, None, "system/*.cruds").await;
    let r = no_user
        .get(format!("{}/Patient", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(outcome_text(&json(r).await).contains("acting user"));
    // Master data is not patient data.
    let r = no_user
        .get(format!("{}/Organization", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // itACiH is registered as a system integration: it reads patients without a user.
    let itacih = app
        .client_as("demo-itacih", None, "system/Patient.rs")
        .await;
    let r = itacih
        .get(format!("{}/Patient?_summary=count", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["total"], 7);
}

#[tokio::test]
async fn every_demo_client_gets_a_token_through_http_and_reads_the_directory() {
    let app = spawn_app_with_demo().await;
    for client in [
        "demo-kommun-kristianstad",
        "demo-kommun-ystad",
        "demo-vc-nasby",
        "demo-vc-ystad",
        "demo-csk",
        "demo-lasarettet-ystad",
        "demo-mtn-kristianstad",
        "demo-mtn-ystad",
        "demo-asih",
        "demo-ambulans",
    ] {
        let c = app.client_as(client, None, "system/Organization.rs").await;
        let r = c
            .get(format!("{}/Organization?_summary=count", app.fhir))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{client}");
        // One per principal of the seed: 11, and (v2) the ambulance service.
        assert_eq!(json(r).await["total"], 12, "{client}");
    }
}

#[tokio::test]
async fn a_write_records_the_callers_principal_as_owner() {
    let app = spawn_app().await;
    let created = app.create(&patient("19121212-1212", "Tolvansson")).await;
    let id = created["id"].as_str().unwrap();
    let stored = app
        .state
        .store
        .read(&navet::store::Actor::system(), "Patient", id, None)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.owner, DEFAULT_PRINCIPAL);
}

#[tokio::test]
async fn a_token_from_another_navet_instance_is_refused() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    let token_of_a = token_for(
        &a.base,
        DEFAULT_CLIENT,
        Some(DEFAULT_USER),
        "system/*.cruds",
    )
    .await;
    let r = authorized_client(&token_of_a)
        .get(format!("{}/Organization", b.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn a_replayed_client_assertion_is_refused_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(dir.path().to_path_buf(), false);
    s.base_url = "http://navet.test".into();
    let key = navet::auth::cli::demo_private_key("demo-csk").expect("key");
    let now = jiff::Timestamp::now().as_second();
    let assertion = navet::auth::cli::client_assertion(
        "demo-csk",
        "http://navet.test/auth/token",
        key,
        None,
        now,
    )
    .expect("assertion");
    let request = || TokenRequest {
        grant_type: Some("client_credentials".into()),
        scope: Some("system/Organization.rs".into()),
        client_assertion_type: Some(JWT_BEARER.into()),
        client_assertion: Some(assertion.clone()),
        client_id: None,
    };
    let first = navet::startup::build_state(&s).await.expect("state");
    assert!(first.auth.issue_token(request()).await.is_ok());
    first.store.close().await;
    drop(first);
    let restarted = navet::startup::build_state(&s)
        .await
        .expect("state after restart");
    let refused = restarted
        .auth
        .issue_token(request())
        .await
        .expect_err("a replay");
    assert_eq!(refused.code.as_str(), "invalid_client", "{refused}");
    assert!(refused.description.contains("jti"), "{refused}");
}

// ------------------------------------------------------------------------------------ issue 8: token leaks

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `POST /auth/token` with a client assertion; the status and the RFC 6749 body.
async fn token_request(app: &TestApp, assertion: &str) -> (u16, serde_json::Value) {
    let r = app
        .anonymous
        .post(format!("{}/auth/token", app.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .expect("an answer, not a dropped connection");
    (r.status().as_u16(), json(r).await)
}

/// `GET /fhir/Patient` with `Authorization: Bearer <token>`; the status and the challenge.
async fn bearer_request(app: &TestApp, token: &str) -> (u16, String) {
    let r = app
        .anonymous
        .get(format!("{}/Patient", app.fhir))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), challenge)
}

#[tokio::test]
async fn a_non_ascii_jose_algorithm_is_refused_with_an_answer_on_both_paths() {
    // Issue 8 item 4: {"alg":"€"} panicked the request before authentication; the connection dropped.
    let app = spawn_app().await;
    for header in [
        r#"{"alg":"€"}"#,
        r#"{"alg":"H€"}"#,
        r#"{"alg":"ES384","crit":["€"]}"#,
    ] {
        let token = format!("{}.{}.c2ln", b64url(header.as_bytes()), b64url(b"{}"));
        let (status, body) = token_request(&app, &token).await;
        assert_eq!(status, 401, "{header}: {body}");
        assert_eq!(body["error"], "invalid_client", "{header}");
        let (status, challenge) = bearer_request(&app, &token).await;
        assert_eq!(status, 401, "{header}");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
    }
    // The server is still serving.
    assert_eq!(app.get("Patient?_summary=count").await.status(), 200);
}

/// Signs `claims` as navet does, with navet's own signing key from the data directory: what a forger with
/// the key, or a bug in navet, could produce.
async fn signed_by_navet(app: &TestApp, claims: &serde_json::Value) -> String {
    let jwks = json(
        app.anonymous
            .get(format!("{}/auth/jwks", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let keys_dir = app.data_dir.path().join("auth/keys");
    let file = std::fs::read_dir(&keys_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let pem = std::fs::read(file.path()).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = jwks["keys"][0]["kid"].as_str().map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn a_token_signed_by_navet_that_lives_longer_than_navet_issues_is_refused() {
    let app = spawn_app().await;
    let now = jiff::Timestamp::now().as_second();
    let claims = |iat: i64, exp: i64| {
        json!({
            "iss": format!("{}/auth", app.base), "aud": app.base, "sub": DEFAULT_CLIENT,
            "client_id": DEFAULT_CLIENT, "principal": DEFAULT_PRINCIPAL, "principal_kind": "mtn",
            "scope": "system/*.cruds", "jti": uuid::Uuid::new_v4().to_string(),
            "iat": iat, "nbf": iat, "exp": exp,
        })
    };
    // The control: the same claims with navet's lifetime open the API, so the refusals below are about
    // the times alone.
    let fair = signed_by_navet(&app, &claims(now, now + 300)).await;
    let r = authorized_client(&fair)
        .get(format!("{}/Organization?_summary=count", app.fhir))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (iat, exp, reason) in [
        (now, i64::MAX, "lives longer than the 300 seconds"),
        (now, now + 300 + 31, "lives longer than the 300 seconds"),
        (now - 86_400, now + 60, "lives longer than the 300 seconds"),
        (i64::MIN, i64::MAX, "lives longer than the 300 seconds"),
        (i64::MAX, i64::MAX, "not valid yet"),
        (now + 3600, now + 3700, "not valid yet"),
        (i64::MIN, i64::MIN, "has expired"),
    ] {
        let token = signed_by_navet(&app, &claims(iat, exp)).await;
        let (status, challenge) = bearer_request(&app, &token).await;
        assert_eq!(status, 401, "iat {iat} exp {exp}");
        assert!(
            challenge.contains(reason),
            "iat {iat} exp {exp}: {challenge}"
        );
    }
}

#[tokio::test]
async fn the_acting_user_must_hold_a_role_at_the_care_unit_in_navets_directory() {
    let app = spawn_app_with_demo().await;
    let key = navet::auth::cli::demo_private_key(DEFAULT_CLIENT).unwrap();
    let token_url = format!("{}/auth/token", app.base);
    let now = jiff::Timestamp::now().as_second();
    let acting = |subject: &str, unit: &str| navet::auth::ActingUserClaims {
        subject_id: subject.into(),
        subject_name: None,
        subject_role: "SSK".into(),
        subject_organization_id: unit.into(),
        purpose_of_use: "TREAT".into(),
    };
    // Every demo user of the principal holds a seeded role: tokens are issued.
    for subject in [
        "SE2321000255-P0101",
        "SE2321000255-P0102",
        "SE2321000255-P0103",
    ] {
        let user = acting(subject, DEFAULT_PRINCIPAL);
        let assertion =
            navet::auth::cli::client_assertion(DEFAULT_CLIENT, &token_url, key, Some(&user), now)
                .unwrap();
        let (status, body) = token_request(&app, &assertion).await;
        assert_eq!(status, 200, "{subject}: {body}");
    }
    // Unknown to the directory, or a user of another principal's unit claiming this one: refused.
    for subject in ["SE2321000255-P9999", "SE2321000255-P0201"] {
        let user = acting(subject, DEFAULT_PRINCIPAL);
        let assertion =
            navet::auth::cli::client_assertion(DEFAULT_CLIENT, &token_url, key, Some(&user), now)
                .unwrap();
        let (status, body) = token_request(&app, &assertion).await;
        assert_eq!(status, 400, "{subject}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{subject}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains(
                "holds no active PractitionerRole at care unit SE2321000255-MTN01 in navet's directory"
            ),
            "{description}"
        );
        assert!(!description.contains(subject), "the user is not echoed");
    }
}

/// (v2) MTN Ystad's physician and the ambulance nurse are in the seeded directory: their clients get tokens for
/// them, at their own units only.
#[tokio::test]
async fn the_v2_demo_users_hold_their_seeded_roles() {
    let app = spawn_app_with_demo().await;
    let token_url = format!("{}/auth/token", app.base);
    let now = jiff::Timestamp::now().as_second();
    let cases = [
        // (client, subject, role, unit, expected status)
        (
            "demo-mtn-ystad",
            "SE2321000255-P0202",
            "LAK",
            "SE2321000255-MTN02",
            200,
        ),
        (
            "demo-ambulans",
            "SE2321000255-P0501",
            "SSK",
            "SE2321000255-AMB01",
            200,
        ),
        // Not at each other's units.
        (
            "demo-mtn-ystad",
            "SE2321000255-P0501",
            "SSK",
            "SE2321000255-MTN02",
            400,
        ),
        (
            "demo-ambulans",
            "SE2321000255-P0202",
            "LAK",
            "SE2321000255-AMB01",
            400,
        ),
    ];
    for (client, subject, role, unit, expected) in cases {
        let key = navet::auth::cli::demo_private_key(client).unwrap();
        let user = navet::auth::ActingUserClaims {
            subject_id: subject.into(),
            subject_name: None,
            subject_role: role.into(),
            subject_organization_id: unit.into(),
            purpose_of_use: "TREAT".into(),
        };
        let assertion =
            navet::auth::cli::client_assertion(client, &token_url, key, Some(&user), now).unwrap();
        let (status, body) = token_request(&app, &assertion).await;
        assert_eq!(status, expected, "{client} {subject}: {body}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn signing_key_files_are_owner_only_and_a_loosened_one_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    let keys_dir = app.data_dir.path().join("auth/keys");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys_dir), 0o700);
    let files: Vec<_> = std::fs::read_dir(&keys_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&files[0]), 0o600);
    // A restart on a key file someone made world-readable refuses to start and says how to fix it. (The
    // authentication part of start-up, on the same data directory; the running app keeps its store.)
    std::fs::set_permissions(&files[0], std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = settings(app.data_dir.path().to_path_buf(), false);
    let restart =
        navet::auth::AuthSettings::new(app.base.clone(), s.data_dir.clone(), s.auth_files);
    let errors = navet::auth::build(
        &s.auth,
        restart,
        std::sync::Arc::new(navet::auth::MemoryJtiStore::new()),
    )
    .expect_err("refused to start");
    let err = errors.iter().map(|e| e.to_string()).collect::<String>();
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains(&files[0].display().to_string()), "{err}");
    assert_eq!(mode(&files[0]), 0o644, "refused, not silently changed");
}

// ------------------------------------------------------------------------------------------- HTTPS, mTLS

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

struct Served {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn serve_tls(client_ca: bool) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_navet"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(fixture("server.pem"))
        .arg("--tls-key")
        .arg(fixture("server.key.pem"))
        .env("NAVET_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if client_ca {
        command.arg("--tls-client-ca").arg(fixture("ca.pem"));
    }
    Served {
        child: command.spawn().expect("navet starts"),
        base: format!("https://127.0.0.1:{port}"),
        _dir: dir,
    }
}

fn tls_client(identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder().tls_certs_only([ca]);
    if let Some(name) = identity {
        let mut pem = std::fs::read(fixture(&format!("{name}.pem"))).unwrap();
        pem.extend(std::fs::read(fixture(&format!("{name}.key.pem"))).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().expect("client")
}

async fn wait_for(
    client: &reqwest::Client,
    url: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match client.get(url).send().await {
            Ok(r) => return Ok(r),
            // Refused until the server listens; after that the error is the TLS handshake's.
            Err(e) if e.is_connect() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if e.to_string().contains("refused")
                    || format!("{e:?}").contains("ConnectionRefused")
                {
                    continue;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
}

#[tokio::test]
async fn navet_serves_https_and_still_requires_the_token() {
    let served = serve_tls(false);
    let client = tls_client(None);
    let r = wait_for(&client, &format!("{}/metadata", served.base))
        .await
        .expect("HTTPS answers");
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(
        body["implementation"]["url"],
        format!("{}/fhir", served.base),
        "the base URL follows the scheme"
    );
    let r = client
        .get(format!("{}/fhir/Organization", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The token endpoint's audience is the https URL; navet token talks to it over TLS too.
    let token_url = json(
        client
            .get(format!("{}/.well-known/smart-configuration", served.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        token_url["token_endpoint"],
        format!("{}/auth/token", served.base)
    );
}

#[tokio::test]
async fn with_a_client_ca_only_a_certificate_it_signed_gets_through() {
    let served = serve_tls(true);
    let with_cert = tls_client(Some("client"));
    let r = wait_for(&with_cert, &format!("{}/metadata", served.base))
        .await
        .expect("mutual TLS works");
    assert_eq!(r.status(), 200);
    // The certificate is on top of the token, not instead of it.
    let r = with_cert
        .get(format!("{}/fhir/Organization", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // `navet token` presents the client certificate too, and its token opens the API over mutual TLS.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_navet"))
        .args([
            "token",
            "--server",
            &served.base,
            "--client",
            "demo-csk",
            "--scope",
            "system/Organization.rs",
        ])
        .arg("--ca")
        .arg(fixture("ca.pem"))
        .arg("--client-cert")
        .arg(fixture("client.pem"))
        .arg("--client-key")
        .arg(fixture("client.key.pem"))
        .output()
        .expect("navet token runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = with_cert
        .get(format!("{}/fhir/Organization", served.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let without = tls_client(None)
        .get(format!("{}/metadata", served.base))
        .send()
        .await;
    assert!(
        without.is_err(),
        "no client certificate: the handshake fails"
    );
    let stranger = tls_client(Some("stranger"))
        .get(format!("{}/metadata", served.base))
        .send()
        .await;
    assert!(
        stranger.is_err(),
        "a certificate no trusted CA signed: the handshake fails"
    );
}
