//! `Inskrivningsmeddelande`: a hospital tells the kommun and the listed vårdcentral that the patient was
//! admitted (Lag 2017:612 4 kap.). An inpatient Encounter in progress, owned by the hospital, naming the
//! recipients as information recipients (so they read it); a Task for each recipient and for the listed
//! vårdcentral. A notice received more than 24 hours after the admission is stored and tagged late.

use serde_json::{Value, json};

use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

/// Lag 2017:612: the admission notice is due within 24 hours of the admission.
pub const NOTICE_DEADLINE: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// `Task.performerType` of the listed vårdcentral's Task: its fast vårdkontakt gets the SIP kallelse later.
pub const FAST_VARDKONTAKT: &str = "fast-vardkontakt";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inskrivningsmeddelande {
    pub time: String,
    pub unit: Option<String>,
    pub expected_discharge: Option<String>,
    pub housing: Option<String>,
}

/// The `Mottagare` of a message about an admission Encounter (this notice, `Utskrivningsklar`,
/// `Utskrivningsmeddelande`): its participants named by HSA-id, each once, without `sender`.
pub fn encounter_recipients(encounter: &Value, sender: &str) -> Vec<String> {
    let mut recipients: Vec<String> = Vec::new();
    for p in encounter
        .get("participant")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(hsa) = p.get("individual").and_then(hsa_of)
            && hsa != sender
            && !recipients.iter().any(|r| r == hsa)
        {
            recipients.push(hsa.to_owned());
        }
    }
    recipients
}

impl Inskrivningsmeddelande {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        let time = r.instant(root, "inskrivning.time", None, true);
        let unit = r.hsa(root, "inskrivning.unit", None, false);
        let expected_discharge = r.instant(root, "inskrivning.expected_discharge", None, false);
        let housing = r.opt(root, "inskrivning.housing");
        if let Some(h) = &housing
            && !r.map.housing.contains_key(h)
        {
            r.fail(
                crate::svpl::kvittens::FelCode::Schema,
                "inskrivning.housing",
                None,
                format!(
                    "unknown housing; expected one of: {}",
                    r.map.housing.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        Some(Inskrivningsmeddelande {
            time: time?,
            unit: unit.map(|u| u.to_string()),
            expected_discharge,
            housing,
        })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        root.set(map.path("inskrivning.time"), &self.time);
        if let Some(u) = &self.unit {
            root.set(map.path("inskrivning.unit"), u);
        }
        if let Some(t) = &self.expected_discharge {
            root.set(map.path("inskrivning.expected_discharge"), t);
        }
        if let Some(h) = &self.housing {
            root.set(map.path("inskrivning.housing"), h);
        }
    }

    /// Whether the notice arrived later than 24 hours after the admission.
    pub fn is_late(&self, received: jiff::Timestamp) -> bool {
        match self.time.parse::<jiff::Timestamp>() {
            Ok(admitted) => received.duration_since(admitted) > NOTICE_DEADLINE,
            Err(_) => false,
        }
    }

    /// The outbound direction (`crate::svpl::outbound`): the admission notice a hospital's inpatient
    /// Encounter is. Answers the body and the `Mottagare`: the Encounter's participants named by HSA-id (the
    /// reverse of [`Self::translate`], which names every recipient and the listed vårdcentral as an
    /// information recipient), without `sender`.
    pub fn render(encounter: &Value, sender: &str, map: &Mapping) -> Option<(Self, Vec<String>)> {
        let time = encounter.pointer("/period/start")?.as_str()?.to_owned();
        let unit = encounter
            .get("serviceProvider")
            .and_then(hsa_of)
            .map(str::to_owned);
        let expected_discharge = extension(encounter, EXT_EXPECTED_DISCHARGE).and_then(date_value);
        let housing = extension(encounter, EXT_HOUSING)
            .and_then(|x| x.get("valueCoding"))
            .and_then(|c| code_key(&map.housing, c));
        let recipients = encounter_recipients(encounter, sender);
        Some((
            Inskrivningsmeddelande {
                time,
                unit,
                expected_discharge,
                housing,
            },
            recipients,
        ))
    }

    pub fn translate(&self, e: &Envelope, cx: &Context, map: &Mapping) -> Translation {
        let sender = e.sender.hsa.as_str();
        let encounter_id = id_for(sender, &e.id, "Encounter");
        let mut t = Translation::new(format!("Encounter/{encounter_id}"));
        let recipients: Vec<String> = e.recipients.iter().map(|r| r.hsa.to_string()).collect();
        // The listed vårdcentral is told too (its Task below), so it reads the admission it acts on.
        let mut told = recipients.clone();
        if let Some(listed) = &e.patient.listed_at
            && !told.iter().any(|r| r == listed.as_str())
        {
            told.push(listed.to_string());
        }
        let informed: Vec<Value> = told
            .iter()
            .map(|r| {
                json!({
                    "type": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "IRCP", "display": "information recipient"
                    }]}],
                    "individual": hsa_ref(r)
                })
            })
            .collect();
        let mut encounter = json!({
            "resourceType": "Encounter",
            "identifier": [message_identifier(e)],
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP",
                      "display": "inpatient encounter"},
            "subject": {"reference": cx.patient},
            "participant": informed,
            "period": {"start": self.time},
            "serviceProvider": hsa_ref(self.unit.as_deref().unwrap_or(sender))
        });
        if let Some(d) = &self.expected_discharge {
            set_extension(
                &mut encounter,
                EXT_EXPECTED_DISCHARGE,
                Some(date_extension(EXT_EXPECTED_DISCHARGE, d)),
            );
        }
        if let Some(coding) = self.housing.as_ref().and_then(|h| map.housing.get(h)) {
            set_extension(
                &mut encounter,
                EXT_HOUSING,
                Some(json!({"url": EXT_HOUSING, "valueCoding": coding.to_json()})),
            );
        }
        if self.is_late(cx.received) {
            encounter["meta"] = json!({"tag": [{"system": CS_DEADLINE, "code": "late",
                "display": "Inskrivningsmeddelandet kom senare än 24 timmar efter inskrivningen"}]});
        }
        t.create("Encounter", encounter_id.clone(), encounter);
        let mut owners: Vec<(String, bool)> =
            recipients.iter().map(|r| (r.clone(), false)).collect();
        if let Some(listed) = &e.patient.listed_at {
            match owners.iter_mut().find(|(o, _)| o == listed.as_str()) {
                Some(entry) => entry.1 = true,
                None => owners.push((listed.to_string(), true)),
            }
        }
        for (owner, listed) in owners {
            let mut task = json!({
                "resourceType": "Task",
                "identifier": [message_identifier(e)],
                "status": "requested",
                "intent": "order",
                "code": {"coding": [{"system": CS_TASK, "code": TASK_INSKRIVNING,
                                     "display": "Inskrivningsmeddelande: planera för utskrivning"}]},
                "focus": literal("Encounter", &encounter_id),
                "for": {"reference": cx.patient},
                "encounter": literal("Encounter", &encounter_id),
                "authoredOn": e.created_text,
                "requester": hsa_ref(sender),
                "owner": hsa_ref(&owner)
            });
            if listed {
                task["performerType"] =
                    json!([{"coding": [{"system": CS_CARETEAM_ROLE, "code": FAST_VARDKONTAKT}]}]);
            }
            t.party(&owner);
            t.create(
                "Task",
                id_for(sender, &e.id, &format!("Task:{owner}")),
                task,
            );
        }
        t
    }
}
