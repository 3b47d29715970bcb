//! Plans against hand-computed times (spec/ordination.md v2 step 2; hours from spec/demo-region.md v2).
//! The week of 11–17 May 2026 has Ascension Day (Thursday 14 May, a public holiday) and a weekend; the
//! daylight-saving changes of 2026 are on 29 March and 25 October.

use super::*;
use jiff::civil::{date, time};

const MTN_K: &str = "SE2321000255-MTN01";
const MTN_Y: &str = "SE2321000255-MTN02";
const ASIH: &str = "SE2321000255-ASIH1";

fn order(code: &str, municipality: &str, first: Date, last: Date) -> OrderFacts {
    OrderFacts {
        intervention: code.into(),
        municipality: municipality.into(),
        first_day: first,
        last_day: last,
        per_day: None,
        first_time: None,
        units: None,
        base_test: false,
        performer: None,
        patient: PatientFacts {
            age: Some(80),
            main_need: None,
        },
    }
}

fn doses(municipality: &str, per_day: u32, first: Date, last: Date) -> OrderFacts {
    OrderFacts {
        per_day: Some(per_day),
        ..order("iv-antibiotika", municipality, first, last)
    }
}

fn short(hsa: &str) -> &'static str {
    match hsa {
        MTN_K => "MTN-K",
        MTN_Y => "MTN-Y",
        ASIH => "ASIH",
        _ => "?",
    }
}

/// "05-11 08:00+02:00 MTN-K" per visit, in order.
fn lines(p: &Plan) -> Vec<String> {
    p.visits
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v.start.strftime("%m-%d %H:%M%:z"),
                short(&v.performer)
            )
        })
        .collect()
}

fn run(o: &OrderFacts) -> Plan {
    plan(&CareMap::demo(), &Rules::embedded(), o).expect("a plan")
}

fn expect(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn three_a_day_in_kristianstad_for_a_week_with_a_holiday_and_a_weekend() {
    let p = run(&doses("1290", 3, date(2026, 5, 11), date(2026, 5, 17)));
    // 08:00 and 16:00 (ends 16:45, before 17:00) to MTN on vardagar; the midnight dose, Ascension Day and
    // the weekend to ASIH.
    assert_eq!(
        lines(&p),
        expect(
            "05-11 08:00+02:00 MTN-K
             05-11 16:00+02:00 MTN-K
             05-12 00:00+02:00 ASIH
             05-12 08:00+02:00 MTN-K
             05-12 16:00+02:00 MTN-K
             05-13 00:00+02:00 ASIH
             05-13 08:00+02:00 MTN-K
             05-13 16:00+02:00 MTN-K
             05-14 00:00+02:00 ASIH
             05-14 08:00+02:00 ASIH
             05-14 16:00+02:00 ASIH
             05-15 00:00+02:00 ASIH
             05-15 08:00+02:00 MTN-K
             05-15 16:00+02:00 MTN-K
             05-16 00:00+02:00 ASIH
             05-16 08:00+02:00 ASIH
             05-16 16:00+02:00 ASIH
             05-17 00:00+02:00 ASIH
             05-17 08:00+02:00 ASIH
             05-17 16:00+02:00 ASIH
             05-18 00:00+02:00 ASIH"
        )
    );
    assert_eq!(p.coordinator, MTN_K);
    assert_eq!(p.follow_up, None, "Kristianstad's MTN coordinates itself");
    assert_eq!(p.visits[1].note, "Dos 2 av 3 idag");
    assert_eq!(
        p.visits[2].day,
        date(2026, 5, 11),
        "the midnight dose is the 11th's third"
    );
    assert_eq!(p.visits[0].end.strftime("%H:%M").to_string(), "08:45");
}

#[test]
fn four_a_day_in_kristianstad_for_a_week_with_a_holiday_and_a_weekend() {
    let p = run(&doses("1290", 4, date(2026, 5, 11), date(2026, 5, 17)));
    let mut want = Vec::new();
    for (day, open) in [
        (11, true),
        (12, true),
        (13, true),
        (14, false),
        (15, true),
        (16, false),
        (17, false),
    ] {
        let team = if open { "MTN-K" } else { "ASIH" };
        want.push(format!("05-{day} 08:00+02:00 {team}"));
        want.push(format!("05-{day} 14:00+02:00 {team}"));
        want.push(format!("05-{day} 20:00+02:00 ASIH"));
        want.push(format!("05-{} 02:00+02:00 ASIH", day + 1));
    }
    assert_eq!(lines(&p), want);
}

#[test]
fn three_a_day_in_ystad_for_a_week_with_a_holiday_and_a_weekend() {
    let p = run(&doses("1286", 3, date(2026, 5, 11), date(2026, 5, 17)));
    let mut want = Vec::new();
    // vardagar 07–19: 08:00 and 16:00 to MTN; helgdagar 08–16: the 16:00 dose (to 16:45) to ASIH.
    for (day, vardag) in [
        (11, true),
        (12, true),
        (13, true),
        (14, false),
        (15, true),
        (16, false),
        (17, false),
    ] {
        want.push(format!("05-{day} 08:00+02:00 MTN-Y"));
        want.push(format!(
            "05-{day} 16:00+02:00 {}",
            if vardag { "MTN-Y" } else { "ASIH" }
        ));
        want.push(format!("05-{} 00:00+02:00 ASIH", day + 1));
    }
    assert_eq!(lines(&p), want);
    // Ystad: the hospital's order goes to ASIH, which asks MTN's physician for the follow-up, at the start of
    // the physicians' day (07:30) on the first vardag.
    assert_eq!(p.coordinator, ASIH);
    assert_eq!(p.day_team, MTN_Y);
    let f = p.follow_up.expect("a physician follow-up");
    assert_eq!(f.performer, MTN_Y);
    assert_eq!(f.role.as_deref(), Some("LAK"));
    assert_eq!(
        f.start.strftime("%m-%d %H:%M%:z").to_string(),
        "05-11 07:30+02:00"
    );
}

#[test]
fn four_a_day_in_ystad_for_a_week_with_a_holiday_and_a_weekend() {
    let p = run(&doses("1286", 4, date(2026, 5, 11), date(2026, 5, 17)));
    let mut want = Vec::new();
    // 14:00–14:45 fits helgdagar's 08–16 too: the same split every day.
    for day in 11..=17 {
        want.push(format!("05-{day} 08:00+02:00 MTN-Y"));
        want.push(format!("05-{day} 14:00+02:00 MTN-Y"));
        want.push(format!("05-{day} 20:00+02:00 ASIH"));
        want.push(format!("05-{} 02:00+02:00 ASIH", day + 1));
    }
    assert_eq!(lines(&p), want);
}

#[test]
fn the_first_dose_follows_time_of_day() {
    let mut o = doses("1290", 3, date(2026, 11, 24), date(2026, 11, 24));
    o.first_time = Some(time(10, 0, 0, 0));
    assert_eq!(
        lines(&run(&o)),
        expect(
            "11-24 10:00+01:00 MTN-K
             11-24 18:00+01:00 ASIH
             11-25 02:00+01:00 ASIH"
        )
    );
}

#[test]
fn a_transfusion_with_a_base_test_has_the_test_first_and_the_units_from_the_next_day() {
    let mut o = order(
        "blodtransfusion",
        "1290",
        date(2026, 11, 24),
        date(2026, 11, 26),
    );
    o.base_test = true;
    let p = run(&o);
    assert_eq!(
        lines(&p),
        expect(
            "11-24 08:00+01:00 MTN-K
             11-25 08:00+01:00 MTN-K
             11-26 08:00+01:00 MTN-K"
        )
    );
    let codes: Vec<&str> = p.visits.iter().map(|v| v.code.as_str()).collect();
    assert_eq!(codes, ["bas-test", "blodtransfusion", "blodtransfusion"]);
    assert_eq!(p.visits[2].note, "Enhet 2 av 2");
}

#[test]
fn a_transfusion_without_a_base_test_starts_its_units_on_the_first_day() {
    let mut o = order(
        "blodtransfusion",
        "1290",
        date(2026, 11, 27),
        date(2026, 11, 29),
    );
    o.units = Some(3);
    let p = run(&o);
    // Friday to MTN; Saturday and Sunday (MTN Kristianstad works vardagar) to ASIH.
    assert_eq!(
        lines(&p),
        expect(
            "11-27 08:00+01:00 MTN-K
             11-28 08:00+01:00 ASIH
             11-29 08:00+01:00 ASIH"
        )
    );
    assert!(p.visits.iter().all(|v| v.code == "blodtransfusion"));
}

#[test]
fn a_physician_visit_goes_to_the_team_only_while_its_physicians_work() {
    let at = |day: i8, h: i8, m: i8| {
        let mut o = order(
            "lakarbesok",
            "1286",
            date(2026, 11, day),
            date(2026, 11, day),
        );
        o.first_time = Some(time(h, m, 0, 0));
        lines(&run(&o))
    };
    // MTN Ystad's physicians: vardagar 07:30–16:00, though the team works until 19:00.
    assert_eq!(at(24, 10, 0), ["11-24 10:00+01:00 MTN-Y"]);
    assert_eq!(
        at(24, 15, 15),
        ["11-24 15:15+01:00 MTN-Y"],
        "ends 16:00 exactly"
    );
    assert_eq!(
        at(24, 15, 30),
        ["11-24 15:30+01:00 ASIH"],
        "would end 16:15"
    );
    assert_eq!(
        at(24, 17, 0),
        ["11-24 17:00+01:00 ASIH"],
        "the team works, no physician does"
    );
    assert_eq!(
        at(28, 10, 0),
        ["11-28 10:00+01:00 ASIH"],
        "Saturday: no physician"
    );
    // The nurse's visit at 17:00 is the team's.
    let mut o = order(
        "provtagning",
        "1286",
        date(2026, 11, 24),
        date(2026, 11, 24),
    );
    o.first_time = Some(time(17, 0, 0, 0));
    assert_eq!(lines(&run(&o)), ["11-24 17:00+01:00 MTN-Y"]);
}

#[test]
fn the_march_change_has_no_two_oclock_and_the_october_change_no_doubled_hour() {
    // 29 March 2026: 02:00 CET becomes 03:00 CEST. The night dose of the 28th (02:00) does not exist and is
    // given at 03:00 CEST, the first real minute after the gap.
    let p = run(&doses("1290", 4, date(2026, 3, 28), date(2026, 3, 29)));
    assert_eq!(
        lines(&p),
        expect(
            "03-28 08:00+01:00 ASIH
             03-28 14:00+01:00 ASIH
             03-28 20:00+01:00 ASIH
             03-29 03:00+02:00 ASIH
             03-29 08:00+02:00 ASIH
             03-29 14:00+02:00 ASIH
             03-29 20:00+02:00 ASIH
             03-30 02:00+02:00 ASIH"
        )
    );
    let mut o = order("provtagning", "1290", date(2026, 3, 29), date(2026, 3, 29));
    o.first_time = Some(time(2, 30, 0, 0));
    assert_eq!(lines(&run(&o)), ["03-29 03:30+02:00 ASIH"]);
    // 25 October 2026: 03:00 CEST becomes 02:00 CET. 02:00 happens twice; the dose is planned once, at the
    // first (CEST), and lasts 45 real minutes.
    let p = run(&doses("1290", 4, date(2026, 10, 24), date(2026, 10, 25)));
    assert_eq!(
        lines(&p),
        expect(
            "10-24 08:00+02:00 ASIH
             10-24 14:00+02:00 ASIH
             10-24 20:00+02:00 ASIH
             10-25 02:00+02:00 ASIH
             10-25 08:00+01:00 ASIH
             10-25 14:00+01:00 ASIH
             10-25 20:00+01:00 ASIH
             10-26 02:00+01:00 ASIH"
        )
    );
    assert_eq!(
        p.visits[3].end.strftime("%H:%M%:z").to_string(),
        "02:45+02:00"
    );
    // Across the change on a vardag: Monday 26 October's doses are MTN's again, in CET.
    let p = run(&doses("1290", 3, date(2026, 10, 26), date(2026, 10, 26)));
    assert_eq!(
        lines(&p),
        expect(
            "10-26 08:00+01:00 MTN-K
             10-26 16:00+01:00 MTN-K
             10-27 00:00+01:00 ASIH"
        )
    );
}

#[test]
fn the_same_order_always_gives_the_same_visits() {
    let o = doses("1286", 4, date(2026, 11, 23), date(2026, 11, 29));
    assert_eq!(run(&o), run(&o));
}

#[test]
fn children_go_to_asih_and_psychiatric_needs_to_no_team() {
    let mut o = doses("1290", 3, date(2026, 11, 24), date(2026, 11, 24));
    o.patient.age = Some(12);
    let p = run(&o);
    assert_eq!(p.coordinator, ASIH);
    assert!(p.visits.iter().all(|v| v.performer == ASIH));
    o.patient.age = Some(80);
    o.patient.main_need = Some("psykiatri".into());
    let err = plan(&CareMap::demo(), &Rules::embedded(), &o).unwrap_err();
    assert!(matches!(err, PlanError::NotOffered { .. }), "{err}");
}

#[test]
fn orders_outside_the_map_or_its_interventions_are_refused() {
    let o = doses("1280", 3, date(2026, 11, 24), date(2026, 11, 24));
    assert_eq!(
        plan(&CareMap::demo(), &Rules::embedded(), &o).unwrap_err(),
        PlanError::NoArea("1280".into())
    );
    let o = order(
        "basonkologi",
        "1290",
        date(2026, 11, 24),
        date(2026, 11, 24),
    );
    // MTN Kristianstad does not offer basic oncology; ASIH does.
    assert_eq!(run(&o).visits[0].performer, ASIH);
    let mut o = doses("1290", 3, date(2026, 11, 24), date(2026, 11, 24));
    o.performer = Some("SE2321000255-MTN02".into());
    assert!(matches!(
        plan(&CareMap::demo(), &Rules::embedded(), &o).unwrap_err(),
        PlanError::PerformerCannot { .. }
    ));
    o.per_day = Some(0);
    o.performer = None;
    assert!(matches!(
        plan(&CareMap::demo(), &Rules::embedded(), &o).unwrap_err(),
        PlanError::Bounds(_)
    ));
}
