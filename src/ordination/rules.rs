//! `profiles/ordination-rules.toml`: the intervention code system and the limits an order is checked
//! against, loaded and checked at start-up (every error at once). Embedded in the binary, so navet runs
//! from any directory; the file in `profiles/` is the one to edit.

use std::collections::BTreeMap;

use jiff::civil::Time;
use serde::Deserialize;

pub const EMBEDDED: &str = include_str!("../../profiles/ordination-rules.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    intervention_system: String,
    category_system: String,
    kva_system: String,
    medical_responsibility_extension: String,
    home_care_extension: String,
    categories: Vec<String>,
    default_visit_minutes: u16,
    default_first_dose: String,
    warn_doses_per_day_over: u32,
    max_doses_per_day: u32,
    max_period_days: u32,
    default_transfusion_units: u32,
    max_transfusion_units: u32,
    interventions: Vec<InterventionFile>,
    #[serde(default)]
    kva: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InterventionFile {
    code: String,
    display: String,
    #[serde(default)]
    medication: bool,
    role: Option<String>,
    visits: String,
}

/// How an intervention's visits follow from the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitRule {
    /// One visit per dose of the MedicationRequest's timing.
    Doses,
    /// A transfusion: one unit a day on consecutive days, after a base-test visit when one is ordered.
    Units,
    /// One visit on the first day.
    Once,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervention {
    pub code: String,
    pub display: String,
    pub medication: bool,
    pub role: Option<String>,
    pub visits: VisitRule,
}

/// The checked rules.
#[derive(Debug, Clone)]
pub struct Rules {
    pub intervention_system: String,
    pub category_system: String,
    pub kva_system: String,
    pub medical_responsibility_extension: String,
    /// (v2) Extension on an order: the patient has kommunal hemsjukvård (`valueBoolean`), so the municipal
    /// home-care nurse is invited.
    pub home_care_extension: String,
    pub categories: Vec<String>,
    pub default_visit_minutes: u16,
    pub default_first_dose: Time,
    pub warn_doses_per_day_over: u32,
    pub max_doses_per_day: u32,
    pub max_period_days: u32,
    pub default_transfusion_units: u32,
    pub max_transfusion_units: u32,
    pub interventions: Vec<Intervention>,
    /// KVÅ code → navet code.
    pub kva: BTreeMap<String, String>,
}

impl Rules {
    pub fn embedded() -> Self {
        match parse(EMBEDDED) {
            Ok(r) => r,
            // A unit test checks the embedded file; an error here is a build defect.
            Err(errors) => panic!("profiles/ordination-rules.toml is invalid: {errors:?}"),
        }
    }

    pub fn intervention(&self, code: &str) -> Option<&Intervention> {
        self.interventions.iter().find(|i| i.code == code)
    }

    /// The navet intervention code of a Coding, from navet's system or a mapped KVÅ code.
    pub fn intervention_code(&self, system: &str, code: &str) -> Option<&Intervention> {
        if system == self.intervention_system {
            self.intervention(code)
        } else if system == self.kva_system {
            self.kva.get(code).and_then(|c| self.intervention(c))
        } else {
            None
        }
    }
}

/// Parses and checks a rules file; every problem is reported.
pub fn parse(text: &str) -> Result<Rules, Vec<String>> {
    let file: RulesFile =
        toml::from_str(text).map_err(|e| vec![format!("ordination rules: {e}")])?;
    let mut errors = Vec::new();
    let default_first_dose = file
        .default_first_dose
        .parse::<Time>()
        .map_err(|_| {
            errors.push(format!(
                "default_first_dose '{}' is not a time such as 08:00",
                file.default_first_dose
            ))
        })
        .unwrap_or(Time::midnight());
    if file.default_visit_minutes == 0 || file.default_visit_minutes > 24 * 60 {
        errors.push("default_visit_minutes must be 1 to 1440".into());
    }
    if file.max_doses_per_day == 0 || file.max_doses_per_day > 96 {
        errors.push("max_doses_per_day must be 1 to 96".into());
    }
    if file.max_period_days == 0 || file.max_period_days > 366 {
        errors.push("max_period_days must be 1 to 366".into());
    }
    if file.default_transfusion_units == 0
        || file.default_transfusion_units > file.max_transfusion_units
    {
        errors.push("default_transfusion_units must be 1 to max_transfusion_units".into());
    }
    let mut interventions = Vec::new();
    for i in file.interventions {
        let visits = match i.visits.as_str() {
            "doses" => VisitRule::Doses,
            "units" => VisitRule::Units,
            "once" => VisitRule::Once,
            other => {
                errors.push(format!(
                    "intervention {}: visits '{other}' is not doses, units or once",
                    i.code
                ));
                VisitRule::Once
            }
        };
        if visits == VisitRule::Doses && !i.medication {
            errors.push(format!(
                "intervention {}: visits by doses needs medication = true",
                i.code
            ));
        }
        if interventions
            .iter()
            .any(|x: &Intervention| x.code == i.code)
        {
            errors.push(format!("intervention {} is listed twice", i.code));
        }
        interventions.push(Intervention {
            code: i.code,
            display: i.display,
            medication: i.medication,
            role: i.role,
            visits,
        });
    }
    for (kva, code) in &file.kva {
        if !interventions.iter().any(|i| &i.code == code) {
            errors.push(format!("kva {kva} maps to unknown intervention {code}"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Rules {
        intervention_system: file.intervention_system,
        category_system: file.category_system,
        kva_system: file.kva_system,
        medical_responsibility_extension: file.medical_responsibility_extension,
        home_care_extension: file.home_care_extension,
        categories: file.categories,
        default_visit_minutes: file.default_visit_minutes,
        default_first_dose,
        warn_doses_per_day_over: file.warn_doses_per_day_over,
        max_doses_per_day: file.max_doses_per_day,
        max_period_days: file.max_period_days,
        default_transfusion_units: file.default_transfusion_units,
        max_transfusion_units: file.max_transfusion_units,
        interventions,
        kva: file.kva,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_load_with_the_eleven_interventions_of_the_spec() {
        let rules = Rules::embedded();
        let codes: Vec<&str> = rules
            .interventions
            .iter()
            .map(|i| i.code.as_str())
            .collect();
        assert_eq!(
            codes,
            [
                "iv-antibiotika",
                "iv-diuretika",
                "blodtransfusion",
                "bas-test",
                "infusion",
                "provtagning",
                "ekg",
                "hembesok",
                "lakarbesok",
                "uppfoljning-efter-slutenvard",
                "basonkologi"
            ]
        );
        assert_eq!(
            rules.intervention("lakarbesok").unwrap().role.as_deref(),
            Some("LAK")
        );
        assert_eq!(rules.default_first_dose, Time::constant(8, 0, 0, 0));
    }

    #[test]
    fn every_error_in_a_rules_file_is_reported() {
        let broken = EMBEDDED
            .replace(
                "default_first_dose = \"08:00\"",
                "default_first_dose = \"8 o'clock\"",
            )
            .replace("visits = \"units\"", "visits = \"daily\"")
            .replace("[kva]", "[kva]\nXX000 = \"nope\"");
        let errors = parse(&broken).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("default_first_dose"));
        assert!(errors[1].contains("blodtransfusion"));
        assert!(errors[2].contains("XX000"));
    }
}
