//! Principals: the organisations (huvudmän, vårdgivare, and navet's non-care roles) that API clients belong
//! to, each identified by its HSA-id (DESIGN.md "Principals and identities").

use serde::{Deserialize, Serialize};

use crate::domain::HsaId;

/// What kind of organisation a principal is. The care kinds come from DESIGN.md; `auditor` (loggkontroll),
/// `admin` and `system` (integrations such as itACiH that act without a user) are not care providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    Kommun,
    Vardcentral,
    Sjukhus,
    Mtn,
    Asih,
    Ambulans,
    Lakarbil,
    Auditor,
    Admin,
    System,
}

impl PrincipalKind {
    /// The configuration and token spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Kommun => "kommun",
            PrincipalKind::Vardcentral => "vardcentral",
            PrincipalKind::Sjukhus => "sjukhus",
            PrincipalKind::Mtn => "mtn",
            PrincipalKind::Asih => "asih",
            PrincipalKind::Ambulans => "ambulans",
            PrincipalKind::Lakarbil => "lakarbil",
            PrincipalKind::Auditor => "auditor",
            PrincipalKind::Admin => "admin",
            PrincipalKind::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "kommun" => PrincipalKind::Kommun,
            "vardcentral" => PrincipalKind::Vardcentral,
            "sjukhus" => PrincipalKind::Sjukhus,
            "mtn" => PrincipalKind::Mtn,
            "asih" => PrincipalKind::Asih,
            "ambulans" => PrincipalKind::Ambulans,
            "lakarbil" => PrincipalKind::Lakarbil,
            "auditor" => PrincipalKind::Auditor,
            "admin" => PrincipalKind::Admin,
            "system" => PrincipalKind::System,
            _ => return None,
        })
    }

    /// Whether the principal provides care (and so may have patients' records and care relationships).
    pub fn is_care_provider(self) -> bool {
        !matches!(
            self,
            PrincipalKind::Auditor | PrincipalKind::Admin | PrincipalKind::System
        )
    }
}

impl std::fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured principal. Built only by [`crate::auth::config::build`], which has checked every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub hsa_id: HsaId,
    pub kind: PrincipalKind,
    pub name: String,
    /// Municipality codes (kommunkod, 4 digits, SCB) the principal serves.
    pub municipalities: Vec<String>,
    /// Care units (vårdenheter) under the principal. The principal's own HSA-id always counts as a unit too.
    pub units: Vec<HsaId>,
}

impl Principal {
    /// Whether `unit` is this principal or one of its care units: the check behind "the IUA care unit
    /// belongs to the client's principal".
    pub fn has_unit(&self, unit: &HsaId) -> bool {
        &self.hsa_id == unit || self.units.contains(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtn() -> Principal {
        Principal {
            hsa_id: HsaId::parse("SE2321000255-MTN01").unwrap(),
            kind: PrincipalKind::Mtn,
            name: "MTN Kristianstad".into(),
            municipalities: vec!["1290".into()],
            units: vec![HsaId::parse("SE2321000255-MTN01A").unwrap()],
        }
    }

    #[test]
    fn the_principal_itself_counts_as_one_of_its_units() {
        assert!(mtn().has_unit(&HsaId::parse("SE2321000255-MTN01").unwrap()));
    }

    #[test]
    fn a_listed_unit_belongs_to_the_principal_and_another_does_not() {
        assert!(mtn().has_unit(&HsaId::parse("SE2321000255-MTN01A").unwrap()));
        assert!(!mtn().has_unit(&HsaId::parse("SE2321000255-MTN02").unwrap()));
    }

    #[test]
    fn kinds_round_trip_through_their_lowercase_names() {
        for kind in [
            PrincipalKind::Kommun,
            PrincipalKind::Vardcentral,
            PrincipalKind::Sjukhus,
            PrincipalKind::Mtn,
            PrincipalKind::Asih,
            PrincipalKind::Ambulans,
            PrincipalKind::Lakarbil,
            PrincipalKind::Auditor,
            PrincipalKind::Admin,
            PrincipalKind::System,
        ] {
            assert_eq!(PrincipalKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert!(!PrincipalKind::Auditor.is_care_provider());
        assert!(PrincipalKind::Mtn.is_care_provider());
    }
}
