//! Reservnummer: a temporary patient number for someone whose personnummer or samordningsnummer is
//! unknown (unconscious, unidentified, or not registered in Sweden).
//!
//! Each region sets its own format and none has a check digit, so navet checks only what every
//! format shares: 1 to 40 characters from `A-Z`, `a-z`, `0-9` and `-`. The value means nothing
//! without the issuing region's `Identifier.system`, which is why [`super::PatientIdentifier`]
//! keeps the two together.
//!
//! Like the national numbers it is personal data (most formats embed the birth date), so error
//! messages and `Debug` output never contain it.

use std::fmt;
use std::str::FromStr;

/// The longest reservnummer navet accepts. The regional formats HL7 Sweden's basprofiler list
/// are 10 to 13 characters; 40 leaves room for formats they do not list.
const MAX_LENGTH: usize = 40;

/// Why a string is not a reservnummer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservnummerError {
    #[error("the reservnummer is empty")]
    Empty,
    #[error("the reservnummer has {length} characters; at most {MAX_LENGTH} are allowed")]
    TooLong { length: usize },
    #[error(
        "character {position} ({character:?}) is not allowed in a reservnummer; \
         only letters A-Z, digits and '-' are"
    )]
    InvalidCharacter { position: usize, character: char },
}

/// A reservnummer, kept exactly as the issuing region wrote it (apart from surrounding whitespace).
///
/// Case is kept and compared exactly: regional formats use letters as codes and navet cannot know
/// whether a region treats `k` and `K` alike.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reservnummer(String);

impl Reservnummer {
    pub fn parse(s: &str) -> Result<Self, ReservnummerError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ReservnummerError::Empty);
        }
        if let Some((index, character)) = s
            .chars()
            .enumerate()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(ReservnummerError::InvalidCharacter {
                position: index + 1,
                character,
            });
        }
        // Every character is ASCII by now, so bytes are characters.
        if s.len() > MAX_LENGTH {
            return Err(ReservnummerError::TooLong { length: s.len() });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reservnummer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reservnummer {
    /// Only the length, so that a stray `{:?}` in a log does not write the number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservnummer")
            .field("length", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl FromStr for Reservnummer {
    type Err = ReservnummerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Reservnummer {
    type Error = ReservnummerError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_formats_are_accepted_as_written() {
        // Shapes from the regional patterns in HL7 Sweden's basprofiler (values made up).
        for value in [
            "991234567890",
            "19500101K123",
            "19500101-12M3",
            "19500101TA1B",
            "20250601AB12",
            "x",
        ] {
            assert_eq!(Reservnummer::parse(value).unwrap().as_str(), value);
        }
    }

    #[test]
    fn case_is_kept_and_compared_exactly() {
        let lower = Reservnummer::parse("19500101k123").unwrap();
        assert_eq!(lower.to_string(), "19500101k123");
        assert_ne!(lower, Reservnummer::parse("19500101K123").unwrap());
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(Reservnummer::parse(" ab-12 \t").unwrap().as_str(), "ab-12");
    }

    #[test]
    fn forty_characters_are_accepted() {
        let value = "A".repeat(40);
        assert_eq!(Reservnummer::parse(&value).unwrap().as_str(), value);
    }

    #[test]
    fn more_than_forty_characters_are_refused() {
        assert_eq!(
            Reservnummer::parse(&"A".repeat(41)),
            Err(ReservnummerError::TooLong { length: 41 })
        );
    }

    #[test]
    fn an_empty_value_is_refused() {
        assert_eq!(Reservnummer::parse(""), Err(ReservnummerError::Empty));
        assert_eq!(Reservnummer::parse("  \n"), Err(ReservnummerError::Empty));
    }

    #[test]
    fn characters_outside_letters_digits_and_hyphen_are_refused() {
        assert_eq!(
            Reservnummer::parse("1950 0101"),
            Err(ReservnummerError::InvalidCharacter {
                position: 5,
                character: ' '
            })
        );
        assert_eq!(
            Reservnummer::parse("19500101Å123"),
            Err(ReservnummerError::InvalidCharacter {
                position: 9,
                character: 'Å'
            })
        );
        assert!(Reservnummer::parse("123+4").is_err());
        assert!(Reservnummer::parse("12_34").is_err());
    }

    #[test]
    fn from_str_and_try_from_agree_with_parse() {
        let expected = Reservnummer::parse("99123").unwrap();
        assert_eq!("99123".parse::<Reservnummer>().unwrap(), expected);
        assert_eq!(Reservnummer::try_from("99123").unwrap(), expected);
    }

    #[test]
    fn debug_output_and_errors_leave_out_the_number() {
        let debug = format!("{:?}", Reservnummer::parse("19500101K123").unwrap());
        assert!(!debug.contains("19500101"), "{debug}");
        let message = Reservnummer::parse("19500101_K123")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("19500101"), "{message}");
    }
}
