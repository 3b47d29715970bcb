//! Swedish public holidays (allmänna helgdagar, Lag (1989:253) om allmänna helgdagar), computed for any year:
//! the fixed days, the Easter cycle, and the three that move to a Saturday (Midsummer Day, All Saints' Day).
//! Sundays are helgdagar by the same law; [`is_public_holiday`] answers for the named days and
//! [`is_helgdag`] adds Saturdays and Sundays, as the teams' "helgdagar" hours mean (KEFU 2025).
//!
//! Hand-written because no well-kept crate in reach computes the Swedish calendar; the Easter date is the
//! anonymous Gregorian algorithm (Meeus/Jones/Butcher), valid for every Gregorian year.
//! The eves (midsommarafton, julafton, nyårsafton) are not public holidays by law and are not counted; a team
//! closed on them lists them as closures in the care map.

use jiff::civil::{Date, Weekday};

/// Easter Sunday of `year` (Gregorian), or `None` outside jiff's year range.
pub fn easter_sunday(year: i16) -> Option<Date> {
    let y = i32::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()
}

/// The Saturday in `[from, from + 6 days]` (Midsummer Day: 20–26 June; All Saints' Day: 31 Oct–6 Nov).
fn saturday_from(from: Date) -> Option<Date> {
    (0..7)
        .filter_map(|n| from.checked_add(jiff::Span::new().days(n)).ok())
        .find(|d| d.weekday() == Weekday::Saturday)
}

/// The public holidays of `year` with their Swedish names, in date order.
pub fn public_holidays(year: i16) -> Vec<(Date, &'static str)> {
    let mut out = Vec::with_capacity(13);
    let fixed = [
        (1, 1, "Nyårsdagen"),
        (1, 6, "Trettondedag jul"),
        (5, 1, "Första maj"),
        (6, 6, "Sveriges nationaldag"),
        (12, 25, "Juldagen"),
        (12, 26, "Annandag jul"),
    ];
    for (m, d, name) in fixed {
        if let Ok(day) = Date::new(year, m, d) {
            out.push((day, name));
        }
    }
    if let Some(easter) = easter_sunday(year) {
        let shifted = |days: i64| easter.checked_add(jiff::Span::new().days(days)).ok();
        for (offset, name) in [
            (-2, "Långfredagen"),
            (0, "Påskdagen"),
            (1, "Annandag påsk"),
            (39, "Kristi himmelsfärdsdag"),
            (49, "Pingstdagen"),
        ] {
            if let Some(day) = shifted(offset) {
                out.push((day, name));
            }
        }
    }
    if let Some(day) = Date::new(year, 6, 20).ok().and_then(saturday_from) {
        out.push((day, "Midsommardagen"));
    }
    if let Some(day) = Date::new(year, 10, 31).ok().and_then(saturday_from) {
        out.push((day, "Alla helgons dag"));
    }
    out.sort();
    out
}

/// Whether `day` is one of the named public holidays (not merely a Sunday).
pub fn is_public_holiday(day: Date) -> bool {
    holiday_name(day).is_some()
}

/// The name of the public holiday on `day`, if it is one.
pub fn holiday_name(day: Date) -> Option<&'static str> {
    public_holidays(day.year())
        .into_iter()
        .find(|(d, _)| *d == day)
        .map(|(_, name)| name)
}

/// "helgdagar" in the teams' hours: Saturdays, Sundays and public holidays. "vardagar" is every other day.
pub fn is_helgdag(day: Date) -> bool {
    matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) || is_public_holiday(day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn easter_falls_on_the_published_sundays() {
        // Svenska kyrkans almanacka: påskdagen.
        assert_eq!(easter_sunday(2024), Some(date(2024, 3, 31)));
        assert_eq!(easter_sunday(2025), Some(date(2025, 4, 20)));
        assert_eq!(easter_sunday(2026), Some(date(2026, 4, 5)));
        assert_eq!(easter_sunday(2027), Some(date(2027, 3, 28)));
        assert_eq!(easter_sunday(2038), Some(date(2038, 4, 25)));
        assert_eq!(easter_sunday(2285), Some(date(2285, 3, 22)));
    }

    #[test]
    fn the_2026_holidays_are_the_thirteen_of_the_law() {
        let days: Vec<Date> = public_holidays(2026).into_iter().map(|(d, _)| d).collect();
        assert_eq!(
            days,
            vec![
                date(2026, 1, 1),
                date(2026, 1, 6),
                date(2026, 4, 3),
                date(2026, 4, 5),
                date(2026, 4, 6),
                date(2026, 5, 1),
                date(2026, 5, 14),
                date(2026, 5, 24),
                date(2026, 6, 6),
                date(2026, 6, 20),
                date(2026, 10, 31),
                date(2026, 12, 25),
                date(2026, 12, 26),
            ]
        );
    }

    #[test]
    fn midsummer_and_all_saints_move_to_their_saturday() {
        assert_eq!(holiday_name(date(2025, 6, 21)), Some("Midsommardagen"));
        assert_eq!(holiday_name(date(2027, 6, 26)), Some("Midsommardagen"));
        assert_eq!(holiday_name(date(2025, 11, 1)), Some("Alla helgons dag"));
        assert_eq!(holiday_name(date(2027, 11, 6)), Some("Alla helgons dag"));
        // The eve is not a public holiday.
        assert!(!is_public_holiday(date(2026, 6, 19)));
    }

    #[test]
    fn helgdagar_are_weekends_and_holidays_vardagar_the_rest() {
        assert!(is_helgdag(date(2026, 11, 28)), "a Saturday");
        assert!(is_helgdag(date(2026, 12, 25)), "Christmas Day, a Friday");
        assert!(is_helgdag(date(2026, 5, 14)), "Ascension Day, a Thursday");
        assert!(!is_helgdag(date(2026, 11, 24)), "an ordinary Tuesday");
        assert!(
            !is_helgdag(date(2026, 12, 24)),
            "Christmas Eve is a weekday by law"
        );
    }
}
