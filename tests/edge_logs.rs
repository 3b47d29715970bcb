//! The edge's log lines (issue 8): every line written while a request is served carries the request's id and
//! route pattern, and no line carries its path or query (they may hold identity numbers). Its own test
//! binary: the subscriber is process-wide, and no other test's lines may mix in.

mod common;

use std::sync::{Arc, Mutex};

/// Captured log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn log_lines_carry_the_request_id_and_route_but_no_path_or_query() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let app = common::spawn_app().await;
    let r = app
        .client
        .get(format!(
            "{}/Patient/pnr-19121212-1212?identifier=19121212-1212",
            app.fhir
        ))
        .header("x-request-id", "log-line-id-7")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let r = app
        .anonymous
        .get(format!("{}/Patient/anonymous-19400512-1233", app.fhir))
        .header("x-request-id", "log-line-id-8")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);

    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let span =
        |id: &str| format!("request{{request_id={id} method=GET route=/fhir/{{type}}/{{id}}}}:");
    let lines_of = |id: &str| -> Vec<&str> {
        let span = span(id);
        text.lines().filter(|l| l.contains(&span)).collect()
    };
    let read = lines_of("log-line-id-7");
    assert!(
        read.iter()
            .any(|l| l.contains("finished processing request") && l.contains("status=404")),
        "no answer line for the read:\n{text}"
    );
    let refused = lines_of("log-line-id-8");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("request not authenticated")),
        "the refusal's reason is logged in the request's span:\n{text}"
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("finished processing request") && l.contains("status=401")),
        "no answer line for the refused request:\n{text}"
    );
    for secret in ["19121212", "19400512", "identifier="] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
    }
}
