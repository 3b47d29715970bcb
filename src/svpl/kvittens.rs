//! `Kvittens`, the answer to every message (spec/svpl-messages.md "Transport", "Rules navet enforces"): its
//! `Fel` codes, the HTTP status a refusal gets, and the receipt's XML in both directions (navet's receipts,
//! and the receipts municipal systems answer navet's outbound messages with).

use super::mapping::Mapping;
use super::message::MessageKind;
use super::xml::{self, Element};

/// The `Fel/@kod` values of spec/svpl-messages.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FelCode {
    Schema,
    PatientId,
    Avsandare,
    MottagareOkand,
    SamtyckeSaknas,
    ReferensOkand,
    SipOfullstandig,
    ForStor,
    Dtd,
}

impl FelCode {
    pub const ALL: [FelCode; 9] = [
        FelCode::Schema,
        FelCode::PatientId,
        FelCode::Avsandare,
        FelCode::MottagareOkand,
        FelCode::SamtyckeSaknas,
        FelCode::ReferensOkand,
        FelCode::SipOfullstandig,
        FelCode::ForStor,
        FelCode::Dtd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FelCode::Schema => "SCHEMA",
            FelCode::PatientId => "PATIENT_ID",
            FelCode::Avsandare => "AVSANDARE",
            FelCode::MottagareOkand => "MOTTAGARE_OKAND",
            FelCode::SamtyckeSaknas => "SAMTYCKE_SAKNAS",
            FelCode::ReferensOkand => "REFERENS_OKAND",
            FelCode::SipOfullstandig => "SIP_OFULLSTANDIG",
            FelCode::ForStor => "FOR_STOR",
            FelCode::Dtd => "DTD",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        FelCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One problem: its code, the XPath of the field (`/` for the whole message) and a text for people. Texts
/// never repeat an identity number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fel {
    pub code: FelCode,
    pub field: String,
    pub text: String,
}

/// The HTTP status of a refusal (spec "Transport": 400 or 422): 400 when the message could not be read
/// (not XML, wrong shape, too big, a DTD), 422 when it was read but breaks a rule.
pub fn refusal_status(errors: &[Fel]) -> u16 {
    let unreadable = errors
        .iter()
        .any(|f| matches!(f.code, FelCode::Schema | FelCode::ForStor | FelCode::Dtd));
    if unreadable { 400 } else { 422 }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Mottagen,
    Avvisad,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Mottagen => "mottagen",
            Status::Avvisad => "avvisad",
        }
    }
}

/// A receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kvittens {
    pub id: String,
    pub created: String,
    /// Who answers: navet's own receipts name [`NAVET_SENDER`].
    pub sender: String,
    /// Who sent the message answered (when it could be read).
    pub recipient: Option<String>,
    /// The id of the message answered (when it could be read).
    pub reference: Option<String>,
    pub status: Status,
    pub errors: Vec<Fel>,
    /// `(type, id)` of each FHIR resource the message created or changed.
    pub resources: Vec<(String, String)>,
}

/// `Avsandare/@hsaId` of navet's own receipts: navet is the hub, not an HSA-registered care unit.
pub const NAVET_SENDER: &str = "navet";

impl Kvittens {
    pub fn to_xml(&self, map: &Mapping) -> String {
        let mut root = Element::new(&map.root);
        root.set(map.path("message.type"), MessageKind::Kvittens.as_str());
        root.set(map.path("message.id"), &self.id);
        root.set(map.path("message.created"), &self.created);
        root.set(map.path("kvittens.status"), self.status.as_str());
        root.set(map.path("sender.hsa"), &self.sender);
        if let Some(r) = &self.recipient {
            root.push(map.path("recipient"))
                .set(map.path("recipient.hsa"), r);
        }
        if let Some(r) = &self.reference {
            root.set(map.path("reference"), r);
        }
        for f in &self.errors {
            let el = root.push(map.path("kvittens.error"));
            el.set(map.path("kvittens.error.code"), f.code.as_str());
            el.set(map.path("kvittens.error.field"), &f.field);
            el.set(map.path("kvittens.error.text"), &f.text);
        }
        for (ty, id) in &self.resources {
            let el = root.push(map.path("kvittens.resource"));
            el.set(map.path("kvittens.resource.type"), ty);
            el.set(map.path("kvittens.resource.id"), id);
        }
        root.to_document(&map.namespace)
    }

    /// Reads a receipt a receiver answered with. `None` when the text is not a Kvittens.
    pub fn from_xml(bytes: &[u8], map: &Mapping) -> Option<Kvittens> {
        let root = xml::parse(bytes, &map.namespace).ok()?;
        let value = |el: &Element, key: &str| el.value(map.path(key)).map(str::to_owned);
        if root.name != map.root || value(&root, "message.type")? != MessageKind::Kvittens.as_str()
        {
            return None;
        }
        let status = match value(&root, "kvittens.status")?.as_str() {
            "mottagen" => Status::Mottagen,
            "avvisad" => Status::Avvisad,
            _ => return None,
        };
        let errors = root
            .all(map.path("kvittens.error"))
            .into_iter()
            .map(|el| Fel {
                // A receiver's own codes are kept as SCHEMA with their text (they are the receiver's words).
                code: value(el, "kvittens.error.code")
                    .and_then(|c| FelCode::parse(&c))
                    .unwrap_or(FelCode::Schema),
                field: value(el, "kvittens.error.field").unwrap_or_default(),
                text: value(el, "kvittens.error.text").unwrap_or_default(),
            })
            .collect();
        let resources = root
            .all(map.path("kvittens.resource"))
            .into_iter()
            .filter_map(|el| {
                Some((
                    value(el, "kvittens.resource.type")?,
                    value(el, "kvittens.resource.id")?,
                ))
            })
            .collect();
        Some(Kvittens {
            id: value(&root, "message.id").unwrap_or_default(),
            created: value(&root, "message.created").unwrap_or_default(),
            sender: value(&root, "sender.hsa").unwrap_or_default(),
            recipient: root
                .all(map.path("recipient"))
                .first()
                .and_then(|el| value(el, "recipient.hsa")),
            reference: value(&root, "reference"),
            status,
            errors,
            resources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_reads_back_as_written_and_refusals_get_400_or_422() {
        let map = Mapping::embedded();
        let k = Kvittens {
            id: "kvittens-1".into(),
            created: "2026-11-23T09:15:01Z".into(),
            sender: NAVET_SENDER.into(),
            recipient: Some("SE2120000999-HSJ1290".into()),
            reference: Some("KOM1290-2026-000123".into()),
            status: Status::Avvisad,
            errors: vec![Fel {
                code: FelCode::SamtyckeSaknas,
                field: "/Meddelande/Samtycke/@lamnat".into(),
                text: "SIP needs the person's consent <&>".into(),
            }],
            resources: vec![("CarePlan".into(), "x".into())],
        };
        let text = k.to_xml(&map);
        assert_eq!(Kvittens::from_xml(text.as_bytes(), &map), Some(k.clone()));
        assert_eq!(refusal_status(&k.errors), 422);
        let schema = Fel {
            code: FelCode::Schema,
            ..k.errors[0].clone()
        };
        assert_eq!(refusal_status(&[k.errors[0].clone(), schema]), 400);
        assert!(Kvittens::from_xml(b"<x/>", &map).is_none());
    }
}
