//! Data generator for the timeline benchmark (tests/load/timeline.sh; issue 12): fills a navet data directory
//! through navet's own write path (`fhir::ops::create` inside `Store::transact`: validation, participants,
//! patient links, care relationships, timeline rows and search index exactly as an HTTP create writes them),
//! thousands of resources per transaction, so generating is fast.
//!
//! - `--patients` patients and `--resources` resources spread over them, of the ten timeline types, owned in
//!   turn by the three demo care principals;
//! - one bench patient per `--bench` count, with that many entries owned by the mobile team (the load
//!   script's caller), one every ten minutes.
//!
//! Writes `--out` (shell variables) naming each bench patient and the `_cursor` of its last full page (the
//! deep page), for the load script.
//!
//!   cargo run --example timeline_data -- --data-dir DIR --patients 10000 --resources 200000 --out bench.env

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use navet::config::{Overrides, Settings};
use navet::error::ApiError;
use navet::fhir::ops::{Prepared, create, prepare};
use navet::fhir::visibility::Visibility;
use navet::store::Actor;
use navet::timeline::TimelineKey;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    #[arg(long, default_value_t = 200_000)]
    resources: usize,
    /// Entries of each bench patient.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    bench: Vec<usize>,
    /// Resources per transaction.
    #[arg(long, default_value_t = 5_000)]
    chunk: usize,
    #[arg(long)]
    out: PathBuf,
}

/// The demo care principals (owners), the mobile team first: the load script reads as it.
const OWNERS: [(&str, &str); 3] = [
    ("demo-mtn-kristianstad", "SE2321000255-MTN01"),
    ("demo-vc-nasby", "SE2321000255-VC101"),
    ("demo-kommun-kristianstad", "SE2120000999-HSJ1290"),
];

const TYPES: [&str; 10] = [
    "ServiceRequest",
    "MedicationRequest",
    "Task",
    "CarePlan",
    "Appointment",
    "Encounter",
    "MedicationAdministration",
    "Communication",
    "Consent",
    "EpisodeOfCare",
];

/// 2020-01-01T00:00:00Z: entry `i` of a patient is at this plus `i` × 10 minutes.
const BASE_MS: i64 = 1_577_836_800_000;
const STEP_MS: i64 = 600_000;

fn actor(owner: usize) -> Actor {
    let (client, hsa) = OWNERS[owner];
    Actor {
        principal: Arc::from(hsa),
        client_id: Some(Arc::from(client)),
        user: None,
        visibility: Visibility::Care {
            sees: Arc::from(vec![hsa.to_owned()]),
            emergency: false,
        },
        population_register: false,
    }
}

/// A valid R4 resource of `ty` about `patient` at clinical time `ms`.
fn body(ty: &str, patient: &str, ms: i64) -> Value {
    let subject = json!({"reference": format!("Patient/{patient}")});
    let at = jiff::Timestamp::from_millisecond(ms)
        .expect("in range")
        .to_string();
    let drug = json!({"text": "morfin 10 mg/ml"});
    match ty {
        "ServiceRequest" => json!({"resourceType": ty, "status": "active", "intent": "order",
            "subject": subject, "authoredOn": at}),
        "MedicationRequest" => json!({"resourceType": ty, "status": "active", "intent": "order",
            "subject": subject, "medicationCodeableConcept": drug, "authoredOn": at}),
        "Task" => {
            json!({"resourceType": ty, "status": "requested", "intent": "order", "for": subject,
            "executionPeriod": {"start": at}})
        }
        "CarePlan" => {
            json!({"resourceType": ty, "status": "active", "intent": "plan", "subject": subject,
            "created": at})
        }
        "Appointment" => json!({"resourceType": ty, "status": "booked", "start": at,
            "end": jiff::Timestamp::from_millisecond(ms + 1_800_000).expect("in range").to_string(),
            "participant": [{"actor": subject, "status": "accepted"}]}),
        "Encounter" => json!({"resourceType": ty, "status": "finished", "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
            "period": {"start": at}}),
        "MedicationAdministration" => json!({"resourceType": ty, "status": "completed",
            "subject": subject, "medicationCodeableConcept": drug, "effectiveDateTime": at}),
        "Communication" => {
            json!({"resourceType": ty, "status": "completed", "subject": subject, "sent": at})
        }
        // Inactive: on the timeline, but no consent decision that would change visibility.
        "Consent" => json!({"resourceType": ty, "status": "inactive", "dateTime": at,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": subject}),
        "EpisodeOfCare" => json!({"resourceType": ty, "status": "active", "patient": subject,
            "period": {"start": at}}),
        other => unreachable!("{other}"),
    }
}

/// Writes `items` (id, body) as `owner` in transactions of `chunk`.
async fn write_all(
    state: &navet::state::AppState,
    owner: usize,
    items: impl IntoIterator<Item = (String, Value)>,
    chunk: usize,
) -> Result<(), ApiError> {
    // Lazily, one transaction's worth at a time: memory stays bounded by `chunk`, not by the data size.
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let mut batch: Vec<(String, Prepared)> = Vec::with_capacity(chunk);
        for (id, v) in items.by_ref().take(chunk) {
            batch.push((id, prepare(&state.fhir, v.to_string().as_bytes(), None)?));
        }
        let ctx = state.fhir.clone();
        state
            .store
            .transact(&actor(owner), move |tx| {
                for (id, p) in &batch {
                    create(&ctx, tx, p, Some(id.clone()), None)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let settings = Settings::load(&Overrides {
        data_dir: Some(args.data_dir.clone()),
        ..Overrides::default()
    })
    .map_err(|e| format!("{e:?}"))?;
    let state = navet::startup::build_state(&settings)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let started = std::time::Instant::now();

    // The population: patients, then resources round-robin over them, owners in turn per transaction.
    let patients = (0..args.patients).map(|p| {
            let body = json!({"resourceType": "Patient", "name": [{"family": format!("Bench{p}"), "given": ["Test"]}],
                              "gender": "female", "birthDate": "1940-05-12"});
            (format!("p{p}"), body)
        });
    write_all(&state, 0, patients, args.chunk).await?;
    let per_owner = args.resources.div_ceil(3);
    let mut written = 0;
    for owner in 0..3 {
        let mine = (0..per_owner)
            .map(|k| k * 3 + owner)
            .filter(|i| *i < args.resources);
        written += mine.clone().count();
        let items = mine.map(|i| {
            let patient = format!("p{}", i % args.patients.max(1));
            let ty = TYPES[i % TYPES.len()];
            let ms = BASE_MS + i64::try_from(i / args.patients.max(1)).unwrap_or(0) * STEP_MS;
            (format!("r{i}"), body(ty, &patient, ms))
        });
        write_all(&state, owner, items, args.chunk).await?;
        eprintln!(
            "{written} resources after {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }

    // The bench patients: `n` entries each, owned by the mobile team, one every ten minutes.
    let mut env = String::new();
    for n in &args.bench {
        let patient = format!("bench{n}");
        let record = json!({"resourceType": "Patient", "name": [{"family": format!("Bench{n}"), "given": ["Test"]}],
                            "gender": "male", "birthDate": "1936-06-17"});
        write_all(&state, 0, vec![(patient.clone(), record)], 1).await?;
        let items = (0..*n).map(|i| {
            let ty = TYPES[i % TYPES.len()];
            let ms = BASE_MS + i64::try_from(i).unwrap_or(0) * STEP_MS;
            (format!("{patient}-{i}"), body(ty, &patient, ms))
        });
        write_all(&state, 0, items, args.chunk).await?;
        // The deep page: the last full page of 50 (entries 49 … 0) follows entry 50 (newest first).
        let deep = (*n > 50).then(|| TimelineKey {
            time_ms: BASE_MS + 50 * STEP_MS,
            resource_type: TYPES[50 % TYPES.len()].to_owned(),
            id: format!("{patient}-50"),
        });
        writeln!(env, "PATIENT_{n}={patient}")?;
        writeln!(
            env,
            "CURSOR_{n}={}",
            deep.map(|k| k.encode()).unwrap_or_default()
        )?;
    }
    std::fs::write(&args.out, env)?;
    state.store.close().await;
    eprintln!(
        "{} patients, {} resources and bench patients {:?} in {:.1}s",
        args.patients,
        args.resources,
        args.bench,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
