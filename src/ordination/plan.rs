//! Visit planning (spec/ordination.md v2, steps 1 and 2): a pure function from an order's facts and the care
//! map to the visits, so the same order always gives the same visits.
//!
//! - Doses are spread evenly over the day from the first dose (`timeOfDay`, else 08:00 local): n a day every
//!   24/n hours of wall-clock time. A dose's local time is resolved in Europe/Stockholm the way the teams'
//!   clocks show it: a time the March change skips moves forward by the gap (02:30 → 03:30 CEST), a time the
//!   October change repeats is planned once, at its first occurrence (CEST). The visit lasts its length in
//!   real minutes.
//! - A visit goes to the site's day team when its whole length lies inside the team's hours that day (the
//!   staff role's hours for a physician visit), else to the after-hours team (ASIH).
//! - A transfusion is one unit a day on consecutive days; a base-test visit, when ordered, comes on the first
//!   day and the units from the next day.

use jiff::civil::{Date, DateTime, Time};
use jiff::{Span, Zoned};

use crate::caremap::{CareMap, PatientFacts, Team};
use crate::ordination::rules::{Rules, VisitRule};

/// What planning needs to know about an order, read from the ServiceRequest and MedicationRequest
/// (`crate::ordination::intake`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    /// navet intervention code.
    pub intervention: String,
    /// Where the patient stays (SCB kommunkod).
    pub municipality: String,
    pub first_day: Date,
    pub last_day: Date,
    /// Doses a day (the MedicationRequest's `frequency`), for interventions planned by doses.
    pub per_day: Option<u32>,
    /// First dose of the day, or the visit time (`timeOfDay`).
    pub first_time: Option<Time>,
    /// Units of a transfusion (`quantityQuantity`).
    pub units: Option<u32>,
    /// `orderDetail` asks for a base-test visit.
    pub base_test: bool,
    /// A team the order names (`performer`).
    pub performer: Option<String>,
    pub patient: PatientFacts,
}

/// One planned visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// 1-based, in time order: part of the visit's stable ids.
    pub number: u32,
    /// What is done (an intervention code; `bas-test` for a transfusion's base-test visit).
    pub code: String,
    pub start: Zoned,
    pub end: Zoned,
    /// HSA-id of the performing team.
    pub performer: String,
    /// The staff role the visit needs, where it is not the nurse.
    pub role: Option<String>,
    /// (dose of the day, doses a day) for a dose.
    pub dose: Option<(u32, u32)>,
    /// The day the visit belongs to (a night dose belongs to the day before it).
    pub day: Date,
    /// Shown to the team (`anteckning`): "Dos 2 av 3 idag".
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The team that receives the order and coordinates it (the site's coordinator, or the named team).
    pub coordinator: String,
    /// The mobile team whose hours split the visits.
    pub day_team: String,
    pub visits: Vec<Visit>,
    /// The physician follow-up asked of the day team where the coordinator is another (Ystad).
    pub follow_up: Option<Visit>,
}

/// Why an order cannot be planned; each names the element it comes from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the patient's municipality {0} is in no team's area")]
    NoArea(String),
    #[error("no team in municipality {municipality} offers {intervention} to this patient")]
    NotOffered {
        municipality: String,
        intervention: String,
    },
    #[error("{0} is not a team of the care map")]
    UnknownPerformer(String),
    #[error(
        "{team} does not cover municipality {municipality}, offer {intervention} or take this patient"
    )]
    PerformerCannot {
        team: String,
        municipality: String,
        intervention: String,
    },
    #[error("the intervention {0} is not in navet's code system")]
    UnknownIntervention(String),
    #[error("a dose timing is needed: frequency per day")]
    NoTiming,
    #[error("{0}")]
    Bounds(String),
}

/// The teams for an order: (coordinator, day team, after-hours team).
fn teams_for<'a>(
    map: &'a CareMap,
    order: &OrderFacts,
) -> Result<(&'a Team, &'a Team, &'a Team), PlanError> {
    let day = order.first_day;
    let able = |t: &Team| {
        t.covers(&order.municipality, day)
            && t.offers(&order.intervention).is_some()
            && t.admits(&order.patient)
    };
    let site = map.site_of(&order.municipality);
    let after_hours = site.and_then(|s| map.team(&s.after_hours));
    if let Some(named) = &order.performer {
        let team = map
            .team(named)
            .ok_or_else(|| PlanError::UnknownPerformer(named.clone()))?;
        if !able(team) {
            return Err(PlanError::PerformerCannot {
                team: named.clone(),
                municipality: order.municipality.clone(),
                intervention: order.intervention.clone(),
            });
        }
        let rest = after_hours.filter(|t| able(t)).unwrap_or(team);
        return Ok((team, team, rest));
    }
    let site = site.ok_or_else(|| PlanError::NoArea(order.municipality.clone()))?;
    let not_offered = || PlanError::NotOffered {
        municipality: order.municipality.clone(),
        intervention: order.intervention.clone(),
    };
    let day_team = map.team(&site.day_team).filter(|t| able(t));
    let after = after_hours.filter(|t| able(t));
    match (day_team, after) {
        (Some(d), Some(a)) => {
            let coordinator = map.team(&site.coordinator).unwrap_or(d);
            Ok((coordinator, d, a))
        }
        // The day team cannot (a child, a psychiatric need, not offered): everything to the after-hours team.
        (None, Some(a)) => Ok((a, a, a)),
        (Some(d), None) => Ok((d, d, d)),
        (None, None) => Err(not_offered()),
    }
}

/// A visit before its team is chosen: (code, local start, day, dose, note).
type Wanted = (String, DateTime, Date, Option<(u32, u32)>, String);

/// Plans an order. Deterministic: depends only on its arguments.
pub fn plan(map: &CareMap, rules: &Rules, order: &OrderFacts) -> Result<Plan, PlanError> {
    let intervention = rules
        .intervention(&order.intervention)
        .ok_or_else(|| PlanError::UnknownIntervention(order.intervention.clone()))?;
    if order.last_day < order.first_day {
        return Err(PlanError::Bounds("the period ends before it starts".into()));
    }
    let days = order
        .first_day
        .until(order.last_day)
        .map(|s| s.get_days())
        .unwrap_or(i32::MAX);
    if u32::try_from(days).map_or(true, |d| d >= rules.max_period_days) {
        return Err(PlanError::Bounds(format!(
            "the period is longer than {} days",
            rules.max_period_days
        )));
    }
    let (coordinator, day_team, after_hours) = teams_for(map, order)?;
    let first_time = order.first_time.unwrap_or(rules.default_first_dose);
    let role = intervention.role.clone();
    let mut wanted: Vec<Wanted> = Vec::new();
    match intervention.visits {
        VisitRule::Doses => {
            let n = order.per_day.ok_or(PlanError::NoTiming)?;
            if n == 0 || n > rules.max_doses_per_day {
                return Err(PlanError::Bounds(format!(
                    "doses a day must be 1 to {}",
                    rules.max_doses_per_day
                )));
            }
            let step = 1440 / i64::from(n);
            for day in each_day(order.first_day, order.last_day) {
                let first = day.to_datetime(first_time);
                for k in 0..n {
                    let at = first
                        .checked_add(Span::new().minutes(step * i64::from(k)))
                        .map_err(|_| PlanError::Bounds("a dose time is out of range".into()))?;
                    let note = format!("Dos {} av {n} idag", k + 1);
                    wanted.push((order.intervention.clone(), at, day, Some((k + 1, n)), note));
                }
            }
        }
        VisitRule::Units => {
            let units = order.units.unwrap_or(rules.default_transfusion_units);
            if units == 0 || units > rules.max_transfusion_units {
                return Err(PlanError::Bounds(format!(
                    "units must be 1 to {}",
                    rules.max_transfusion_units
                )));
            }
            let mut day = order.first_day;
            if order.base_test {
                wanted.push((
                    "bas-test".into(),
                    day.to_datetime(first_time),
                    day,
                    None,
                    "Bastest före transfusion".into(),
                ));
                day = next_day(day)?;
            }
            for u in 1..=units {
                wanted.push((
                    order.intervention.clone(),
                    day.to_datetime(first_time),
                    day,
                    None,
                    format!("Enhet {u} av {units}"),
                ));
                day = next_day(day)?;
            }
        }
        VisitRule::Once => {
            let day = order.first_day;
            wanted.push((
                order.intervention.clone(),
                day.to_datetime(first_time),
                day,
                None,
                String::new(),
            ));
        }
    }
    let mut visits = Vec::with_capacity(wanted.len());
    for (code, local, day, dose, note) in wanted {
        let minutes = day_team
            .offers(&code)
            .or_else(|| after_hours.offers(&code))
            .unwrap_or(rules.default_visit_minutes);
        let (start, end) = zoned_visit(map, local, minutes)?;
        let visit_role = if code == order.intervention {
            role.clone()
        } else {
            rules.intervention(&code).and_then(|i| i.role.clone())
        };
        let performer = if day_team.fits(&start.datetime(), &end.datetime(), visit_role.as_deref())
        {
            day_team
        } else {
            after_hours
        };
        visits.push(Visit {
            number: 0,
            code,
            start,
            end,
            performer: performer.hsa_id.clone(),
            role: visit_role,
            dose,
            day,
            note,
        });
    }
    visits.sort_by_key(|v| v.start.timestamp());
    for (i, v) in visits.iter_mut().enumerate() {
        v.number = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    let follow_up = follow_up(map, rules, order, coordinator, day_team)?;
    Ok(Plan {
        coordinator: coordinator.hsa_id.clone(),
        day_team: day_team.hsa_id.clone(),
        visits,
        follow_up,
    })
}

/// The physician follow-up the coordinator asks of the day team (Ystad: ASIH coordinates, MTN's physician
/// follows up): on the first day from the period's start when the team's physicians work, at the start of
/// their hours. None when the site asks for none, or the coordinator is the day team.
fn follow_up(
    map: &CareMap,
    rules: &Rules,
    order: &OrderFacts,
    coordinator: &Team,
    day_team: &Team,
) -> Result<Option<Visit>, PlanError> {
    let Some(site) = map.site_of(&order.municipality) else {
        return Ok(None);
    };
    if site.physician_follow_up.as_deref() != Some(day_team.hsa_id.as_str())
        || coordinator.hsa_id == day_team.hsa_id
        || order.intervention == "lakarbesok"
    {
        return Ok(None);
    }
    let minutes = day_team
        .offers("lakarbesok")
        .unwrap_or(rules.default_visit_minutes);
    let mut day = order.first_day;
    // A fortnight is more than any run of days without physicians (Easter is four).
    for _ in 0..14 {
        if let Some(&(start_min, _)) = day_team.bands_on(day, Some("LAK")).first() {
            let local =
                day.to_datetime(Time::midnight()) + Span::new().minutes(i64::from(start_min));
            let (start, end) = zoned_visit(map, local, minutes)?;
            return Ok(Some(Visit {
                number: 0,
                code: "lakarbesok".into(),
                start,
                end,
                performer: day_team.hsa_id.clone(),
                role: Some("LAK".into()),
                dose: None,
                day,
                note: "Läkaruppföljning".into(),
            }));
        }
        day = next_day(day)?;
    }
    Ok(None)
}

/// A visit's start in the map's time zone (a skipped time moves forward by the gap, a repeated one is its
/// first occurrence) and its end `minutes` of real time later.
fn zoned_visit(map: &CareMap, local: DateTime, minutes: u16) -> Result<(Zoned, Zoned), PlanError> {
    let out_of_range = |_| PlanError::Bounds("a visit time is out of range".into());
    let start = map
        .tz
        .to_ambiguous_zoned(local)
        .compatible()
        .map_err(out_of_range)?;
    let end = start
        .checked_add(Span::new().minutes(i64::from(minutes)))
        .map_err(out_of_range)?;
    Ok((start, end))
}

fn next_day(day: Date) -> Result<Date, PlanError> {
    day.tomorrow()
        .map_err(|_| PlanError::Bounds("a day is out of range".into()))
}

fn each_day(first: Date, last: Date) -> impl Iterator<Item = Date> {
    std::iter::successors(Some(first), move |d| {
        d.tomorrow().ok().filter(|n| *n <= last)
    })
}

#[cfg(test)]
mod tests;
