//! From a FHIR `Identifier` (system + value) to the patient identifier navet checks and stores.
//!
//! Identifier systems follow HL7 Sweden's base profiles (basprofiler-r4 1.1.0,
//! github.com/HL7Sweden/basprofiler-r4, `input/fsh/aliases.fsh`, used by the identifier slices of
//! SEBasePatient and by the NamingSystems in `input/fsh/vocabulary/`):
//! - `http://electronichealth.se/identifier/personnummer`
//! - `http://electronichealth.se/identifier/samordningsnummer`
//! - `http://electronichealth.se/identifier/nationelltReservnummer`
//!
//! The OIDs that RIVTA and older integrations use for the national numbers (Inera/RIVTA best
//! practice `PersonIdType`: personnummer `1.2.752.129.2.1.3.1`, samordningsnummer
//! `1.2.752.129.2.1.3.3`) are accepted on input and stored under the URIs above, so that one number
//! has one (system, value) pair whichever way it arrived.
//!
//! Reservnummer systems are recognised by a navet convention, because each region issues its own:
//! HL7 Sweden's national one, Region Stockholm's OID from the same RIVTA `PersonIdType`
//! (`1.2.752.97.3.1.3`), and any `http(s)` system whose last path segment ends in `reservnummer`
//! (any case), e.g. `https://region.example.se/identifier/reservnummer` or `.../lokaltReservnummer`.

use jiff::civil::Date;

use super::personnummer::{NationalId, NationalIdError, NationalIdKind};
use super::reservnummer::{Reservnummer, ReservnummerError};

/// Canonical system for personnummer (HL7 Sweden basprofiler, alias `$personnummer`).
pub const PERSONNUMMER_SYSTEM: &str = "http://electronichealth.se/identifier/personnummer";
/// Canonical system for samordningsnummer (HL7 Sweden basprofiler, alias `$samordningsnummer`).
pub const SAMORDNINGSNUMMER_SYSTEM: &str =
    "http://electronichealth.se/identifier/samordningsnummer";
/// The national reservnummer (HL7 Sweden basprofiler, alias `$nationelltReservnummer`).
pub const NATIONELLT_RESERVNUMMER_SYSTEM: &str =
    "http://electronichealth.se/identifier/nationelltReservnummer";
/// Personnummer as an OID (RIVTA `PersonIdType`); accepted on input only.
pub const PERSONNUMMER_OID: &str = "urn:oid:1.2.752.129.2.1.3.1";
/// Samordningsnummer as an OID (RIVTA `PersonIdType`); accepted on input only.
pub const SAMORDNINGSNUMMER_OID: &str = "urn:oid:1.2.752.129.2.1.3.3";
/// Region Stockholm's (formerly SLL) reservnummer as an OID (RIVTA `PersonIdType`).
pub const REGION_STOCKHOLM_RESERVNUMMER_OID: &str = "urn:oid:1.2.752.97.3.1.3";

/// Why a patient identifier under a system navet checks was refused.
///
/// Like the errors it wraps, the messages never contain the identifier's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("invalid personnummer: {0}")]
    Personnummer(NationalIdError),
    #[error("invalid samordningsnummer: {0}")]
    Samordningsnummer(NationalIdError),
    #[error(
        "the value is a samordningsnummer (its day is the day of birth plus 60) but was sent under \
         the personnummer system; use the system {SAMORDNINGSNUMMER_SYSTEM}"
    )]
    SamordningsnummerUnderPersonnummerSystem,
    #[error(
        "the value is a personnummer (its day is 01-31) but was sent under the samordningsnummer \
         system; use the system {PERSONNUMMER_SYSTEM}"
    )]
    PersonnummerUnderSamordningsnummerSystem,
    #[error("invalid reservnummer: {0}")]
    Reservnummer(ReservnummerError),
}

/// A checked patient identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PatientIdentifier {
    /// Personnummer or samordningsnummer.
    National(NationalId),
    /// A reservnummer, which only means something together with the issuing region's system.
    Reserv { system: String, value: Reservnummer },
}

impl PatientIdentifier {
    /// The system to store and compare on: HL7 Sweden's URI for the national numbers (even when the
    /// input used an OID), the system as received for a reservnummer.
    pub fn canonical_system(&self) -> &str {
        match self {
            Self::National(id) => id.kind().fhir_system(),
            Self::Reserv { system, .. } => system,
        }
    }

    /// The value to store and compare on: the 12 digits without separator for the national
    /// numbers, the value as received (trimmed) for a reservnummer.
    pub fn canonical_value(&self) -> &str {
        match self {
            Self::National(id) => id.canonical(),
            Self::Reserv { value, .. } => value.as_str(),
        }
    }
}

/// Checks a FHIR `Identifier` against today's date (see [`NationalId::parse`]).
///
/// `Ok(None)` for a system navet does not check (MRNs, HSA-ids, foreign numbers): such
/// identifiers are kept as they are but give no national identity.
pub fn from_fhir(system: &str, value: &str) -> Result<Option<PatientIdentifier>, IdentifierError> {
    from_fhir_at(system, value, jiff::Zoned::now().date())
}

/// Like [`from_fhir`], with the date that fixes the century of a 10-digit number.
///
/// The system is compared exactly: in FHIR R4 4.0.1 `Identifier.system` is a `uri`, and URIs are
/// case-sensitive (Data Types, "uri"). Every written form of a national number is accepted under its system, not
/// only the 12 digits the basprofiler invariants ask for, because senders differ and the canonical
/// form is rebuilt anyway.
pub fn from_fhir_at(
    system: &str,
    value: &str,
    today: Date,
) -> Result<Option<PatientIdentifier>, IdentifierError> {
    let expected = match system {
        PERSONNUMMER_SYSTEM | PERSONNUMMER_OID => NationalIdKind::Personnummer,
        SAMORDNINGSNUMMER_SYSTEM | SAMORDNINGSNUMMER_OID => NationalIdKind::Samordningsnummer,
        _ if is_reservnummer_system(system) => {
            let value = Reservnummer::parse(value).map_err(IdentifierError::Reservnummer)?;
            return Ok(Some(PatientIdentifier::Reserv {
                system: system.to_owned(),
                value,
            }));
        }
        _ => return Ok(None),
    };
    let id = NationalId::parse_at(value, today).map_err(|error| match expected {
        NationalIdKind::Personnummer => IdentifierError::Personnummer(error),
        NationalIdKind::Samordningsnummer => IdentifierError::Samordningsnummer(error),
    })?;
    // A mismatch usually means a sender mapped both numbers to one system; storing it under the
    // wrong system would split one patient in two, so it is refused rather than corrected.
    match (expected, id.kind()) {
        (NationalIdKind::Personnummer, NationalIdKind::Samordningsnummer) => {
            Err(IdentifierError::SamordningsnummerUnderPersonnummerSystem)
        }
        (NationalIdKind::Samordningsnummer, NationalIdKind::Personnummer) => {
            Err(IdentifierError::PersonnummerUnderSamordningsnummerSystem)
        }
        _ => Ok(Some(PatientIdentifier::National(id))),
    }
}

/// Whether navet treats `system` as a reservnummer system (the convention in the module docs).
pub fn is_reservnummer_system(system: &str) -> bool {
    if system == NATIONELLT_RESERVNUMMER_SYSTEM || system == REGION_STOCKHOLM_RESERVNUMMER_OID {
        return true;
    }
    let Some(rest) = system
        .strip_prefix("http://")
        .or_else(|| system.strip_prefix("https://"))
    else {
        return false;
    };
    rest.rsplit_once('/')
        .is_some_and(|(_, last)| last.to_ascii_lowercase().ends_with("reservnummer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hsa_id::HSA_ID_SYSTEM;
    use jiff::civil::date;

    const TODAY: Date = date(2025, 6, 1);

    fn check(system: &str, value: &str) -> Result<Option<PatientIdentifier>, IdentifierError> {
        from_fhir_at(system, value, TODAY)
    }

    fn canonical_pair(system: &str, value: &str) -> (String, String) {
        let id = check(system, value)
            .unwrap_or_else(|e| panic!("{system} {value}: {e}"))
            .unwrap_or_else(|| panic!("{system} was not recognised"));
        (
            id.canonical_system().to_owned(),
            id.canonical_value().to_owned(),
        )
    }

    #[test]
    fn a_personnummer_under_hl7_swedens_system_is_checked_and_kept() {
        let id = check(PERSONNUMMER_SYSTEM, "19121212-1212")
            .unwrap()
            .unwrap();
        let PatientIdentifier::National(national) = &id else {
            panic!("expected a national id, got {id:?}");
        };
        assert_eq!(national.kind(), NationalIdKind::Personnummer);
        assert_eq!(id.canonical_system(), PERSONNUMMER_SYSTEM);
        assert_eq!(id.canonical_value(), "191212121212");
    }

    #[test]
    fn every_demo_number_is_accepted_under_its_system() {
        for value in [
            "19121212-1212",
            "19400512-1233",
            "19380303-2451",
            "19450822-3577",
            "19330115-4682",
            "19271124-8829",
        ] {
            let (system, _) = canonical_pair(PERSONNUMMER_SYSTEM, value);
            assert_eq!(system, PERSONNUMMER_SYSTEM);
        }
        assert_eq!(
            canonical_pair(SAMORDNINGSNUMMER_SYSTEM, "19500972-2397"),
            (
                SAMORDNINGSNUMMER_SYSTEM.to_owned(),
                "195009722397".to_owned()
            )
        );
    }

    #[test]
    fn the_personnummer_oid_is_stored_under_hl7_swedens_system() {
        assert_eq!(
            canonical_pair(PERSONNUMMER_OID, "191212121212"),
            canonical_pair(PERSONNUMMER_SYSTEM, "19121212-1212")
        );
    }

    #[test]
    fn the_samordningsnummer_oid_is_stored_under_hl7_swedens_system() {
        assert_eq!(
            canonical_pair(SAMORDNINGSNUMMER_OID, "500972-2397"),
            (
                SAMORDNINGSNUMMER_SYSTEM.to_owned(),
                "195009722397".to_owned()
            )
        );
    }

    #[test]
    fn a_ten_digit_value_is_stored_as_twelve_digits() {
        assert_eq!(
            canonical_pair(PERSONNUMMER_SYSTEM, "121212+1212").1,
            "191212121212"
        );
    }

    #[test]
    fn a_samordningsnummer_under_the_personnummer_system_is_refused_naming_the_mismatch() {
        for system in [PERSONNUMMER_SYSTEM, PERSONNUMMER_OID] {
            let error = check(system, "19500972-2397").unwrap_err();
            assert_eq!(
                error,
                IdentifierError::SamordningsnummerUnderPersonnummerSystem
            );
            assert!(error.to_string().contains(SAMORDNINGSNUMMER_SYSTEM));
        }
    }

    #[test]
    fn a_personnummer_under_the_samordningsnummer_system_is_refused_naming_the_mismatch() {
        for system in [SAMORDNINGSNUMMER_SYSTEM, SAMORDNINGSNUMMER_OID] {
            let error = check(system, "19121212-1212").unwrap_err();
            assert_eq!(
                error,
                IdentifierError::PersonnummerUnderSamordningsnummerSystem
            );
            assert!(error.to_string().contains(PERSONNUMMER_SYSTEM));
        }
    }

    #[test]
    fn an_invalid_number_under_a_national_system_is_refused_with_the_failed_check() {
        let error = check(PERSONNUMMER_SYSTEM, "19121212-1213").unwrap_err();
        assert_eq!(
            error,
            IdentifierError::Personnummer(NationalIdError::CheckDigit)
        );
        assert!(
            error
                .to_string()
                .starts_with("invalid personnummer: the check digit")
        );

        let error = check(SAMORDNINGSNUMMER_OID, "19500290-2397").unwrap_err();
        assert_eq!(
            error,
            IdentifierError::Samordningsnummer(NationalIdError::NonexistentDate {
                month: 2,
                day: 30
            })
        );
    }

    #[test]
    fn error_messages_never_contain_the_value() {
        for (system, value) in [
            (PERSONNUMMER_SYSTEM, "19330115-4683"),
            (PERSONNUMMER_SYSTEM, "19500972-2397"),
            (SAMORDNINGSNUMMER_SYSTEM, "19330115-4682"),
            (NATIONELLT_RESERVNUMMER_SYSTEM, "19330115 AB12"),
        ] {
            let message = check(system, value).unwrap_err().to_string();
            assert!(!message.contains(value), "{message}");
            assert!(!message.contains("19330115"), "{message}");
            assert!(!message.contains("2397"), "{message}");
        }
    }

    #[test]
    fn the_national_reservnummer_system_gives_a_reservnummer() {
        let id = check(NATIONELLT_RESERVNUMMER_SYSTEM, "19500101-AB12")
            .unwrap()
            .unwrap();
        assert!(matches!(id, PatientIdentifier::Reserv { .. }));
        assert_eq!(id.canonical_system(), NATIONELLT_RESERVNUMMER_SYSTEM);
        assert_eq!(id.canonical_value(), "19500101-AB12");
    }

    #[test]
    fn a_regional_reservnummer_system_keeps_its_own_system() {
        for system in [
            "https://region.example.se/identifier/reservnummer",
            "http://region.example.se/fhir/lokaltReservnummer",
            "http://region.example.se/ReservNummer",
            REGION_STOCKHOLM_RESERVNUMMER_OID,
        ] {
            assert_eq!(
                canonical_pair(system, " 991234567890 "),
                (system.to_owned(), "991234567890".to_owned())
            );
        }
    }

    #[test]
    fn an_invalid_reservnummer_under_a_reservnummer_system_is_refused() {
        assert_eq!(
            check(NATIONELLT_RESERVNUMMER_SYSTEM, ""),
            Err(IdentifierError::Reservnummer(ReservnummerError::Empty))
        );
        assert!(matches!(
            check("https://region.example.se/reservnummer", "99 12"),
            Err(IdentifierError::Reservnummer(
                ReservnummerError::InvalidCharacter { position: 3, .. }
            ))
        ));
    }

    #[test]
    fn systems_navet_does_not_check_are_passed_over() {
        for system in [
            "http://example.org/mrn",
            HSA_ID_SYSTEM,
            "urn:oid:2.16.578.1.12.4.1.4.1",
            "",
            // A different URI: systems are case-sensitive.
            "http://electronichealth.se/identifier/Personnummer",
            // No path segment to end in "reservnummer", and not http(s).
            "http://reservnummer",
            "urn:reservnummer",
        ] {
            assert_eq!(check(system, "not checked"), Ok(None), "{system}");
        }
    }

    #[test]
    fn from_fhir_uses_todays_date() {
        let id = from_fhir(PERSONNUMMER_OID, "121212+1212").unwrap().unwrap();
        assert_eq!(id.canonical_value(), "191212121212");
    }
}
