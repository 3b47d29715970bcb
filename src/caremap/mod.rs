//! The care map (spec/ordination.md v2 "Team directory"): the mobile teams, what they do, where, when and for
//! whom, loaded from configuration at start-up and checked (every error at once). It is served as
//! HealthcareService / Organization / Location ([`fhir`]), searched with navet's `municipality` and
//! `available-at` parameters ([`search`]), and used by visit planning (`crate::ordination::plan`).
//!
//! Hours are local wall-clock bands in Europe/Stockholm on "vardagar" (Monday–Friday that are not public
//! holidays), "helgdagar" (Saturdays, Sundays and public holidays, [`holidays`]) or every day; each band, each
//! coverage entry and each staff-role band carries the date it applies from (and optionally until).

pub mod config;
pub mod fhir;
pub mod holidays;
pub mod search;

use jiff::Zoned;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

pub use config::{CareMapConfig, DEMO_CARE_MAP};

/// Writes the care map into the store as navet itself (caremap/fhir.rs), at every start-up.
pub async fn seed(state: &crate::state::AppState) -> Result<(), String> {
    let ctx = &state.fhir;
    let today = jiff::Zoned::now()
        .with_time_zone(ctx.ordination.care.tz.clone())
        .date();
    let bundle = fhir::bundle(&ctx.ordination.care, &ctx.ordination.rules, today).to_string();
    let unrestricted = |_: &str, _: crate::auth::Interaction| Ok(());
    crate::fhir::bundle::process(
        ctx.clone(),
        state.store.as_ref(),
        &crate::store::Actor::system(),
        &unrestricted,
        None,
        bundle.as_bytes(),
    )
    .await
    .map_err(|e| format!("the care map could not be stored: {e}"))?;
    Ok(())
}

/// The time zone every team's hours and every plan are in.
pub const TIME_ZONE: &str = "Europe/Stockholm";
/// Europe/Stockholm's rule since 1996 (EU summer time), used if no tz database is at hand. jiff bundles the
/// database (feature `tzdb-bundle-always`), so this is a belt for a build without it.
const STOCKHOLM_POSIX: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

/// Europe/Stockholm, from the bundled tz database.
pub fn stockholm() -> TimeZone {
    TimeZone::get(TIME_ZONE)
        .or_else(|_| TimeZone::posix(STOCKHOLM_POSIX))
        .unwrap_or(TimeZone::UTC)
}

/// Which days a band of hours applies to (the report's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Days {
    /// Monday to Friday, except public holidays.
    Vardagar,
    /// Saturdays, Sundays and public holidays.
    Helgdagar,
    /// Every day.
    Alla,
}

impl Days {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vardagar" => Some(Days::Vardagar),
            "helgdagar" => Some(Days::Helgdagar),
            "alla" => Some(Days::Alla),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Days::Vardagar => "vardagar",
            Days::Helgdagar => "helgdagar",
            Days::Alla => "alla",
        }
    }

    pub fn includes(self, day: Date) -> bool {
        match self {
            Days::Alla => true,
            Days::Helgdagar => holidays::is_helgdag(day),
            Days::Vardagar => !holidays::is_helgdag(day),
        }
    }
}

/// A date range `[from, to]` (inclusive; `to` open when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub from: Date,
    pub to: Option<Date>,
}

impl Validity {
    pub fn contains(&self, day: Date) -> bool {
        day >= self.from && self.to.is_none_or(|to| day <= to)
    }
}

/// Local hours on some days: `[start, end)` in minutes after midnight (`end` may be 1440, "24:00").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub days: Days,
    pub start_min: u16,
    pub end_min: u16,
    pub valid: Validity,
}

impl Band {
    fn applies(&self, day: Date) -> bool {
        self.valid.contains(day) && self.days.includes(day)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// SCB kommunkod.
    pub municipality: String,
    pub valid: Validity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// Code in navet's intervention code system.
    pub code: String,
    /// Planned length of one visit, minutes.
    pub minutes: u16,
}

/// A contact point, optionally for some hours only ("telecom per hour band").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telecom {
    pub system: String,
    pub value: String,
    pub band: Option<Band>,
}

/// A period the team is closed (beyond its hours and the public holidays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    pub valid: Validity,
    pub reason: String,
}

/// Staff-role hours that differ from the team's (MTN Ystad's physician and kurator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleHours {
    /// `LAK`, `SSK`, `KUR`, ...
    pub role: String,
    pub bands: Vec<Band>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// HSA-id of the team's principal.
    pub hsa_id: String,
    pub name: String,
    /// mtn, asih, vc-mobilt-team, sjukhusteam, lakarbil, ambulans.
    pub category: String,
    pub itacih_unit: Option<String>,
    pub coverage: Vec<Coverage>,
    pub hours: Vec<Band>,
    pub role_hours: Vec<RoleHours>,
    pub interventions: Vec<Offered>,
    /// Patients younger than this are not taken (MTN: 18).
    pub min_age: Option<u32>,
    /// Main needs the team does not take (`psykiatri`, `hogspecialiserad`).
    pub excluded_needs: Vec<String>,
    pub telecom: Vec<Telecom>,
    pub closures: Vec<Closure>,
    /// FHIR referralMethod codes (elec, phone, fax, mail, semail).
    pub referral_methods: Vec<String>,
    /// Principal kinds that may refer (kommun, vardcentral, sjukhus, ambulans, lakarbil, ...).
    pub referrers: Vec<String>,
}

/// Whom a patient is for: what eligibility is judged on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientFacts {
    pub age: Option<u32>,
    pub main_need: Option<String>,
}

impl Team {
    pub fn covers(&self, municipality: &str, day: Date) -> bool {
        self.coverage
            .iter()
            .any(|c| c.municipality == municipality && c.valid.contains(day))
    }

    /// The planned length of the intervention, when the team offers it.
    pub fn offers(&self, code: &str) -> Option<u16> {
        self.interventions
            .iter()
            .find(|o| o.code == code)
            .map(|o| o.minutes)
    }

    pub fn admits(&self, patient: &PatientFacts) -> bool {
        let old_enough = match (self.min_age, patient.age) {
            (Some(min), Some(age)) => age >= min,
            _ => true,
        };
        let need_ok = patient
            .main_need
            .as_ref()
            .is_none_or(|need| !self.excluded_needs.iter().any(|n| n == need));
        old_enough && need_ok
    }

    fn closed_on(&self, day: Date) -> bool {
        self.closures.iter().any(|c| c.valid.contains(day))
    }

    /// The bands for `role` (its own hours where it has them, else the team's) on `day`.
    pub fn bands_on(&self, day: Date, role: Option<&str>) -> Vec<(u16, u16)> {
        if self.closed_on(day) {
            return Vec::new();
        }
        let bands = role
            .and_then(|r| self.role_hours.iter().find(|h| h.role == r))
            .map(|h| &h.bands)
            .unwrap_or(&self.hours);
        let mut out: Vec<(u16, u16)> = bands
            .iter()
            .filter(|b| b.applies(day))
            .map(|b| (b.start_min, b.end_min))
            .collect();
        out.sort_unstable();
        out
    }

    /// Whether the whole of `[start, end]` lies inside one band of the team's (or the role's) hours on the
    /// start's local day. Wall-clock minutes are used, so a visit across a DST change is judged by the
    /// clock on the wall, as the team's hours are.
    pub fn fits(&self, start: &DateTime, end: &DateTime, role: Option<&str>) -> bool {
        let day = start.date();
        let start_min = minute_of_day(start);
        if end.date() == day {
            let end_min = minute_of_day(end);
            return self
                .bands_on(day, role)
                .iter()
                .any(|&(s, e)| u32::from(s) <= start_min && end_min <= u32::from(e));
        }
        // Across midnight: to the end of this day, and from the start of the next (ASIH's nights).
        let Some(next) = day.tomorrow().ok().filter(|n| *n == end.date()) else {
            return false;
        };
        let end_min = minute_of_day(end);
        self.bands_on(day, role)
            .iter()
            .any(|&(s, e)| u32::from(s) <= start_min && e >= 1440)
            && self
                .bands_on(next, role)
                .iter()
                .any(|&(s, e)| s == 0 && end_min <= u32::from(e))
    }

    /// Whether the team (or the role) is working at the local time `at`.
    pub fn open_at(&self, at: &DateTime, role: Option<&str>) -> bool {
        let m = minute_of_day(at);
        self.bands_on(at.date(), role)
            .iter()
            .any(|&(s, e)| u32::from(s) <= m && m < u32::from(e))
    }
}

fn minute_of_day(t: &DateTime) -> u32 {
    u32::try_from(t.hour()).unwrap_or(0) * 60 + u32::try_from(t.minute()).unwrap_or(0)
}

/// One site's routing (v2): who receives a hospital's order for patients in these municipalities, who takes
/// the visits outside the team's hours, and who gets the physician follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    pub municipalities: Vec<String>,
    /// The team a hospital's order goes to (Kristianstad: MTN; Ystad: ASIH).
    pub coordinator: String,
    /// The mobile team whose hours split the visits (the day team).
    pub day_team: String,
    /// Who takes what the day team cannot (ASIH).
    pub after_hours: String,
    /// A team asked for the physician follow-up (a Task for its physician), when the coordinator is not it.
    pub physician_follow_up: Option<String>,
}

/// The checked care map.
#[derive(Debug, Clone)]
pub struct CareMap {
    pub teams: Vec<Team>,
    pub sites: Vec<Site>,
    /// (SCB kommunkod, name), each served as a Location.
    pub municipalities: Vec<(String, String)>,
    pub tz: TimeZone,
}

impl CareMap {
    /// The demo region's care map (src/demo/caremap-demo.toml), checked.
    pub fn demo() -> Self {
        match config::parse_and_build(DEMO_CARE_MAP) {
            Ok(map) => map,
            // The embedded map is checked by a unit test; an error here is a build defect.
            Err(errors) => panic!("the embedded demo care map is invalid: {errors:?}"),
        }
    }

    pub fn team(&self, hsa_id: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.hsa_id == hsa_id)
    }

    pub fn site_of(&self, municipality: &str) -> Option<&Site> {
        self.sites
            .iter()
            .find(|s| s.municipalities.iter().any(|m| m == municipality))
    }

    /// "Which team can do this, here, now": teams covering `municipality` (if given) on the day of `at`,
    /// working at `at` (if given; for the intervention's staff role), offering `service` (if given) and
    /// admitting `patient`. In the map's order.
    pub fn matching(&self, q: &Query) -> Vec<&Team> {
        let local = q.at.as_ref().map(|z| z.with_time_zone(self.tz.clone()));
        let day = local.as_ref().map(|z| z.date());
        self.teams
            .iter()
            .filter(|t| match (&q.municipality, day) {
                (Some(m), Some(d)) => t.covers(m, d),
                (Some(m), None) => t.coverage.iter().any(|c| &c.municipality == m),
                (None, _) => true,
            })
            .filter(|t| q.service.as_ref().is_none_or(|s| t.offers(s).is_some()))
            .filter(|t| t.admits(&q.patient))
            .filter(|t| match &local {
                Some(z) => t.open_at(&z.datetime(), q.service.as_deref().and_then(role_for)),
                None => true,
            })
            .collect()
    }
}

/// A care-map question.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub municipality: Option<String>,
    pub at: Option<Zoned>,
    pub service: Option<String>,
    pub patient: PatientFacts,
}

/// The staff role an intervention needs, where it is not the nurse's (the team's own hours).
pub fn role_for(intervention: &str) -> Option<&'static str> {
    match intervention {
        "lakarbesok" => Some("LAK"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn at(s: &str) -> Zoned {
        s.parse().expect("a zoned time")
    }

    #[test]
    fn the_demo_map_loads() {
        let map = CareMap::demo();
        assert_eq!(map.teams.len(), 3);
        assert_eq!(map.sites.len(), 2);
    }

    #[test]
    fn mtn_ystad_physicians_work_shorter_days_than_the_team() {
        let map = CareMap::demo();
        let ystad = map.team("SE2321000255-MTN02").unwrap();
        let tue = date(2026, 11, 24);
        assert_eq!(ystad.bands_on(tue, None), vec![(420, 1140)]);
        assert_eq!(ystad.bands_on(tue, Some("LAK")), vec![(450, 960)]);
        assert_eq!(ystad.bands_on(tue, Some("KUR")), vec![(450, 960)]);
        let sat = date(2026, 11, 28);
        assert_eq!(ystad.bands_on(sat, None), vec![(480, 960)]);
        assert!(ystad.bands_on(sat, Some("LAK")).is_empty());
    }

    #[test]
    fn a_visit_fits_only_when_its_whole_length_is_inside_the_hours() {
        let map = CareMap::demo();
        let kristianstad = map.team("SE2321000255-MTN01").unwrap();
        let dt = |s: &str| s.parse::<DateTime>().unwrap();
        assert!(kristianstad.fits(&dt("2026-11-24T16:15"), &dt("2026-11-24T17:00"), None));
        assert!(!kristianstad.fits(&dt("2026-11-24T16:16"), &dt("2026-11-24T17:01"), None));
        assert!(!kristianstad.fits(&dt("2026-11-24T07:59"), &dt("2026-11-24T08:44"), None));
        // Christmas Day is a Friday but a public holiday: MTN Kristianstad works vardagar only.
        assert!(!kristianstad.fits(&dt("2026-12-25T10:00"), &dt("2026-12-25T10:45"), None));
        let asih = map.team("SE2321000255-ASIH1").unwrap();
        assert!(asih.fits(&dt("2026-11-24T23:30"), &dt("2026-11-25T00:15"), None));
    }

    #[test]
    fn matching_answers_which_team_is_working_here_now() {
        let map = CareMap::demo();
        let ask = |m: &str, t: &str| {
            let q = Query {
                municipality: Some(m.into()),
                at: Some(at(t)),
                service: Some("iv-antibiotika".into()),
                patient: PatientFacts::default(),
            };
            map.matching(&q)
                .into_iter()
                .map(|t| t.hsa_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ask("1290", "2026-11-24T12:00:00+01:00[Europe/Stockholm]"),
            vec!["SE2321000255-MTN01", "SE2321000255-ASIH1"]
        );
        assert_eq!(
            ask("1290", "2026-11-28T12:00:00+01:00[Europe/Stockholm]"),
            vec!["SE2321000255-ASIH1"]
        );
        assert_eq!(
            ask("1286", "2026-11-28T12:00:00+01:00[Europe/Stockholm]"),
            vec!["SE2321000255-MTN02", "SE2321000255-ASIH1"]
        );
        assert_eq!(
            ask("1286", "2026-11-24T03:00:00+01:00[Europe/Stockholm]"),
            vec!["SE2321000255-ASIH1"]
        );
    }
}
