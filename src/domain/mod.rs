//! Swedish identifiers, parsed once at the edge ("parse, don't validate").
//!
//! Each type has private fields and is built only by `parse` (also `FromStr` and `TryFrom<&str>`),
//! so holding one means the checks have passed. Each concern has its own `thiserror` enum whose
//! messages name the check that failed, since they reach FHIR OperationOutcome and SVPL `Fel`
//! texts; none of them repeats a patient's identity number, which is personal data.
//!
//! - [`NationalId`]: personnummer and samordningsnummer (Skatteverket SKV 704).
//! - [`Reservnummer`]: a region's temporary patient number.
//! - [`HsaId`]: the HSA directory's id for organisations, units and staff.
//! - [`PatientIdentifier`] and [`from_fhir`]: a FHIR `Identifier` system/value to the right type,
//!   with HL7 Sweden's identifier systems as constants.

pub mod hsa_id;
pub mod patient_identifier;
pub mod personnummer;
pub mod reservnummer;

pub use hsa_id::{HSA_ID_SYSTEM, HsaId, HsaIdError};
pub use patient_identifier::{
    IdentifierError, NATIONELLT_RESERVNUMMER_SYSTEM, PERSONNUMMER_OID, PERSONNUMMER_SYSTEM,
    PatientIdentifier, REGION_STOCKHOLM_RESERVNUMMER_OID, SAMORDNINGSNUMMER_OID,
    SAMORDNINGSNUMMER_SYSTEM, from_fhir, from_fhir_at, is_reservnummer_system,
};
pub use personnummer::{NationalId, NationalIdError, NationalIdKind};
pub use reservnummer::{Reservnummer, ReservnummerError};
