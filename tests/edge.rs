//! The edge (issue 8): panics, request ids, timeouts, load shedding, rate limits with aggregated access-log
//! records, the metrics endpoint, and a flood of unauthenticated requests beside an authenticated reader.
//! Every app here is served the way `navet serve` serves it (`startup::serve`, with connect info, on a
//! loopback port), with the limits each test names.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use base64::Engine;
use common::{DEFAULT_CLIENT, DEFAULT_USER, json, outcome_text};
use navet::config::Settings;
use navet::state::AppState;
use navet::store::Actor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct EdgeApp {
    base: String,
    fhir: String,
    state: AppState,
    /// The mobile team's client with a nurse as user (`system/*.cruds`).
    client: reqwest::Client,
    anonymous: reqwest::Client,
    _data_dir: tempfile::TempDir,
}

/// Starts navet through `startup::serve` with `adjust`ed settings and `extra` FHIR routes, and fetches the
/// default client's token (two unauthenticated requests: discovery and the token endpoint).
async fn spawn(adjust: impl FnOnce(&mut Settings), extra: Router<AppState>) -> EdgeApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut s = common::settings(data_dir.path().to_path_buf(), false);
    s.base_url = base.clone();
    adjust(&mut s);
    let state = navet::startup::build_state(&s).await.expect("state");
    // The demo users must hold their roles in navet's directory for their tokens (no demo seed here).
    common::register_demo_users(&state, &s.auth).await;
    let app = navet::startup::app_with(state.clone(), extra);
    let limits = s.limits.clone();
    tokio::spawn(async move {
        navet::startup::serve(listener, app, &limits, None, std::future::pending())
            .await
            .expect("serve")
    });
    let token =
        common::token_for(&base, DEFAULT_CLIENT, Some(DEFAULT_USER), "system/*.cruds").await;
    EdgeApp {
        fhir: format!("{base}/fhir"),
        base,
        state,
        client: common::authorized_client(&token),
        anonymous: reqwest::Client::new(),
        _data_dir: data_dir,
    }
}

impl EdgeApp {
    /// Every access-log record after chain position `after`, as (sequence, AuditEvent).
    async fn log_after(&self, after: i64) -> Vec<(i64, Value)> {
        self.state
            .store
            .audit_page(&Actor::system(), i64::MIN, i64::MAX, after, 1_000_000)
            .await
            .expect("audit page")
            .into_iter()
            .map(|(seq, text)| (seq, serde_json::from_str(&text).expect("AuditEvent JSON")))
            .collect()
    }

    async fn last_seq(&self) -> i64 {
        self.log_after(0)
            .await
            .last()
            .map(|(seq, _)| *seq)
            .unwrap_or(0)
    }
}

fn subtype(event: &Value) -> &str {
    event["subtype"][0]["code"].as_str().unwrap_or_default()
}

fn request_id_of(event: &Value) -> Option<&str> {
    event["entity"].as_array()?.iter().find_map(|e| {
        (e["what"]["identifier"]["system"] == "urn:navet:request-id")
            .then(|| e["what"]["identifier"]["value"].as_str())
            .flatten()
    })
}

fn entities(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["what"]["reference"].as_str().map(str::to_owned))
        .collect()
}

fn decoded_query(event: &Value) -> Option<String> {
    let encoded = event["entity"]
        .as_array()?
        .iter()
        .find_map(|e| e["query"].as_str())?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn is_unauthenticated(event: &Value) -> bool {
    event["agent"][0]["who"]["display"] == "unauthenticated caller"
}

fn client_of(event: &Value) -> Option<&str> {
    event["agent"].as_array()?.iter().find_map(|a| {
        (a["who"]["identifier"]["system"] == "urn:navet:client")
            .then(|| a["who"]["identifier"]["value"].as_str())
            .flatten()
    })
}

fn issue_code(outcome: &Value) -> &str {
    outcome["issue"][0]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_panicking_handler_answers_a_generic_500_and_the_access_log_records_it() {
    // A panic message may carry anything a handler held: it must not reach the client.
    async fn panics() -> &'static str {
        panic!("handler bug near 19121212-1212")
    }
    let extra = Router::new().route("/fhir/Panic/{id}", get(panics));
    let app = spawn(|_| {}, extra).await;
    let before = app.last_seq().await;

    let r = app
        .client
        .get(format!("{}/Panic/p1", app.fhir))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(r.status(), 500);
    let body = json(r).await;
    assert_eq!(
        outcome_text(&body),
        "navet could not complete the request; it has been logged @ null"
    );
    assert_eq!(issue_code(&body), "exception");

    let records = app.log_after(before).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let event = &records[0].1;
    assert_eq!(subtype(event), "read");
    assert_eq!(event["outcomeDesc"], "HTTP 500");
    assert_eq!(event["outcome"], "8");
    assert_eq!(entities(event), ["Panic/p1"]);
    assert_eq!(client_of(event), Some(DEFAULT_CLIENT));

    // The server goes on serving.
    let r = app
        .client
        .get(format!("{}/metadata", app.fhir))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_request_id_is_taken_or_made_returned_and_recorded_in_the_audit_event() {
    let app = spawn(|_| {}, Router::new()).await;
    let cases: [(Option<&str>, bool); 4] = [
        (Some("edge-test.42:a_b"), true),
        (Some("has spaces in it"), false),
        (Some(&"x".repeat(65)), false),
        (None, false),
    ];
    for (sent, kept) in cases {
        let before = app.last_seq().await;
        let mut request = app.client.get(format!("{}/Patient/unknown-edge", app.fhir));
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let r = request.send().await.expect("request");
        assert_eq!(r.status(), 404);
        let returned = r
            .headers()
            .get("x-request-id")
            .expect("every response carries a request id")
            .to_str()
            .expect("ascii")
            .to_owned();
        if kept {
            assert_eq!(Some(returned.as_str()), sent);
        } else {
            assert!(
                uuid::Uuid::parse_str(&returned).is_ok(),
                "{sent:?} is replaced by a fresh UUID, got {returned}"
            );
            assert_ne!(Some(returned.as_str()), sent);
        }
        let records = app.log_after(before).await;
        assert_eq!(records.len(), 1, "{sent:?}: {records:?}");
        assert_eq!(
            request_id_of(&records[0].1),
            Some(returned.as_str()),
            "{sent:?}"
        );
    }
    // Two ids in one request: neither is believed.
    let r = app
        .anonymous
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .send()
        .await
        .expect("request");
    let returned = r.headers()["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(returned).is_ok(), "{returned}");
}

#[tokio::test]
async fn a_request_over_the_time_limit_gets_408_with_an_outcome_and_is_logged() {
    let extra = Router::new().route(
        "/fhir/Slow/{id}",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            "too late"
        }),
    );
    let app = spawn(|s| s.limits.request_timeout = Duration::from_secs(1), extra).await;
    let before = app.last_seq().await;
    let started = Instant::now();
    let r = app
        .client
        .get(format!("{}/Slow/s1", app.fhir))
        .send()
        .await
        .expect("request");
    let took = started.elapsed();
    assert_eq!(r.status(), 408);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let body = json(r).await;
    assert_eq!(
        outcome_text(&body),
        "the request was not completed within 1 s @ null"
    );
    assert_eq!(issue_code(&body), "transient");
    let records = app.log_after(before).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].1["outcomeDesc"], "HTTP 408");
    assert_eq!(entities(&records[0].1), ["Slow/s1"]);
}

#[tokio::test]
async fn a_connection_that_sends_half_a_header_is_closed_after_the_header_read_timeout() {
    let app = spawn(
        |s| s.limits.header_read_timeout = Duration::from_secs(1),
        Router::new(),
    )
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut half_open = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    half_open
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(15), half_open.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    assert!(closed.is_ok(), "the connection was still open after 15 s");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "a half request is not answered"
    );

    // A whole header on a fresh connection is answered as usual.
    let mut whole = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    whole
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), whole.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn over_the_concurrency_limit_requests_are_shed_with_503_and_retry_after() {
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let extra = Router::new().route(
        "/fhir/Stall/{id}",
        get(move || {
            let (e, r) = (e.clone(), r.clone());
            async move {
                e.notify_one();
                r.notified().await;
                "released"
            }
        }),
    );
    let app = spawn(|s| s.limits.max_concurrent_requests = 1, extra).await;

    let holder = {
        let (client, url) = (app.client.clone(), format!("{}/Stall/x", app.fhir));
        tokio::spawn(async move { client.get(url).send().await.expect("request").status() })
    };
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("the first request holds the only slot");

    let r = app
        .client
        .get(format!("{}/metadata", app.fhir))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body = json(r).await;
    assert_eq!(issue_code(&body), "transient");
    assert!(outcome_text(&body).contains("retry after 1 s"), "{body}");

    release.notify_one();
    assert_eq!(holder.await.expect("task"), 200);
    let r = app
        .client
        .get(format!("{}/metadata", app.fhir))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "the slot is free again");
}

#[tokio::test]
async fn the_rate_limit_refuses_with_429_and_logs_refusals_once_per_source() {
    // Five requests a source without a valid token: discovery and token (spawn) take two.
    let app = spawn(
        |s| {
            s.limits.unauthenticated_requests_per_minute = 1;
            s.limits.unauthenticated_burst = 5;
        },
        Router::new(),
    )
    .await;
    let before = app.last_seq().await;
    let url = format!("{}/Patient/rate-probe", app.fhir);
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for i in 0..10 {
        let mut request = app.anonymous.get(&url);
        if i >= 7 {
            // A failed authentication counts as none.
            request = request.header("authorization", "Bearer not-a-token");
        }
        let r = request.send().await.expect("request");
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let secs: u64 = r.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("delay-seconds");
            retry_after.push(secs);
            let body = json(r).await;
            assert_eq!(issue_code(&body), "transient");
        }
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    assert!(
        retry_after.iter().all(|s| (1..=60).contains(s)),
        "{retry_after:?}"
    );

    // The authenticated client from the same address is not starved.
    let r = app.client.get(&url).send().await.expect("request");
    assert_eq!(r.status(), 404);

    // Under the limit, each refusal has its own record, as before; over it, none yet.
    let records = app.log_after(before).await;
    let kinds: Vec<(bool, String)> = records
        .iter()
        .map(|(_, e)| {
            (
                is_unauthenticated(e),
                e["outcomeDesc"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (true, "HTTP 401".to_owned()),
            (true, "HTTP 401".to_owned()),
            (true, "HTTP 401".to_owned()),
            (false, "HTTP 404".to_owned()),
        ]
    );
    let mark = records.last().map(|(seq, _)| *seq).unwrap_or(before);

    // One record for the source, with the count.
    let written = app
        .state
        .edge
        .flush_refusals(app.state.store.as_ref())
        .await
        .expect("flush");
    assert_eq!(written, 1);
    let records = app.log_after(mark).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let event = &records[0].1;
    assert_eq!(subtype(event), "rate-limited");
    assert_eq!(event["outcomeDesc"], "HTTP 429");
    assert_eq!(event["agent"][0]["network"]["address"], "127.0.0.1");
    let query = decoded_query(event).expect("the count");
    assert!(query.starts_with("refused=7&since="), "{query}");
    // Nothing new: nothing more to write.
    assert_eq!(
        app.state
            .edge
            .flush_refusals(app.state.store.as_ref())
            .await
            .expect("flush"),
        0
    );
}

#[tokio::test]
async fn metrics_are_served_to_admin_principals_only_and_name_routes_not_paths() {
    let app = spawn(|_| {}, Router::new()).await;
    // Something to count: a read (a group commit of its access-log record) by a raw path.
    let r = app
        .client
        .get(format!("{}/Patient/metrics-probe-77", app.fhir))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);

    let url = format!("{}/metrics", app.base);
    let r = app.anonymous.get(&url).send().await.expect("request");
    assert_eq!(r.status(), 401);
    let r = app.client.get(&url).send().await.expect("request");
    assert_eq!(r.status(), 403, "a care principal gets no metrics");
    assert_eq!(
        outcome_text(&json(r).await),
        "metrics are served to admin principals @ null"
    );

    let admin_token = navet::auth::cli::fetch_token(
        &app.base,
        "demo-admin",
        navet::auth::cli::demo_private_key("demo-admin").expect("demo key"),
        "system/Organization.rs",
        None,
    )
    .await
    .expect("the demo admin gets a token");
    let admin = common::authorized_client(&admin_token);
    let r = admin.get(&url).send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.expect("body");
    for series in [
        r#"navet_http_requests_total{route="/fhir/{type}/{id}",method="GET",status="404"}"#,
        r#"navet_http_request_duration_seconds_bucket{route="/fhir/{type}/{id}",le="0.0005"}"#,
        "navet_writer_batch_size_bucket{le=\"1\"}",
        "navet_writer_commit_seconds_bucket{le=\"0.0005\"}",
        "navet_writer_queue_depth ",
        "navet_audit_index_lag ",
        r#"navet_rate_limited_total{key="source"}"#,
        r#"navet_rate_limited_total{key="client"}"#,
        "navet_load_shed_total ",
    ] {
        assert!(text.contains(series), "{series} missing in:\n{text}");
    }
    assert!(
        !text.contains("metrics-probe-77"),
        "a raw path became a label"
    );

    // The private listener's app serves the same text without a token.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let private = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    let metrics_app = navet::startup::metrics_app(app.state.clone());
    let limits = app.state.edge.limits.clone();
    tokio::spawn(async move {
        navet::startup::serve(listener, metrics_app, &limits, None, std::future::pending())
            .await
            .expect("serve")
    });
    let r = app.anonymous.get(&private).send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("navet_writer_queue_depth ")
    );
}

const FLOOD: usize = 20_000;
/// The flood comes in bursts, each between two quiet spans, and each burst's reader rate is compared with
/// the quiet spans on either side of it: the machine's other load (2 cores shared with builds) drifts, and a
/// burst is compared with the seconds around it.
const BURSTS: usize = 10;
/// With navet's 100 ms pause before each refusal, 64 connections send about 640 requests a second.
const FLOOD_CONNECTIONS: usize = 64;
const QUIET: Duration = Duration::from_secs(2);

/// The reader's rate (reads a second) over `[from, to)`.
fn rate(reads: &[Instant], (from, to): (Instant, Instant)) -> f64 {
    let n = reads.iter().filter(|t| **t >= from && **t < to).count();
    n as f64 / to.saturating_duration_since(from).as_secs_f64().max(0.001)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The flooder stands for another machine: its own thread and runtime, at the lowest CPU priority (on a
/// shared 2-core machine its own work would otherwise be what slows the reader, not navet's), a bounded
/// number of connections, each sending the next request as soon as the last is answered. Each message on
/// `go` starts a burst of `FLOOD / BURSTS` requests; `done` gets each burst's statuses.
fn flooder(
    url: String,
    go: std::sync::mpsc::Receiver<()>,
    done: tokio::sync::mpsc::UnboundedSender<BTreeMap<u16, usize>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // Linux: nice is per thread; 0 names the calling one.
        #[cfg(target_os = "linux")]
        // SAFETY: setpriority touches no memory; a failure only leaves the priority as it was.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let connections: Vec<reqwest::Client> = (0..FLOOD_CONNECTIONS)
            .map(|_| reqwest::Client::new())
            .collect();
        while go.recv().is_ok() {
            let statuses = runtime.block_on(async {
                let sent = Arc::new(AtomicUsize::new(0));
                let mut tasks = Vec::new();
                for http in &connections {
                    let (sent, url, http) = (sent.clone(), url.clone(), http.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
                        while sent.fetch_add(1, Ordering::Relaxed) < FLOOD / BURSTS {
                            let status = match http.get(&url).send().await {
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    let _ = r.bytes().await;
                                    status
                                }
                                Err(_) => 0,
                            };
                            *statuses.entry(status).or_default() += 1;
                        }
                        statuses
                    }));
                }
                let mut all: BTreeMap<u16, usize> = BTreeMap::new();
                for task in tasks {
                    for (status, n) in task.await.expect("flood task") {
                        *all.entry(status).or_default() += n;
                    }
                }
                all
            });
            if done.send(statuses).is_err() {
                return;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_requests_neither_slows_an_authenticated_reader_nor_grows_the_log()
 {
    let app = spawn(
        |s| {
            s.limits.unauthenticated_requests_per_minute = 6;
            s.limits.unauthenticated_burst = 5;
        },
        Router::new(),
    )
    .await;
    let created = common::create_with(
        &app.client,
        &app.fhir,
        &common::patient("19400512-1233", "Nilsson"),
    )
    .await;
    let url = format!(
        "{}/Patient/{}",
        app.fhir,
        created["id"].as_str().expect("id")
    );
    let start_seq = app.last_seq().await;
    let test_started = Instant::now();

    // One authenticated reader, reading as fast as it can from start to end; each completed read's time is
    // kept, so the rate is compared second by second (medians: the machine's other load comes in spikes).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (client, url, stop) = (app.client.clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut reads, mut failures) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        reads.push(Instant::now());
                    }
                    Ok(r) => failures.push(r.status().to_string()),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (reads, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (go, go_rx) = std::sync::mpsc::channel();
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let flood_thread = flooder(url.clone(), go_rx, done_tx);
    let (mut quiet_spans, mut flood_spans) = (Vec::new(), Vec::new());
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for _ in 0..BURSTS {
        let quiet_from = Instant::now();
        tokio::time::sleep(QUIET).await;
        let flood_from = Instant::now();
        go.send(()).expect("flooder");
        for (status, n) in done.recv().await.expect("burst") {
            *statuses.entry(status).or_default() += n;
        }
        quiet_spans.push((quiet_from, flood_from));
        flood_spans.push((flood_from, Instant::now()));
    }
    let last_quiet = Instant::now();
    tokio::time::sleep(QUIET).await;
    quiet_spans.push((last_quiet, Instant::now()));
    drop(go);
    tokio::task::spawn_blocking(move || flood_thread.join().expect("flooder"))
        .await
        .expect("join");
    stop.store(true, Ordering::Relaxed);
    let (reads, failures) = reader.await.expect("reader");

    // Burst i against the mean of the quiet span before it (i) and after it (i + 1).
    let ratios: Vec<f64> = flood_spans
        .iter()
        .enumerate()
        .map(|(i, span)| {
            let around = (rate(&reads, quiet_spans[i]) + rate(&reads, quiet_spans[i + 1])) / 2.0;
            rate(&reads, *span) / around.max(1.0)
        })
        .collect();
    let quiet_rate = median(quiet_spans.iter().map(|s| rate(&reads, *s)).collect());
    let flooded_rate = median(flood_spans.iter().map(|s| rate(&reads, *s)).collect());
    let flood_time: Duration = flood_spans.iter().map(|(from, to)| *to - *from).sum();
    let ratio = median(ratios.clone());
    eprintln!(
        "reader: median {quiet_rate:.0} reads/s quiet, {flooded_rate:.0} reads/s flooded; per burst (flooded / \
         around): {ratios:.2?}, median {ratio:.2}; flood statuses {statuses:?} in {flood_time:?}"
    );

    assert_eq!(
        failures,
        Vec::<String>::new(),
        "no legitimate request fails"
    );
    assert_eq!(statuses.values().sum::<usize>(), FLOOD);
    let refused = statuses.get(&429).copied().unwrap_or(0);
    let answered_401 = statuses.get(&401).copied().unwrap_or(0);
    assert_eq!(
        refused + answered_401,
        FLOOD,
        "every flood request is refused: {statuses:?}"
    );
    assert!(
        flood_time >= Duration::from_secs(10),
        "the reader was measured under the flood for {flood_time:?}"
    );
    assert!(
        ratio >= 0.8,
        "the reader slowed to {ratio:.2} of its rate under the flood (bursts: {ratios:.2?})"
    );

    // The log: one record per legitimate read, and for the flood only those under the limit plus one
    // aggregate for the source.
    let written = app
        .state
        .edge
        .flush_refusals(app.state.store.as_ref())
        .await
        .expect("flush");
    assert_eq!(written, 1);
    let records = app.log_after(start_seq).await;
    let logged_reads = records
        .iter()
        .filter(|(_, e)| client_of(e) == Some(DEFAULT_CLIENT) && subtype(e) == "read")
        .count();
    assert_eq!(logged_reads, reads.len(), "every read has its record");
    let flood_records: Vec<&Value> = records
        .iter()
        .map(|(_, e)| e)
        .filter(|e| client_of(e).is_none())
        .collect();
    assert_eq!(flood_records.len(), answered_401 + 1, "{flood_records:?}");
    // 3 left in the bucket after the token fetch, plus one per 10 s (6 a minute) of the test.
    let allowed = 3 + test_started.elapsed().as_secs() as usize / 10 + 1;
    assert!(
        answered_401 <= allowed,
        "{answered_401} flood requests passed the limit (at most {allowed})"
    );
    let aggregate = flood_records
        .iter()
        .find(|e| subtype(e) == "rate-limited")
        .expect("the aggregate record");
    assert_eq!(
        decoded_query(aggregate)
            .expect("count")
            .split('&')
            .next()
            .map(str::to_owned),
        Some(format!("refused={refused}"))
    );
}
