//! Property test of the sharing rules (issues 4 and 8): random referrals, tasks, encounters and appointments
//! among three principals, active or not, with random addressees and parent links, random consents and blocks
//! of a patient whose identity may be protected; every principal (and one acting under emergency access) reads,
//! searches, lists type and system history and batch-reads exactly what it owns or takes part in (directly or
//! through the referral a task belongs to) or may read through sammanhållen dokumentation (a care relationship
//! from an active referral or task, the patient's consent, no block on the owner; ETREAT passes consent and
//! blocks), and nothing else: no AuditEvent on any path, and the protected patient's address only for the
//! principal that entered it.

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

#[derive(Debug, Clone)]
struct Spec {
    owner: usize,
    /// Bit i: principal i is named as performer (ServiceRequest), owner (Task) or participant (Encounter,
    /// Appointment).
    named: u8,
    /// A Task based on an earlier resource (index into the list), else `kind`.
    parent: Option<usize>,
    kind: Kind,
    /// Active (a care relationship for referrals and tasks) or completed.
    active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ServiceRequest,
    /// About the patient (subject), not a care relationship.
    Encounter,
    /// Names the patient among its participants (the Patient compartment's `actor`).
    Appointment,
}

const TYPES: [&str; 4] = ["ServiceRequest", "Task", "Encounter", "Appointment"];

/// The patient's consent decisions: permits (`None`: for all, else a mask of principals) and blocks (of the
/// principal whose records are hidden).
#[derive(Debug, Clone)]
struct Consents {
    permits: Vec<Option<u8>>,
    blocks: Vec<usize>,
}

fn consents() -> impl Strategy<Value = Consents> {
    (
        prop::collection::vec(prop::option::of(1u8..8), 0..3),
        prop::collection::vec(0usize..3, 0..2),
    )
        .prop_map(|(permits, blocks)| Consents { permits, blocks })
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    let kind = prop_oneof![
        3 => Just(Kind::ServiceRequest),
        1 => Just(Kind::Encounter),
        1 => Just(Kind::Appointment),
    ];
    prop::collection::vec(
        (
            0usize..3,
            0u8..8,
            prop::option::of(0usize..8),
            kind,
            prop::bool::weighted(0.75),
        ),
        1..7,
    )
    .prop_map(|raw| {
        let mut specs: Vec<Spec> = Vec::new();
        for (i, (owner, named, parent, kind, active)) in raw.into_iter().enumerate() {
            // A task belongs to an earlier referral or task (the parents navet follows).
            let parent = parent.filter(|p| {
                *p < i && (specs[*p].parent.is_some() || specs[*p].kind == Kind::ServiceRequest)
            });
            specs.push(Spec {
                owner,
                named,
                parent,
                kind,
                active,
            });
        }
        specs
    })
}

/// Whether a spec makes a care relationship: an active referral or task (fhir/sharing.rs).
fn relates(s: &Spec) -> bool {
    s.active && (s.parent.is_some() || s.kind == Kind::ServiceRequest)
}

/// Which principals may see each resource, by the rules in DESIGN.md; with `emergency`, as a viewer acting
/// under ETREAT sees them (consent and blocks passed).
fn expected(specs: &[Spec], consents: &Consents, emergency: bool) -> Vec<BTreeSet<usize>> {
    // Owner and participants (a task inherits its referral's).
    let direct = direct_seers(specs);
    // An active referral or task links its owner and participants to the patient.
    let related = related(specs, &direct);
    let permitted = |c: usize| permitted(consents, emergency, c);
    specs
        .iter()
        .zip(direct)
        .map(|(s, mut seers)| {
            if emergency || !consents.blocks.contains(&s.owner) {
                seers.extend((0..3).filter(|c| related.contains(c) && permitted(*c)));
            }
            seers
        })
        .collect()
}

/// Whether the patient's consent lets principal `c` read through sammanhållen dokumentation (always under
/// emergency access).
fn permitted(consents: &Consents, emergency: bool, c: usize) -> bool {
    emergency
        || consents
            .permits
            .iter()
            .any(|p| p.is_none_or(|mask| mask & (1 << c) != 0))
}

fn direct_seers(specs: &[Spec]) -> Vec<BTreeSet<usize>> {
    let mut direct: Vec<BTreeSet<usize>> = Vec::new();
    for s in specs {
        let mut seers: BTreeSet<usize> = (0..3).filter(|i| s.named & (1 << i) != 0).collect();
        seers.insert(s.owner);
        if let Some(p) = s.parent {
            seers.extend(direct[p].iter().copied());
        }
        direct.push(seers);
    }
    direct
}

fn related(specs: &[Spec], direct: &[BTreeSet<usize>]) -> BTreeSet<usize> {
    specs
        .iter()
        .zip(direct)
        .filter(|(s, _)| relates(s))
        .flat_map(|(_, seers)| seers.iter().copied())
        .collect()
}

/// Who sees the Consents (owned by principal 0, naming no participant): its owner, and through sammanhållen
/// dokumentation like any record of principal 0.
fn consent_seers(specs: &[Spec], consents: &Consents, emergency: bool) -> BTreeSet<usize> {
    let related = related(specs, &direct_seers(specs));
    let permitted = |c: usize| permitted(consents, emergency, c);
    let mut seers: BTreeSet<usize> = [0].into();
    if emergency || !consents.blocks.contains(&0) {
        seers.extend((0..3).filter(|c| related.contains(c) && permitted(*c)));
    }
    seers
}

/// The body a spec describes, about `patient`, naming `named` (HSA logical references).
fn body(s: &Spec, patient: &str, named: &[Value], refs: &[String]) -> Value {
    let subject = json!({"reference": format!("Patient/{patient}")});
    if let Some(p) = s.parent {
        let mut t = json!({"resourceType": "Task", "status": if s.active { "requested" } else { "completed" },
                           "intent": "order", "for": subject, "basedOn": [{"reference": refs[p]}]});
        if let Some(first) = named.first() {
            t["owner"] = first.clone();
        }
        return t;
    }
    match s.kind {
        Kind::ServiceRequest => {
            let mut sr = json!({"resourceType": "ServiceRequest", "intent": "order", "subject": subject,
                                "status": if s.active { "active" } else { "completed" }});
            // FHIR arrays are never empty.
            if !named.is_empty() {
                sr["performer"] = Value::Array(named.to_vec());
            }
            sr
        }
        Kind::Encounter => {
            let mut e = json!({"resourceType": "Encounter", "subject": subject,
                "status": if s.active { "in-progress" } else { "finished" },
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"}});
            if !named.is_empty() {
                e["participant"] =
                    Value::Array(named.iter().map(|n| json!({"individual": n})).collect());
            }
            e
        }
        Kind::Appointment => {
            // The patient, and its owner (an Appointment needs a participant), take part in it.
            let owner = json!({"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": PRINCIPALS[s.owner].2}});
            let actors = [&subject, &owner].into_iter().chain(named.iter());
            json!({"resourceType": "Appointment", "status": if s.active { "booked" } else { "fulfilled" },
                   "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:30:00Z",
                   "participant": actors.map(|a| json!({"actor": a, "status": "accepted"})).collect::<Vec<_>>()})
        }
    }
}

async fn viewer(app: &TestApp, who: (&str, &str, &str), purpose: PurposeOfUse) -> reqwest::Client {
    user_client(app, who.0, who.1, purpose, "system/*.cruds").await
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    json(client.get(url).send().await.unwrap()).await
}

/// `Type/id` of the entries of a history Bundle (deletions have no resource, so the full URL is read).
fn history_ids(bundle: &Value) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let mut parts = e["fullUrl"].as_str()?.rsplit('/');
            let id = parts.next()?;
            Some(format!("{}/{id}", parts.next()?))
        })
        .collect()
}

async fn check(specs: Vec<Spec>, consents: Consents, protected: bool) {
    let app = spawn_app().await;
    let mut clients = Vec::new();
    for who in PRINCIPALS {
        clients.push(viewer(&app, who, PurposeOfUse::Treat).await);
    }
    let mut patient_body = patient("19121212-1212", "Tolvansson");
    patient_body["address"] = json!([{"line": ["Ekgatan 3"], "city": "Åhus"}]);
    patient_body["telecom"] = json!([{"system": "phone", "value": "070-1234567"}]);
    if protected {
        patient_body["meta"] = json!({"security": [{"system": "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel", "code": "skyddadFolkbokforing"}]});
    }
    // Entered by principal 0 (the default client is the mobile team).
    let patient = app.create(&patient_body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A Task names at most one owner: keep the lowest bit (the first named principal).
    let specs: Vec<Spec> = specs
        .into_iter()
        .map(|mut s| {
            if s.parent.is_some() {
                s.named &= s.named.wrapping_neg();
            }
            s
        })
        .collect();
    let mut refs: Vec<String> = Vec::new();
    for s in &specs {
        let named: Vec<Value> = (0..3)
            .filter(|i| s.named & (1 << i) != 0)
            .map(|i| json!({"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": PRINCIPALS[i].2}}))
            .collect();
        let created = create_with(
            &clients[s.owner],
            &app.fhir,
            &body(s, &patient, &named, &refs),
        )
        .await;
        refs.push(format!(
            "{}/{}",
            created["resourceType"].as_str().unwrap(),
            created["id"].as_str().unwrap()
        ));
    }
    let hsa = |i: usize| json!({"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": PRINCIPALS[i].2}});
    let consent = |provision: Value| {
        json!({"resourceType": "Consent", "status": "active",
               "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "policyRule": {"text": "Lag 2022:913"},
               "patient": {"reference": format!("Patient/{patient}")}, "provision": provision})
    };
    let mut consent_refs = Vec::new();
    for permit in &consents.permits {
        let mut provision = json!({"type": "permit"});
        if let Some(mask) = permit {
            let actors: Vec<Value> = (0..3)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| json!({"role": {"text": "recipient"}, "reference": hsa(i)}))
                .collect();
            provision["actor"] = Value::Array(actors);
        }
        consent_refs.push(format!(
            "Consent/{}",
            app.create(&consent(provision)).await["id"]
                .as_str()
                .unwrap()
        ));
    }
    for blocked in &consents.blocks {
        // A permit for no one in particular would open everything; the block rides on a deny-only consent.
        let provision = json!({"type": "deny", "actor": [{"role": {"text": "blocked"}, "reference": hsa(*blocked)}]});
        consent_refs.push(format!(
            "Consent/{}",
            app.create(&consent(provision)).await["id"]
                .as_str()
                .unwrap()
        ));
    }
    // The viewers: each principal acting for treatment, and the vårdcentral under emergency access.
    let mut viewers: Vec<(usize, bool, reqwest::Client)> = clients
        .into_iter()
        .enumerate()
        .map(|(c, client)| (c, false, client))
        .collect();
    viewers.push((
        1,
        true,
        viewer(&app, PRINCIPALS[1], PurposeOfUse::Etreat).await,
    ));
    for (c, emergency, client) in &viewers {
        let (c, emergency) = (*c, *emergency);
        let who = format!("principal {c}{}", if emergency { " (ETREAT)" } else { "" });
        let seers = expected(&specs, &consents, emergency);
        let visible: BTreeSet<String> = refs
            .iter()
            .zip(&seers)
            .filter(|(_, s)| s.contains(&c))
            .map(|(r, _)| r.clone())
            .collect();
        for r in &refs {
            let status = client
                .get(format!("{}/{r}", app.fhir))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(
                status == 200,
                visible.contains(r),
                "{who} reading {r}: {status}"
            );
        }
        let mut found = BTreeSet::new();
        let mut in_history = BTreeSet::new();
        for ty in TYPES {
            let page = get_json(
                client,
                format!("{}/{ty}?_total=accurate&_count=100", app.fhir),
            )
            .await;
            let page_ids = entry_ids(&page);
            assert_eq!(
                page["total"].as_u64().unwrap() as usize,
                page_ids.len(),
                "total agrees with the page"
            );
            found.extend(page_ids);
            in_history.extend(history_ids(
                &get_json(client, format!("{}/{ty}/_history?_count=100", app.fhir)).await,
            ));
        }
        assert_eq!(found, visible, "{who}: search");
        assert_eq!(in_history, visible, "{who}: type history");
        // System history: the patient, the visible records and consents, and never an AuditEvent.
        let mut everything: BTreeSet<String> = visible.clone();
        everything.insert(format!("Patient/{patient}"));
        if consent_seers(&specs, &consents, emergency).contains(&c) {
            everything.extend(consent_refs.iter().cloned());
        }
        // Plus the demo users' directory entries the test setup stored (shared master data).
        everything.extend(app.directory.iter().cloned());
        let system = get_json(client, format!("{}/_history?_count=500", app.fhir)).await;
        assert_eq!(history_ids(&system), everything, "{who}: system history");
        for path in ["AuditEvent", "AuditEvent/_history"] {
            let log = client
                .get(format!("{}/{path}", app.fhir))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(log, 403, "{who}: the access log ({path})");
        }
        let batch = json!({"resourceType": "Bundle", "type": "batch",
            "entry": refs.iter().map(|r| json!({"request": {"method": "GET", "url": r}})).collect::<Vec<_>>()});
        let answer = json(
            client
                .post(&app.fhir)
                .header("content-type", FHIR_JSON)
                .body(batch.to_string())
                .send()
                .await
                .unwrap(),
        )
        .await;
        for (r, entry) in refs.iter().zip(answer["entry"].as_array().unwrap()) {
            let ok = entry["response"]["status"] == "200 OK";
            assert_eq!(ok, visible.contains(r), "{who}: batch read of {r}");
        }
        // The patient: whole for the principal that entered it, or when unprotected; else without contact data.
        let read = get_json(client, format!("{}/Patient/{patient}", app.fhir)).await;
        let whole = !protected || c == 0;
        assert_eq!(
            read.get("address").is_some(),
            whole,
            "{who}: the patient's address"
        );
        assert_eq!(
            read.get("telecom").is_some(),
            whole,
            "{who}: the patient's telecom"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn no_principal_reads_what_it_should_not_and_each_reads_what_it_should(specs in specs(), consents in consents(), protected in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(check(specs, consents, protected));
    }
}
