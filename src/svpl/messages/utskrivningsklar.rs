//! `Utskrivningsklar`: the hospital says the patient is ready for discharge. The admission Encounter notes it;
//! the listed vårdcentral's fast vårdkontakt gets a `sip-kallelse` Task due three calendar days later
//! (Lag 2017:612 4 kap. 1 §: the SIP kallelse within three days), Europe/Stockholm time.

use serde_json::{Value, json};

use super::admission;
use super::inskrivningsmeddelande::{FAST_VARDKONTAKT, encounter_recipients};
use crate::svpl::kvittens::{Fel, FelCode};
use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

/// Calendar days from utskrivningsklar to the SIP kallelse deadline.
pub const KALLELSE_DAYS: i64 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utskrivningsklar {
    pub time: String,
}

/// `t` plus [`KALLELSE_DAYS`] calendar days in Europe/Stockholm, as a dateTime with its offset. The zone
/// comes from the system's time zone database; without one, the Swedish rule (CET/CEST, EU changes) is used.
pub fn kallelse_due(t: jiff::Timestamp) -> String {
    let tz = jiff::tz::TimeZone::get("Europe/Stockholm")
        .or_else(|_| jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3"))
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let zoned = t.to_zoned(tz);
    let due = zoned
        .checked_add(jiff::Span::new().days(KALLELSE_DAYS))
        .unwrap_or(zoned);
    due.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

impl Utskrivningsklar {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        Some(Utskrivningsklar {
            time: r.instant(root, "utskrivningsklar.time", None, true)?,
        })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        root.set(map.path("utskrivningsklar.time"), &self.time);
    }

    /// The outbound direction (`crate::svpl::outbound`): the admission Encounter a hospital marked ready for
    /// discharge, as [`Self::translate`] marks it (the `discharge-ready` extension). Answers the body and the
    /// `Mottagare` (the Encounter's participants by HSA-id, without `sender`); `None` without the mark.
    pub fn render(encounter: &Value, sender: &str) -> Option<(Self, Vec<String>)> {
        let time = extension(encounter, EXT_DISCHARGE_READY).and_then(date_value)?;
        Some((
            Utskrivningsklar { time },
            encounter_recipients(encounter, sender),
        ))
    }

    pub fn translate(
        &self,
        e: &Envelope,
        cx: &Context,
        map: &Mapping,
    ) -> Result<Translation, Vec<Fel>> {
        let encounter = admission(cx, &map.xpath("reference", None))?;
        let sender = e.sender.hsa.as_str();
        let listed = e
            .patient
            .listed_at
            .as_ref()
            .map(|h| h.to_string())
            .or_else(|| {
                cx.case.all("Task").find_map(|task| {
                    let marked = task
                        .value
                        .pointer("/performerType/0/coding/0/code")
                        .and_then(Value::as_str)
                        == Some(FAST_VARDKONTAKT);
                    marked
                        .then(|| {
                            task.value
                                .pointer("/owner/identifier/value")
                                .and_then(Value::as_str)
                        })
                        .flatten()
                        .map(str::to_owned)
                })
            });
        let Some(listed) = listed else {
            return Err(vec![Fel {
                code: FelCode::MottagareOkand,
                field: map.xpath("patient.listed_at", None),
                text: "the patient's listed vårdcentral is unknown: the SIP kallelse has nobody to go to".into(),
            }]);
        };
        let mut t = Translation::new(format!("Encounter/{}", encounter.id));
        let mut v = base(encounter);
        set_extension(
            &mut v,
            EXT_DISCHARGE_READY,
            Some(date_extension(EXT_DISCHARGE_READY, &self.time)),
        );
        t.update(encounter, v);
        let ready = self.time.parse::<jiff::Timestamp>().unwrap_or(cx.received);
        let task = json!({
            "resourceType": "Task",
            "identifier": [message_identifier(e)],
            "status": "requested",
            "intent": "order",
            "priority": "urgent",
            "code": {"coding": [{"system": CS_TASK, "code": TASK_SIP_KALLELSE,
                                 "display": "Kalla till SIP-möte"}]},
            "description": "Utskrivningsklar: kallelse till SIP inom tre dagar (Lag 2017:612)",
            "focus": literal("Encounter", &encounter.id),
            "encounter": literal("Encounter", &encounter.id),
            "for": {"reference": cx.patient},
            "authoredOn": self.time,
            "requester": hsa_ref(sender),
            "owner": hsa_ref(&listed),
            "performerType": [{"coding": [{"system": CS_CARETEAM_ROLE, "code": FAST_VARDKONTAKT}]}],
            "restriction": {"period": {"end": kallelse_due(ready)}}
        });
        t.party(&listed);
        t.create("Task", id_for(sender, &e.id, "Task"), task);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kallelse_is_due_three_calendar_days_later_in_swedish_time_across_a_clock_change() {
        // Friday 27 March 2026 10:00 CET; summer time starts on Sunday the 29th: still 10:00 local.
        let t: jiff::Timestamp = "2026-03-27T09:00:00Z".parse().unwrap();
        assert_eq!(kallelse_due(t), "2026-03-30T10:00:00+02:00");
        let t: jiff::Timestamp = "2026-11-23T22:30:00Z".parse().unwrap();
        assert_eq!(kallelse_due(t), "2026-11-26T23:30:00+01:00");
    }
}
