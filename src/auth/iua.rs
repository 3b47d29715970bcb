//! The acting user, carried the way IHE IUA carries it: the JWT extension `extensions.ihe_iua` (IHE ITI
//! Technical Framework, Internet User Authorization, Rev. 2.x, "JWT IUA extension"), with the plain-string
//! values `spec/auth.md` v1 fixes:
//!
//! ```json
//! "extensions": {"ihe_iua": {"subject_id": "SE2321000255-P0101", "subject_name": "…",
//!   "subject_role": "SSK", "subject_organization_id": "SE2321000255-MTN01", "purpose_of_use": "TREAT"}}
//! ```
//!
//! The access log the law requires (Patientdatalagen 2008:355 ch. 4 §3, HSLF-FS 2016:40) names the user, the
//! care unit of the current commission and the purpose, so all three are checked here once: the user's
//! HSA-id is well-formed, the role is one of [`Role`], the care unit is an HSA-id that belongs to the client's
//! principal, and the purpose is one of [`PurposeOfUse`]. Other IUA members (`subject_organization`,
//! `home_community_id`, `person_id`, …) are ignored.

use serde::{Deserialize, Serialize};

use crate::auth::principal::Principal;
use crate::domain::{HsaId, HsaIdError};

/// The professional role of the acting user, as short codes. The list is navet's (v1): the roles of the
/// care teams in DESIGN.md plus the common allied roles, and `ANNAN` for everyone else (for example the
/// log reviewers of an auditor principal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// LAK: läkare (physician).
    Lak,
    /// SSK: sjuksköterska (registered nurse).
    Ssk,
    /// KUR: kurator (medical social worker).
    Kur,
    /// SEK: sekreterare / medicinsk sekreterare.
    Sek,
    /// USK: undersköterska (assistant nurse).
    Usk,
    /// FYS: fysioterapeut.
    Fys,
    /// ARB: arbetsterapeut (occupational therapist).
    Arb,
    /// ANNAN: another role, e.g. a log reviewer (loggranskare).
    Annan,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Lak,
        Role::Ssk,
        Role::Kur,
        Role::Sek,
        Role::Usk,
        Role::Fys,
        Role::Arb,
        Role::Annan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lak => "LAK",
            Role::Ssk => "SSK",
            Role::Kur => "KUR",
            Role::Sek => "SEK",
            Role::Usk => "USK",
            Role::Fys => "FYS",
            Role::Arb => "ARB",
            Role::Annan => "ANNAN",
        }
    }

    /// Parses a role code; codes are case-insensitive and surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Role, IuaError> {
        let code = s.trim();
        if code.is_empty() {
            return Err(IuaError::EmptyRole);
        }
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(code))
            .ok_or_else(|| IuaError::UnknownRole(code.chars().take(16).collect()))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the user acts (HL7 v3 PurposeOfUse codes, the subset `spec/auth.md` allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurposeOfUse {
    /// TREAT: treatment.
    Treat,
    /// ETREAT: emergency treatment; may pass consent and blocks and is flagged in the log for review.
    Etreat,
    /// HOPERAT: healthcare operations, here audit work (loggkontroll).
    Hoperat,
}

impl PurposeOfUse {
    pub fn as_str(self) -> &'static str {
        match self {
            PurposeOfUse::Treat => "TREAT",
            PurposeOfUse::Etreat => "ETREAT",
            PurposeOfUse::Hoperat => "HOPERAT",
        }
    }

    pub fn parse(s: &str) -> Result<PurposeOfUse, IuaError> {
        match s.trim() {
            "TREAT" => Ok(PurposeOfUse::Treat),
            "ETREAT" => Ok(PurposeOfUse::Etreat),
            "HOPERAT" => Ok(PurposeOfUse::Hoperat),
            other => Err(IuaError::UnknownPurpose(other.chars().take(16).collect())),
        }
    }
}

impl std::str::FromStr for PurposeOfUse {
    type Err = IuaError;

    fn from_str(s: &str) -> Result<Self, IuaError> {
        PurposeOfUse::parse(s)
    }
}

impl std::fmt::Display for PurposeOfUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wire form of `extensions.ihe_iua`, as clients send it and as navet's access tokens carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActingUserClaims {
    pub subject_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_name: Option<String>,
    pub subject_role: String,
    pub subject_organization_id: String,
    pub purpose_of_use: String,
}

/// The `extensions` member of an assertion or access token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Extensions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ihe_iua: Option<ActingUserClaims>,
}

/// Why the user extension was refused. Messages never repeat the user's HSA-id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IuaError {
    #[error("extensions.ihe_iua is malformed: {0}")]
    Malformed(String),
    #[error("extensions.ihe_iua.subject_id is not an HSA-id: {0}")]
    SubjectId(HsaIdError),
    #[error(
        "extensions.ihe_iua.subject_name is longer than 200 characters or holds control characters"
    )]
    SubjectName,
    #[error("extensions.ihe_iua.subject_role is empty")]
    EmptyRole,
    #[error(
        "extensions.ihe_iua.subject_role {0:?} is not a known role (LAK, SSK, KUR, SEK, USK, FYS, ARB, ANNAN)"
    )]
    UnknownRole(String),
    #[error("extensions.ihe_iua.subject_organization_id is not an HSA-id: {0}")]
    CareUnit(HsaIdError),
    #[error(
        "extensions.ihe_iua.subject_organization_id {care_unit} is not a care unit of the client's principal \
         {principal}"
    )]
    CareUnitOfAnotherPrincipal { care_unit: HsaId, principal: HsaId },
    #[error("extensions.ihe_iua.purpose_of_use {0:?} is not TREAT, ETREAT or HOPERAT")]
    UnknownPurpose(String),
    #[error(
        "extensions.ihe_iua.subject_id holds no active PractitionerRole at care unit {care_unit} in navet's \
         directory"
    )]
    NotInDirectory { care_unit: HsaId },
}

impl IuaError {
    /// Whether the extension was well-formed but names something the client may not claim (a care unit of
    /// another principal, a user without a role there): RFC 6749 `invalid_grant` rather than
    /// `invalid_request`.
    pub fn is_authorization_failure(&self) -> bool {
        matches!(
            self,
            IuaError::CareUnitOfAnotherPrincipal { .. } | IuaError::NotInDirectory { .. }
        )
    }
}

/// A checked acting user. Its `Debug` leaves out the user's HSA-id and name, so logging a caller by
/// accident does not log who the user is.
#[derive(Clone, PartialEq, Eq)]
pub struct ActingUser {
    pub hsa_id: HsaId,
    pub name: Option<String>,
    pub role: Role,
    /// The care unit (vårdenhet) of the current commission; belongs to the client's principal.
    pub care_unit: HsaId,
    pub purpose: PurposeOfUse,
}

impl std::fmt::Debug for ActingUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActingUser")
            .field("hsa_id", &"[redacted]")
            .field("role", &self.role)
            .field("care_unit", &self.care_unit)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl ActingUser {
    /// Parses the raw `extensions` value of an assertion or access token. `None` when there is no
    /// `ihe_iua` member.
    pub fn from_extensions(
        extensions: Option<&serde_json::Value>,
        principal: &Principal,
    ) -> Result<Option<ActingUser>, IuaError> {
        let Some(iua) = extensions.and_then(|e| e.get("ihe_iua")) else {
            return Ok(None);
        };
        let claims =
            ActingUserClaims::deserialize(iua).map_err(|e| IuaError::Malformed(e.to_string()))?;
        ActingUser::parse(&claims, principal).map(Some)
    }

    /// Checks the claims against the client's principal.
    pub fn parse(claims: &ActingUserClaims, principal: &Principal) -> Result<ActingUser, IuaError> {
        let hsa_id = HsaId::parse(&claims.subject_id).map_err(IuaError::SubjectId)?;
        let name = match claims.subject_name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) if n.chars().count() > 200 || n.chars().any(char::is_control) => {
                return Err(IuaError::SubjectName);
            }
            Some(n) => Some(n.to_owned()),
        };
        let role = Role::parse(&claims.subject_role)?;
        let care_unit =
            HsaId::parse(&claims.subject_organization_id).map_err(IuaError::CareUnit)?;
        let purpose = PurposeOfUse::parse(&claims.purpose_of_use)?;
        if !principal.has_unit(&care_unit) {
            return Err(IuaError::CareUnitOfAnotherPrincipal {
                care_unit,
                principal: principal.hsa_id.clone(),
            });
        }
        Ok(ActingUser {
            hsa_id,
            name,
            role,
            care_unit,
            purpose,
        })
    }

    /// The wire form, for navet's access token.
    pub fn to_claims(&self) -> ActingUserClaims {
        ActingUserClaims {
            subject_id: self.hsa_id.to_string(),
            subject_name: self.name.clone(),
            subject_role: self.role.as_str().to_owned(),
            subject_organization_id: self.care_unit.to_string(),
            purpose_of_use: self.purpose.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::PrincipalKind;

    fn mtn() -> Principal {
        Principal {
            hsa_id: HsaId::parse("SE2321000255-MTN01").unwrap(),
            kind: PrincipalKind::Mtn,
            name: "MTN Kristianstad".into(),
            municipalities: vec!["1290".into()],
            units: vec![],
        }
    }

    fn claims() -> ActingUserClaims {
        ActingUserClaims {
            subject_id: "SE2321000255-P0101".into(),
            subject_name: Some("Sara Sjuksköterska".into()),
            subject_role: "SSK".into(),
            subject_organization_id: "SE2321000255-MTN01".into(),
            purpose_of_use: "TREAT".into(),
        }
    }

    #[test]
    fn a_well_formed_user_of_the_principals_own_unit_is_accepted() {
        let user = ActingUser::parse(&claims(), &mtn()).unwrap();
        assert_eq!(user.role, Role::Ssk);
        assert_eq!(user.purpose, PurposeOfUse::Treat);
        assert_eq!(user.care_unit.as_str(), "SE2321000255-MTN01");
        assert_eq!(user.to_claims(), claims());
    }

    #[test]
    fn a_care_unit_of_another_principal_is_refused_as_an_authorization_failure() {
        let mut c = claims();
        c.subject_organization_id = "SE2321000255-MTN02".into();
        let err = ActingUser::parse(&c, &mtn()).unwrap_err();
        assert!(matches!(err, IuaError::CareUnitOfAnotherPrincipal { .. }));
        assert!(err.is_authorization_failure());
    }

    #[test]
    fn a_malformed_user_hsa_id_is_refused_without_repeating_it() {
        let mut c = claims();
        c.subject_id = "19121212-1212".into();
        let err = ActingUser::parse(&c, &mtn()).unwrap_err();
        assert!(matches!(err, IuaError::SubjectId(_)));
        assert!(!err.to_string().contains("19121212"));
    }

    #[test]
    fn empty_and_unknown_roles_are_refused() {
        let mut c = claims();
        c.subject_role = " ".into();
        assert_eq!(
            ActingUser::parse(&c, &mtn()).unwrap_err(),
            IuaError::EmptyRole
        );
        c.subject_role = "CHEF".into();
        assert!(matches!(
            ActingUser::parse(&c, &mtn()),
            Err(IuaError::UnknownRole(_))
        ));
        c.subject_role = "lak".into();
        assert_eq!(ActingUser::parse(&c, &mtn()).unwrap().role, Role::Lak);
    }

    #[test]
    fn every_purpose_of_use_is_accepted_and_others_refused() {
        for (code, purpose) in [
            ("TREAT", PurposeOfUse::Treat),
            ("ETREAT", PurposeOfUse::Etreat),
            ("HOPERAT", PurposeOfUse::Hoperat),
        ] {
            let mut c = claims();
            c.purpose_of_use = code.into();
            assert_eq!(ActingUser::parse(&c, &mtn()).unwrap().purpose, purpose);
        }
        let mut c = claims();
        c.purpose_of_use = "PUBHLTH".into();
        assert!(matches!(
            ActingUser::parse(&c, &mtn()),
            Err(IuaError::UnknownPurpose(_))
        ));
    }

    #[test]
    fn a_missing_member_in_the_extension_is_malformed() {
        let ext = serde_json::json!({"ihe_iua": {"subject_id": "SE2321000255-P0101"}});
        assert!(matches!(
            ActingUser::from_extensions(Some(&ext), &mtn()),
            Err(IuaError::Malformed(_))
        ));
        assert_eq!(ActingUser::from_extensions(None, &mtn()), Ok(None));
        let other = serde_json::json!({"something_else": {}});
        assert_eq!(ActingUser::from_extensions(Some(&other), &mtn()), Ok(None));
    }
}
