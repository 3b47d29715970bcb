//! Personnummer and samordningsnummer: the two Swedish national identity numbers.
//!
//! Both have the same shape, pinned by Skatteverket SKV 704 (Personnummer, utgåva 8) and, for the
//! samordningsnummer, folkbokföringslagen (1991:481) 18 a §: a birth date `YYMMDD`, a three-digit
//! birth number `NNN` and a Luhn check digit `C` computed over those nine digits. A samordningsnummer
//! adds 60 to the day of birth, which is how the two are told apart.
//!
//! Written forms accepted here: `YYYYMMDDNNNC`, `YYYYMMDD-NNNC`, `YYMMDDNNNC`, `YYMMDD-NNNC` and
//! `YYMMDD+NNNC` (`+`: the person is 100 or older). Stored as the 12 digits, shown as `YYYYMMDD-NNNC`.
//!
//! The number is personal data: error messages and `Debug` output never contain it, so that neither
//! an OperationOutcome nor a log line leaks it.

use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;

use super::patient_identifier::{PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM};

/// The earliest year of birth accepted in the 12-digit form. Personnummer were introduced in 1947,
/// but records of people born in the 1800s carry them too (HL7 Sweden's basprofiler allow `18xx`).
const EARLIEST_BIRTH_YEAR: i16 = 1800;

/// Samordningsnummer add this to the day of birth (folkbokföringslagen 18 a §).
const SAMORDNINGSNUMMER_DAY_OFFSET: u8 = 60;

/// Which of the two national identity numbers a [`NationalId`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NationalIdKind {
    /// Issued at birth or immigration to people registered in Sweden (folkbokförda).
    Personnummer,
    /// Issued to people who are not, or not yet, registered; the day of birth is plus 60.
    Samordningsnummer,
}

impl NationalIdKind {
    /// The Swedish name, as used in messages and in HL7 Sweden's identifier systems.
    pub fn name(self) -> &'static str {
        match self {
            Self::Personnummer => "personnummer",
            Self::Samordningsnummer => "samordningsnummer",
        }
    }

    /// The canonical FHIR `Identifier.system` for this kind (HL7 Sweden basprofiler).
    pub fn fhir_system(self) -> &'static str {
        match self {
            Self::Personnummer => PERSONNUMMER_SYSTEM,
            Self::Samordningsnummer => SAMORDNINGSNUMMER_SYSTEM,
        }
    }
}

impl fmt::Display for NationalIdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a personnummer or samordningsnummer.
///
/// The messages name the check that failed and at most one date field (month or day); they never
/// repeat the number itself, because they end up in OperationOutcome, SVPL `Fel` texts and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NationalIdError {
    #[error("the number is empty")]
    Empty,
    #[error("character {position} ({character:?}) is not a digit, '-' or '+'")]
    InvalidCharacter { position: usize, character: char },
    #[error("the number has more than one separator")]
    SeveralSeparators,
    #[error(
        "the number has {digits} digits; it must have 12 (YYYYMMDDNNNC) or 10 (YYMMDDNNNC), \
         optionally with a separator before the last four"
    )]
    Length { digits: usize },
    #[error("the separator must stand before the last four digits")]
    MisplacedSeparator,
    #[error(
        "'+' (age 100 or more) belongs to the 10-digit form only; \
         the 12-digit form states the century and takes '-' or no separator"
    )]
    PlusInLongForm,
    #[error("month {month:02} does not exist")]
    Month { month: u8 },
    #[error(
        "day {day:02} is neither a day of the month (01-31) \
         nor a samordningsnummer day (61-91, the day of birth plus 60)"
    )]
    Day { day: u8 },
    #[error(
        "the birth date does not exist: month {month:02} has no day {day:02} in the year of birth"
    )]
    NonexistentDate { month: u8, day: u8 },
    #[error("the birth year lies before {EARLIEST_BIRTH_YEAR}")]
    Century,
    #[error("the birth date lies in the future")]
    FutureBirthDate,
    #[error("the check digit (the last digit) is wrong (Luhn check, Skatteverket SKV 704)")]
    CheckDigit,
}

/// A valid personnummer or samordningsnummer.
///
/// Equality and hashing follow the canonical 12 digits, so every written form of one number is
/// the same value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NationalId {
    /// `YYYYMMDDNNNC`, 12 ASCII digits; the samordningsnummer keeps its day plus 60.
    canonical: String,
    kind: NationalIdKind,
    /// The real birth date, for a samordningsnummer with 60 taken off the day.
    birth_date: Date,
}

impl NationalId {
    /// Parses any accepted form, inferring the century of the 10-digit form from today's date.
    ///
    /// The date is the server's local date; the choice only matters for a 10-digit number of a
    /// person born today, and jiff falls back to UTC when no time zone is configured.
    pub fn parse(s: &str) -> Result<Self, NationalIdError> {
        Self::parse_at(s, jiff::Zoned::now().date())
    }

    /// Parses any accepted form, inferring the century of the 10-digit form relative to `today`.
    ///
    /// Century rule for `YYMMDD-NNNC` and `YYMMDD+NNNC`: SKV 704 switches `-` to `+` in the calendar
    /// year the person turns 100, but many systems switch on the birthday instead. Both are honoured:
    /// `+` means the latest matching year at least 100 years before this year; `-` means the latest
    /// matching birth date not after `today`. A 12-digit number with a birth date after `today` is
    /// refused.
    pub fn parse_at(s: &str, today: Date) -> Result<Self, NationalIdError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NationalIdError::Empty);
        }

        // Collect at most 12 digits but keep counting, so the length error reports the real count.
        let mut digits = [0u8; 12];
        let mut count = 0usize;
        let mut separator: Option<(usize, char)> = None;
        for (index, character) in s.chars().enumerate() {
            match character {
                '0'..='9' => {
                    if let Some(slot) = digits.get_mut(count) {
                        *slot = character as u8 - b'0';
                    }
                    count += 1;
                }
                '-' | '+' => {
                    if separator.is_some() {
                        return Err(NationalIdError::SeveralSeparators);
                    }
                    separator = Some((count, character));
                }
                _ => {
                    return Err(NationalIdError::InvalidCharacter {
                        position: index + 1,
                        character,
                    });
                }
            }
        }
        if count != 10 && count != 12 {
            return Err(NationalIdError::Length { digits: count });
        }
        let long_form = count == 12;
        let plus = match separator {
            Some((digits_before, sign)) => {
                if digits_before != count - 4 {
                    return Err(NationalIdError::MisplacedSeparator);
                }
                if sign == '+' && long_form {
                    return Err(NationalIdError::PlusInLongForm);
                }
                sign == '+'
            }
            None => false,
        };

        // The 10 digits the check digit covers: YYMMDDNNNC.
        let ten = &digits[count - 10..count];
        let two = |at: usize| ten[at] * 10 + ten[at + 1];
        let (month, day_field) = (two(2), two(4));
        if !(1..=12).contains(&month) {
            return Err(NationalIdError::Month { month });
        }
        let (kind, day) = match day_field {
            1..=31 => (NationalIdKind::Personnummer, day_field),
            61..=91 => (
                NationalIdKind::Samordningsnummer,
                day_field - SAMORDNINGSNUMMER_DAY_OFFSET,
            ),
            _ => return Err(NationalIdError::Day { day: day_field }),
        };
        // Month and day are checked above, so these fit an i8.
        let (month_i8, day_i8) = (month as i8, day as i8);

        let year = if long_form {
            let year = i16::from(digits[0]) * 1000
                + i16::from(digits[1]) * 100
                + i16::from(digits[2]) * 10
                + i16::from(digits[3]);
            if year < EARLIEST_BIRTH_YEAR {
                return Err(NationalIdError::Century);
            }
            year
        } else {
            infer_year(i16::from(two(0)), month_i8, day_i8, plus, today)
        };

        let birth_date = Date::new(year, month_i8, day_i8)
            .map_err(|_| NationalIdError::NonexistentDate { month, day })?;
        if birth_date > today {
            return Err(NationalIdError::FutureBirthDate);
        }
        if luhn_check_digit(&ten[..9]) != ten[9] {
            return Err(NationalIdError::CheckDigit);
        }

        let mut canonical = format!("{year:04}");
        canonical.extend(ten[2..].iter().map(|&d| char::from(b'0' + d)));
        Ok(Self {
            canonical,
            kind,
            birth_date,
        })
    }

    /// `YYYYMMDDNNNC` without separator: the form stored and compared (and the one HL7 Sweden's
    /// basprofiler invariants expect in `Identifier.value`).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    pub fn kind(&self) -> NationalIdKind {
        self.kind
    }

    /// The real birth date; for a samordningsnummer, the day without the added 60.
    pub fn birth_date(&self) -> Date {
        self.birth_date
    }
}

/// The 10-digit form names the year within a century; see [`NationalId::parse_at`] for the rule.
fn infer_year(yy: i16, month: i8, day: i8, plus: bool, today: Date) -> i16 {
    let base = if plus {
        today.year() - 100
    } else {
        today.year()
    };
    let year = base - (base - yy).rem_euclid(100);
    // Only reachable with `-`: a birthday later this year has not happened yet, so it is a person
    // turning 100 this year whose system writes `-` until the birthday.
    if (year, month, day) > (today.year(), today.month(), today.day()) {
        year - 100
    } else {
        year
    }
}

/// Luhn (mod 10) over `YYMMDDNNN`: weights 2,1,2,1,… from the left, digits of each product summed
/// (SKV 704).
fn luhn_check_digit(nine: &[u8]) -> u8 {
    let sum: u32 = nine
        .iter()
        .enumerate()
        .map(|(index, &digit)| {
            let product = if index % 2 == 0 { digit * 2 } else { digit };
            u32::from(product / 10 + product % 10)
        })
        .sum();
    // `sum % 10` is below 10, so the result is a single digit.
    ((10 - sum % 10) % 10) as u8
}

impl fmt::Display for NationalId {
    /// `YYYYMMDD-NNNC`, the form people read and write.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", &self.canonical[..8], &self.canonical[8..])
    }
}

impl fmt::Debug for NationalId {
    /// Leaves out the birth number and check digit so that a stray `{:?}` in a log does not
    /// write the identity number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NationalId")
            .field("kind", &self.kind)
            .field("birth_date", &self.birth_date)
            .finish_non_exhaustive()
    }
}

impl FromStr for NationalId {
    type Err = NationalIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for NationalId {
    type Error = NationalIdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    /// A fixed "today" so that the century of the 10-digit form is stable.
    const TODAY: Date = date(2025, 6, 1);

    const DEMO_PERSONNUMMER: [&str; 6] = [
        "19121212-1212",
        "19400512-1233",
        "19380303-2451",
        "19450822-3577",
        "19330115-4682",
        "19271124-8829",
    ];
    const DEMO_SAMORDNINGSNUMMER: &str = "19500972-2397";

    fn parse(s: &str) -> Result<NationalId, NationalIdError> {
        NationalId::parse_at(s, TODAY)
    }

    /// Appends the right check digit, so that tests of other checks are not tripped by Luhn.
    fn with_check_digit(without: &str) -> String {
        let digits: Vec<u8> = without
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        let check = luhn_check_digit(&digits[digits.len() - 9..]);
        format!("{without}{check}")
    }

    #[test]
    fn every_demo_personnummer_is_accepted() {
        for number in DEMO_PERSONNUMMER {
            let id = parse(number).unwrap_or_else(|e| panic!("{number}: {e}"));
            assert_eq!(id.kind(), NationalIdKind::Personnummer, "{number}");
            assert_eq!(id.to_string(), number);
        }
    }

    #[test]
    fn the_demo_samordningsnummer_is_accepted_with_its_real_birth_day() {
        let id = parse(DEMO_SAMORDNINGSNUMMER).unwrap();
        assert_eq!(id.kind(), NationalIdKind::Samordningsnummer);
        assert_eq!(id.birth_date(), date(1950, 9, 12));
        assert_eq!(id.canonical(), "195009722397");
        assert_eq!(id.to_string(), DEMO_SAMORDNINGSNUMMER);
    }

    #[test]
    fn the_twelve_digit_form_without_separator_is_accepted() {
        let id = parse("191212121212").unwrap();
        assert_eq!(id.canonical(), "191212121212");
        assert_eq!(id.birth_date(), date(1912, 12, 12));
        assert_eq!(id.kind(), NationalIdKind::Personnummer);
    }

    #[test]
    fn the_twelve_digit_form_with_a_hyphen_is_accepted() {
        assert_eq!(parse("19121212-1212").unwrap().canonical(), "191212121212");
    }

    #[test]
    fn the_ten_digit_form_without_separator_is_placed_in_the_last_hundred_years() {
        let id = parse("4005121233").unwrap();
        assert_eq!(id.canonical(), "194005121233");
        let recent = parse(&with_check_digit("200101123")).unwrap();
        assert_eq!(recent.birth_date(), date(2020, 1, 1));
    }

    #[test]
    fn the_ten_digit_form_with_a_hyphen_is_accepted() {
        assert_eq!(parse("400512-1233").unwrap().canonical(), "194005121233");
        assert_eq!(parse("500972-2397").unwrap().canonical(), "195009722397");
    }

    #[test]
    fn a_plus_moves_the_birth_year_back_a_century() {
        // Without the plus, 121212 would be 2012-12-12.
        assert_eq!(
            parse(&with_check_digit("121212-121")).unwrap().birth_date(),
            date(2012, 12, 12)
        );
        let id = parse("121212+1212").unwrap();
        assert_eq!(id.birth_date(), date(1912, 12, 12));
        assert_eq!(id.canonical(), "191212121212");
    }

    #[test]
    fn a_plus_in_the_year_someone_turns_100_is_read_as_100_years_back() {
        // SKV 704 switches to `+` in the calendar year of the 100th birthday, here before it.
        let id = parse(&with_check_digit("251201+123")).unwrap();
        assert_eq!(id.birth_date(), date(1925, 12, 1));
    }

    #[test]
    fn a_hyphen_for_someone_turning_100_later_this_year_is_read_as_last_century() {
        // Systems that switch on the birthday still write `-` here; 2025-12-01 has not happened.
        let id = parse(&with_check_digit("251201-123")).unwrap();
        assert_eq!(id.birth_date(), date(1925, 12, 1));
    }

    #[test]
    fn a_ten_digit_number_of_someone_born_today_is_this_year() {
        let id = parse(&with_check_digit("250601-123")).unwrap();
        assert_eq!(id.birth_date(), TODAY);
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(
            parse("  19121212-1212\n").unwrap().canonical(),
            "191212121212"
        );
    }

    #[test]
    fn every_written_form_of_one_number_is_the_same_value() {
        let forms = ["191212121212", "19121212-1212", "121212+1212"];
        for form in forms {
            assert_eq!(parse(form).unwrap(), parse(forms[0]).unwrap(), "{form}");
        }
    }

    #[test]
    fn display_puts_a_hyphen_before_the_last_four_digits() {
        assert_eq!(parse("121212+1212").unwrap().to_string(), "19121212-1212");
    }

    #[test]
    fn debug_output_leaves_out_the_last_four_digits() {
        let debug = format!("{:?}", parse("19330115-4682").unwrap());
        assert!(!debug.contains("4682"), "{debug}");
        assert!(debug.contains("Personnummer"), "{debug}");
    }

    #[test]
    fn parse_from_str_and_try_from_use_todays_date() {
        let expected = parse("19121212-1212").unwrap();
        assert_eq!(NationalId::parse("19121212-1212").unwrap(), expected);
        assert_eq!("19121212-1212".parse::<NationalId>().unwrap(), expected);
        assert_eq!(NationalId::try_from("19121212-1212").unwrap(), expected);
        // Valid for any today between 2013 and 2111.
        assert_eq!(NationalId::parse("121212+1212").unwrap(), expected);
    }

    #[test]
    fn an_empty_string_is_refused() {
        assert_eq!(parse(""), Err(NationalIdError::Empty));
        assert_eq!(parse("   "), Err(NationalIdError::Empty));
    }

    #[test]
    fn a_letter_is_refused_with_its_position() {
        assert_eq!(
            parse("19121212-12A2"),
            Err(NationalIdError::InvalidCharacter {
                position: 12,
                character: 'A'
            })
        );
    }

    #[test]
    fn a_separator_other_than_hyphen_or_plus_is_refused() {
        assert!(matches!(
            parse("19121212 1212"),
            Err(NationalIdError::InvalidCharacter {
                position: 9,
                character: ' '
            })
        ));
        assert!(matches!(
            parse("121212/1212"),
            Err(NationalIdError::InvalidCharacter { position: 7, .. })
        ));
    }

    #[test]
    fn too_few_or_too_many_digits_are_refused() {
        assert_eq!(
            parse("12121212"),
            Err(NationalIdError::Length { digits: 8 })
        );
        assert_eq!(
            parse("19121212-121"),
            Err(NationalIdError::Length { digits: 11 })
        );
        assert_eq!(
            parse("1912121212120"),
            Err(NationalIdError::Length { digits: 13 })
        );
        assert_eq!(
            parse(&"1".repeat(40)),
            Err(NationalIdError::Length { digits: 40 })
        );
    }

    #[test]
    fn two_separators_are_refused() {
        assert_eq!(
            parse("191212-12-1212"),
            Err(NationalIdError::SeveralSeparators)
        );
    }

    #[test]
    fn a_separator_in_the_wrong_place_is_refused() {
        assert_eq!(
            parse("1912121-21212"),
            Err(NationalIdError::MisplacedSeparator)
        );
        assert_eq!(
            parse("12121-21212"),
            Err(NationalIdError::MisplacedSeparator)
        );
        assert_eq!(
            parse("1212121212-"),
            Err(NationalIdError::MisplacedSeparator)
        );
    }

    #[test]
    fn a_plus_in_the_twelve_digit_form_is_refused() {
        assert_eq!(parse("19121212+1212"), Err(NationalIdError::PlusInLongForm));
    }

    #[test]
    fn a_month_outside_01_to_12_is_refused() {
        assert_eq!(
            parse(&with_check_digit("19121312-121")),
            Err(NationalIdError::Month { month: 13 })
        );
        assert_eq!(
            parse(&with_check_digit("19120012-121")),
            Err(NationalIdError::Month { month: 0 })
        );
    }

    #[test]
    fn day_00_is_refused() {
        assert_eq!(
            parse(&with_check_digit("19121200-121")),
            Err(NationalIdError::Day { day: 0 })
        );
    }

    #[test]
    fn days_between_the_month_and_the_samordningsnummer_range_are_refused() {
        for day in ["32", "45", "60", "92", "99"] {
            let number = with_check_digit(&format!("191212{day}-121"));
            assert!(
                matches!(parse(&number), Err(NationalIdError::Day { .. })),
                "day {day}"
            );
        }
    }

    #[test]
    fn a_day_that_the_month_does_not_have_is_refused() {
        assert_eq!(
            parse(&with_check_digit("19120431-121")),
            Err(NationalIdError::NonexistentDate { month: 4, day: 31 })
        );
    }

    #[test]
    fn february_29_on_a_non_leap_year_is_refused() {
        assert_eq!(
            parse(&with_check_digit("19230229-121")),
            Err(NationalIdError::NonexistentDate { month: 2, day: 29 })
        );
        // 1900 is divisible by 100 but not by 400: not a leap year.
        assert_eq!(
            parse(&with_check_digit("19000229-121")),
            Err(NationalIdError::NonexistentDate { month: 2, day: 29 })
        );
        // The 10-digit form: 010229 is 2001-02-29.
        assert_eq!(
            parse(&with_check_digit("010229-121")),
            Err(NationalIdError::NonexistentDate { month: 2, day: 29 })
        );
    }

    #[test]
    fn february_29_on_a_leap_year_is_accepted() {
        for number in ["19240229-121", "20000229-121", "000229-121", "240229-121"] {
            let id = parse(&with_check_digit(number)).unwrap_or_else(|e| panic!("{number}: {e}"));
            assert_eq!((id.birth_date().month(), id.birth_date().day()), (2, 29));
        }
    }

    #[test]
    fn samordningsnummer_days_run_from_61_to_91() {
        let first = parse(&with_check_digit("19500161-123")).unwrap();
        assert_eq!(first.kind(), NationalIdKind::Samordningsnummer);
        assert_eq!(first.birth_date(), date(1950, 1, 1));
        let last = parse(&with_check_digit("19500191-123")).unwrap();
        assert_eq!(last.birth_date(), date(1950, 1, 31));
    }

    #[test]
    fn a_samordningsnummer_for_a_day_the_month_does_not_have_is_refused() {
        // Day 90 is 30 February.
        assert_eq!(
            parse(&with_check_digit("19500290-123")),
            Err(NationalIdError::NonexistentDate { month: 2, day: 30 })
        );
    }

    #[test]
    fn a_wrong_check_digit_is_refused() {
        for last in 0..=9u8 {
            if last == 2 {
                continue;
            }
            let number = format!("19121212-121{last}");
            assert_eq!(parse(&number), Err(NationalIdError::CheckDigit), "{number}");
        }
        assert_eq!(parse("500972-2398"), Err(NationalIdError::CheckDigit));
    }

    #[test]
    fn swapped_birth_number_digits_are_caught_by_the_check_digit() {
        assert_eq!(parse("19400512-2133"), Err(NationalIdError::CheckDigit));
    }

    #[test]
    fn a_birth_date_in_the_future_is_refused() {
        assert_eq!(
            parse(&with_check_digit("20250602-123")),
            Err(NationalIdError::FutureBirthDate)
        );
        assert_eq!(
            parse(&with_check_digit("21000101-123")),
            Err(NationalIdError::FutureBirthDate)
        );
    }

    #[test]
    fn a_birth_year_before_1800_is_refused() {
        assert_eq!(
            parse(&with_check_digit("17991212-121")),
            Err(NationalIdError::Century)
        );
        assert_eq!(
            parse(&with_check_digit("00121212-121")),
            Err(NationalIdError::Century)
        );
    }

    #[test]
    fn error_messages_never_contain_the_number() {
        let bad = [
            "19330115-4683",
            "193301154683",
            "330115+4683",
            "19330115-46X3",
            "19330115+4682",
            "1933011-54682",
            "19331315-4682",
            "19330145-4682",
            "19330230-4682",
        ];
        for number in bad {
            let message = parse(number).unwrap_err().to_string();
            let digits: String = number.chars().filter(char::is_ascii_digit).collect();
            assert!(!message.contains(number), "{message}");
            assert!(!message.contains(&digits), "{message}");
            assert!(!message.contains("4682"), "{message}");
            assert!(!message.contains("4683"), "{message}");
        }
    }

    #[test]
    fn the_luhn_check_digit_matches_a_hand_computed_example() {
        // 811218-987C: 16→7, 1, 2, 2, 2, 8, 18→9, 8, 14→5; sum 44, so C = 6.
        assert_eq!(luhn_check_digit(&[8, 1, 1, 2, 1, 8, 9, 8, 7]), 6);
    }
}
