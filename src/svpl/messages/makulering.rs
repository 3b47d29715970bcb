//! `Makulering`: the original sender withdraws a message. Every resource that message created is marked
//! entered-in-error (a new version; nothing is removed) and the recipients of the withdrawn message are told.
//! Only the message's own sender may withdraw it (checked where the message is found, `receive.rs`).

use serde_json::{Value, json};

use crate::svpl::kvittens::{Fel, FelCode};
use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Makulering {
    pub reason: String,
}

/// The status member and its entered-in-error value per type (FHIR R4 value sets).
fn withdrawn_status(ty: &str) -> Option<(&'static str, &'static str)> {
    Some(match ty {
        "CarePlan" | "Task" | "Consent" | "Appointment" | "Communication" | "Encounter"
        | "CareTeam" => ("status", "entered-in-error"),
        _ => return None,
    })
}

impl Makulering {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        Some(Makulering {
            reason: r.req(root, "makulering.reason", None)?,
        })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        root.set(map.path("makulering.reason"), &self.reason);
    }

    pub fn translate(
        &self,
        e: &Envelope,
        cx: &Context,
        map: &Mapping,
    ) -> Result<Translation, Vec<Fel>> {
        let case_ref = cx.case.case_ref.clone().ok_or_else(|| {
            vec![Fel {
                code: FelCode::ReferensOkand,
                field: map.xpath("reference", None),
                text: "the referenced message is unknown".into(),
            }]
        })?;
        let mut t = Translation::new(case_ref);
        let mut about = Vec::new();
        for reference in &cx.case.referenced {
            let Some((ty, id)) = split_ref(reference) else {
                continue;
            };
            let Some(current) = cx
                .case
                .resources
                .iter()
                .find(|c| c.resource_type == ty && c.id == id)
            else {
                continue;
            };
            let Some((member, value)) = withdrawn_status(ty) else {
                continue;
            };
            if current.value.get(member).and_then(Value::as_str) == Some(value) {
                continue;
            }
            let mut v = base(current);
            v[member] = json!(value);
            about.push(literal(ty, id));
            t.update(current, v);
        }
        let sender = e.sender.hsa.as_str();
        let mut recipients: Vec<String> = cx
            .case
            .referenced_parties
            .iter()
            .filter(|p| *p != sender)
            .cloned()
            .collect();
        for r in &e.recipients {
            if !recipients.contains(&r.hsa.to_string()) && r.hsa.as_str() != sender {
                recipients.push(r.hsa.to_string());
            }
        }
        let text = format!("Makulerat meddelande: {}", self.reason);
        // A notification about entered-in-error resources would inherit nothing useful: the recipients are
        // named, and the withdrawn resources are listed in `about`.
        let mut c = notification(e, cx, &about, &recipients, &text);
        c["category"] = json!([{"coding": [{"system": CS_CAREPLAN_CATEGORY, "code": "makulering",
                                             "display": "Makulering"}]}]);
        t.create("Communication", id_for(sender, &e.id, "Communication"), c);
        Ok(t)
    }
}
