//! The care map as FHIR (spec/ordination.md v2 "Team directory"): a HealthcareService per team with its
//! Organization and one Location per municipality (identified by the municipality code), written at start-up
//! by navet itself as one transaction Bundle: Locations and Organizations are created if missing (the demo
//! seed has them), each HealthcareService is replaced by a conditional update, so a changed configuration is
//! what is served after the next start.

use jiff::civil::Date;
use serde_json::{Value, json};

use super::{Band, CareMap, Days, Team, holidays};
use crate::domain::HSA_ID_SYSTEM;
use crate::ordination::rules::Rules;

/// SCB's municipality codes (kommunkod).
pub const MUNICIPALITY_SYSTEM: &str = "urn:oid:1.2.752.129.2.2.1.17";
/// The itACiH unit code identifier of a team's HealthcareService (as the demo seed writes it).
pub const UNIT_SYSTEM: &str = "http://navet.example/identifier/itacih-enhet";
pub const TEAM_TYPE_SYSTEM: &str = "http://navet.example/CodeSystem/team-type";
pub const ELIGIBILITY_SYSTEM: &str = "http://navet.example/CodeSystem/eligibility";
pub const DAY_KIND_EXTENSION: &str = "http://navet.example/StructureDefinition/day-kind";
pub const STAFF_ROLE_EXTENSION: &str = "http://navet.example/StructureDefinition/staff-role";
pub const VALID_PERIOD_EXTENSION: &str = "http://navet.example/StructureDefinition/valid-period";
pub const HOURS_TEXT_EXTENSION: &str = "http://navet.example/StructureDefinition/available-hours";
pub const REFERRER_EXTENSION: &str = "http://navet.example/StructureDefinition/referrer-kind";

/// The identifier a team's HealthcareService is found by: its itACiH unit code, else its HSA-id.
pub fn service_identifier(team: &Team) -> (String, String) {
    match &team.itacih_unit {
        Some(unit) => (UNIT_SYSTEM.to_owned(), unit.clone()),
        None => (HSA_ID_SYSTEM.to_owned(), team.hsa_id.clone()),
    }
}

fn hhmm(min: u16) -> String {
    format!("{:02}:{:02}:00", min / 60, min % 60)
}

fn days_of_week(days: Days) -> Vec<&'static str> {
    match days {
        Days::Vardagar => vec!["mon", "tue", "wed", "thu", "fri"],
        Days::Helgdagar => vec!["sat", "sun"],
        Days::Alla => vec!["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    }
}

fn period(from: Date, to: Option<Date>) -> Value {
    match to {
        Some(t) => json!({"start": from.to_string(), "end": t.to_string()}),
        None => json!({"start": from.to_string()}),
    }
}

fn available_time(band: &Band, role: Option<&str>) -> Value {
    let mut ext = vec![
        json!({"url": DAY_KIND_EXTENSION, "valueCode": band.days.as_str()}),
        json!({"url": VALID_PERIOD_EXTENSION, "valuePeriod": period(band.valid.from, band.valid.to)}),
    ];
    if let Some(r) = role {
        ext.push(json!({"url": STAFF_ROLE_EXTENSION, "valueCode": r}));
    }
    let mut t = json!({"extension": ext, "daysOfWeek": days_of_week(band.days)});
    if band.start_min == 0 && band.end_min >= 1440 {
        t["allDay"] = json!(true);
    } else {
        t["availableStartTime"] = json!(hhmm(band.start_min));
        // 24:00 is not a FHIR time: the last second of the day.
        t["availableEndTime"] = json!(if band.end_min >= 1440 {
            "23:59:59".to_owned()
        } else {
            hhmm(band.end_min)
        });
    }
    t
}

fn band_text(band: &Band) -> String {
    format!(
        "{} {:02}:{:02}–{:02}:{:02}",
        band.days.as_str(),
        band.start_min / 60,
        band.start_min % 60,
        band.end_min / 60,
        band.end_min % 60
    )
}

/// The team's HealthcareService. `location_url` gives the Bundle fullUrl of a municipality's Location,
/// `org_url` the team's Organization. `years` are the years whose public holidays are listed as not
/// available (for a team without hours on helgdagar).
pub fn healthcare_service(
    team: &Team,
    rules: &Rules,
    org_url: &str,
    location_url: &dyn Fn(&str) -> String,
    municipality_name: &dyn Fn(&str) -> String,
    years: &[i16],
) -> Value {
    let (system, value) = service_identifier(team);
    let mut identifiers = vec![json!({"system": system, "value": value})];
    if system != HSA_ID_SYSTEM {
        identifiers.push(json!({"system": HSA_ID_SYSTEM, "value": team.hsa_id}));
    }
    let types: Vec<Value> = team
        .interventions
        .iter()
        .map(|o| {
            let display = rules.intervention(&o.code).map(|i| i.display.clone()).unwrap_or_default();
            json!({"coding": [{"system": rules.intervention_system, "code": o.code, "display": display}]})
        })
        .collect();
    let coverage: Vec<Value> = team
        .coverage
        .iter()
        .map(|c| {
            json!({
                "extension": [{"url": VALID_PERIOD_EXTENSION, "valuePeriod": period(c.valid.from, c.valid.to)}],
                "reference": location_url(&c.municipality),
                "display": municipality_name(&c.municipality),
            })
        })
        .collect();
    let mut available: Vec<Value> = team.hours.iter().map(|b| available_time(b, None)).collect();
    for r in &team.role_hours {
        available.extend(r.bands.iter().map(|b| available_time(b, Some(&r.role))));
    }
    let mut eligibility = Vec::new();
    if let Some(min) = team.min_age {
        eligibility.push(json!({
            "code": {"coding": [{"system": ELIGIBILITY_SYSTEM, "code": format!("alder-minst-{min}")}]},
            "comment": format!("Patienter under {min} år tas inte emot (ASIH tar barn)")
        }));
    }
    for need in &team.excluded_needs {
        eligibility.push(json!({
            "code": {"coding": [{"system": ELIGIBILITY_SYSTEM, "code": format!("ej-{need}")}]},
            "comment": format!("Patienter vars huvudsakliga behov är {need} tas inte emot")
        }));
    }
    // "vardagar" excludes public holidays: a team with no hours on helgdagar is not available on them.
    let works_helgdagar = team.hours.iter().any(|b| b.days != Days::Vardagar);
    let mut not_available = Vec::new();
    if !works_helgdagar {
        for y in years {
            for (day, name) in holidays::public_holidays(*y) {
                if !matches!(
                    day.weekday(),
                    jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
                ) {
                    not_available.push(json!({
                        "description": format!("{name} (allmän helgdag)"),
                        "during": {"start": day.to_string(), "end": day.to_string()}
                    }));
                }
            }
        }
    }
    for c in &team.closures {
        not_available
            .push(json!({"description": c.reason, "during": period(c.valid.from, c.valid.to)}));
    }
    let telecom: Vec<Value> = team
        .telecom
        .iter()
        .map(|t| {
            let mut v = json!({"system": t.system, "value": t.value, "use": "work"});
            if let Some(b) = &t.band {
                v["extension"] =
                    json!([{"url": HOURS_TEXT_EXTENSION, "valueString": band_text(b)}]);
            }
            v
        })
        .collect();
    let mut hs = json!({
        "resourceType": "HealthcareService",
        "identifier": identifiers,
        "active": true,
        "providedBy": {"reference": org_url, "display": team.name},
        "category": [{"coding": [{"system": TEAM_TYPE_SYSTEM, "code": team.category}]}],
        "type": types,
        "name": team.name,
        "coverageArea": coverage,
        "appointmentRequired": false,
        "availableTime": available,
        "availabilityExceptions": "Vardagar: måndag–fredag utom allmänna helgdagar. Helgdagar: lördag, söndag och allmänna helgdagar. Tider i Europe/Stockholm.",
    });
    let set = |hs: &mut Value, key: &str, v: Vec<Value>| {
        if !v.is_empty() {
            hs[key] = Value::Array(v);
        }
    };
    set(&mut hs, "telecom", telecom);
    set(&mut hs, "eligibility", eligibility);
    set(&mut hs, "notAvailable", not_available);
    set(
        &mut hs,
        "referralMethod",
        team.referral_methods
            .iter()
            .map(|m| json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-referral-method", "code": m}]}))
            .collect(),
    );
    if !team.referrers.is_empty() {
        hs["extension"] = Value::Array(
            team.referrers
                .iter()
                .map(|k| json!({"url": REFERRER_EXTENSION, "valueCode": k}))
                .collect(),
        );
    }
    hs
}

/// The start-up transaction: Locations and Organizations if missing, every HealthcareService replaced.
pub fn bundle(map: &CareMap, rules: &Rules, today: Date) -> Value {
    let loc_url = |code: &str| format!("urn:navet:caremap:location:{code}");
    let org_url = |hsa: &str| format!("urn:navet:caremap:organization:{hsa}");
    let name_of = |code: &str| {
        map.municipalities
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| code.to_owned())
    };
    let mut entries = Vec::new();
    for (code, name) in &map.municipalities {
        entries.push(json!({
            "fullUrl": loc_url(code),
            "resource": {
                "resourceType": "Location",
                "identifier": [{"system": MUNICIPALITY_SYSTEM, "value": code}],
                "status": "active",
                "name": name,
                "mode": "kind",
                "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "jdn", "display": "Jurisdiction"}]}
            },
            "request": {"method": "POST", "url": "Location", "ifNoneExist": format!("identifier={MUNICIPALITY_SYSTEM}|{code}")}
        }));
    }
    let years = [today.year(), today.year().saturating_add(1)];
    for team in &map.teams {
        entries.push(json!({
            "fullUrl": org_url(&team.hsa_id),
            "resource": {
                "resourceType": "Organization",
                "identifier": [{"system": HSA_ID_SYSTEM, "value": team.hsa_id}],
                "active": true,
                "type": [{"coding": [{"system": "http://navet.example/CodeSystem/principal-kind", "code": team.category}]}],
                "name": team.name
            },
            "request": {"method": "POST", "url": "Organization", "ifNoneExist": format!("identifier={HSA_ID_SYSTEM}|{}", team.hsa_id)}
        }));
        let (system, value) = service_identifier(team);
        let hs = healthcare_service(
            team,
            rules,
            &org_url(&team.hsa_id),
            &loc_url,
            &name_of,
            &years,
        );
        entries.push(json!({
            "resource": hs,
            "request": {"method": "PUT", "url": format!("HealthcareService?identifier={system}|{value}")}
        }));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_team_is_served_with_its_hours_roles_coverage_and_holidays() {
        let map = CareMap::demo();
        let rules = Rules::embedded();
        let b = bundle(&map, &rules, jiff::civil::date(2026, 11, 24));
        let entries = b["entry"].as_array().unwrap();
        // 8 Locations, then (Organization, HealthcareService) per team.
        assert_eq!(entries.len(), 8 + 2 * 3);
        let ystad = &entries[8 + 3]["resource"];
        assert_eq!(ystad["name"], "MTN Ystad");
        let times = ystad["availableTime"].as_array().unwrap();
        assert_eq!(times.len(), 4, "vardagar, helgdagar, physician, kurator");
        assert_eq!(times[2]["availableStartTime"], "07:30:00");
        assert_eq!(times[2]["extension"][2]["valueCode"], "LAK");
        assert_eq!(ystad["coverageArea"].as_array().unwrap().len(), 5);
        assert!(ystad.get("notAvailable").is_none(), "Ystad works helgdagar");
        let kristianstad = &entries[8 + 1]["resource"];
        let holidays: Vec<&str> = kristianstad["notAvailable"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["during"]["start"].as_str().unwrap())
            .collect();
        // Weekday holidays of 2026 and 2027 (not those on a Saturday or Sunday).
        assert!(holidays.contains(&"2026-12-25"));
        assert!(holidays.contains(&"2027-03-26"), "Good Friday 2027");
        assert!(
            !holidays.contains(&"2026-06-20"),
            "Midsummer Day 2026 is a Saturday"
        );
        assert_eq!(
            entries[8 + 5]["resource"]["availableTime"][0]["allDay"],
            true
        );
    }
}
