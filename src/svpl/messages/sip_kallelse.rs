//! `SipKallelse`: the principal that holds the request calls the SIP meeting. An Appointment with the
//! patient, the invited and the recipients; the case's open `sip-kallelse` Tasks are done; the CareTeam
//! gains the invited; a notification.

use serde_json::{Value, json};

use super::sip_plan;
use crate::svpl::kvittens::Fel;
use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipKallelse {
    pub time: String,
    pub place: Option<String>,
    pub digital: Option<bool>,
    /// (HSA-id, role code).
    pub participants: Vec<(String, Option<String>)>,
}

impl SipKallelse {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        let time = r.instant(root, "kallelse.time", None, true);
        let place = r.opt(root, "kallelse.place");
        let digital = r.boolean(root, "kallelse.digital", None);
        let mut participants = Vec::new();
        for (i, el) in root
            .all(r.map.path("kallelse.participant"))
            .into_iter()
            .enumerate()
        {
            let at = Some(("kallelse.participant", i));
            let hsa = r.hsa(el, "kallelse.participant.hsa", at, true);
            let role = r.opt(el, "kallelse.participant.role");
            if let Some(role) = &role
                && !r.map.roles.contains_key(role)
            {
                r.fail(
                    crate::svpl::kvittens::FelCode::Schema,
                    "kallelse.participant.role",
                    at,
                    format!(
                        "unknown role; expected one of: {}",
                        r.map.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            if let Some(h) = hsa {
                participants.push((h.to_string(), role));
            }
        }
        Some(SipKallelse {
            time: time?,
            place,
            digital,
            participants,
        })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        root.set(map.path("kallelse.time"), &self.time);
        if let Some(p) = &self.place {
            root.set(map.path("kallelse.place"), p);
        }
        if let Some(d) = self.digital {
            root.set(
                map.path("kallelse.digital"),
                if d { "true" } else { "false" },
            );
        }
        for (hsa, role) in &self.participants {
            let el = root.push(map.path("kallelse.participant"));
            el.set(map.path("kallelse.participant.hsa"), hsa);
            if let Some(role) = role {
                el.set(map.path("kallelse.participant.role"), role);
            }
        }
    }

    /// The outbound direction (`crate::svpl::outbound`): the kallelse a SIP meeting booked through FHIR
    /// (an Appointment) is. Answers the body and the participants without a role, who are the message's
    /// `Mottagare` (the reverse of [`Self::translate`], which makes every Mottagare a participant without a
    /// role and every `Deltagare` one with its role). `sender` is left out: it is the `Avsandare`.
    pub fn render(appointment: &Value, sender: &str, map: &Mapping) -> Option<(Self, Vec<String>)> {
        let time = appointment.get("start")?.as_str()?.to_owned();
        let place = appointment
            .get("comment")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let digital = extension(appointment, EXT_DIGITAL)
            .and_then(|x| x.get("valueBoolean"))
            .and_then(Value::as_bool);
        let mut participants = Vec::new();
        let mut recipients = Vec::new();
        for p in appointment
            .get("participant")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(hsa) = p.pointer("/actor/identifier/value").and_then(Value::as_str) else {
                continue; // the patient, or someone without an HSA-id
            };
            if hsa == sender
                || participants.iter().any(|(h, _)| h == hsa)
                || recipients.iter().any(|h| h == hsa)
            {
                continue;
            }
            let role = p
                .pointer("/type/0/coding/0")
                .and_then(|c| code_key(&map.roles, c));
            match role {
                Some(role) => participants.push((hsa.to_owned(), Some(role))),
                None => recipients.push(hsa.to_owned()),
            }
        }
        Some((
            SipKallelse {
                time,
                place,
                digital,
                participants,
            },
            recipients,
        ))
    }

    pub fn translate(
        &self,
        e: &Envelope,
        cx: &Context,
        map: &Mapping,
    ) -> Result<Translation, Vec<Fel>> {
        let plan = sip_plan(cx, &map.xpath("reference", None))?;
        let sender = e.sender.hsa.as_str();
        let mut t = Translation::new(format!("CarePlan/{}", plan.id));
        let appointment_id = id_for(sender, &e.id, "Appointment");
        let mut participants = vec![json!({
            "actor": {"reference": cx.patient},
            "required": "required",
            "status": "needs-action"
        })];
        let mut named: Vec<(String, Option<String>)> = vec![(sender.to_owned(), None)];
        named.extend(e.recipients.iter().map(|r| (r.hsa.to_string(), None)));
        named.extend(self.participants.iter().cloned());
        let mut seen = Vec::new();
        for (hsa, role) in &named {
            if seen.contains(hsa) {
                continue;
            }
            seen.push(hsa.clone());
            let mut p =
                json!({"actor": hsa_ref(hsa), "required": "required", "status": "needs-action"});
            if let Some(coding) = role.as_ref().and_then(|r| map.roles.get(r)) {
                p["type"] = json!([{"coding": [coding.to_json()]}]);
            }
            participants.push(p);
            t.party(hsa);
        }
        let mut appointment = json!({
            "resourceType": "Appointment",
            "identifier": [message_identifier(e)],
            "status": "booked",
            "serviceCategory": [{"coding": [{"system": CS_CAREPLAN_CATEGORY, "code": "sip"}]}],
            "description": "SIP-möte",
            "start": self.time,
            // SVPL gives the meeting's start only; R4's app-2/app-3 want a booked Appointment's end too, so
            // navet books the meeting for one hour (MEETING_MINUTES).
            "end": meeting_end(&self.time),
            "minutesDuration": MEETING_MINUTES,
            "created": e.created_text,
            "supportingInformation": [literal("CarePlan", &plan.id)],
            "participant": participants
        });
        if let Some(place) = &self.place {
            appointment["description"] = Value::String(format!("SIP-möte: {place}"));
            appointment["comment"] = Value::String(place.clone());
        }
        if let Some(d) = self.digital {
            set_extension(
                &mut appointment,
                EXT_DIGITAL,
                Some(json!({"url": EXT_DIGITAL, "valueBoolean": d})),
            );
        }
        // The team first, so the plan written after it inherits the new members as participants.
        if let Some(team) = cx.case.first("CareTeam") {
            let mut v = base(team);
            let added: Vec<(String, &str)> = seen.iter().map(|h| (h.clone(), "invited")).collect();
            add_members(&mut v, &added);
            if v != base(team) {
                t.update(team, v);
                t.update(plan, base(plan));
            }
        }
        t.create("Appointment", appointment_id.clone(), appointment);
        for task in cx.case.all("Task") {
            let is_kallelse = task
                .value
                .pointer("/code/coding/0/code")
                .and_then(Value::as_str)
                == Some(TASK_SIP_KALLELSE);
            if is_kallelse && task_is_open(&task.value) {
                let mut v = base(task);
                v["status"] = json!("completed");
                v["output"] = json!([{
                    "type": {"text": "kallelse"},
                    "valueReference": literal("Appointment", &appointment_id)
                }]);
                t.update(task, v);
            }
        }
        let recipients: Vec<String> = seen.iter().filter(|h| *h != sender).cloned().collect();
        let text = format!("Kallelse till SIP-möte {}", self.time);
        t.create(
            "Communication",
            id_for(sender, &e.id, "Communication"),
            notification(
                e,
                cx,
                &[
                    literal("CarePlan", &plan.id),
                    literal("Appointment", &appointment_id),
                ],
                &recipients,
                &text,
            ),
        );
        Ok(t)
    }
}

/// How long navet books a SIP meeting for: SVPL's `Mote` carries only its start.
const MEETING_MINUTES: i64 = 60;

/// The meeting's end as an instant (UTC); `None` for a start that is no instant, which the reader refused.
fn meeting_end(start: &str) -> Option<String> {
    let start: jiff::Timestamp = start.parse().ok()?;
    start
        .checked_add(jiff::SignedDuration::from_mins(MEETING_MINUTES))
        .ok()
        .map(|end| end.to_string())
}
