//! Search proven on the official FHIR R4 examples (switch: `--features shared-fhir`): every example navet
//! stores is found by a search on each of its indexed parameters (issue 14). The counts per type are printed.
//!
//! For each index row of each stored example, one query that the row must satisfy is built (token
//! `system|code`, string starts-with, reference and uri as written, a date/number/quantity range around the
//! row's own bounds) and run together with `_id`, through the same parser and store as `GET [type]?…`.
//! Composite rows are counted but not queried here (their parts are the token and value parameters queried
//! on their own); rows navet derives for modifiers (`:text`, `:exact`, `:identifier`) are covered by the
//! plain parameter.
#![cfg(feature = "shared-fhir")]

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use navet::search::index::{IndexRow, NUMBER_SCALE, index_resource};
use navet::search::params::ParamType;
use navet::search::query::parse_query;
use navet::store::Actor;

fn examples_path() -> std::path::PathBuf {
    let dir = std::env::var("NAVET_SHARED_FHIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fhir")
        });
    let path = dir.join("hl7.fhir.r4.examples-4.0.1.tgz");
    assert!(
        path.exists(),
        "the shared-fhir suite is switched on but {} is missing; set NAVET_SHARED_FHIR to the folder holding it",
        path.display()
    );
    path
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | ',' | '|' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn instant(ms: i64) -> Option<String> {
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    let text = t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    // parse_date_range takes four-digit years only.
    (text.len() == 24).then_some(text)
}

fn number(scaled: i64) -> String {
    format!("{}", scaled as f64 / NUMBER_SCALE)
}

/// A query value the row satisfies, or `None` when the row is not queried on its own.
fn query_for(kind: ParamType, row: &IndexRow) -> Option<String> {
    match kind {
        ParamType::Token => Some(match &row.system {
            Some(system) => format!("{}|{}", escape(system), escape(&row.value)),
            None => escape(&row.value),
        }),
        ParamType::String | ParamType::Uri | ParamType::Reference => Some(escape(&row.value)),
        ParamType::Date => match (row.lo, row.hi) {
            (Some(lo), _) if lo != i64::MIN => instant(lo).map(|t| format!("ge{t}")),
            (_, Some(hi)) => instant(hi).map(|t| format!("le{t}")),
            _ => None,
        },
        ParamType::Number | ParamType::Quantity => {
            if kind == ParamType::Quantity && !row.value.is_empty() {
                return None; // the unit rows; the unit-less row of the same value is queried
            }
            match (row.lo, row.hi) {
                (Some(lo), _) if lo != i64::MIN => Some(format!("ge{}", number(lo))),
                (_, Some(hi)) if hi != i64::MAX => Some(format!("le{}", number(hi))),
                _ => None,
            }
        }
        ParamType::Composite => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_official_example_is_found_by_each_of_its_indexed_parameters() {
    let app = common::spawn_with(false, |s| {
        s.max_body_bytes = navet::config::DEFAULT_MAX_BODY
    })
    .await;
    let params = &app.state.fhir.params;
    let file = std::fs::File::open(examples_path()).expect("open tgz");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    // type → (examples, queries, found)
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    let actor = Actor::system();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if !name.ends_with(".json")
            || name.ends_with("package.json")
            || name.ends_with(".index.json")
        {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("read");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(ty) = v["resourceType"].as_str().map(str::to_owned) else {
            continue;
        };
        if text.len() > app.state.max_body_bytes {
            continue;
        }
        let r = app
            .client
            .post(format!("{}/{ty}", app.fhir))
            .header("content-type", "application/fhir+json")
            .body(text.clone())
            .send()
            .await
            .expect("post");
        if r.status() != 201 {
            continue; // official_examples_roundtrip.rs pins the refused ones
        }
        let stored: serde_json::Value = r.json().await.expect("json");
        let id = stored["id"].as_str().expect("id").to_owned();
        let count = counts.entry(ty.clone()).or_default();
        count.0 += 1;
        let mut seen = std::collections::HashSet::new();
        for row in index_resource(params, &ty, &stored) {
            if row.param.contains(':') {
                continue;
            }
            let Some(param) = params.param(&ty, &row.param) else {
                continue;
            };
            let Some(value) = query_for(param.kind, &row) else {
                continue;
            };
            if !seen.insert((row.param.clone(), value.clone())) {
                continue;
            }
            let pairs = vec![
                ("_id".to_owned(), id.clone()),
                (row.param.clone(), value.clone()),
            ];
            let query = match parse_query(params, &ty, &pairs, false) {
                Ok(q) => q,
                Err(e) => {
                    misses.push(format!("{name}: {}={value}: refused: {e:?}", row.param));
                    continue;
                }
            };
            count.1 += 1;
            let page = app
                .state
                .store
                .search(&actor, &ty, query, 0, 2)
                .await
                .expect("search");
            if page.matches.iter().any(|m| m.id == id) {
                count.2 += 1;
            } else {
                misses.push(format!("{name}: {}={value}", row.param));
            }
        }
    }
    let (examples, queries, found) = counts
        .values()
        .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    println!(
        "{examples} examples in {} types, {queries} searches, {found} found",
        counts.len()
    );
    for (ty, (e, q, f)) in &counts {
        println!("  {ty}: {e} examples, {q} searches, {f} found");
    }
    assert!(examples > 2_000, "the examples were stored");
    assert!(
        misses.is_empty(),
        "{} searches did not find their example: {:?}",
        misses.len(),
        &misses[..misses.len().min(20)]
    );
}
