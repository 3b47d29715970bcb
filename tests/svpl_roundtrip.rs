//! Round trips of the outbound SVPL messages (src/svpl/outbound.rs), property-tested on generated messages
//! with personnummer, samordningsnummer and reservnummer patients:
//!
//! - SVPL → FHIR → SVPL: a message translated to FHIR (as `POST /svpl` stores it) and rendered back (as a FHIR
//!   change sends it) is the same message, field for field, up to what FHIR does not tell apart (below).
//! - FHIR → SVPL → FHIR: the FHIR a message made, rendered as SVPL, written, read and translated again, is
//!   the same FHIR (the Appointment's participants as a set).
//!
//! What FHIR does not tell apart, so the message is compared normalised: the listed vårdcentral is told of an
//! admission like a recipient, so it comes back as a `Mottagare`; an `Inskrivning/@enhet` left out is the
//! sender; a kallelse's `Deltagare` without a role is a `Mottagare`; a plan's `Mottagare` are its CareTeam;
//! an insats of the huvudman `annan` with no utförare is one of the others' measures (so generated `annan`
//! insatser name one).

use std::collections::BTreeSet;

use navet::auth::PrincipalKind;
use navet::domain::HsaId;
use navet::svpl::mapping::Mapping;
use navet::svpl::message::{self, Body, Envelope, Message, MessageKind, Party, PatientData};
use navet::svpl::messages::{
    Insats, Inskrivningsmeddelande, OvrigAtgard, SipAvslut, SipKallelse, SipPlan, Utskrivningsklar,
    Utskrivningsmeddelande,
};
use navet::svpl::outbound::{Change, Outbound, render};
use navet::svpl::translate::{self, Case, Context, Current, Translation};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Which FHIR changes send which message (the trigger table), and what a message leaves out.
#[path = "svpl_roundtrip/triggers.rs"]
mod triggers;

const PATIENT: &str = "Patient/roundtrip";
const PLAN_ID: &str = "plan-1";
const TEAM_ID: &str = "team-1";
const OPENED_BY: &str = "SE2120000999-HSJ1290";
const REFERENCE: &str = "KOM1290-2026-000123";
const ENCOUNTER_ID: &str = "enc-1";

/// The principals navet knows here: (HSA-id, kind, name).
const PARTIES: [(&str, PrincipalKind, &str); 7] = [
    (
        "SE2120000999-HSJ1290",
        PrincipalKind::Kommun,
        "Kristianstads kommun",
    ),
    (
        "SE2120000999-HSJ1286",
        PrincipalKind::Kommun,
        "Ystads kommun",
    ),
    (
        "SE2321000255-VC101",
        PrincipalKind::Vardcentral,
        "Näsby vårdcentral",
    ),
    (
        "SE2321000255-VC201",
        PrincipalKind::Vardcentral,
        "Ystad vårdcentral",
    ),
    ("SE2321000255-MTN01", PrincipalKind::Mtn, "Mobila teamet"),
    ("SE2321000255-CSK01", PrincipalKind::Sjukhus, "CSK"),
    (
        "SE2321000255-LYS01",
        PrincipalKind::Sjukhus,
        "Lasarettet i Ystad",
    ),
];

fn outbound() -> Outbound {
    Outbound::for_parties(Mapping::embedded(), &PARTIES)
}

fn party(hsa: &str, with_name: bool) -> Party {
    let (_, kind, name) = PARTIES.iter().find(|(h, _, _)| *h == hsa).expect("known");
    Party {
        hsa: HsaId::parse(hsa).expect("hsa"),
        kind: Some(
            match kind {
                PrincipalKind::Kommun => "kommun",
                PrincipalKind::Vardcentral => "vardcentral",
                PrincipalKind::Mtn => "mtn",
                _ => "sjukhus",
            }
            .to_owned(),
        ),
        name: with_name.then(|| (*name).to_owned()),
    }
}

fn text() -> impl Strategy<Value = String> {
    // Letters, Swedish ones, digits, XML's special characters, spaces inside (trimmed ends, as read).
    "[a-zA-ZåäöÅÄÖ0-9<>&\"' ]{0,24}[a-zA-Z0-9åäö<>&]".prop_map(|s| s.trim().to_owned())
}

fn instant() -> impl Strategy<Value = String> {
    (
        2020i32..2030,
        1u8..=12,
        1u8..=28,
        0u8..24,
        0u8..60,
        any::<bool>(),
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

/// Patients of every identifier type, with or without the rest of the patient block.
fn patient() -> impl Strategy<Value = PatientData> {
    let ids = prop::sample::select(vec![
        ("personnummer", "191212121212"),
        ("personnummer", "194005121233"),
        ("samordningsnummer", "195009722397"),
        ("reservnummer", "RES-1290-0001"),
        ("reservnummer", "K12345"),
    ]);
    (
        ids,
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of((text(), "[0-9]{5}", text())),
        prop::option::of(prop::sample::select(vec!["1290", "1286"])),
        prop::option::of(prop::sample::select(vec![
            "SE2321000255-VC101",
            "SE2321000255-VC201",
        ])),
    )
        .prop_map(
            |((typ, value), given, family, address, municipality, listed)| {
                let map = Mapping::embedded();
                let system = map.patient_id_types[typ].clone();
                let (street, postal_code, city) = match address {
                    Some((s, p, c)) => (Some(s), Some(p), Some(c)),
                    None => (None, None, None),
                };
                PatientData {
                    id: navet::domain::from_fhir(&system, value)
                        .expect("valid")
                        .expect("checked"),
                    id_type: typ.to_owned(),
                    given,
                    family,
                    street,
                    postal_code,
                    city,
                    municipality: municipality.map(str::to_owned),
                    listed_at: listed.map(|h| HsaId::parse(h).expect("hsa")),
                }
            },
        )
}

/// `n` distinct HSA-ids of `pool`, none of them `not`.
fn distinct(
    pool: Vec<&'static str>,
    not: &'static str,
    max: usize,
) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(pool, 0..=max).prop_map(move |v| {
        v.into_iter()
            .filter(|h| *h != not)
            .map(str::to_owned)
            .collect()
    })
}

fn envelope(
    kind: MessageKind,
    sender: &'static str,
    recipients: Vec<String>,
    patient: PatientData,
    id: String,
    created: String,
) -> Envelope {
    Envelope {
        kind,
        id,
        created: created.parse().expect("instant"),
        created_text: created,
        sender: party(sender, true),
        recipients: recipients.iter().map(|r| party(r, false)).collect(),
        patient,
        reference: (kind != MessageKind::Inskrivningsmeddelande).then(|| REFERENCE.to_owned()),
    }
}

fn admissions() -> impl Strategy<Value = Message> {
    let hospital = prop::sample::select(vec!["SE2321000255-CSK01", "SE2321000255-LYS01"]);
    (hospital, any::<prop::sample::Index>()).prop_flat_map(|(sender, _)| {
        (
            distinct(
                vec![
                    "SE2120000999-HSJ1290",
                    "SE2120000999-HSJ1286",
                    "SE2321000255-VC101",
                ],
                sender,
                3,
            )
            .prop_filter("a recipient", |r| !r.is_empty()),
            patient(),
            "[A-Z]{3}[0-9]{1,6}-[0-9]{1,4}",
            instant(),
            instant(),
            prop::option::of(prop::sample::select(vec![
                "SE2321000255-CSK01",
                "SE2321000255-LYS01",
            ])),
            prop::option::of(instant()),
            prop::option::of(prop::sample::select(vec![
                "ordinart", "sarskilt", "korttid", "lss",
            ])),
        )
            .prop_map(
                move |(recipients, patient, id, created, time, unit, discharge, housing)| Message {
                    envelope: envelope(
                        MessageKind::Inskrivningsmeddelande,
                        sender,
                        recipients,
                        patient,
                        id,
                        created,
                    ),
                    body: Body::Inskrivningsmeddelande(Inskrivningsmeddelande {
                        time,
                        unit: unit.map(str::to_owned),
                        expected_discharge: discharge,
                        housing: housing.map(str::to_owned),
                    }),
                },
            )
    })
}

/// A hospital's message that follows its admission notice (`Referens`): utskrivningsklar or utskrivning.
fn discharge_chain() -> impl Strategy<Value = Message> {
    let hospital = prop::sample::select(vec!["SE2321000255-CSK01", "SE2321000255-LYS01"]);
    (hospital, any::<prop::sample::Index>()).prop_flat_map(|(sender, _)| {
        (
            distinct(
                vec![
                    "SE2120000999-HSJ1290",
                    "SE2120000999-HSJ1286",
                    "SE2321000255-VC101",
                ],
                sender,
                3,
            )
            .prop_filter("a recipient", |r| !r.is_empty()),
            patient(),
            "[A-Z]{3}[0-9]{1,6}-[0-9]{1,4}",
            instant(),
            instant(),
            any::<bool>(),
        )
            .prop_map(move |(recipients, mut patient, id, created, time, ready)| {
                let kind = if ready {
                    // The SIP kallelse it asks for goes to the listed vårdcentral: a ready patient has one.
                    if patient.listed_at.is_none() {
                        patient.listed_at = Some(HsaId::parse("SE2321000255-VC201").expect("hsa"));
                    }
                    MessageKind::Utskrivningsklar
                } else {
                    MessageKind::Utskrivningsmeddelande
                };
                Message {
                    envelope: envelope(kind, sender, recipients, patient, id, created),
                    body: if ready {
                        Body::Utskrivningsklar(Utskrivningsklar { time })
                    } else {
                        Body::Utskrivningsmeddelande(Utskrivningsmeddelande { time })
                    },
                }
            })
    })
}

const SIP_SENDER: &str = "SE2321000255-VC101";

/// A `SipAvslut` from the overall responsible principal (the context's team names [`SIP_SENDER`]).
fn closes() -> impl Strategy<Value = Message> {
    (
        distinct(
            vec!["SE2120000999-HSJ1290", "SE2321000255-MTN01"],
            SIP_SENDER,
            2,
        )
        .prop_filter("a recipient", |r| !r.is_empty()),
        text(),
        patient(),
        "[A-Z]{3}[0-9]{1,6}-[0-9]{1,4}",
        instant(),
    )
        .prop_map(|(recipients, reason, patient, id, created)| Message {
            envelope: envelope(
                MessageKind::SipAvslut,
                SIP_SENDER,
                recipients,
                patient,
                id,
                created,
            ),
            body: Body::SipAvslut(SipAvslut { reason }),
        })
}

fn kallelser() -> impl Strategy<Value = Message> {
    (
        distinct(
            vec!["SE2120000999-HSJ1290", "SE2120000999-HSJ1286"],
            SIP_SENDER,
            2,
        )
        .prop_filter("a recipient", |r| !r.is_empty()),
        prop::collection::vec(
            prop::option::of(prop::sample::select(vec![
                "lakare",
                "kurator",
                "bistandshandlaggare",
                "narstaende",
            ])),
            2,
        ),
        patient(),
        "[A-Z]{3}[0-9]{1,6}-[0-9]{1,4}",
        instant(),
        instant(),
        prop::option::of(text()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(recipients, roles, patient, id, created, time, place, digital)| {
                // The Deltagare are others than the sender and the Mottagare.
                let others = ["SE2321000255-MTN01", "SE2321000255-VC201"];
                let participants = others
                    .iter()
                    .zip(roles)
                    .map(|(h, r)| ((*h).to_owned(), r.map(str::to_owned)))
                    .collect();
                Message {
                    envelope: envelope(
                        MessageKind::SipKallelse,
                        SIP_SENDER,
                        recipients,
                        patient,
                        id,
                        created,
                    ),
                    body: Body::SipKallelse(SipKallelse {
                        time,
                        place,
                        digital,
                        participants,
                    }),
                }
            },
        )
}

fn plans() -> impl Strategy<Value = Message> {
    let performer = prop::option::of(prop::sample::select(vec![
        "SE2120000999-HSJ1290",
        "SE2321000255-VC101",
        "SE2321000255-MTN01",
    ]));
    let insats = (
        prop::sample::select(vec!["kommun", "region", "annan"]),
        performer,
        prop::option::of(date()),
        prop::option::of(date()),
        text(),
    )
        .prop_map(|(p, performer, start, end, text)| Insats {
            principal: p.to_owned(),
            // An `annan` insats without an utförare is one of the others' measures in FHIR.
            performer: match (p, performer) {
                ("annan", None) => Some("SE2321000255-MTN01".to_owned()),
                (_, performer) => performer.map(str::to_owned),
            },
            start,
            end,
            text,
        });
    (
        distinct(
            vec!["SE2120000999-HSJ1290", "SE2321000255-MTN01"],
            SIP_SENDER,
            2,
        )
        .prop_filter("a recipient", |r| !r.is_empty()),
        prop::collection::vec(insats, 0..4),
        prop::collection::vec((prop::option::of(text()), text()), 0..3),
        prop::sample::select(vec!["SE2321000255-VC101", "SE2120000999-HSJ1290"]),
        prop::option::of(date()),
        patient(),
        "[A-Z]{3}[0-9]{1,6}-[0-9]{1,4}",
        instant(),
    )
        .prop_map(
            |(recipients, mut insatser, other, responsible, follow_up, patient, id, created)| {
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
                    envelope: envelope(
                        MessageKind::SipPlan,
                        SIP_SENDER,
                        recipients,
                        patient,
                        id,
                        created,
                    ),
                    body: Body::SipPlan(SipPlan {
                        insatser,
                        other: other
                            .into_iter()
                            .map(|(actor, text)| OvrigAtgard { actor, text })
                            .collect(),
                        responsible: responsible.to_owned(),
                        follow_up,
                    }),
                }
            },
        )
}

/// The SIP case a kallelse or plan follows: the plan a request opened, and its team of `members`.
fn sip_case(members: &[String]) -> Case {
    let plan = json!({
        "resourceType": "CarePlan",
        "id": PLAN_ID,
        "identifier": [{"system": translate::message_system(OPENED_BY), "value": REFERENCE}],
        "status": "draft",
        "intent": "plan",
        "category": [{"coding": [{"system": translate::CS_CAREPLAN_CATEGORY, "code": "sip"}]}],
        "subject": {"reference": PATIENT},
        "careTeam": [{"reference": format!("CareTeam/{TEAM_ID}")}]
    });
    let team = json!({
        "resourceType": "CareTeam",
        "id": TEAM_ID,
        "status": "proposed",
        "participant": members.iter().map(|m| translate::team_member(m, "invited")).collect::<Vec<_>>()
    });
    Case {
        case_ref: Some(format!("CarePlan/{PLAN_ID}")),
        opened_by: Some(OPENED_BY.into()),
        resources: vec![
            Current {
                resource_type: "CarePlan".into(),
                id: PLAN_ID.into(),
                value: plan,
            },
            Current {
                resource_type: "CareTeam".into(),
                id: TEAM_ID.into(),
                value: team,
            },
        ],
        referenced: Vec::new(),
        referenced_parties: Vec::new(),
    }
}

/// The admission a discharge message follows: the Encounter the hospital's notice `REFERENCE` made, telling
/// the message's recipients.
fn admission_case(m: &Message) -> Case {
    let e = &m.envelope;
    let sender = e.sender.hsa.as_str();
    let informed: Vec<Value> = e
        .recipients
        .iter()
        .map(|r| json!({"individual": translate::hsa_ref(r.hsa.as_str())}))
        .collect();
    let encounter = json!({
        "resourceType": "Encounter",
        "id": ENCOUNTER_ID,
        "identifier": [{"system": translate::message_system(sender), "value": REFERENCE}],
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": PATIENT},
        "participant": informed,
        "period": {"start": "2026-11-20T08:00:00+01:00"},
        "serviceProvider": translate::hsa_ref(sender)
    });
    Case {
        case_ref: Some(format!("Encounter/{ENCOUNTER_ID}")),
        opened_by: Some(sender.to_owned()),
        resources: vec![Current {
            resource_type: "Encounter".into(),
            id: ENCOUNTER_ID.into(),
            value: encounter,
        }],
        referenced: Vec::new(),
        referenced_parties: Vec::new(),
    }
}

fn context(m: &Message) -> Context {
    let mut members = vec![SIP_SENDER.to_owned()];
    members.extend(m.envelope.recipients.iter().map(|r| r.hsa.to_string()));
    Context {
        patient: PATIENT.into(),
        received: "2026-11-23T09:20:00Z".parse().expect("instant"),
        case: match m.envelope.kind {
            MessageKind::Inskrivningsmeddelande => Case::default(),
            MessageKind::Utskrivningsklar | MessageKind::Utskrivningsmeddelande => {
                admission_case(m)
            }
            MessageKind::SipAvslut => {
                let mut case = sip_case(&members);
                // A plan named the sender overall responsible: it closes the SIP.
                case.resources[1].value["managingOrganization"] =
                    json!([translate::hsa_ref(SIP_SENDER)]);
                case
            }
            _ => sip_case(&members),
        },
    }
}

/// The written resource of type `ty` (with its type and id), if the translation wrote one.
fn written(t: &Translation, ty: &str) -> Option<(String, Value)> {
    t.writes.iter().find(|w| w.resource_type == ty).map(|w| {
        let mut v = w.value.clone();
        v["resourceType"] = json!(ty);
        v["id"] = json!(w.id);
        (w.id.clone(), v)
    })
}

/// The FHIR change that sends `m` again: the resource its translation made, as a principal wrote it.
fn change_of(m: &Message, t: &Translation, cx: &Context) -> Change {
    let map = Mapping::embedded();
    let e = &m.envelope;
    let mut patient = navet::svpl::patient::resource(&e.patient, &map);
    patient["id"] = json!("roundtrip");
    let (ty, previous) = match e.kind {
        MessageKind::Inskrivningsmeddelande => ("Encounter", None),
        MessageKind::Utskrivningsklar | MessageKind::Utskrivningsmeddelande => (
            "Encounter",
            cx.case.first("Encounter").map(|c| c.value.clone()),
        ),
        MessageKind::SipKallelse => ("Appointment", None),
        _ => (
            "CarePlan",
            cx.case.first("CarePlan").map(|c| c.value.clone()),
        ),
    };
    let (id, value) = written(t, ty).expect("the translation wrote it");
    let plan = cx
        .case
        .first("CarePlan")
        .map(|c| (c.id.clone(), c.value.clone()));
    let team = written(t, "CareTeam")
        .map(|(_, v)| v)
        .or_else(|| cx.case.first("CareTeam").map(|c| c.value.clone()));
    Change {
        sender: e.sender.hsa.to_string(),
        resource_type: ty.into(),
        id,
        value,
        previous,
        patient,
        plan,
        team,
        case_message: None,
        message_id: e.id.clone(),
        created: e.created_text.clone(),
    }
}

/// `m` as it comes back through FHIR (the module comment's list).
fn normalised(m: &Message, cx: &Context) -> Message {
    let mut m = m.clone();
    let sender = m.envelope.sender.hsa.to_string();
    let add = |recipients: &mut Vec<Party>, hsa: &str| {
        if hsa != sender && !recipients.iter().any(|r| r.hsa.as_str() == hsa) {
            recipients.push(party(hsa, false));
        }
    };
    match &mut m.body {
        Body::Inskrivningsmeddelande(b) => {
            if let Some(listed) = m.envelope.patient.listed_at.clone() {
                add(&mut m.envelope.recipients, listed.as_str());
            }
            b.unit = Some(b.unit.clone().unwrap_or_else(|| sender.clone()));
        }
        Body::SipKallelse(k) => {
            for (h, _) in k.participants.iter().filter(|(_, r)| r.is_none()) {
                add(&mut m.envelope.recipients, h);
            }
            k.participants.retain(|(_, r)| r.is_some());
        }
        Body::SipPlan(p) => {
            // The team: the case's members, the overall responsible principal, the utförare.
            let mut team: Vec<String> = cx
                .case
                .first("CareTeam")
                .map(|t| translate::team_members(&t.value))
                .unwrap_or_default();
            team.push(p.responsible.clone());
            team.extend(p.insatser.iter().filter_map(|i| i.performer.clone()));
            m.envelope.recipients.clear();
            for h in team {
                add(&mut m.envelope.recipients, &h);
            }
        }
        _ => {}
    }
    m
}

/// An Appointment's participants as a set (the order of Mottagare and Deltagare is not FHIR's to keep).
fn participants_as_set(v: &mut Value) {
    if let Some(list) = v.get("participant").and_then(Value::as_array) {
        let set: BTreeSet<String> = list.iter().map(Value::to_string).collect();
        v["participant"] = json!(set.into_iter().collect::<Vec<_>>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// SVPL → FHIR → SVPL keeps every field the spec names.
    #[test]
    fn svpl_to_fhir_to_svpl_keeps_the_message(m in prop_oneof![admissions(), kallelser(), plans(), discharge_chain(), closes()]) {
        let map = Mapping::embedded();
        let cx = context(&m);
        let t = translate::translate(&m, &cx, &map).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let change = change_of(&m, &t, &cx);
        let back = render(&change, &outbound()).ok_or_else(|| TestCaseError::fail("nothing rendered"))?;
        prop_assert_eq!(back.message, normalised(&m, &cx));
    }

    /// FHIR → SVPL → FHIR: the FHIR a message made, sent as SVPL and received again, is the same FHIR.
    #[test]
    fn fhir_to_svpl_to_fhir_keeps_the_resources(m in prop_oneof![admissions(), kallelser(), plans(), discharge_chain(), closes()]) {
        let map = Mapping::embedded();
        let cx = context(&m);
        let first = translate::translate(&m, &cx, &map).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let change = change_of(&m, &first, &cx);
        let rendered = render(&change, &outbound()).ok_or_else(|| TestCaseError::fail("nothing rendered"))?;
        let xml = message::write(&rendered.message, &map);
        let read = message::read(xml.as_bytes(), &map).map_err(|e| TestCaseError::fail(format!("{e:?}\n{xml}")))?;
        prop_assert_eq!(&read, &rendered.message);
        let again = translate::translate(&read, &cx, &map).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        for ty in ["Encounter", "Appointment", "CarePlan", "CareTeam"] {
            let (a, b) = (written(&first, ty), written(&again, ty));
            let (mut a, mut b) = (a.map(|x| x.1), b.map(|x| x.1));
            if let (Some(a), Some(b)) = (a.as_mut(), b.as_mut()) {
                participants_as_set(a);
                participants_as_set(b);
            }
            prop_assert_eq!(a, b, "{}", ty);
        }
        // The patient block: the Patient navet would make is the Patient it was rendered from.
        prop_assert_eq!(
            navet::svpl::patient::resource(&read.envelope.patient, &map),
            navet::svpl::patient::resource(&m.envelope.patient, &map)
        );
    }
}
