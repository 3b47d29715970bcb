//! Property test of the sharing rules (issue 4): random referrals and tasks among three principals, with random
//! addressees and parent links, and random consents and blocks of the patient; every principal reads, searches,
//! lists history and batch-reads exactly what it owns or takes part in (directly or through the referral a task
//! belongs to) or may read through sammanhållen dokumentation (a care relationship, the patient's consent, no
//! block on the owner), and nothing else.

mod common;

use std::collections::BTreeSet;

use common::*;
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
    /// Bit i: principal i is named as performer (ServiceRequest) or owner (Task).
    named: u8,
    /// A Task based on an earlier resource (index into the list), else a ServiceRequest.
    parent: Option<usize>,
}

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
    prop::collection::vec((0usize..3, 0u8..8, prop::option::of(0usize..8)), 1..7).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (owner, named, parent))| Spec {
                owner,
                named,
                parent: parent.filter(|p| *p < i),
            })
            .collect()
    })
}

/// Which principals may see each resource, by the rules in DESIGN.md.
fn expected(specs: &[Spec], consents: &Consents) -> Vec<BTreeSet<usize>> {
    // Owner and participants (a task inherits its referral's).
    let mut direct: Vec<BTreeSet<usize>> = Vec::new();
    for s in specs {
        let mut seers: BTreeSet<usize> = (0..3).filter(|i| s.named & (1 << i) != 0).collect();
        seers.insert(s.owner);
        if let Some(p) = s.parent {
            seers.extend(direct[p].iter().copied());
        }
        direct.push(seers);
    }
    // Every referral and task is active: each links its owner and participants to the patient.
    let related: BTreeSet<usize> = direct.iter().flatten().copied().collect();
    let permitted = |c: usize| {
        consents
            .permits
            .iter()
            .any(|p| p.is_none_or(|mask| mask & (1 << c) != 0))
    };
    specs
        .iter()
        .zip(direct)
        .map(|(s, mut seers)| {
            if !consents.blocks.contains(&s.owner) {
                seers.extend((0..3).filter(|c| related.contains(c) && permitted(*c)));
            }
            seers
        })
        .collect()
}

async fn check(specs: Vec<Spec>, consents: Consents) {
    let app = spawn_app().await;
    let mut clients = Vec::new();
    for (client, user, _) in PRINCIPALS {
        clients.push(app.client_as(client, Some(user), "system/*.cruds").await);
    }
    let patient = app.create(&patient("19121212-1212", "Tolvansson")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut refs: Vec<String> = Vec::new();
    for s in &specs {
        let named: Vec<Value> = (0..3)
            .filter(|i| s.named & (1 << i) != 0)
            .map(|i| json!({"identifier": {"system": "urn:oid:1.2.752.29.4.19", "value": PRINCIPALS[i].2}}))
            .collect();
        let body = match s.parent {
            None => {
                let mut sr = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                                    "subject": {"reference": format!("Patient/{patient}")}});
                // FHIR arrays are never empty.
                if !named.is_empty() {
                    sr["performer"] = Value::Array(named.clone());
                }
                sr
            }
            Some(p) => {
                let mut t = json!({"resourceType": "Task", "status": "requested", "intent": "order",
                                   "for": {"reference": format!("Patient/{patient}")},
                                   "basedOn": [{"reference": refs[p]}]});
                if let Some(first) = named.first() {
                    t["owner"] = first.clone();
                }
                t
            }
        };
        let created = create_with(&clients[s.owner], &app.fhir, &body).await;
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
               "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
               "patient": {"reference": format!("Patient/{patient}")}, "provision": provision})
    };
    for permit in &consents.permits {
        let mut provision = json!({"type": "permit"});
        if let Some(mask) = permit {
            let actors: Vec<Value> = (0..3)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| json!({"role": {"text": "recipient"}, "reference": hsa(i)}))
                .collect();
            provision["actor"] = Value::Array(actors);
        }
        app.create(&consent(provision)).await;
    }
    for blocked in &consents.blocks {
        // A permit for no one in particular would open everything; the block rides on a deny-only consent.
        let provision = json!({"type": "deny", "actor": [{"role": {"text": "blocked"}, "reference": hsa(*blocked)}]});
        app.create(&consent(provision)).await;
    }
    // A Task names at most one owner: recompute what was really named.
    let specs: Vec<Spec> = specs
        .into_iter()
        .map(|mut s| {
            if s.parent.is_some() {
                s.named &= s.named.wrapping_neg(); // keep the lowest bit: the first named principal
            }
            s
        })
        .collect();
    let seers = expected(&specs, &consents);
    for (c, client) in clients.iter().enumerate() {
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
                "principal {c} reading {r}: {status}"
            );
        }
        let mut found = BTreeSet::new();
        for ty in ["ServiceRequest", "Task"] {
            let page = json(
                client
                    .get(format!("{}/{ty}?_total=accurate&_count=100", app.fhir))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            let page_ids = entry_ids(&page);
            assert_eq!(
                page["total"].as_u64().unwrap() as usize,
                page_ids.len(),
                "total agrees with the page"
            );
            found.extend(page_ids);
            let history = json(
                client
                    .get(format!("{}/{ty}/_history?_count=100", app.fhir))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            for h in entry_ids(&history) {
                assert!(
                    visible.contains(&h),
                    "principal {c}: history shows hidden {h}"
                );
            }
        }
        assert_eq!(found, visible, "principal {c}: search");
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
            assert_eq!(ok, visible.contains(r), "principal {c}: batch read of {r}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn no_principal_reads_what_it_should_not_and_each_reads_what_it_should(specs in specs(), consents in consents()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(check(specs, consents));
    }
}
