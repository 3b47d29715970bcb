//! The SVPL envelope and the one enum of message types (spec/svpl-messages.md "Envelope", "Message types").
//! Reading a message checks its shape: every problem becomes a [`Fel`] with the spec's code and the XPath of
//! the field, and all of them are reported at once. The bodies live in `messages/`, one file per type.

use jiff::Timestamp;

use super::kvittens::{Fel, FelCode};
use super::mapping::Mapping;
use super::messages::{
    Inskrivningsmeddelande, Makulering, SipAvslut, SipBegaran, SipKallelse, SipPlan,
    SipUppfoljning, Utskrivningsklar, Utskrivningsmeddelande,
};
use super::xml::{self, Element};
use crate::domain::{HsaId, PatientIdentifier};

/// The message types (`Meddelande/@typ`) navet receives. `Kvittens` is an answer, never posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    SipBegaran,
    SipKallelse,
    SipPlan,
    SipUppfoljning,
    SipAvslut,
    Inskrivningsmeddelande,
    Utskrivningsklar,
    Utskrivningsmeddelande,
    Makulering,
    Kvittens,
}

impl MessageKind {
    pub const ALL: [MessageKind; 10] = [
        MessageKind::SipBegaran,
        MessageKind::SipKallelse,
        MessageKind::SipPlan,
        MessageKind::SipUppfoljning,
        MessageKind::SipAvslut,
        MessageKind::Inskrivningsmeddelande,
        MessageKind::Utskrivningsklar,
        MessageKind::Utskrivningsmeddelande,
        MessageKind::Makulering,
        MessageKind::Kvittens,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::SipBegaran => "SipBegaran",
            MessageKind::SipKallelse => "SipKallelse",
            MessageKind::SipPlan => "SipPlan",
            MessageKind::SipUppfoljning => "SipUppfoljning",
            MessageKind::SipAvslut => "SipAvslut",
            MessageKind::Inskrivningsmeddelande => "Inskrivningsmeddelande",
            MessageKind::Utskrivningsklar => "Utskrivningsklar",
            MessageKind::Utskrivningsmeddelande => "Utskrivningsmeddelande",
            MessageKind::Makulering => "Makulering",
            MessageKind::Kvittens => "Kvittens",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        MessageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the message follows an earlier one (`Referens/@id` required).
    pub fn has_reference(self) -> bool {
        !matches!(
            self,
            MessageKind::SipBegaran | MessageKind::Inskrivningsmeddelande
        )
    }
}

/// A sender or recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub hsa: HsaId,
    pub kind: Option<String>,
    pub name: Option<String>,
}

/// The patient block as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientData {
    pub id: PatientIdentifier,
    /// `Id/@typ` as sent (personnummer, samordningsnummer, reservnummer).
    pub id_type: String,
    pub given: Option<String>,
    pub family: Option<String>,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub municipality: Option<String>,
    pub listed_at: Option<HsaId>,
}

/// The envelope every message has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: MessageKind,
    pub id: String,
    pub created: Timestamp,
    /// `@skapad` as sent (with its offset), for the FHIR dateTime.
    pub created_text: String,
    pub sender: Party,
    pub recipients: Vec<Party>,
    pub patient: PatientData,
    /// `Referens/@id`, for the types that follow an earlier message.
    pub reference: Option<String>,
}

/// One message: the envelope and its type's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub envelope: Envelope,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    SipBegaran(SipBegaran),
    SipKallelse(SipKallelse),
    SipPlan(SipPlan),
    SipUppfoljning(SipUppfoljning),
    SipAvslut(SipAvslut),
    Inskrivningsmeddelande(Inskrivningsmeddelande),
    Utskrivningsklar(Utskrivningsklar),
    Utskrivningsmeddelande(Utskrivningsmeddelande),
    Makulering(Makulering),
}

impl Body {
    pub fn kind(&self) -> MessageKind {
        match self {
            Body::SipBegaran(_) => MessageKind::SipBegaran,
            Body::SipKallelse(_) => MessageKind::SipKallelse,
            Body::SipPlan(_) => MessageKind::SipPlan,
            Body::SipUppfoljning(_) => MessageKind::SipUppfoljning,
            Body::SipAvslut(_) => MessageKind::SipAvslut,
            Body::Inskrivningsmeddelande(_) => MessageKind::Inskrivningsmeddelande,
            Body::Utskrivningsklar(_) => MessageKind::Utskrivningsklar,
            Body::Utskrivningsmeddelande(_) => MessageKind::Utskrivningsmeddelande,
            Body::Makulering(_) => MessageKind::Makulering,
        }
    }
}

/// What is known of a message that could not be read whole: for the receipt and the access log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub id: Option<String>,
    pub sender: Option<String>,
    pub kind: Option<String>,
    pub patient: Option<PatientIdentifier>,
}

/// A refused message: every problem found, and what could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errors: Vec<Fel>,
    /// Boxed: what was read before the refusal is big, and refusals are the rare path.
    pub partial: Box<Partial>,
}

/// Reads the fields of one element (the root or a group element) against the mapping, collecting problems.
pub struct Reader<'a> {
    pub map: &'a Mapping,
    pub errors: Vec<Fel>,
}

impl<'a> Reader<'a> {
    pub fn new(map: &'a Mapping) -> Self {
        Reader {
            map,
            errors: Vec::new(),
        }
    }

    pub fn fail(&mut self, code: FelCode, key: &str, group: Option<(&str, usize)>, text: String) {
        let field = self.map.xpath(key, group);
        self.errors.push(Fel { code, field, text });
    }

    /// An optional value (empty text counts as absent).
    pub fn opt(&self, el: &Element, key: &str) -> Option<String> {
        el.value(self.map.path(key))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A required value; a SCHEMA `Fel` when it is missing.
    pub fn req(&mut self, el: &Element, key: &str, group: Option<(&str, usize)>) -> Option<String> {
        let v = self.opt(el, key);
        if v.is_none() {
            let path = self.map.path(key);
            let what = if path.is_attribute() {
                "attribute"
            } else {
                "element"
            };
            self.fail(
                FelCode::Schema,
                key,
                group,
                format!("the required {what} is missing"),
            );
        }
        v
    }

    /// A required or optional FHIR dateTime with an offset (RFC 3339), checked.
    pub fn instant(
        &mut self,
        el: &Element,
        key: &str,
        group: Option<(&str, usize)>,
        required: bool,
    ) -> Option<String> {
        let v = if required {
            self.req(el, key, group)?
        } else {
            self.opt(el, key)?
        };
        if v.parse::<Timestamp>().is_err() {
            self.fail(
                FelCode::Schema,
                key,
                group,
                "not a date and time with an offset (e.g. 2026-11-23T09:15:00+01:00)".into(),
            );
            return None;
        }
        Some(v)
    }

    /// A required or optional date (`YYYY-MM-DD`) or dateTime with an offset.
    pub fn date(
        &mut self,
        el: &Element,
        key: &str,
        group: Option<(&str, usize)>,
        required: bool,
    ) -> Option<String> {
        let v = if required {
            self.req(el, key, group)?
        } else {
            self.opt(el, key)?
        };
        let is_date = v.len() == 10 && v.parse::<jiff::civil::Date>().is_ok();
        if !is_date && v.parse::<Timestamp>().is_err() {
            self.fail(
                FelCode::Schema,
                key,
                group,
                "not a date (YYYY-MM-DD) or a date and time with an offset".into(),
            );
            return None;
        }
        Some(v)
    }

    /// A required or optional HSA-id.
    pub fn hsa(
        &mut self,
        el: &Element,
        key: &str,
        group: Option<(&str, usize)>,
        required: bool,
    ) -> Option<HsaId> {
        let v = if required {
            self.req(el, key, group)?
        } else {
            self.opt(el, key)?
        };
        match HsaId::parse(&v) {
            Ok(h) => Some(h),
            Err(e) => {
                self.fail(FelCode::Schema, key, group, format!("not an HSA-id: {e}"));
                None
            }
        }
    }

    /// `true`/`false`.
    pub fn boolean(
        &mut self,
        el: &Element,
        key: &str,
        group: Option<(&str, usize)>,
    ) -> Option<bool> {
        match self.opt(el, key).as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                self.fail(FelCode::Schema, key, group, "must be true or false".into());
                None
            }
        }
    }
}

/// Longest message id navet keeps (it is part of the idempotency key and of receipts).
pub const MAX_ID_LENGTH: usize = 128;

/// Reads a whole message. `Err` lists every problem found.
pub fn read(bytes: &[u8], map: &Mapping) -> Result<Message, Refusal> {
    let root = match xml::parse(bytes, &map.namespace) {
        Ok(root) => root,
        Err(e) => {
            let code = match e {
                xml::XmlError::Dtd => FelCode::Dtd,
                _ => FelCode::Schema,
            };
            return Err(Refusal {
                errors: vec![Fel {
                    code,
                    field: "/".into(),
                    text: e.to_string(),
                }],
                partial: Box::default(),
            });
        }
    };
    read_element(&root, map)
}

/// Reads a message from its element tree (also used by the round-trip tests).
pub fn read_element(root: &Element, map: &Mapping) -> Result<Message, Refusal> {
    let mut r = Reader::new(map);
    let mut partial = Partial {
        id: r.opt(root, "message.id"),
        sender: r.opt(root, "sender.hsa"),
        kind: r.opt(root, "message.type"),
        patient: None,
    };
    if root.name != map.root {
        r.errors.push(Fel {
            code: FelCode::Schema,
            field: format!("/{}", root.name),
            text: format!("the root element must be {}", map.root),
        });
        return Err(Refusal {
            errors: r.errors,
            partial: Box::new(partial),
        });
    }
    let kind = match r.req(root, "message.type", None) {
        Some(t) => match MessageKind::parse(&t) {
            Some(MessageKind::Kvittens) => {
                r.fail(
                    FelCode::Schema,
                    "message.type",
                    None,
                    "a Kvittens answers a message navet sent; it is not posted to /svpl".into(),
                );
                None
            }
            Some(k) => Some(k),
            None => {
                r.fail(
                    FelCode::Schema,
                    "message.type",
                    None,
                    "unknown message type".into(),
                );
                None
            }
        },
        None => None,
    };
    let id = r.req(root, "message.id", None);
    if let Some(id) = &id
        && (id.len() > MAX_ID_LENGTH || id.chars().any(|c| c.is_control()))
    {
        r.fail(
            FelCode::Schema,
            "message.id",
            None,
            format!("the id must be at most {MAX_ID_LENGTH} characters without control characters"),
        );
    }
    let created_text = r.instant(root, "message.created", None, true);
    let sender_hsa = r.hsa(root, "sender.hsa", None, true);
    let sender = sender_hsa.map(|hsa| Party {
        hsa,
        kind: r.opt(root, "sender.kind"),
        name: r.opt(root, "sender.name"),
    });
    let mut recipients = Vec::new();
    let group = map.path("recipient").clone();
    let recipient_elements = root.all(&group);
    if recipient_elements.is_empty() {
        r.fail(
            FelCode::Schema,
            "recipient",
            None,
            "at least one recipient is required".into(),
        );
    }
    for (i, el) in recipient_elements.into_iter().enumerate() {
        let at = Some(("recipient", i));
        if let Some(hsa) = r.hsa(el, "recipient.hsa", at, true) {
            recipients.push(Party {
                hsa,
                kind: r.opt(el, "recipient.kind"),
                name: None,
            });
        }
    }
    let patient = read_patient(&mut r, root);
    partial.patient = patient.as_ref().map(|p| p.id.clone());
    let reference = match kind {
        Some(k) if k.has_reference() => r.req(root, "reference", None),
        _ => None,
    };
    let body = kind.and_then(|k| read_body(k, &mut r, root));
    match (r.errors.is_empty(), id, created_text, sender, patient, body) {
        (true, Some(id), Some(created_text), Some(sender), Some(patient), Some(body)) => {
            let created = created_text.parse::<Timestamp>().map_err(|_| Refusal {
                errors: Vec::new(),
                partial: Box::new(partial.clone()),
            })?;
            Ok(Message {
                envelope: Envelope {
                    kind: body.kind(),
                    id,
                    created,
                    created_text,
                    sender,
                    recipients,
                    patient,
                    reference,
                },
                body,
            })
        }
        _ => {
            if r.errors.is_empty() {
                r.errors.push(Fel {
                    code: FelCode::Schema,
                    field: "/".into(),
                    text: "the message is incomplete".into(),
                });
            }
            Err(Refusal {
                errors: r.errors,
                partial: Box::new(partial),
            })
        }
    }
}

fn read_body(kind: MessageKind, r: &mut Reader<'_>, root: &Element) -> Option<Body> {
    Some(match kind {
        MessageKind::SipBegaran => Body::SipBegaran(SipBegaran::read(r, root)?),
        MessageKind::SipKallelse => Body::SipKallelse(SipKallelse::read(r, root)?),
        MessageKind::SipPlan => Body::SipPlan(SipPlan::read(r, root)?),
        MessageKind::SipUppfoljning => Body::SipUppfoljning(SipUppfoljning::read(r, root)?),
        MessageKind::SipAvslut => Body::SipAvslut(SipAvslut::read(r, root)?),
        MessageKind::Inskrivningsmeddelande => {
            Body::Inskrivningsmeddelande(Inskrivningsmeddelande::read(r, root)?)
        }
        MessageKind::Utskrivningsklar => Body::Utskrivningsklar(Utskrivningsklar::read(r, root)?),
        MessageKind::Utskrivningsmeddelande => {
            Body::Utskrivningsmeddelande(Utskrivningsmeddelande::read(r, root)?)
        }
        MessageKind::Makulering => Body::Makulering(Makulering::read(r, root)?),
        MessageKind::Kvittens => return None,
    })
}

fn read_patient(r: &mut Reader<'_>, root: &Element) -> Option<PatientData> {
    let id_type = r.req(root, "patient.id.type", None);
    let value = r.req(root, "patient.id", None);
    let listed_at = r.hsa(root, "patient.listed_at", None, false);
    let municipality = r.opt(root, "patient.municipality");
    if let Some(code) = &municipality
        && (code.len() != 4 || !code.bytes().all(|b| b.is_ascii_digit()))
    {
        r.fail(
            FelCode::Schema,
            "patient.municipality",
            None,
            "not a four-digit municipality code".into(),
        );
    }
    let (id_type, value) = (id_type?, value?);
    let Some(system) = r.map.patient_id_types.get(&id_type).cloned() else {
        r.fail(
            FelCode::Schema,
            "patient.id.type",
            None,
            format!(
                "unknown identifier type; expected one of: {}",
                r.map
                    .patient_id_types
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        return None;
    };
    let id = match crate::domain::from_fhir(&system, &value) {
        Ok(Some(id)) => id,
        Ok(None) => {
            r.fail(
                FelCode::Schema,
                "patient.id.type",
                None,
                "the identifier type maps to no system navet checks".into(),
            );
            return None;
        }
        Err(e) => {
            r.fail(FelCode::PatientId, "patient.id", None, e.to_string());
            return None;
        }
    };
    // The spec asks for the 12-digit form (with or without the separator): the century is the sender's to
    // state, never navet's to guess.
    if let PatientIdentifier::National(_) = &id {
        let digits = value.bytes().filter(u8::is_ascii_digit).count();
        if digits != 12 {
            r.fail(
                FelCode::PatientId,
                "patient.id",
                None,
                "a personnummer or samordningsnummer must have 12 digits (YYYYMMDDNNNC)".into(),
            );
            return None;
        }
    }
    Some(PatientData {
        id,
        id_type,
        given: r.opt(root, "patient.given"),
        family: r.opt(root, "patient.family"),
        street: r.opt(root, "patient.street"),
        postal_code: r.opt(root, "patient.postal_code"),
        city: r.opt(root, "patient.city"),
        municipality,
        listed_at,
    })
}

/// Writes the envelope of `m` into a new root element (the outbound direction and the round-trip tests).
pub fn write_envelope(e: &Envelope, map: &Mapping) -> Element {
    let mut root = Element::new(&map.root);
    let set = |root: &mut Element, key: &str, v: &str| root.set(map.path(key), v);
    set(&mut root, "message.type", e.kind.as_str());
    set(&mut root, "message.id", &e.id);
    set(&mut root, "message.created", &e.created_text);
    set(&mut root, "sender.hsa", e.sender.hsa.as_str());
    if let Some(k) = &e.sender.kind {
        set(&mut root, "sender.kind", k);
    }
    if let Some(n) = &e.sender.name {
        set(&mut root, "sender.name", n);
    }
    for p in &e.recipients {
        let el = root.push(map.path("recipient"));
        el.set(map.path("recipient.hsa"), p.hsa.as_str());
        if let Some(k) = &p.kind {
            el.set(map.path("recipient.kind"), k);
        }
    }
    let p = &e.patient;
    set(&mut root, "patient.id", p.id.canonical_value());
    set(&mut root, "patient.id.type", &p.id_type);
    for (key, v) in [
        ("patient.given", &p.given),
        ("patient.family", &p.family),
        ("patient.street", &p.street),
        ("patient.postal_code", &p.postal_code),
        ("patient.city", &p.city),
        ("patient.municipality", &p.municipality),
    ] {
        if let Some(v) = v {
            set(&mut root, key, v);
        }
    }
    if let Some(h) = &p.listed_at {
        set(&mut root, "patient.listed_at", h.as_str());
    }
    if let Some(r) = &e.reference {
        set(&mut root, "reference", r);
    }
    root
}

/// The whole message as an element tree.
pub fn write_element(m: &Message, map: &Mapping) -> Element {
    let mut root = write_envelope(&m.envelope, map);
    match &m.body {
        Body::SipBegaran(b) => b.write(&mut root, map),
        Body::SipKallelse(b) => b.write(&mut root, map),
        Body::SipPlan(b) => b.write(&mut root, map),
        Body::SipUppfoljning(b) => b.write(&mut root, map),
        Body::SipAvslut(b) => b.write(&mut root, map),
        Body::Inskrivningsmeddelande(b) => b.write(&mut root, map),
        Body::Utskrivningsklar(b) => b.write(&mut root, map),
        Body::Utskrivningsmeddelande(b) => b.write(&mut root, map),
        Body::Makulering(b) => b.write(&mut root, map),
    }
    root
}

/// The message as XML text.
pub fn write(m: &Message, map: &Mapping) -> String {
    write_element(m, map).to_document(&map.namespace)
}
