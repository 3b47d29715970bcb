//! The care map as configured (TOML: `src/demo/caremap-demo.toml` is the demo region's) and `build()`, which
//! checks it against the intervention code system and turns it into the runnable [`CareMap`], reporting
//! every error at once.

use std::collections::BTreeMap;

use jiff::civil::{Date, Time};
use serde::Deserialize;

use super::{
    Band, CareMap, Closure, Coverage, Days, Offered, RoleHours, Site, Team, Telecom, Validity,
};
use crate::ordination::rules::Rules;

/// The demo region's care map, embedded (the default when the configuration names none).
pub const DEMO_CARE_MAP: &str = include_str!("../demo/caremap-demo.toml");

/// `[caremap]` in navet.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CareMapSection {
    /// A care map TOML file (relative to the configuration's folder); the demo region's when absent.
    pub file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CareMapConfig {
    #[serde(default)]
    pub municipalities: Vec<MunicipalityConfig>,
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MunicipalityConfig {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    pub municipalities: Vec<String>,
    pub coordinator: String,
    pub day_team: String,
    pub after_hours: String,
    pub physician_follow_up: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    pub hsa_id: String,
    pub name: String,
    pub category: String,
    pub itacih_unit: Option<String>,
    pub interventions: Vec<String>,
    /// Minutes per visit where an intervention's differs from the default.
    #[serde(default)]
    pub visit_minutes: BTreeMap<String, u16>,
    pub min_age: Option<u32>,
    #[serde(default)]
    pub excluded_needs: Vec<String>,
    #[serde(default)]
    pub referral_methods: Vec<String>,
    #[serde(default)]
    pub referrers: Vec<String>,
    #[serde(default)]
    pub coverage: Vec<CoverageConfig>,
    #[serde(default)]
    pub hours: Vec<BandConfig>,
    #[serde(default)]
    pub role_hours: Vec<RoleBandConfig>,
    #[serde(default)]
    pub telecom: Vec<TelecomConfig>,
    #[serde(default)]
    pub closures: Vec<ClosureConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageConfig {
    pub municipality: String,
    pub from: String,
    pub to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandConfig {
    pub days: String,
    pub start: String,
    pub end: String,
    pub from: String,
    pub to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBandConfig {
    pub role: String,
    pub days: String,
    pub start: String,
    pub end: String,
    pub from: String,
    pub to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelecomConfig {
    pub system: String,
    pub value: String,
    pub days: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub from: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosureConfig {
    pub from: String,
    pub to: Option<String>,
    pub reason: String,
}

const CATEGORIES: [&str; 6] = [
    "mtn",
    "asih",
    "vc-mobilt-team",
    "sjukhusteam",
    "lakarbil",
    "ambulans",
];
const ROLES: [&str; 5] = ["LAK", "SSK", "KUR", "SEK", "ANNAN"];

/// Parses and builds a care map against the shipped rules.
pub fn parse_and_build(text: &str) -> Result<CareMap, Vec<String>> {
    let config: CareMapConfig = toml::from_str(text).map_err(|e| vec![format!("care map: {e}")])?;
    build(&config, &Rules::embedded())
}

fn date(s: &str, what: &str, errors: &mut Vec<String>) -> Date {
    s.parse::<Date>().unwrap_or_else(|_| {
        errors.push(format!("{what}: '{s}' is not a date such as 2026-01-01"));
        Date::MIN
    })
}

/// "HH:MM" as minutes after midnight; "24:00" is the end of the day.
fn minutes(s: &str, what: &str, errors: &mut Vec<String>) -> u16 {
    if s == "24:00" {
        return 1440;
    }
    match s.parse::<Time>() {
        Ok(t) => u16::try_from(t.hour()).unwrap_or(0) * 60 + u16::try_from(t.minute()).unwrap_or(0),
        Err(_) => {
            errors.push(format!("{what}: '{s}' is not a time such as 08:00"));
            0
        }
    }
}

fn validity(from: &str, to: Option<&str>, what: &str, errors: &mut Vec<String>) -> Validity {
    let from = date(from, what, errors);
    let to = to.map(|t| date(t, what, errors));
    if let Some(t) = to
        && t < from
    {
        errors.push(format!("{what}: ends before it starts"));
    }
    Validity { from, to }
}

#[allow(clippy::too_many_arguments)]
fn band(
    days: &str,
    start: &str,
    end: &str,
    from: &str,
    to: Option<&str>,
    what: &str,
    errors: &mut Vec<String>,
) -> Band {
    let d = Days::parse(days).unwrap_or_else(|| {
        errors.push(format!(
            "{what}: days '{days}' is not vardagar, helgdagar or alla"
        ));
        Days::Alla
    });
    let start_min = minutes(start, what, errors);
    let end_min = minutes(end, what, errors);
    if end_min <= start_min {
        errors.push(format!("{what}: {start}–{end} ends before it starts"));
    }
    Band {
        days: d,
        start_min,
        end_min,
        valid: validity(from, to, what, errors),
    }
}

/// Checks the configuration and builds the map; every error is reported.
pub fn build(config: &CareMapConfig, rules: &Rules) -> Result<CareMap, Vec<String>> {
    let mut errors = Vec::new();
    let mut teams = Vec::new();
    for t in &config.teams {
        let what = format!("care map team {}", t.hsa_id);
        if crate::domain::HsaId::parse(&t.hsa_id).is_err() {
            errors.push(format!("{what}: not an HSA-id"));
        }
        if !CATEGORIES.contains(&t.category.as_str()) {
            errors.push(format!(
                "{what}: category '{}' is not one of {}",
                t.category,
                CATEGORIES.join(", ")
            ));
        }
        let mut interventions = Vec::new();
        for code in &t.interventions {
            if rules.intervention(code).is_none() {
                errors.push(format!(
                    "{what}: intervention '{code}' is not in profiles/ordination-rules.toml"
                ));
            }
            interventions.push(Offered {
                code: code.clone(),
                minutes: t
                    .visit_minutes
                    .get(code)
                    .copied()
                    .unwrap_or(rules.default_visit_minutes),
            });
        }
        for code in t.visit_minutes.keys() {
            if !t.interventions.contains(code) {
                errors.push(format!(
                    "{what}: visit_minutes names '{code}', which the team does not offer"
                ));
            }
        }
        let coverage = t
            .coverage
            .iter()
            .map(|c| {
                if !config
                    .municipalities
                    .iter()
                    .any(|m| m.code == c.municipality)
                {
                    errors.push(format!(
                        "{what}: municipality {} is not in the care map's municipalities",
                        c.municipality
                    ));
                }
                Coverage {
                    municipality: c.municipality.clone(),
                    valid: validity(&c.from, c.to.as_deref(), &what, &mut errors),
                }
            })
            .collect();
        let hours = t
            .hours
            .iter()
            .map(|b| {
                band(
                    &b.days,
                    &b.start,
                    &b.end,
                    &b.from,
                    b.to.as_deref(),
                    &what,
                    &mut errors,
                )
            })
            .collect();
        let mut role_hours: Vec<RoleHours> = Vec::new();
        for r in &t.role_hours {
            if !ROLES.contains(&r.role.as_str()) {
                errors.push(format!(
                    "{what}: role '{}' is not one of {}",
                    r.role,
                    ROLES.join(", ")
                ));
            }
            let b = band(
                &r.days,
                &r.start,
                &r.end,
                &r.from,
                r.to.as_deref(),
                &what,
                &mut errors,
            );
            match role_hours.iter_mut().find(|h| h.role == r.role) {
                Some(h) => h.bands.push(b),
                None => role_hours.push(RoleHours {
                    role: r.role.clone(),
                    bands: vec![b],
                }),
            }
        }
        let telecom = t
            .telecom
            .iter()
            .map(|c| Telecom {
                system: c.system.clone(),
                value: c.value.clone(),
                band: match (&c.days, &c.start, &c.end) {
                    (Some(d), Some(s), Some(e)) => Some(band(
                        d,
                        s,
                        e,
                        c.from.as_deref().unwrap_or("1900-01-01"),
                        None,
                        &what,
                        &mut errors,
                    )),
                    (None, None, None) => None,
                    _ => {
                        errors.push(format!(
                            "{what}: a telecom's hours need days, start and end together"
                        ));
                        None
                    }
                },
            })
            .collect();
        let closures = t
            .closures
            .iter()
            .map(|c| Closure {
                valid: validity(&c.from, c.to.as_deref(), &what, &mut errors),
                reason: c.reason.clone(),
            })
            .collect();
        if teams.iter().any(|x: &Team| x.hsa_id == t.hsa_id) {
            errors.push(format!("{what}: listed twice"));
        }
        teams.push(Team {
            hsa_id: t.hsa_id.clone(),
            name: t.name.clone(),
            category: t.category.clone(),
            itacih_unit: t.itacih_unit.clone(),
            coverage,
            hours,
            role_hours,
            interventions,
            min_age: t.min_age,
            excluded_needs: t.excluded_needs.clone(),
            telecom,
            closures,
            referral_methods: t.referral_methods.clone(),
            referrers: t.referrers.clone(),
        });
    }
    let mut sites = Vec::new();
    for s in &config.sites {
        let what = format!("care map site {}", s.name);
        for (role, hsa) in [
            ("coordinator", Some(&s.coordinator)),
            ("day_team", Some(&s.day_team)),
            ("after_hours", Some(&s.after_hours)),
            ("physician_follow_up", s.physician_follow_up.as_ref()),
        ] {
            if let Some(hsa) = hsa
                && !teams.iter().any(|t| &t.hsa_id == hsa)
            {
                errors.push(format!(
                    "{what}: {role} {hsa} is not a team of the care map"
                ));
            }
        }
        for m in &s.municipalities {
            if sites.iter().any(|x: &Site| x.municipalities.contains(m)) {
                errors.push(format!(
                    "{what}: municipality {m} belongs to another site too"
                ));
            }
        }
        sites.push(Site {
            name: s.name.clone(),
            municipalities: s.municipalities.clone(),
            coordinator: s.coordinator.clone(),
            day_team: s.day_team.clone(),
            after_hours: s.after_hours.clone(),
            physician_follow_up: s.physician_follow_up.clone(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CareMap {
        teams,
        sites,
        municipalities: config
            .municipalities
            .iter()
            .map(|m| (m.code.clone(), m.name.clone()))
            .collect(),
        tz: super::stockholm(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_in_a_care_map_is_reported() {
        let broken = DEMO_CARE_MAP
            .replacen(
                "start = \"08:00\", end = \"17:00\"",
                "start = \"17:00\", end = \"08:00\"",
                1,
            )
            .replacen("\"basonkologi\"]", "\"basonkologi\", \"akupunktur\"]", 1)
            .replacen(
                "coordinator = \"SE2321000255-ASIH1\"",
                "coordinator = \"SE2321000255-XYZ99\"",
                1,
            )
            .replacen("days = \"alla\"", "days = \"ibland\"", 1);
        let errors = parse_and_build(&broken).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("MTN01") && errors[0].contains("ends before"));
        assert!(errors[1].contains("akupunktur"));
        assert!(errors[2].contains("ibland"));
        assert!(errors[3].contains("XYZ99"));
    }
}
