//! The SVPL translation alone (no server): the golden files in tests/golden/svpl/ (README there) in both
//! directions, a renamed element in a copy of the mappings, round trips, and the reader on arbitrary and
//! mutated input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use navet::svpl::mapping::Mapping;
use navet::svpl::message::{self, Message};
use navet::svpl::translate::{self, Case, Context, Current, Translation};
use serde_json::{Value, json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/svpl")
}

/// The time of receipt every golden case is translated at.
const RECEIVED: &str = "2026-11-23T09:20:00Z";
const GOLDEN_PATIENT: &str = "Patient/golden-patient";

/// A stand-in for the store along one chain of messages: what each message created and changed, the
/// resources as they are now. It builds the case a follow-up sees the way `receive.rs` does.
#[derive(Default)]
struct Chain {
    resources: BTreeMap<(String, String), Value>,
    messages: Vec<Sent>,
}

/// One message of the chain: sender, id, case, parties, created.
type Sent = (String, String, String, Vec<String>, Vec<String>);

impl Chain {
    fn case_for(&self, m: &Message) -> Case {
        let Some(reference) = &m.envelope.reference else {
            return Case::default();
        };
        let Some(row) = self.messages.iter().find(|r| &r.1 == reference) else {
            return Case::default();
        };
        let resources = self
            .resources
            .iter()
            .filter(|((ty, _), _)| ty != "Provenance")
            .map(|((ty, id), v)| Current {
                resource_type: ty.clone(),
                id: id.clone(),
                value: v.clone(),
            })
            .collect();
        Case {
            case_ref: Some(row.2.clone()),
            opened_by: self.messages.first().map(|r| r.0.clone()),
            resources,
            referenced: row.4.clone(),
            referenced_parties: row.3.clone(),
        }
    }

    fn apply(&mut self, m: &Message, t: &Translation) {
        let mut created = Vec::new();
        for w in &t.writes {
            let mut v = w.value.clone();
            v["resourceType"] = json!(w.resource_type);
            v["id"] = json!(w.id);
            self.resources
                .insert((w.resource_type.clone(), w.id.clone()), v);
            if w.create {
                created.push(format!("{}/{}", w.resource_type, w.id));
            }
        }
        self.messages.push((
            m.envelope.sender.hsa.to_string(),
            m.envelope.id.clone(),
            t.case_ref.clone(),
            t.parties.clone(),
            created,
        ));
    }
}

fn context(case: Case) -> Context {
    Context {
        patient: GOLDEN_PATIENT.into(),
        received: RECEIVED.parse().unwrap(),
        case,
    }
}

/// The golden cases in name order, grouped by chain (the name up to the first `-`).
fn cases() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(golden_dir())
        .expect("tests/golden/svpl")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".in.xml")?
                .to_owned();
            Some((name, path))
        })
        .collect();
    out.sort();
    out
}

/// What a golden case's expected file holds: the resources the message becomes, in write order.
fn render(m: &Message, t: &Translation, map: &Mapping) -> Value {
    json!({
        "type": m.envelope.kind.as_str(),
        "case": t.case_ref,
        "parties": t.parties,
        "patientIfNew": navet::svpl::patient::resource(&m.envelope.patient, map),
        "writes": t.writes.iter().map(|w| json!({
            "action": if w.create { "create" } else { "update" },
            "resourceType": w.resource_type,
            "id": w.id,
            "resource": w.value,
        })).collect::<Vec<_>>(),
    })
}

fn run_all(map: &Mapping) -> Vec<(String, Value)> {
    let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, path) in cases() {
        let bytes = std::fs::read(&path).unwrap();
        let m = message::read(&bytes, map).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let chain = chains
            .entry(name.split('-').next().unwrap().to_owned())
            .or_default();
        let t = translate::translate(&m, &context(chain.case_for(&m)), map)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        chain.apply(&m, &t);
        out.push((name, render(&m, &t, map)));
    }
    out
}

#[test]
fn every_golden_message_translates_to_its_expected_fhir_resources() {
    let map = Mapping::embedded();
    let results = run_all(&map);
    assert!(results.len() >= 11, "the golden folder lost its cases");
    for (name, got) in results {
        let path = golden_dir().join(format!("{name}.expected.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run the ignored regenerate test",
                path.display()
            )
        });
        let expected: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            got,
            expected,
            "{name}: the translation differs from {}",
            path.display()
        );
    }
}

/// Rebuilds the expected files of both directions: `cargo test --test svpl_golden -- --ignored regenerate`.
/// Review the diff.
#[test]
#[ignore]
fn regenerate_the_golden_expected_files() {
    let map = Mapping::embedded();
    for (name, got) in run_all(&map) {
        let path = golden_dir().join(format!("{name}.expected.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    for (name, got) in run_outbound(&map) {
        std::fs::write(
            golden_dir().join(format!("{name}.expected.xml")),
            got + "\n",
        )
        .unwrap();
    }
}

/// The outbound cases: `<case>.in.json` is a FHIR change (the resource as written, the version before it,
/// the Patient, the SIP plan and CareTeam, the sender, the message id and time); `<case>.expected.xml` the
/// SVPL message it sends (src/svpl/outbound.rs).
fn run_outbound(map: &Mapping) -> Vec<(String, String)> {
    use navet::auth::PrincipalKind as K;
    let out = navet::svpl::outbound::Outbound::for_parties(
        map.clone(),
        &[
            ("SE2120000999-HSJ1290", K::Kommun, "Kristianstads kommun"),
            ("SE2321000255-VC101", K::Vardcentral, "Näsby vårdcentral"),
            ("SE2321000255-MTN01", K::Mtn, "Mobila teamet Kristianstad"),
            (
                "SE2321000255-CSK01",
                K::Sjukhus,
                "Centralsjukhuset Kristianstad",
            ),
        ],
    );
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".in.json")?.to_owned())
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(golden_dir().join(format!("{name}.in.json"))).unwrap();
            let c: Value = serde_json::from_str(&text).unwrap();
            let opt = |k: &str| Some(c[k].clone()).filter(|v| !v.is_null());
            let resource = c["resource"].clone();
            let change = navet::svpl::outbound::Change {
                sender: c["sender"].as_str().unwrap().into(),
                resource_type: resource["resourceType"].as_str().unwrap().into(),
                id: resource["id"].as_str().unwrap().into(),
                value: resource,
                previous: opt("previous"),
                patient: c["patient"].clone(),
                plan: opt("plan").map(|p| (p["id"].as_str().unwrap().to_owned(), p)),
                team: opt("team"),
                case_message: c["caseMessage"].as_str().map(str::to_owned),
                message_id: c["messageId"].as_str().unwrap().into(),
                created: c["created"].as_str().unwrap().into(),
            };
            let rendered = navet::svpl::outbound::render(&change, &out)
                .unwrap_or_else(|| panic!("{name}: the change sends no message"));
            let xml = message::write(&rendered.message, map);
            // What navet sends, navet's own reader takes.
            message::read(xml.as_bytes(), map).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            (name, xml)
        })
        .collect()
}

#[test]
fn every_golden_fhir_change_renders_its_expected_svpl_message() {
    let map = Mapping::embedded();
    let results = run_outbound(&map);
    assert!(
        results.len() >= 6,
        "the golden folder lost its outbound cases"
    );
    for (name, got) in results {
        let path = golden_dir().join(format!("{name}.expected.xml"));
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run the ignored regenerate test",
                path.display()
            )
        });
        assert_eq!(
            got,
            expected.trim_end(),
            "{name}: the message differs from {}",
            path.display()
        );
    }
}

#[test]
fn renaming_an_element_in_a_copy_of_the_mappings_needs_no_code_change() {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/svpl");
    for file in ["elements.toml", "codes.toml"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let elements = dir.path().join("elements.toml");
    let text = std::fs::read_to_string(&elements).unwrap();
    // A site whose system says <Orsak> for the request's reason and <Motesforslag> for the wished time.
    let renamed = text
        .replace(r#"xml = "Anledning""#, r#"xml = "Orsak""#)
        .replace(r#"xml = "OnskadMotestid""#, r#"xml = "Motesforslag""#);
    assert_ne!(renamed, text);
    std::fs::write(&elements, renamed).unwrap();
    let site = Mapping::load(dir.path()).unwrap();

    let shipped = std::fs::read_to_string(golden_dir().join("sip-01-begaran.in.xml")).unwrap();
    let theirs = shipped
        .replace("<Anledning>", "<Orsak>")
        .replace("</Anledning>", "</Orsak>")
        .replace("OnskadMotestid>", "Motesforslag>");
    let standard = Mapping::embedded();
    let a = message::read(shipped.as_bytes(), &standard).unwrap();
    let b = message::read(theirs.as_bytes(), &site).unwrap();
    assert_eq!(a, b, "the renamed elements read as the same message");
    // And each mapping refuses the other's names: the reason is required.
    let refused = message::read(shipped.as_bytes(), &site).unwrap_err();
    assert!(
        refused
            .errors
            .iter()
            .any(|f| f.field == "/Meddelande/Orsak"),
        "{refused:?}"
    );
    // Written back with the site's mapping, the message uses the site's names.
    let written = message::write(&b, &site);
    assert!(
        written.contains("<Orsak>") && !written.contains("Anledning"),
        "{written}"
    );
}

mod properties {
    use super::*;
    use navet::svpl::message::{Body, Envelope, Party, PatientData};
    use navet::svpl::messages::{Insats, OvrigAtgard, SipBegaran, SipKallelse, SipPlan};
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Letters, Swedish ones, digits, XML's special characters, spaces inside (trimmed ends, as read).
        "[a-zA-ZåäöÅÄÖ0-9<>&\"' ]{0,30}[a-zA-Z0-9åäö<>&]".prop_map(|s| s.trim().to_owned())
    }

    fn hsa() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "SE2120000999-HSJ1290",
            "SE2120000999-HSJ1286",
            "SE2321000255-VC101",
            "SE2321000255-MTN01",
            "SE2321000255-CSK01",
        ])
        .prop_map(str::to_owned)
    }

    fn patient() -> impl Strategy<Value = (String, String)> {
        prop::sample::select(vec![
            ("personnummer", "191212121212"),
            ("personnummer", "194005121233"),
            ("samordningsnummer", "195009722397"),
            ("reservnummer", "RES-1290-0001"),
            ("reservnummer", "K12345"),
        ])
        .prop_map(|(t, v)| (t.to_owned(), v.to_owned()))
    }

    fn instant() -> impl Strategy<Value = String> {
        (
            2020i32..2030,
            1u8..=12,
            1u8..=28,
            0u8..24,
            0u8..60,
            prop::bool::ANY,
        )
            .prop_map(|(y, mo, d, h, mi, summer)| {
                format!(
                    "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:00{}",
                    if summer { "+02:00" } else { "+01:00" }
                )
            })
    }

    fn date() -> impl Strategy<Value = String> {
        (2020i32..2030, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}"))
    }

    fn envelope(kind: navet::svpl::message::MessageKind) -> impl Strategy<Value = Envelope> {
        (
            "[A-Z0-9]{3,8}-[0-9]{1,6}",
            instant(),
            hsa(),
            prop::option::of(text()),
            prop::collection::vec(hsa(), 1..4),
            patient(),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(hsa()),
        )
            .prop_map(
                move |(
                    id,
                    created,
                    sender,
                    name,
                    recipients,
                    (typ, value),
                    given,
                    family,
                    listed,
                )| {
                    let map = Mapping::embedded();
                    let system = map.patient_id_types[&typ].clone();
                    Envelope {
                        kind,
                        created: created.parse().unwrap(),
                        created_text: created,
                        id,
                        sender: Party {
                            hsa: navet::domain::HsaId::parse(&sender).unwrap(),
                            kind: Some("kommun".into()),
                            name,
                        },
                        recipients: recipients
                            .into_iter()
                            .map(|h| Party {
                                hsa: navet::domain::HsaId::parse(&h).unwrap(),
                                kind: None,
                                name: None,
                            })
                            .collect(),
                        patient: PatientData {
                            id: navet::domain::from_fhir(&system, &value).unwrap().unwrap(),
                            id_type: typ,
                            given,
                            family,
                            street: None,
                            postal_code: None,
                            city: None,
                            municipality: Some("1290".into()),
                            listed_at: listed.map(|h| navet::domain::HsaId::parse(&h).unwrap()),
                        },
                        reference: (kind != navet::svpl::message::MessageKind::SipBegaran)
                            .then(|| "REF-1".to_owned()),
                    }
                },
            )
    }

    fn messages() -> impl Strategy<Value = Message> {
        use navet::svpl::message::MessageKind as K;
        let begaran = (
            envelope(K::SipBegaran),
            prop::option::of(date()),
            text(),
            prop::option::of(instant()),
        )
            .prop_map(|(envelope, consent_date, reason, wished_time)| Message {
                envelope,
                body: Body::SipBegaran(SipBegaran {
                    consent_date,
                    reason,
                    wished_time,
                }),
            });
        let kallelse = (
            envelope(K::SipKallelse),
            instant(),
            prop::option::of(text()),
            prop::option::of(prop::bool::ANY),
            prop::collection::vec(
                (
                    hsa(),
                    prop::option::of(prop::sample::select(vec!["lakare", "kurator", "patient"])),
                ),
                0..3,
            ),
        )
            .prop_map(|(envelope, time, place, digital, p)| Message {
                envelope,
                body: Body::SipKallelse(SipKallelse {
                    time,
                    place,
                    digital,
                    participants: p
                        .into_iter()
                        .map(|(h, r)| (h, r.map(str::to_owned)))
                        .collect(),
                }),
            });
        let insats = (
            prop::sample::select(vec!["kommun", "region", "annan"]),
            prop::option::of(hsa()),
            prop::option::of(date()),
            text(),
        )
            .prop_map(|(p, performer, start, text)| Insats {
                principal: p.to_owned(),
                performer,
                start,
                end: None,
                text,
            });
        let plan = (
            envelope(K::SipPlan),
            prop::collection::vec(insats, 0..4),
            prop::collection::vec((prop::option::of(text()), text()), 0..2),
            hsa(),
            prop::option::of(date()),
        )
            .prop_map(|(envelope, mut insatser, other, responsible, follow_up)| {
                // A whole plan: one insats for each huvudman at least.
                for needed in ["kommun", "region"] {
                    insatser.push(Insats {
                        principal: needed.into(),
                        performer: None,
                        start: None,
                        end: None,
                        text: format!("insats {needed}"),
                    });
                }
                Message {
                    envelope,
                    body: Body::SipPlan(SipPlan {
                        insatser,
                        other: other
                            .into_iter()
                            .map(|(actor, text)| OvrigAtgard { actor, text })
                            .collect(),
                        responsible,
                        follow_up,
                    }),
                }
            });
        prop_oneof![begaran, kallelse, plan]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// SVPL → XML → SVPL keeps every field, for personnummer, samordningsnummer and reservnummer patients.
        #[test]
        fn a_written_message_reads_back_as_the_same_message(m in messages()) {
            let map = Mapping::embedded();
            let xml = message::write(&m, &map);
            let back = message::read(xml.as_bytes(), &map).map_err(|e| TestCaseError::fail(format!("{e:?}\n{xml}")))?;
            prop_assert_eq!(back, m);
        }

        /// The translation keeps what the spec names: the patient, the parties, the reason, the insatser.
        #[test]
        fn the_translation_carries_the_message_s_fields(m in messages()) {
            let map = Mapping::embedded();
            let mut chain = Chain::default();
            // A follow-up needs a case: translate a request first and let the message follow it.
            if m.envelope.kind != navet::svpl::message::MessageKind::SipBegaran {
                let text = std::fs::read_to_string(golden_dir().join("sip-01-begaran.in.xml")).unwrap()
                    .replace("KOM1290-2026-000123", "REF-1");
                let first = message::read(text.as_bytes(), &map).unwrap();
                let t = translate::translate(&first, &context(Case::default()), &map).unwrap();
                chain.apply(&first, &t);
            }
            let t = translate::translate(&m, &context(chain.case_for(&m)), &map)
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let all = serde_json::to_string(&t.writes.iter().map(|w| &w.value).collect::<Vec<_>>()).unwrap();
            prop_assert!(all.contains(GOLDEN_PATIENT));
            prop_assert!(t.parties.contains(&m.envelope.sender.hsa.to_string()));
            for r in &m.envelope.recipients {
                prop_assert!(t.parties.contains(&r.hsa.to_string()));
            }
            match &m.body {
                Body::SipBegaran(b) => {
                    let tasks = t.writes.iter().filter(|w| w.resource_type == "Task").count();
                    let distinct: BTreeSet<_> = m.envelope.recipients.iter().map(|r| r.hsa.to_string()).collect();
                    prop_assert_eq!(tasks, m.envelope.recipients.len());
                    prop_assert!(distinct.len() <= tasks);
                    let plan = t.writes.iter().find(|w| w.resource_type == "CarePlan").unwrap();
                    prop_assert_eq!(plan.value["description"].as_str(), Some(b.reason.as_str()));
                }
                Body::SipPlan(p) => {
                    let plan = t.writes.iter().find(|w| w.resource_type == "CarePlan").unwrap();
                    let activities = plan.value["activity"].as_array().unwrap();
                    prop_assert_eq!(activities.len(), p.insatser.len() + p.other.len());
                    for (a, i) in activities.iter().zip(&p.insatser) {
                        prop_assert_eq!(a["detail"]["description"].as_str(), Some(i.text.as_str()));
                        prop_assert_eq!(a["detail"]["extension"][0]["valueCoding"]["code"].as_str(), Some(i.principal.as_str()));
                    }
                    let team = t.writes.iter().find(|w| w.resource_type == "CareTeam").unwrap();
                    prop_assert_eq!(team.value["managingOrganization"][0]["identifier"]["value"].as_str(), Some(p.responsible.as_str()));
                }
                Body::SipKallelse(k) => {
                    let appointment = t.writes.iter().find(|w| w.resource_type == "Appointment").unwrap();
                    prop_assert_eq!(appointment.value["start"].as_str(), Some(k.time.as_str()));
                    for (h, _) in &k.participants {
                        prop_assert!(appointment.value["participant"].to_string().contains(h.as_str()));
                    }
                }
                _ => {}
            }
        }

        /// Arbitrary bytes never panic the reader: a message or a refusal with at least one Fel.
        #[test]
        fn arbitrary_bytes_are_read_or_refused_with_a_fel(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let map = Mapping::embedded();
            if let Err(refusal) = message::read(&bytes, &map) {
                prop_assert!(!refusal.errors.is_empty());
            }
        }

        /// Mutated valid messages never panic the reader or the translation.
        #[test]
        fn mutated_messages_are_read_or_refused_and_never_panic(
            name in prop::sample::select(vec!["sip-01-begaran", "sip-03-plan", "adm-01-inskrivning", "sip-02-kallelse"]),
            at in any::<prop::sample::Index>(),
            len in 0usize..40,
            insert in "[<>&/=\" a-zA-Z0-9;#x-]{0,12}",
        ) {
            let map = Mapping::embedded();
            let text = std::fs::read_to_string(golden_dir().join(format!("{name}.in.xml"))).unwrap();
            let bytes = text.as_bytes();
            let i = at.index(bytes.len());
            let end = (i + len).min(bytes.len());
            let mutated = [&bytes[..i], insert.as_bytes(), &bytes[end..]].concat();
            match message::read(&mutated, &map) {
                Ok(m) => {
                    let _ = translate::translate(&m, &context(Case::default()), &map);
                }
                Err(refusal) => prop_assert!(!refusal.errors.is_empty()),
            }
        }
    }
    use std::collections::BTreeSet;
}
