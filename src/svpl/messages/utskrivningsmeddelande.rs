//! `Utskrivningsmeddelande`: the patient left hospital. The admission Encounter is finished.

use serde_json::{Value, json};

use super::admission;
use super::inskrivningsmeddelande::encounter_recipients;
use crate::svpl::kvittens::Fel;
use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utskrivningsmeddelande {
    pub time: String,
}

impl Utskrivningsmeddelande {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        Some(Utskrivningsmeddelande {
            time: r.instant(root, "utskrivning.time", None, true)?,
        })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        root.set(map.path("utskrivning.time"), &self.time);
    }

    /// The outbound direction (`crate::svpl::outbound`): a hospital's admission Encounter that is finished,
    /// as [`Self::translate`] finishes it. The discharge time is `period.end`; a change that finishes the
    /// Encounter without one says the patient left when it was made (`changed`, the change's time). Answers
    /// the body and the `Mottagare` (the Encounter's participants by HSA-id, without `sender`).
    pub fn render(encounter: &Value, sender: &str, changed: &str) -> (Self, Vec<String>) {
        let time = encounter
            .pointer("/period/end")
            .and_then(Value::as_str)
            .unwrap_or(changed)
            .to_owned();
        (
            Utskrivningsmeddelande { time },
            encounter_recipients(encounter, sender),
        )
    }

    pub fn translate(
        &self,
        e: &Envelope,
        cx: &Context,
        map: &Mapping,
    ) -> Result<Translation, Vec<Fel>> {
        let encounter = admission(cx, &map.xpath("reference", None))?;
        let mut t = Translation::new(format!("Encounter/{}", encounter.id));
        let mut v = base(encounter);
        v["status"] = json!("finished");
        let mut period = v.get("period").cloned().unwrap_or_else(|| json!({}));
        period["end"] = Value::String(self.time.clone());
        v["period"] = period;
        t.update(encounter, v);
        let recipients: Vec<String> = e.recipients.iter().map(|r| r.hsa.to_string()).collect();
        t.create(
            "Communication",
            id_for(e.sender.hsa.as_str(), &e.id, "Communication"),
            notification(
                e,
                cx,
                &[literal("Encounter", &encounter.id)],
                &recipients,
                &format!("Utskriven {}", self.time),
            ),
        );
        Ok(t)
    }
}
