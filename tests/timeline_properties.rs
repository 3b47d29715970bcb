//! Property test of the patient timeline (issue 12): random resources of the ten timeline types about one
//! patient, with random clinical times (ties included), random owners among three principals, random
//! participants and random consents and blocks. For every principal, and one acting under emergency access
//! (ETREAT), the timeline it gets — paged with a random page size by following `next` links to the end —
//! is exactly the oracle's list, in order (newest first by (clinical time, type, id), as the SQL orders it),
//! every page but the last is full, and `_total=accurate` is the oracle's count on every page.

mod common;

use std::collections::BTreeSet;

use common::*;
use navet::auth::PurposeOfUse;
use proptest::prelude::*;
use serde_json::{Value, json};

/// (client, user, principal HSA-id)
const PRINCIPALS: [(&str, &str, &str); 3] = [
    (
        "demo-mtn-kristianstad",
        "SE2321000255-P0101",
        "SE2321000255-MTN01",
    ),
    ("demo-vc-nasby", "SE2321000255-P0301", "SE2321000255-VC101"),
    (
        "demo-kommun-kristianstad",
        "SE2120000999-P1290A",
        "SE2120000999-HSJ1290",
    ),
];

/// The random resource types (Consent comes from the consents and blocks: its decisions change visibility).
const KINDS: [&str; 9] = [
    "ServiceRequest",
    "MedicationRequest",
    "Task",
    "CarePlan",
    "Appointment",
    "Encounter",
    "MedicationAdministration",
    "Communication",
    "EpisodeOfCare",
];

/// 2026-12-01T00:00:00Z in epoch milliseconds; clinical times are whole hours after it.
const BASE_MS: i64 = 1_796_083_200_000;

#[derive(Debug, Clone)]
struct Spec {
    kind: &'static str,
    owner: usize,
    /// Bit i: principal i is named as a participant (the type's performer, owner, recipient, author …).
    named: u8,
    /// Active (a care relationship for ServiceRequest, Task, CarePlan and EpisodeOfCare) or finished.
    active: bool,
    /// Clinical time: hours after [`BASE_MS`]; few values, so ties are common.
    hour: u8,
}

/// The patient's consent decisions: permits (`None`: for all, else a mask of principals) and blocks (of the
/// principal whose records are hidden), each with its own clinical time (`Consent.dateTime`).
#[derive(Debug, Clone)]
struct Consents {
    permits: Vec<(Option<u8>, u8)>,
    blocks: Vec<(usize, u8)>,
}

fn consents() -> impl Strategy<Value = Consents> {
    (
        prop::collection::vec((prop::option::of(1u8..8), 0u8..4), 0..3),
        prop::collection::vec((0usize..3, 0u8..4), 0..2),
    )
        .prop_map(|(permits, blocks)| Consents { permits, blocks })
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec(
        (
            prop::sample::select(KINDS.to_vec()),
            0usize..3,
            0u8..8,
            prop::bool::weighted(0.7),
            0u8..4,
        )
            .prop_map(|(kind, owner, named, active, hour)| Spec {
                kind,
                owner,
                // Single-valued participant elements name at most one: keep the lowest bit.
                named: if single_participant(kind) {
                    named & named.wrapping_neg()
                } else {
                    named
                },
                active,
                hour,
            }),
        1..12,
    )
}

/// Types whose participant element is a single Reference (Task.owner, MedicationRequest.performer,
/// CarePlan.author); EpisodeOfCare gets none (its careManager names a person, not an HSA-id).
fn single_participant(kind: &str) -> bool {
    matches!(kind, "Task" | "MedicationRequest" | "CarePlan")
}

/// Whether a spec makes a care relationship (fhir/sharing.rs: an active Task, ServiceRequest, CarePlan or
/// EpisodeOfCare links its owner and participants to the patient).
fn relates(s: &Spec) -> bool {
    s.active
        && matches!(
            s.kind,
            "Task" | "ServiceRequest" | "CarePlan" | "EpisodeOfCare"
        )
}

fn direct(s: &Spec) -> BTreeSet<usize> {
    let mut seers: BTreeSet<usize> = (0..3).filter(|i| s.named & (1 << i) != 0).collect();
    if s.kind == "EpisodeOfCare" {
        seers.clear();
    }
    seers.insert(s.owner);
    seers
}

fn related(specs: &[Spec]) -> BTreeSet<usize> {
    specs
        .iter()
        .filter(|s| relates(s))
        .flat_map(direct)
        .collect()
}

fn permitted(consents: &Consents, emergency: bool, c: usize) -> bool {
    emergency
        || consents
            .permits
            .iter()
            .any(|(p, _)| p.is_none_or(|mask| mask & (1 << c) != 0))
}

/// Whether principal `c` (under ETREAT with `emergency`) sees a record owned by `owner` that names `direct`:
/// owner or participant, else sammanhållen dokumentation (care relationship, consent, no block on the owner;
/// ETREAT passes consent and blocks).
fn sees(
    specs: &[Spec],
    consents: &Consents,
    emergency: bool,
    c: usize,
    owner: usize,
    direct: &BTreeSet<usize>,
) -> bool {
    let blocked = !emergency && consents.blocks.iter().any(|(b, _)| *b == owner);
    direct.contains(&c)
        || (!blocked && related(specs).contains(&c) && permitted(consents, emergency, c))
}

fn hsa(i: usize) -> Value {
    json!({"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": PRINCIPALS[i].2}})
}

fn at(hour: u8) -> String {
    format!("2026-12-01T{hour:02}:00:00Z")
}

/// The valid R4 body a spec describes, about `patient`.
fn body(s: &Spec, patient: &str) -> Value {
    let subject = json!({"reference": format!("Patient/{patient}")});
    let named: Vec<Value> = (0..3)
        .filter(|i| s.named & (1 << i) != 0)
        .map(hsa)
        .collect();
    let first = named.first().cloned();
    let time = at(s.hour);
    let code = json!({"text": "morfin 10 mg/ml"});
    let mut v = match s.kind {
        "ServiceRequest" => {
            json!({"resourceType": "ServiceRequest", "intent": "order", "subject": subject,
            "status": if s.active { "active" } else { "completed" }, "authoredOn": time})
        }
        "MedicationRequest" => json!({"resourceType": "MedicationRequest", "intent": "order",
            "status": if s.active { "active" } else { "completed" }, "subject": subject,
            "medicationCodeableConcept": code, "authoredOn": time}),
        "Task" => json!({"resourceType": "Task", "intent": "order", "for": subject,
            "status": if s.active { "requested" } else { "completed" },
            "executionPeriod": {"start": time}}),
        "CarePlan" => json!({"resourceType": "CarePlan", "intent": "plan", "subject": subject,
            "status": if s.active { "active" } else { "completed" }, "created": time}),
        "Appointment" => {
            // The patient and the owner take part (an Appointment needs a participant), and the named ones.
            let actors = [subject.clone(), hsa(s.owner)]
                .into_iter()
                .chain(named.iter().cloned());
            json!({"resourceType": "Appointment", "status": if s.active { "booked" } else { "fulfilled" },
                "start": time, "end": format!("2026-12-01T{:02}:30:00Z", s.hour),
                "participant": actors.map(|a| json!({"actor": a, "status": "accepted"})).collect::<Vec<_>>()})
        }
        "Encounter" => json!({"resourceType": "Encounter", "subject": subject,
            "status": if s.active { "in-progress" } else { "finished" },
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
            "period": {"start": time}}),
        "MedicationAdministration" => json!({"resourceType": "MedicationAdministration",
            "status": if s.active { "in-progress" } else { "completed" }, "subject": subject,
            "medicationCodeableConcept": code, "effectiveDateTime": time}),
        "Communication" => json!({"resourceType": "Communication", "subject": subject,
            "status": if s.active { "in-progress" } else { "completed" }, "sent": time}),
        "EpisodeOfCare" => json!({"resourceType": "EpisodeOfCare", "patient": subject,
            "status": if s.active { "active" } else { "finished" }, "period": {"start": time}}),
        other => unreachable!("{other}"),
    };
    match (s.kind, first) {
        ("MedicationRequest", Some(one)) => v["performer"] = one,
        ("Task", Some(one)) => v["owner"] = one,
        ("CarePlan", Some(one)) => v["author"] = one,
        _ if named.is_empty() => {}
        ("ServiceRequest", _) => v["performer"] = Value::Array(named),
        ("Encounter", _) => {
            v["participant"] = named
                .into_iter()
                .map(|n| json!({"individual": n}))
                .collect()
        }
        ("MedicationAdministration", _) => {
            v["performer"] = named.into_iter().map(|n| json!({"actor": n})).collect()
        }
        ("Communication", _) => v["recipient"] = Value::Array(named),
        _ => {}
    }
    v
}

/// An oracle entry: (clinical time ms, type, id), who sees it decided by the caller.
type Key = (i64, String, String);

async fn check(specs: Vec<Spec>, consents: Consents, page_sizes: [usize; 4]) {
    let app = spawn_app().await;
    let mut clients = Vec::new();
    for who in PRINCIPALS {
        clients.push(user_client(&app, who.0, who.1, PurposeOfUse::Treat, "system/*.cruds").await);
    }
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // (key, owner, direct seers) of every entry.
    let mut entries: Vec<(Key, usize, BTreeSet<usize>)> = Vec::new();
    for s in &specs {
        let created = create_with(&clients[s.owner], &app.fhir, &body(s, &patient)).await;
        let key = (
            BASE_MS + i64::from(s.hour) * 3_600_000,
            s.kind.to_owned(),
            created["id"].as_str().unwrap().to_owned(),
        );
        entries.push((key, s.owner, direct(s)));
    }
    // The consents, entered by principal 0 and naming no participant.
    let consent = |provision: Value, hour: u8| {
        json!({"resourceType": "Consent", "status": "active", "dateTime": at(hour),
               "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "policyRule": {"text": "Lag 2022:913"},
               "patient": {"reference": format!("Patient/{patient}")}, "provision": provision})
    };
    let mut provisions: Vec<(Value, u8)> = Vec::new();
    for (permit, hour) in &consents.permits {
        let mut provision = json!({"type": "permit"});
        if let Some(mask) = permit {
            let actors: Vec<Value> = (0..3)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| json!({"role": {"text": "recipient"}, "reference": hsa(i)}))
                .collect();
            provision["actor"] = Value::Array(actors);
        }
        provisions.push((provision, *hour));
    }
    for (blocked, hour) in &consents.blocks {
        let provision = json!({"type": "deny", "actor": [{"role": {"text": "blocked"}, "reference": hsa(*blocked)}]});
        provisions.push((provision, *hour));
    }
    for (provision, hour) in provisions {
        let id = app.create(&consent(provision, hour)).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = (
            BASE_MS + i64::from(hour) * 3_600_000,
            "Consent".to_owned(),
            id,
        );
        entries.push((key, 0, [0].into()));
    }

    let mut viewers: Vec<(usize, bool, reqwest::Client)> = clients
        .into_iter()
        .enumerate()
        .map(|(c, client)| (c, false, client))
        .collect();
    viewers.push((
        1,
        true,
        user_client(
            &app,
            PRINCIPALS[1].0,
            PRINCIPALS[1].1,
            PurposeOfUse::Etreat,
            "system/*.cruds",
        )
        .await,
    ));
    for ((c, emergency, client), size) in viewers.iter().zip(page_sizes) {
        let (c, emergency) = (*c, *emergency);
        let who = format!("principal {c}{}", if emergency { " (ETREAT)" } else { "" });
        let mut oracle: Vec<&Key> = entries
            .iter()
            .filter(|(_, owner, d)| sees(&specs, &consents, emergency, c, *owner, d))
            .map(|(k, _, _)| k)
            .collect();
        // Newest first by (time, type, id): `ORDER BY tl.t_ms DESC, tl.type DESC, tl.id DESC`.
        oracle.sort_by(|a, b| b.cmp(a));
        let expected: Vec<String> = oracle
            .iter()
            .map(|(_, t, id)| format!("{t}/{id}"))
            .collect();

        let mut url = format!(
            "{}/Patient/{patient}/$timeline?_total=accurate&_count={size}",
            app.fhir
        );
        let mut seen = Vec::new();
        // Bounded: one page per entry at most, plus the last.
        for page_no in 0..=expected.len() {
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{who}: {url}");
            let page = json(r).await;
            assert_eq!(
                page["total"].as_u64(),
                Some(expected.len() as u64),
                "{who}: total on page {page_no}"
            );
            let got = entry_list(&page);
            let more = next_link(&page);
            if more.is_some() {
                assert_eq!(got.len(), size, "{who}: page {page_no} is full");
            }
            seen.extend(got);
            match more {
                Some(n) => url = n,
                None => break,
            }
        }
        assert_eq!(seen, expected, "{who}, pages of {size}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn each_principal_pages_through_exactly_the_oracles_timeline(
        specs in specs(),
        consents in consents(),
        page_sizes in prop::array::uniform4(1usize..=7),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(check(specs, consents, page_sizes));
    }
}
