//! `SipUppfoljning`: any participant follows the plan up. A Communication about the CarePlan; a new
//! follow-up date updates the plan.

use serde_json::json;

use super::sip_plan;
use crate::svpl::kvittens::Fel;
use crate::svpl::mapping::Mapping;
use crate::svpl::message::{Envelope, Reader};
use crate::svpl::translate::*;
use crate::svpl::xml::Element;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUppfoljning {
    pub note: String,
    pub next: Option<String>,
}

impl SipUppfoljning {
    pub fn read(r: &mut Reader<'_>, root: &Element) -> Option<Self> {
        let note = r.req(root, "uppfoljning.note", None);
        let next = r.date(root, "uppfoljning.next", None, false);
        Some(SipUppfoljning { note: note?, next })
    }

    pub fn write(&self, root: &mut Element, map: &Mapping) {
        root.set(map.path("uppfoljning.note"), &self.note);
        if let Some(n) = &self.next {
            root.set(map.path("uppfoljning.next"), n);
        }
    }

    pub fn translate(
        &self,
        e: &Envelope,
        cx: &Context,
        map: &Mapping,
    ) -> Result<Translation, Vec<Fel>> {
        let plan = sip_plan(cx, &map.xpath("reference", None))?;
        let mut t = Translation::new(format!("CarePlan/{}", plan.id));
        if let Some(next) = &self.next {
            let mut v = base(plan);
            set_extension(
                &mut v,
                EXT_FOLLOW_UP,
                Some(date_extension(EXT_FOLLOW_UP, next)),
            );
            t.update(plan, v);
        }
        let recipients: Vec<String> = e.recipients.iter().map(|r| r.hsa.to_string()).collect();
        let mut c = notification(
            e,
            cx,
            &[literal("CarePlan", &plan.id)],
            &recipients,
            &self.note,
        );
        c["category"] = json!([{"coding": [{"system": CS_CAREPLAN_CATEGORY, "code": "sip-uppfoljning",
                                             "display": "Uppföljning av SIP"}]}]);
        c["basedOn"] = json!([literal("CarePlan", &plan.id)]);
        t.create(
            "Communication",
            id_for(e.sender.hsa.as_str(), &e.id, "Communication"),
            c,
        );
        Ok(t)
    }
}
