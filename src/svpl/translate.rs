//! The pure translation from a read SVPL message to the FHIR resources navet stores (spec/svpl-messages.md
//! "Message types", the table's last column). No I/O: what the store knows (the patient's id, the case's
//! current resources, the time of receipt) comes in a [`Context`], so the translation is benchmarked and
//! property-tested alone, and the golden files pin it.
//!
//! Ids are derived from (sender, message id, role), so one message always yields the same resources and a
//! resource of the case can be referenced before it is written.

use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::kvittens::Fel;
use super::mapping::Mapping;
use super::message::{Body, Envelope, Message};
use crate::domain::HSA_ID_SYSTEM;

pub const CS_CAREPLAN_CATEGORY: &str = "http://navet.example/CodeSystem/careplan-category";
pub const CS_CONSENT_CATEGORY: &str = "http://navet.example/CodeSystem/consent-category";
pub const CS_TASK: &str = "http://navet.example/CodeSystem/task-code";
pub const CS_CARETEAM_ROLE: &str = "http://navet.example/CodeSystem/sip-role";
/// `meta.tag` on what arrived past a Lag 2017:612 deadline (`_tag=…|late` finds them).
pub const CS_DEADLINE: &str = "http://navet.example/CodeSystem/deadline";
pub const EXT_FOLLOW_UP: &str = "http://navet.example/StructureDefinition/sip-follow-up";
pub const EXT_HUVUDMAN: &str = "http://navet.example/StructureDefinition/sip-huvudman";
pub const EXT_EXPECTED_DISCHARGE: &str =
    "http://navet.example/StructureDefinition/expected-discharge";
pub const EXT_DISCHARGE_READY: &str = "http://navet.example/StructureDefinition/discharge-ready";
/// A SIP meeting held online (`Mote/@digitalt`).
pub const EXT_DIGITAL: &str = "http://navet.example/StructureDefinition/digital-meeting";
pub const EXT_HOUSING: &str = "http://navet.example/StructureDefinition/housing";
pub const EXT_MUNICIPALITY: &str = "http://navet.example/StructureDefinition/municipality";
pub const MUNICIPALITY_SYSTEM: &str = "urn:oid:1.2.752.129.2.2.1.17";
/// Task codes.
pub const TASK_SIP_KALLELSE: &str = "sip-kallelse";
pub const TASK_INSKRIVNING: &str = "inskrivning";

/// The identifier system of a sender's SVPL message ids (`urn:navet:svpl:message:{HSA-id}`): resources
/// carry the id of the message that made them.
pub fn message_system(sender: &str) -> String {
    format!("urn:navet:svpl:message:{sender}")
}

/// What the store knows that the translation needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// `Patient/{id}`.
    pub patient: String,
    /// When navet received the message.
    pub received: Timestamp,
    /// The case the message follows (empty for a message that opens one).
    pub case: Case,
}

/// The current resources of the case a message follows, and who opened it.
#[derive(Debug, Clone, Default)]
pub struct Case {
    /// `CarePlan/{id}` or `Encounter/{id}`.
    pub case_ref: Option<String>,
    /// The sender of the message that opened the case.
    pub opened_by: Option<String>,
    pub resources: Vec<Current>,
    /// The resources the referenced message created (for a `Makulering`).
    pub referenced: Vec<String>,
    /// The senders and recipients of the referenced message.
    pub referenced_parties: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Current {
    pub resource_type: String,
    pub id: String,
    pub value: Value,
}

impl Case {
    pub fn first(&self, ty: &str) -> Option<&Current> {
        self.resources.iter().find(|c| c.resource_type == ty)
    }

    pub fn all<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Current> + 'a {
        self.resources.iter().filter(move |c| c.resource_type == ty)
    }
}

/// One resource to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub resource_type: String,
    pub id: String,
    /// A new resource (else an update of the case's current one).
    pub create: bool,
    pub value: Value,
}

/// What a message becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub writes: Vec<Write>,
    /// The case it opened or follows.
    pub case_ref: String,
    /// The HSA-ids this message names (sender, recipients, invited, performers): with the earlier messages'
    /// they are the case's participants, who may reference its messages.
    pub parties: Vec<String>,
}

impl Translation {
    pub fn new(case_ref: String) -> Self {
        Translation {
            writes: Vec::new(),
            case_ref,
            parties: Vec::new(),
        }
    }

    pub fn create(&mut self, ty: &str, id: String, value: Value) {
        self.writes.push(Write {
            resource_type: ty.to_owned(),
            id,
            create: true,
            value,
        });
    }

    pub fn update(&mut self, current: &Current, value: Value) {
        self.writes.push(Write {
            resource_type: current.resource_type.clone(),
            id: current.id.clone(),
            create: false,
            value,
        });
    }

    pub fn party(&mut self, hsa: &str) {
        if !self.parties.iter().any(|p| p == hsa) {
            self.parties.push(hsa.to_owned());
        }
    }
}

/// A stable FHIR id for the resource `role` of message `id` from `sender` (36 characters, uuid-shaped).
/// Written by hand rather than with `format!`: a message makes a dozen ids, and this is on every message's
/// path (the SVPL bench).
pub fn id_for(sender: &str, id: &str, role: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::new()
        .chain_update(sender)
        .chain_update("\n")
        .chain_update(id)
        .chain_update("\n")
        .chain_update(role)
        .finalize();
    let mut out = String::with_capacity(36);
    for (i, b) in digest.iter().take(16).enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// A JSON object of owned members, in this order. `json!` serializes every `Value` put into it a second
/// time (a deep copy, then the original is dropped); the translation moves the ones it built in instead.
pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    let mut map = serde_json::Map::with_capacity(N);
    for (key, value) in members {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

/// A logical reference to an organisation by HSA-id.
pub fn hsa_ref(hsa: &str) -> Value {
    json!({"identifier": {"system": HSA_ID_SYSTEM, "value": hsa}})
}

pub fn literal(ty: &str, id: &str) -> Value {
    let mut reference = String::with_capacity(ty.len() + 1 + id.len());
    reference.push_str(ty);
    reference.push('/');
    reference.push_str(id);
    object([("reference", Value::String(reference))])
}

/// The identifier naming the message a resource came from.
pub fn message_identifier(e: &Envelope) -> Value {
    json!({"system": message_system(e.sender.hsa.as_str()), "value": e.id})
}

/// `Type/id` → (type, id).
pub fn split_ref(reference: &str) -> Option<(&str, &str)> {
    reference.split_once('/')
}

pub fn fhir_instant(t: Timestamp) -> String {
    // Millisecond precision in UTC, as navet stores instants.
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Translates a message. `Err` lists the rules it breaks that only the case can tell (e.g. a SipAvslut from
/// someone other than the overall responsible principal).
pub fn translate(m: &Message, cx: &Context, map: &Mapping) -> Result<Translation, Vec<Fel>> {
    let e = &m.envelope;
    let mut t = match &m.body {
        Body::SipBegaran(b) => b.translate(e, cx, map),
        Body::SipKallelse(b) => b.translate(e, cx, map)?,
        Body::SipPlan(b) => b.translate(e, cx, map)?,
        Body::SipUppfoljning(b) => b.translate(e, cx, map)?,
        Body::SipAvslut(b) => b.translate(e, cx, map)?,
        Body::Inskrivningsmeddelande(b) => b.translate(e, cx, map),
        Body::Utskrivningsklar(b) => b.translate(e, cx, map)?,
        Body::Utskrivningsmeddelande(b) => b.translate(e, cx, map)?,
        Body::Makulering(b) => b.translate(e, cx, map)?,
    };
    t.party(e.sender.hsa.as_str());
    for r in &e.recipients {
        t.party(r.hsa.as_str());
    }
    let provenance = provenance(e, cx, &t);
    t.create(
        "Provenance",
        id_for(e.sender.hsa.as_str(), &e.id, "Provenance"),
        provenance,
    );
    Ok(t)
}

/// The Provenance linking what a message wrote to the message (kept as it arrived, `GET /svpl/messages/…`).
fn provenance(e: &Envelope, cx: &Context, t: &Translation) -> Value {
    let targets: Vec<Value> = t
        .writes
        .iter()
        .map(|w| literal(&w.resource_type, &w.id))
        .collect();
    let code = if t.writes.iter().any(|w| w.create) {
        "CREATE"
    } else {
        "UPDATE"
    };
    object([
        ("resourceType", json!("Provenance")),
        ("target", Value::Array(targets)),
        ("occurredDateTime", json!(e.created_text)),
        ("recorded", Value::String(fhir_instant(cx.received))),
        (
            "activity",
            json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                "code": code
            }]}),
        ),
        (
            "agent",
            json!([{
                "type": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "code": "author"
                }]},
                "who": {"identifier": {"system": HSA_ID_SYSTEM, "value": e.sender.hsa.as_str()}}
            }]),
        ),
        (
            "entity",
            json!([{
                "role": "source",
                "what": {
                    "identifier": {"system": message_system(e.sender.hsa.as_str()), "value": e.id},
                    "display": format!("SVPL {} {}", e.kind.as_str(), e.id)
                }
            }]),
        ),
    ])
}

/// A Communication telling `recipients` about a message, inheriting the case plan's participants.
pub fn notification(
    e: &Envelope,
    cx: &Context,
    about: &[Value],
    recipients: &[String],
    text: &str,
) -> Value {
    let mut c = object([
        ("resourceType", json!("Communication")),
        ("identifier", Value::Array(vec![message_identifier(e)])),
        ("status", json!("completed")),
        (
            "category",
            json!([{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                "code": "notification"
            }]}]),
        ),
        ("subject", json!({"reference": cx.patient})),
        ("sent", Value::String(fhir_instant(cx.received))),
        ("sender", hsa_ref(e.sender.hsa.as_str())),
        ("recipient", recipients.iter().map(|r| hsa_ref(r)).collect()),
        ("payload", json!([{"contentString": text}])),
    ]);
    if !about.is_empty() {
        c["about"] = Value::Array(about.to_vec());
    }
    c
}

/// An extension with a date or dateTime value (by the text's form).
pub fn date_extension(url: &str, value: &str) -> Value {
    if value.len() == 10 {
        json!({"url": url, "valueDate": value})
    } else {
        json!({"url": url, "valueDateTime": value})
    }
}

/// Sets (replacing) the extension `url` of a resource; `None` removes it.
pub fn set_extension(resource: &mut Value, url: &str, extension: Option<Value>) {
    let mut list: Vec<Value> = resource
        .get("extension")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.retain(|x| x.get("url").and_then(Value::as_str) != Some(url));
    if let Some(x) = extension {
        list.push(x);
    }
    if let Some(obj) = resource.as_object_mut() {
        if list.is_empty() {
            obj.remove("extension");
        } else {
            obj.insert("extension".into(), Value::Array(list));
        }
    }
}

/// A current resource without the members navet renders itself (`meta`'s version and time, the owner tag):
/// the base of an update.
pub fn base(current: &Current) -> Value {
    let mut v = current.value.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("meta");
        obj.remove("text");
    }
    v
}

/// The HSA-ids of a CareTeam's members.
pub fn team_members(team: &Value) -> Vec<String> {
    team.get("participant")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p.pointer("/member/identifier/value")
                .and_then(Value::as_str)
        })
        .map(str::to_owned)
        .collect()
}

/// A CareTeam member entry.
pub fn team_member(hsa: &str, role: &str) -> Value {
    object([
        (
            "role",
            json!([{"coding": [{"system": CS_CARETEAM_ROLE, "code": role}]}]),
        ),
        ("member", hsa_ref(hsa)),
    ])
}

/// Adds members not yet on the team.
pub fn add_members(team: &mut Value, members: &[(String, &str)]) {
    let mut have = team_members(team);
    let mut list: Vec<Value> = match team.get_mut("participant").map(Value::take) {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    for (hsa, role) in members {
        if !have.contains(hsa) {
            list.push(team_member(hsa, role));
            have.push(hsa.clone());
        }
    }
    team["participant"] = Value::Array(list);
}

/// The overall responsible principal of a SIP case (its CareTeam's managing organisation), if a plan set one.
pub fn overall_responsible(case: &Case) -> Option<String> {
    case.first("CareTeam")?
        .value
        .pointer("/managingOrganization/0/identifier/value")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Task statuses that are still open work (FHIR R4 task-status).
pub fn task_is_open(task: &Value) -> bool {
    matches!(
        task.get("status").and_then(Value::as_str),
        Some("draft" | "requested" | "received" | "accepted" | "ready" | "in-progress" | "on-hold")
    )
}

// The outbound direction's readers (`crate::svpl::outbound`, the `render` of each message type): the
// reverse of the helpers above.

/// The extension `url` of a resource, if it has one.
pub fn extension<'a>(resource: &'a Value, url: &str) -> Option<&'a Value> {
    resource
        .get("extension")?
        .as_array()?
        .iter()
        .find(|x| x.get("url").and_then(Value::as_str) == Some(url))
}

/// The date or dateTime of an extension made by [`date_extension`].
pub fn date_value(extension: &Value) -> Option<String> {
    extension
        .get("valueDate")
        .or_else(|| extension.get("valueDateTime"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The key of a code map (`codes.toml`) whose coding has the system and code of `coding`.
pub fn code_key(
    map: &std::collections::BTreeMap<String, super::mapping::CodingConfig>,
    coding: &Value,
) -> Option<String> {
    let system = coding.get("system")?.as_str()?;
    let code = coding.get("code")?.as_str()?;
    map.iter()
        .find(|(_, c)| c.system == system && c.code == code)
        .map(|(k, _)| k.clone())
}

/// The HSA-id of a logical organisation reference made by [`hsa_ref`].
pub fn hsa_of(reference: &Value) -> Option<&str> {
    reference
        .pointer("/identifier/value")
        .and_then(Value::as_str)
}
