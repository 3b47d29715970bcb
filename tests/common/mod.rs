//! The one spawn-app helper: navet's real router on a random loopback port with a temporary data directory.
#![allow(dead_code)]

use std::path::PathBuf;

use navet::config::{Overrides, Settings};
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub fhir: String,
    /// Sends every request with [`DEFAULT_CLIENT`]'s token for [`DEFAULT_USER`].
    pub client: reqwest::Client,
    /// Sends no Authorization header.
    pub anonymous: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    /// The PostgreSQL schema's URL when the suite runs on PostgreSQL ([`test_database_url`]).
    pub database_url: Option<String>,
    pub state: navet::state::AppState,
    /// `PractitionerRole/<id>` of the demo users' directory entries the setup stored (empty with the demo
    /// seed, which has its own): shared master data every principal sees, e.g. in the system history.
    pub directory: std::collections::BTreeSet<String>,
}

/// The demo client the tests act as by default: the mobile team in Kristianstad, with a nurse as user.
pub const DEFAULT_CLIENT: &str = "demo-mtn-kristianstad";
pub const DEFAULT_USER: &str = "SE2321000255-P0101";
pub const DEFAULT_PRINCIPAL: &str = "SE2321000255-MTN01";

/// The suites run on SQLite unless `NAVET_TEST_DATABASE_URL` names a PostgreSQL database: then every call
/// answers a URL to a new, empty schema of it, so each test has a store of its own (as each has its own data
/// directory on SQLite). Set but unreachable is a failure, never a silent fall-back to SQLite.
pub fn test_database_url() -> Option<String> {
    let base = std::env::var("NAVET_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    // On a thread of its own: the synchronous client may not run on a test's async runtime thread.
    let url =
        std::thread::spawn(move || navet::store::postgres::migrate::create_schema(&base, &schema))
            .join()
            .expect("the schema thread")
            .unwrap_or_else(|e| panic!("NAVET_TEST_DATABASE_URL is set but unusable: {e}"));
    Some(url)
}

/// For a test that starts the real binary on `data_dir`: the PostgreSQL URL its store lives at when the suite
/// runs on PostgreSQL (the same one for every start on that data directory, as the files are on SQLite), to
/// pass as `NAVET_DATABASE_URL`.
pub fn child_database_url(data_dir: &std::path::Path) -> Option<String> {
    static URLS: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    std::env::var("NAVET_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let mut urls = URLS.lock().expect("the URL table");
    if let Some((_, url)) = urls.iter().find(|(d, _)| d == data_dir) {
        return Some(url.clone());
    }
    let url = test_database_url()?;
    urls.push((data_dir.to_path_buf(), url.clone()));
    Some(url)
}

/// Sets `NAVET_DATABASE_URL` on a command starting the binary on `data_dir` (see [`child_database_url`]).
pub fn on_test_database(command: &mut std::process::Command, data_dir: &std::path::Path) {
    match child_database_url(data_dir) {
        Some(url) => command.env("NAVET_DATABASE_URL", url),
        None => command.env_remove("NAVET_DATABASE_URL"),
    };
}

/// The store on `data_dir` for tests that use it directly (no HTTP): SQLite in the directory, or the test's
/// PostgreSQL schema for that directory when the suite runs on PostgreSQL ([`child_database_url`]).
pub async fn open_store(data_dir: &std::path::Path) -> std::sync::Arc<dyn navet::store::Store> {
    let s = settings_on(data_dir.to_path_buf(), child_database_url(data_dir), false);
    navet::startup::open_store(&s).await.expect("store")
}

/// The demo configuration with a test data directory and a small body limit (on a new PostgreSQL schema
/// when the suite runs on PostgreSQL).
pub fn settings(data_dir: PathBuf, seed_demo: bool) -> Settings {
    settings_on(data_dir, test_database_url(), seed_demo)
}

/// [`settings`] with the store at `database_url` (`None`: SQLite in the data directory).
pub fn settings_on(data_dir: PathBuf, database_url: Option<String>, seed_demo: bool) -> Settings {
    let mut s = Settings::load(&Overrides {
        data_dir: Some(data_dir),
        database_url,
        ..Overrides::default()
    })
    .expect("the demo configuration loads");
    s.listen = "127.0.0.1:0".parse().expect("addr");
    s.max_body_bytes = 64 * 1024;
    s.seed_demo = seed_demo;
    // The edge's rate limits would refuse the suites' many token requests and deliberate refusals, all from
    // 127.0.0.1; tests/edge.rs sets the limits it tests.
    s.limits.unauthenticated_requests_per_minute = 1_000_000;
    s.limits.unauthenticated_burst = 100_000;
    s.limits.client_requests_per_second = 1_000_000;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_with(false, |_| {}).await
}

pub async fn spawn_app_with_demo() -> TestApp {
    spawn_with(true, |_| {}).await
}

/// Starts the app on `data_dir`'s settings after `adjust` has changed them.
pub async fn spawn_with(seed_demo: bool, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let mut s = settings(data_dir.path().to_path_buf(), seed_demo);
    s.base_url = base.clone();
    adjust(&mut s);
    let state = navet::startup::build_state(&s).await.expect("state");
    let directory = if seed_demo {
        Default::default()
    } else {
        register_demo_users(&state, &s.auth).await
    };
    let app = navet::startup::app(state.clone());
    tokio::spawn(async move {
        // As `navet serve` does: connect info gives the access log the source address.
        let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service).await.expect("serve");
    });
    let token = token_for(&base, DEFAULT_CLIENT, Some(DEFAULT_USER), "system/*.cruds").await;
    TestApp {
        fhir: format!("{base}/fhir"),
        client: authorized_client(&token),
        anonymous: reqwest::Client::new(),
        base,
        data_dir,
        database_url: s.database_url.clone(),
        state,
        directory,
    }
}

/// Every stored access-log record as (AuditEvent id, AuditEvent view), oldest first, read straight from the
/// store's database (not through the API): the data directory's files, or the test's PostgreSQL schema.
pub fn logged_events(app: &TestApp) -> Vec<(String, String)> {
    match &app.database_url {
        None => navet::audit::chain::events_in_data_dir(app.data_dir.path()).expect("read the log"),
        Some(url) => {
            let url = url.clone();
            std::thread::spawn(move || navet::store::postgres::events_in_database(&url))
                .join()
                .expect("the log thread")
                .expect("read the log")
        }
    }
}

/// [`logged_events`] of the store on `data_dir` at `database_url` (a spawned binary's: [`child_database_url`]).
pub fn logged_events_at(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> Vec<(String, String)> {
    match database_url {
        None => navet::audit::chain::events_in_data_dir(data_dir).expect("read the log"),
        Some(url) => {
            let url = url.to_owned();
            std::thread::spawn(move || navet::store::postgres::events_in_database(&url))
                .join()
                .expect("the log thread")
                .expect("read the log")
        }
    }
}

// --------------------------------------------------------------- the store's database, outside navet
//
// Tests that read or tamper with the database behind navet's back (the access log, a sharing fact) do it on
// either backend with these: on SQLite the named file of the data directory, on PostgreSQL the test's schema
// (`TestApp.database_url`, the superuser `postgres` of NAVET_TEST_DATABASE_URL). The SQL differs (one table
// set with a `chain` column there, two databases here), so a test passes both texts.

/// Runs `f` with a client of the PostgreSQL schema at `url`, on a thread of its own: the synchronous client
/// may not run on a test's async runtime thread (it blocks on a runtime of its own).
pub fn on_postgres<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
) -> T {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test's PostgreSQL schema: {e}"));
        f(&mut client)
    })
    .join()
    .expect("the PostgreSQL thread")
}

/// A PostgreSQL error as its server message when there is one (the trigger's text), else as displayed.
fn pg_error(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

/// Runs SQL statements on the test's store: `sqlite` on the data directory's `file` (`navet.db`,
/// `audit.db`), or `postgres` on the test's schema. Answers the database's error, if any.
pub fn sql(app: &TestApp, file: &str, sqlite: &str, postgres: &str) -> Result<(), String> {
    sql_at(
        app.data_dir.path(),
        app.database_url.as_deref(),
        file,
        sqlite,
        postgres,
    )
}

/// [`sql`] on the store on `data_dir` at `database_url`.
pub fn sql_at(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    file: &str,
    sqlite: &str,
    postgres: &str,
) -> Result<(), String> {
    match database_url {
        None => rusqlite::Connection::open(data_dir.join(file))
            .expect("open the SQLite file")
            .execute_batch(sqlite)
            .map_err(|e| e.to_string()),
        Some(url) => {
            let postgres = postgres.to_owned();
            on_postgres(url, move |c| {
                c.batch_execute(&postgres).map_err(|e| pg_error(&e))
            })
        }
    }
}

/// The one integer a query answers (a count), on the test's store as [`sql`] runs statements.
pub fn query_i64(app: &TestApp, file: &str, sqlite: &str, postgres: &str) -> i64 {
    match app.database_url.as_deref() {
        None => rusqlite::Connection::open(app.data_dir.path().join(file))
            .expect("open the SQLite file")
            .query_row(sqlite, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sqlite}: {e}")),
        Some(url) => {
            let postgres = postgres.to_owned();
            on_postgres(url, move |c| {
                c.query_one(&postgres, &[])
                    .and_then(|row| row.try_get::<_, i64>(0))
                    .unwrap_or_else(|e| panic!("{postgres}: {}", pg_error(&e)))
            })
        }
    }
}

/// PostgreSQL statements run as a role that bypasses triggers (the superuser in replication mode), which is
/// what an attacker with the database's superuser can do to the append-only log: the triggers stay in place
/// (start-up finds them) but do not fire for this session.
pub fn bypassing_triggers(postgres: &str) -> String {
    format!(
        "SET session_replication_role = replica; {postgres}; SET session_replication_role = DEFAULT;"
    )
}

/// Verifies the whole access log of the test's store from outside navet, as `navet audit verify` does:
/// the data directory's databases and checkpoint file, or the PostgreSQL schema with the data directory's
/// checkpoint file and key.
pub fn verify_log(app: &TestApp) -> navet::audit::chain::Verification {
    verify_log_at(app.data_dir.path(), app.database_url.as_deref())
}

/// [`verify_log`] of the store on `data_dir` at `database_url` (a spawned binary's: [`child_database_url`]).
pub fn verify_log_at(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> navet::audit::chain::Verification {
    match database_url {
        None => navet::audit::chain::verify_data_dir(data_dir).expect("verify"),
        Some(url) => {
            let (url, dir) = (url.to_owned(), data_dir.to_path_buf());
            std::thread::spawn(move || navet::store::postgres::verify_database(&url, &dir))
                .join()
                .expect("the verify thread")
                .expect("verify")
        }
    }
}

/// The settings that start navet again on `app`'s store (its data directory and, on PostgreSQL, the same
/// schema: [`settings`] alone would give a new, empty one).
pub fn restart_settings(app: &TestApp) -> Settings {
    restart_settings_at(app.data_dir.path(), app.database_url.clone())
}

/// [`restart_settings`] for a data directory and database URL kept from a `TestApp` that was consumed.
pub fn restart_settings_at(data_dir: &std::path::Path, database_url: Option<String>) -> Settings {
    settings_on(data_dir.to_path_buf(), database_url, false)
}

/// Without the demo seed, navet's user directory is empty and no token naming a user would be issued. This
/// stores what the seed would: an active PractitionerRole for every demo `[[users]]` entry at its care unit
/// (as logical references by HSA-id, so no Practitioner or Organization is added to what tests count). It
/// is written by navet itself, as the seed is, so no access-log record is made. Answers the stored
/// `PractitionerRole/<id>`s.
pub async fn register_demo_users(
    state: &navet::state::AppState,
    auth: &navet::auth::AuthConfig,
) -> std::collections::BTreeSet<String> {
    let hsa =
        |value: &str| serde_json::json!({"system": "urn:oid:1.2.752.29.4.19", "value": value});
    let entries: Vec<Value> = auth
        .users
        .iter()
        .map(|u| {
            serde_json::json!({
                "resource": {
                    "resourceType": "PractitionerRole",
                    "active": true,
                    "practitioner": {"identifier": hsa(&u.hsa_id)},
                    "organization": {"identifier": hsa(&u.care_unit)},
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            })
        })
        .collect();
    let bundle =
        serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let unrestricted = |_: &str, _: navet::auth::Interaction| Ok(());
    let (_, results) = navet::fhir::bundle::process(
        state.fhir.clone(),
        state.store.as_ref(),
        &navet::store::Actor::system(),
        &unrestricted,
        None,
        bundle.to_string().as_bytes(),
    )
    .await
    .expect("the demo users' roles are stored");
    results
        .into_iter()
        .map(|r| {
            let stored = r.outcome.expect("created").version;
            format!("{}/{}", stored.resource_type, stored.id)
        })
        .collect()
}

/// A token from the server at `base` for a demo client (and demo user), fetched the way `navet token` does.
pub async fn token_for(base: &str, client_id: &str, user: Option<&str>, scope: &str) -> String {
    let key = navet::auth::cli::demo_private_key(client_id).expect("demo key");
    let claims = user.map(|u| {
        let cfg = settings_on(PathBuf::from("unused"), None, false).auth;
        navet::auth::cli::user_claims(&cfg, u, navet::auth::PurposeOfUse::Treat).expect("demo user")
    });
    navet::auth::cli::fetch_token(base, client_id, key, scope, claims.as_ref())
        .await
        .expect("token")
}

/// A client for a demo client acting with a demo user under a purpose of use (TREAT, ETREAT, HOPERAT).
pub async fn user_client(
    app: &TestApp,
    client_id: &str,
    user: &str,
    purpose: navet::auth::PurposeOfUse,
    scope: &str,
) -> reqwest::Client {
    let key = navet::auth::cli::demo_private_key(client_id).expect("demo key");
    let cfg = settings_on(PathBuf::from("unused"), None, false).auth;
    let claims = navet::auth::cli::user_claims(&cfg, user, purpose).expect("demo user");
    let token = navet::auth::cli::fetch_token(&app.base, client_id, key, scope, Some(&claims))
        .await
        .expect("token");
    authorized_client(&token)
}

/// A client that sends `Authorization: Bearer <token>` on every request.
pub fn authorized_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

impl TestApp {
    /// A client acting as another demo client (and user).
    pub async fn client_as(
        &self,
        client_id: &str,
        user: Option<&str>,
        scope: &str,
    ) -> reqwest::Client {
        authorized_client(&token_for(&self.base, client_id, user, scope).await)
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
        create_with(&self.client, &self.fhir, body).await
    }
}

pub async fn json(r: reqwest::Response) -> Value {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The diagnostics and expressions of an OperationOutcome, for assertions.
pub fn outcome_text(v: &Value) -> String {
    assert_eq!(
        v["resourceType"], "OperationOutcome",
        "not an OperationOutcome: {v}"
    );
    v["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            format!(
                "{} @ {}",
                i["diagnostics"].as_str().unwrap_or(""),
                i["expression"]
            )
        })
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

/// `Type/id` of every resource entry of a Bundle, in order.
pub fn entry_list(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"]
                    .as_str()
                    .expect("resourceType"),
                e["resource"]["id"].as_str().expect("id")
            )
        })
        .collect()
}

/// The Bundle's `next` link, if it has one.
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().expect("url").to_owned())
}

/// `Type/id` of every resource entry of a Bundle.
pub fn entry_ids(bundle: &Value) -> std::collections::BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str()?,
                e["resource"]["id"].as_str()?
            ))
        })
        .collect()
}

/// Creates a resource through `client` (any caller) and answers its JSON as stored; anything but 201 fails.
pub async fn create_with(client: &reqwest::Client, fhir: &str, body: &Value) -> Value {
    let ty = body["resourceType"].as_str().expect("resourceType");
    let r = client
        .post(format!("{fhir}/{ty}"))
        .header("content-type", FHIR_JSON)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = r.status();
    let text = r.text().await.expect("body");
    assert_eq!(status, 201, "create {ty} failed: {text}");
    serde_json::from_str(&text).expect("json")
}

/// The demo configuration as a file in `dir` (its keys copied beside it) with an outbox destination `itacih`
/// on `port`, short backoffs: for tests that start the real binary with a destination.
pub fn config_with_destination(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/demo/keys-demo-only");
    std::fs::create_dir_all(dir.join("keys-demo-only")).expect("mkdir");
    for entry in std::fs::read_dir(&keys).expect("keys") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            dir.join("keys-demo-only")
                .join(path.file_name().expect("name")),
        )
        .expect("copy");
    }
    let config = dir.join("navet.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[destinations]]\nname = \"itacih\"\nprincipal = \"SE2321000255-ITACIH\"\n\
             url = \"http://127.0.0.1:{port}/hook\"\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n\
             concurrency = 4\n",
            navet::config::DEMO_CONFIG
        ),
    )
    .expect("config");
    config
}
