//! One file per SVPL message type (spec/svpl-messages.md "Message types"): each reads its body through the
//! mapping ([`super::message::Reader`]), writes it back ([`super::xml::Element`]) and translates it
//! ([`super::translate`]). The envelope is `message.rs`.

mod inskrivningsmeddelande;
mod makulering;
mod sip_avslut;
mod sip_begaran;
mod sip_kallelse;
mod sip_plan;
mod sip_uppfoljning;
mod utskrivningsklar;
mod utskrivningsmeddelande;

pub use inskrivningsmeddelande::Inskrivningsmeddelande;
pub use makulering::Makulering;
pub use sip_avslut::SipAvslut;
pub use sip_begaran::SipBegaran;
pub use sip_kallelse::SipKallelse;
pub use sip_plan::{Insats, OvrigAtgard, SipPlan};
pub use sip_uppfoljning::SipUppfoljning;
pub use utskrivningsklar::{Utskrivningsklar, kallelse_due};
pub use utskrivningsmeddelande::Utskrivningsmeddelande;

use super::kvittens::{Fel, FelCode};
use super::translate::Context;

/// The case's SIP plan, or the `REFERENS_OKAND` refusal of a message that needs one.
fn sip_plan<'a>(cx: &'a Context, field: &str) -> Result<&'a super::translate::Current, Vec<Fel>> {
    cx.case.first("CarePlan").ok_or_else(|| {
        vec![Fel {
            code: FelCode::ReferensOkand,
            field: field.to_owned(),
            text: "the referenced message belongs to no SIP case".into(),
        }]
    })
}

/// The case's admission Encounter, or `REFERENS_OKAND`.
fn admission<'a>(cx: &'a Context, field: &str) -> Result<&'a super::translate::Current, Vec<Fel>> {
    cx.case.first("Encounter").ok_or_else(|| {
        vec![Fel {
            code: FelCode::ReferensOkand,
            field: field.to_owned(),
            text: "the referenced message is no admission notice (Inskrivningsmeddelande)".into(),
        }]
    })
}
