//! `mappings/itacih/`: the field names, paths and codes of the itACiH contract, loaded and checked at
//! start-up (every error at once), like the SVPL mappings. Embedded in the binary; `[itacih] mappings_dir`
//! reads a site's own copy instead.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::caremap::CareMap;

pub const EMBEDDED_FIELDS: &str = include_str!("../../mappings/itacih/fields.toml");
pub const EMBEDDED_CODES: &str = include_str!("../../mappings/itacih/codes.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    pub paths: Paths,
    pub outbound: Outbound,
    pub inbound: Inbound,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    pub insatser: String,
    pub handelser: String,
    pub efter: String,
    pub max: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    pub externt_id: String,
    pub enhet: String,
    pub patient: String,
    pub personnummer: String,
    pub typ: String,
    pub kategori: String,
    pub planerad_start: String,
    pub planerad_slut: String,
    pub personalkategori: String,
    pub remittent: String,
    pub kontaktorsak: String,
    pub ordination: String,
    pub lakemedel: String,
    pub dos: String,
    pub vag: String,
    pub ordinator: String,
    pub anteckning: String,
    pub status: String,
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inbound {
    pub handelser: String,
    pub nasta: String,
    pub sekvens: String,
    pub typ: String,
    pub kontakt_id: String,
    pub besokstyp: String,
    pub uppdrag: String,
    pub insats_id: String,
    pub externt_id: String,
    pub patient: String,
    pub personnummer: String,
    pub enhet: String,
    pub tid: String,
    pub slut: String,
    pub personal: String,
    pub personal_kategori: String,
    pub personal_hsa_id: String,
    pub boende: String,
    pub kontaktorsak: String,
    pub remittent: String,
    pub remittent_hsa_id: String,
    pub remittent_kommun: String,
    pub punktinsats: String,
    pub vidare: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Systems {
    pub kontaktorsak: String,
    pub besokstyp: String,
    pub remittent: String,
    pub uppdrag: String,
    pub vidare: String,
    pub boende: String,
    pub personal: String,
    pub kontakt_id: String,
    pub insats_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lists {
    pub typ: Vec<String>,
    pub besokstyp: Vec<String>,
    pub uppdrag: Vec<String>,
    pub personal: Vec<String>,
    pub boende: Vec<String>,
    pub kontaktorsak: Vec<String>,
    pub remittent: Vec<String>,
    pub vidare: Vec<String>,
    pub insatstyp: Vec<String>,
    pub kategori: Vec<String>,
    pub vag: Vec<String>,
    pub status: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Codes {
    pub systems: Systems,
    pub lists: Lists,
    pub units: BTreeMap<String, String>,
    pub insatstyp: BTreeMap<String, String>,
    pub kategori: BTreeMap<String, String>,
    pub personalkategori: BTreeMap<String, String>,
    pub remittent_by_kind: BTreeMap<String, String>,
    pub kind_by_remittent: BTreeMap<String, String>,
    pub vag: BTreeMap<String, String>,
    pub boende_location_type: BTreeMap<String, String>,
    pub kontaktorsak_by_site: BTreeMap<String, BTreeMap<String, String>>,
}

/// The checked mappings.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub fields: Fields,
    pub codes: Codes,
}

/// The event types the adapter translates (spec/itacih.md v2); the mapping's list must hold exactly these.
pub const EVENT_TYPES: [&str; 5] = [
    "BESOK_UTFORT",
    "BESOK_INSTALLT",
    "TELEFONKONTAKT",
    "INSKRIVNING",
    "UTSKRIVNING",
];

impl Mapping {
    /// The embedded mappings, checked against `care`.
    pub fn embedded(care: &CareMap) -> Result<Self, Vec<String>> {
        Self::parse(EMBEDDED_FIELDS, EMBEDDED_CODES, care)
    }

    /// `fields.toml` and `codes.toml` from a directory.
    pub fn from_dir(dir: &Path, care: &CareMap) -> Result<Self, Vec<String>> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| vec![format!("{}: {e}", dir.join(name).display())])
        };
        Self::parse(&read("fields.toml")?, &read("codes.toml")?, care)
    }

    pub fn parse(fields: &str, codes: &str, care: &CareMap) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let fields: Option<Fields> = toml::from_str(fields)
            .map_err(|e| errors.push(format!("mappings/itacih/fields.toml: {e}")))
            .ok();
        let codes: Option<Codes> = toml::from_str(codes)
            .map_err(|e| errors.push(format!("mappings/itacih/codes.toml: {e}")))
            .ok();
        let (Some(fields), Some(codes)) = (fields, codes) else {
            return Err(errors);
        };
        check(&fields, &codes, care, &mut errors);
        if errors.is_empty() {
            Ok(Mapping { fields, codes })
        } else {
            Err(errors)
        }
    }

    /// The unit code of a team, if mapped.
    pub fn unit_of(&self, hsa: &str) -> Option<&str> {
        self.codes.units.get(hsa).map(String::as_str)
    }

    /// The team of a unit code.
    pub fn team_of_unit(&self, unit: &str) -> Option<&str> {
        self.codes
            .units
            .iter()
            .find(|(_, u)| *u == unit)
            .map(|(h, _)| h.as_str())
    }
}

fn check(fields: &Fields, codes: &Codes, care: &CareMap, errors: &mut Vec<String>) {
    let l = &codes.lists;
    let in_list = |errors: &mut Vec<String>, what: &str, list: &[String], code: &str| {
        if !list.iter().any(|c| c == code) {
            errors.push(format!(
                "mappings/itacih/codes.toml: {what} maps to '{code}', which is not in lists.{what}"
            ));
        }
    };
    for (hsa, unit) in &codes.units {
        if care.team(hsa).is_none() {
            errors.push(format!(
                "mappings/itacih/codes.toml: units maps HSA-id {hsa} ({unit}), which is no team of the care map"
            ));
        }
    }
    for v in codes.insatstyp.values() {
        in_list(errors, "insatstyp", &l.insatstyp, v);
    }
    for v in codes.kategori.values() {
        in_list(errors, "kategori", &l.kategori, v);
    }
    for v in codes.personalkategori.values() {
        in_list(errors, "personal", &l.personal, v);
    }
    for v in codes.remittent_by_kind.values() {
        in_list(errors, "remittent", &l.remittent, v);
    }
    for k in codes.kind_by_remittent.keys() {
        in_list(errors, "remittent", &l.remittent, k);
    }
    for v in codes.vag.values() {
        in_list(errors, "vag", &l.vag, v);
    }
    for k in codes.boende_location_type.keys() {
        in_list(errors, "boende", &l.boende, k);
    }
    for (site, map) in &codes.kontaktorsak_by_site {
        if !care.sites.iter().any(|s| &s.name == site) {
            errors.push(format!(
                "mappings/itacih/codes.toml: kontaktorsak_by_site.{site} is not a site of the care map"
            ));
        }
        for v in map.values() {
            in_list(errors, "kontaktorsak", &l.kontaktorsak, v);
        }
    }
    if !codes.personalkategori.contains_key("default") {
        errors.push("mappings/itacih/codes.toml: personalkategori needs a default".into());
    }
    let mut types = l.typ.clone();
    types.sort();
    let mut known: Vec<String> = EVENT_TYPES.iter().map(|s| (*s).to_owned()).collect();
    known.sort();
    if types != known {
        errors.push(format!(
            "mappings/itacih/codes.toml: lists.typ must be the event types navet translates: {}",
            EVENT_TYPES.join(", ")
        ));
    }
    for (name, path) in [
        ("insatser", &fields.paths.insatser),
        ("handelser", &fields.paths.handelser),
    ] {
        if !path.starts_with('/') || path.contains(['?', '#']) {
            errors.push(format!(
                "mappings/itacih/fields.toml: paths.{name} '{path}' is not an absolute path"
            ));
        }
    }
    for team in &care.teams {
        if team.itacih_unit.is_some() && !codes.units.contains_key(&team.hsa_id) {
            errors.push(format!(
                "mappings/itacih/codes.toml: team {} has an itACiH unit in the care map but none in units",
                team.hsa_id
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_mappings_load() {
        let m = Mapping::embedded(&CareMap::demo()).expect("valid");
        assert_eq!(m.unit_of("SE2321000255-MTN02"), Some("MTN-YSTAD"));
        assert_eq!(m.team_of_unit("ASIH-SKANE"), Some("SE2321000255-ASIH1"));
        assert_eq!(m.fields.outbound.planerad_start, "planeradStart");
    }

    #[test]
    fn every_error_in_the_mappings_is_reported() {
        let codes = EMBEDDED_CODES
            .replace(
                "iv-antibiotika = \"IV_ANTIBIOTIKA\"",
                "iv-antibiotika = \"IV_ANTIBIOTIKUM\"",
            )
            .replace(
                "[kontaktorsak_by_site.Ystad]",
                "[kontaktorsak_by_site.Malmo]",
            )
            .replace(
                "\"SE2321000255-ASIH1\" = \"ASIH-SKANE\"",
                "\"SE2321000255-XXX99\" = \"ASIH-SKANE\"",
            );
        let errors = Mapping::parse(EMBEDDED_FIELDS, &codes, &CareMap::demo()).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        let all = errors.join("\n");
        assert!(all.contains("IV_ANTIBIOTIKUM"));
        assert!(all.contains("Malmo"));
        assert!(all.contains("XXX99"));
        assert!(all.contains("team SE2321000255-ASIH1"));
        let fields = EMBEDDED_FIELDS.replace("externt_id = \"externtId\"\n", "");
        assert!(Mapping::parse(&fields, EMBEDDED_CODES, &CareMap::demo()).is_err());
    }
}
