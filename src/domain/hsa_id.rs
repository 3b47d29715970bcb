//! HSA-id: the identifier Inera's national directory HSA (Hälso- och sjukvårdens adressregister)
//! gives care providers, care units, functions and staff.
//!
//! Shape: `SE`, the 10-digit organisation number of the organisation that issued it, `-`, and a
//! suffix of letters and digits; at most 31 characters in all. Examples: `SE2321000255-MTN01`,
//! `SE2120000999-HSJ1290`. In FHIR it goes under the system [`HSA_ID_SYSTEM`].

use std::fmt;
use std::str::FromStr;

/// HSA-id's OID as `Identifier.system`; HL7 Sweden's basprofiler use it for the `hsaid` slices of
/// SEBasePractitioner and SEBaseOrganization (alias `$hsaid` in `input/fsh/aliases.fsh`).
pub const HSA_ID_SYSTEM: &str = "urn:oid:1.2.752.29.4.19";

/// The longest HSA-id the directory issues.
const MAX_LENGTH: usize = 31;

/// `SE` + 10 digits + `-`: where the suffix starts.
const PREFIX_LENGTH: usize = 13;

/// Why a string is not an HSA-id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HsaIdError {
    #[error("the HSA-id is empty")]
    Empty,
    #[error("the HSA-id has {length} characters; at most {MAX_LENGTH} are allowed")]
    TooLong { length: usize },
    #[error("an HSA-id starts with the country code SE")]
    MissingCountryCode,
    #[error("SE must be followed by the 10-digit organisation number; found {digits} digits")]
    OrganisationNumber { digits: usize },
    #[error("the organisation number must be followed by '-'")]
    MissingSeparator,
    #[error("nothing follows the '-'; an HSA-id ends with at least one letter or digit")]
    EmptySuffix,
    #[error(
        "character {position} ({character:?}) is not allowed after the '-'; \
         only letters A-Z and digits are"
    )]
    InvalidCharacter { position: usize, character: char },
}

/// A well-formed HSA-id, normalised to upper case.
///
/// HSA issues ids in upper case, but some systems lower-case them on the way; upper-casing on
/// parse makes equality, hashing and storage case-insensitive without a custom `Eq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HsaId(String);

impl HsaId {
    pub fn parse(s: &str) -> Result<Self, HsaIdError> {
        let id = s.trim().to_ascii_uppercase();
        if id.is_empty() {
            return Err(HsaIdError::Empty);
        }
        let length = id.chars().count();
        if length > MAX_LENGTH {
            return Err(HsaIdError::TooLong { length });
        }
        let after_country = id
            .strip_prefix("SE")
            .ok_or(HsaIdError::MissingCountryCode)?;
        let digits = after_country
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        if digits != 10 {
            return Err(HsaIdError::OrganisationNumber { digits });
        }
        // The 10 characters just counted are ASCII digits, one byte each.
        let suffix = after_country[10..]
            .strip_prefix('-')
            .ok_or(HsaIdError::MissingSeparator)?;
        if suffix.is_empty() {
            return Err(HsaIdError::EmptySuffix);
        }
        if let Some((index, character)) = suffix
            .chars()
            .enumerate()
            .find(|&(_, c)| !c.is_ascii_alphanumeric())
        {
            return Err(HsaIdError::InvalidCharacter {
                position: PREFIX_LENGTH + index + 1,
                character,
            });
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The issuing organisation's organisation number, the 10 digits after `SE`.
    pub fn organisation_number(&self) -> &str {
        &self.0[2..12]
    }

    /// What follows the `-`.
    pub fn suffix(&self) -> &str {
        &self.0[PREFIX_LENGTH..]
    }
}

impl fmt::Display for HsaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for HsaId {
    type Err = HsaIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for HsaId {
    type Error = HsaIdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl AsRef<str> for HsaId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_examples_are_accepted_as_written() {
        for id in [
            "SE2321000255-MTN01",
            "SE2120000999-HSJ1290",
            "SE2321000255-P0101",
        ] {
            assert_eq!(HsaId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn the_parts_are_available() {
        let id = HsaId::parse("SE2321000255-MTN01").unwrap();
        assert_eq!(id.organisation_number(), "2321000255");
        assert_eq!(id.suffix(), "MTN01");
        assert_eq!(id.to_string(), "SE2321000255-MTN01");
    }

    #[test]
    fn lower_case_is_normalised_to_upper_case() {
        let id = HsaId::parse("se2321000255-mtn01").unwrap();
        assert_eq!(id.as_str(), "SE2321000255-MTN01");
        assert_eq!(id, HsaId::parse("SE2321000255-MTN01").unwrap());
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(
            HsaId::parse(" SE2321000255-MTN01\n").unwrap().as_str(),
            "SE2321000255-MTN01"
        );
    }

    #[test]
    fn a_one_character_suffix_is_accepted() {
        assert_eq!(HsaId::parse("SE2321000255-1").unwrap().suffix(), "1");
    }

    #[test]
    fn thirty_one_characters_are_accepted_and_thirty_two_refused() {
        let longest = format!("SE2321000255-{}", "A".repeat(18));
        assert_eq!(longest.len(), 31);
        assert!(HsaId::parse(&longest).is_ok());
        assert_eq!(
            HsaId::parse(&format!("{longest}B")),
            Err(HsaIdError::TooLong { length: 32 })
        );
    }

    #[test]
    fn an_empty_value_is_refused() {
        assert_eq!(HsaId::parse(" "), Err(HsaIdError::Empty));
    }

    #[test]
    fn an_id_without_the_country_code_is_refused() {
        assert_eq!(
            HsaId::parse("2321000255-MTN01"),
            Err(HsaIdError::MissingCountryCode)
        );
        assert_eq!(
            HsaId::parse("NO2321000255-MTN01"),
            Err(HsaIdError::MissingCountryCode)
        );
    }

    #[test]
    fn an_organisation_number_of_the_wrong_length_is_refused() {
        assert_eq!(
            HsaId::parse("SE232100025-MTN01"),
            Err(HsaIdError::OrganisationNumber { digits: 9 })
        );
        assert_eq!(
            HsaId::parse("SE23210002551-MTN01"),
            Err(HsaIdError::OrganisationNumber { digits: 11 })
        );
        assert_eq!(
            HsaId::parse("SE23210X0255-MTN01"),
            Err(HsaIdError::OrganisationNumber { digits: 5 })
        );
    }

    #[test]
    fn a_missing_hyphen_is_refused() {
        assert_eq!(
            HsaId::parse("SE2321000255MTN01"),
            Err(HsaIdError::MissingSeparator)
        );
        assert_eq!(
            HsaId::parse("SE2321000255_MTN01"),
            Err(HsaIdError::MissingSeparator)
        );
    }

    #[test]
    fn an_empty_suffix_is_refused() {
        assert_eq!(HsaId::parse("SE2321000255-"), Err(HsaIdError::EmptySuffix));
    }

    #[test]
    fn a_suffix_with_other_than_letters_and_digits_is_refused() {
        assert_eq!(
            HsaId::parse("SE2321000255-MTN_01"),
            Err(HsaIdError::InvalidCharacter {
                position: 17,
                character: '_'
            })
        );
        assert!(matches!(
            HsaId::parse("SE2321000255-MTN-01"),
            Err(HsaIdError::InvalidCharacter { character: '-', .. })
        ));
        assert!(matches!(
            HsaId::parse("SE2321000255-MÅN01"),
            Err(HsaIdError::InvalidCharacter { position: 15, .. })
        ));
        assert!(matches!(
            HsaId::parse("SE2321000255-MT N01"),
            Err(HsaIdError::InvalidCharacter { character: ' ', .. })
        ));
    }

    #[test]
    fn from_str_and_try_from_agree_with_parse() {
        let expected = HsaId::parse("SE2321000255-P0101").unwrap();
        assert_eq!("SE2321000255-P0101".parse::<HsaId>().unwrap(), expected);
        assert_eq!(HsaId::try_from("SE2321000255-P0101").unwrap(), expected);
    }
}
