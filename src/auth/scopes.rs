//! SMART on FHIR scopes for backend services (SMART App Launch 2.x, "Scopes for requesting clinical data").
//!
//! Only the `system/` context exists for navet's clients (Backend Services has no user or patient launch
//! context). Accepted forms:
//! - SMART v2: `system/<Type|*>.<permissions>`, permissions a non-empty subset of `cruds` written in that
//!   order (`c` create, `r` read, `u` update, `d` delete, `s` search);
//! - SMART v1, mapped to v2 as the v2 specification does: `.read` = `.rs`, `.write` = `.cud`, `.*` = `.cruds`.
//!
//! v2 query suffixes (`system/Observation.rs?category=…`) are refused rather than silently widened to the
//! whole type.
//!
//! # The intersection rule (what a client is granted)
//! granted = requested ∩ allowed, computed pairwise: for each requested scope R and allowed scope A whose
//! resource types overlap (`*` overlaps every type, a type overlaps itself), the grant holds the narrower
//! resource type and the permissions both have. So, for every resource type T and interaction I,
//! `granted.permits(T, I) == requested.permits(T, I) && allowed.permits(T, I)` — nothing more, nothing less.
//! Example: requested `system/*.cruds` against allowed `system/Patient.rs system/AuditEvent.rs` grants
//! `system/AuditEvent.rs system/Patient.rs`. A request that grants nothing is refused (`invalid_scope`);
//! a request that is narrowed is answered with the granted scope (RFC 6749 §3.3 and §5.1).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// One FHIR REST interaction a scope permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    const ALL: [Interaction; 5] = [
        Interaction::Create,
        Interaction::Read,
        Interaction::Update,
        Interaction::Delete,
        Interaction::Search,
    ];

    fn bit(self) -> u8 {
        match self {
            Interaction::Create => 1,
            Interaction::Read => 2,
            Interaction::Update => 4,
            Interaction::Delete => 8,
            Interaction::Search => 16,
        }
    }

    fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interaction::Create => "create",
            Interaction::Read => "read",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
            Interaction::Search => "search",
        }
    }
}

impl fmt::Display for Interaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of interactions, as the `cruds` letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const ALL: Permissions = Permissions(31);

    pub fn contains(self, interaction: Interaction) -> bool {
        self.0 & interaction.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn and(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    fn or(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    fn is_subset_of(self, other: Permissions) -> bool {
        self.0 & !other.0 == 0
    }

    fn of(interactions: &[Interaction]) -> Permissions {
        Permissions(interactions.iter().fold(0, |acc, i| acc | i.bit()))
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in Interaction::ALL {
            if self.contains(i) {
                write!(f, "{}", i.letter())?;
            }
        }
        Ok(())
    }
}

/// The resource part of a scope. `All` sorts first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceScope {
    All,
    Type(Arc<str>),
}

impl ResourceScope {
    fn matches(&self, resource_type: &str) -> bool {
        match self {
            ResourceScope::All => true,
            ResourceScope::Type(t) => &**t == resource_type,
        }
    }

    /// The overlap of two resource parts: the narrower one, or none.
    fn overlap(&self, other: &ResourceScope) -> Option<ResourceScope> {
        match (self, other) {
            (ResourceScope::All, o) | (o, ResourceScope::All) => Some(o.clone()),
            (ResourceScope::Type(a), ResourceScope::Type(b)) if a == b => Some(self.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceScope::All => f.write_str("*"),
            ResourceScope::Type(t) => f.write_str(t),
        }
    }
}

/// One `system/` scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    resource: ResourceScope,
    permissions: Permissions,
}

impl Scope {
    pub fn resource(&self) -> &ResourceScope {
        &self.resource
    }

    pub fn permissions(&self) -> Permissions {
        self.permissions
    }
}

/// Why a scope string was refused; every message names the offending scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("no scope was given")]
    Empty,
    #[error("more than {MAX_SCOPES} scopes were given")]
    TooMany,
    #[error(
        "scope {0:?} is not a SMART system scope; navet's clients use system/<Type|*>.<cruds> \
         (Backend Services has no user/ or patient/ context)"
    )]
    NotSystem(String),
    #[error("scope {0:?} has no '.' between the resource type and the permissions")]
    NoPermissions(String),
    #[error("scope {0:?} does not name a FHIR resource type or '*'")]
    ResourceType(String),
    #[error(
        "scope {0:?}: permissions must be a non-empty subset of \"cruds\" in that order, or the SMART v1 \
         read, write or *"
    )]
    Permissions(String),
    #[error("scope {0:?}: query parameters in scopes are not supported")]
    Query(String),
}

/// At most this many scopes in one request or client registration; bounds the pairwise intersection.
pub const MAX_SCOPES: usize = 64;

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, ScopeError> {
        let owned = || s.to_owned();
        let Some(rest) = s.strip_prefix("system/") else {
            return Err(ScopeError::NotSystem(owned()));
        };
        if rest.contains('?') {
            return Err(ScopeError::Query(owned()));
        }
        let (resource, permissions) = rest
            .rsplit_once('.')
            .ok_or_else(|| ScopeError::NoPermissions(owned()))?;
        let resource = match resource {
            "*" => ResourceScope::All,
            t if is_resource_type_name(t) => ResourceScope::Type(Arc::from(t)),
            _ => return Err(ScopeError::ResourceType(owned())),
        };
        let permissions =
            parse_permissions(permissions).ok_or_else(|| ScopeError::Permissions(owned()))?;
        Ok(Scope {
            resource,
            permissions,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "system/{}.{}", self.resource, self.permissions)
    }
}

/// FHIR resource type names are upper camel case ASCII letters (FHIR R4 4.0.1 §2.1.0.1 naming rules).
fn is_resource_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphabetic())
}

fn parse_permissions(s: &str) -> Option<Permissions> {
    use Interaction::*;
    match s {
        // SMART v1 → v2 (SMART App Launch 2.x, "Scopes for requesting clinical data", v1 compatibility).
        "read" => return Some(Permissions::of(&[Read, Search])),
        "write" => return Some(Permissions::of(&[Create, Update, Delete])),
        "*" => return Some(Permissions::ALL),
        _ => {}
    }
    if s.is_empty() {
        return None;
    }
    let mut permissions = Permissions::default();
    let mut next = 0;
    for c in s.chars() {
        let position = Interaction::ALL[next..]
            .iter()
            .position(|i| i.letter() == c)?;
        let interaction = Interaction::ALL[next + position];
        permissions = permissions.or(Permissions::of(&[interaction]));
        next += position + 1;
    }
    Some(permissions)
}

/// A normalised set of scopes: one entry per resource part, and no type entry that `*` already covers.
/// Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Arc<[Scope]>);

impl Scopes {
    /// Parses a space-separated scope list (RFC 6749 §3.3). Every scope must parse.
    pub fn parse(list: &str) -> Result<Self, ScopeError> {
        let items: Vec<&str> = list.split(' ').filter(|s| !s.is_empty()).collect();
        Self::parse_each(&items)
    }

    /// Parses scopes given one by one (configuration).
    pub fn parse_each<S: AsRef<str>>(items: &[S]) -> Result<Self, ScopeError> {
        if items.is_empty() {
            return Err(ScopeError::Empty);
        }
        if items.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        let scopes = items
            .iter()
            .map(|s| s.as_ref().parse::<Scope>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::normalise(scopes))
    }

    fn normalise(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut merged: BTreeMap<ResourceScope, Permissions> = BTreeMap::new();
        for scope in scopes {
            let entry = merged.entry(scope.resource).or_default();
            *entry = entry.or(scope.permissions);
        }
        let wildcard = merged.get(&ResourceScope::All).copied().unwrap_or_default();
        let list: Vec<Scope> = merged
            .into_iter()
            .filter(|(resource, permissions)| {
                *resource == ResourceScope::All || !permissions.is_subset_of(wildcard)
            })
            .map(|(resource, permissions)| Scope {
                resource,
                permissions,
            })
            .collect();
        Scopes(list.into())
    }

    /// Whether these scopes allow `interaction` on `resource_type`.
    pub fn permits(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.0
            .iter()
            .any(|s| s.permissions.contains(interaction) && s.resource.matches(resource_type))
    }

    /// Whether these scopes allow `interaction` on every resource type (`system/*.…`): what system-wide
    /// operations such as the system history need.
    pub fn permits_every_type(&self, interaction: Interaction) -> bool {
        self.0
            .iter()
            .any(|s| s.permissions.contains(interaction) && s.resource == ResourceScope::All)
    }

    /// `self ∩ allowed`, by the rule in the module documentation.
    pub fn intersect(&self, allowed: &Scopes) -> Scopes {
        let mut out = Vec::new();
        for requested in self.0.iter() {
            for permitted in allowed.0.iter() {
                let Some(resource) = requested.resource.overlap(&permitted.resource) else {
                    continue;
                };
                let permissions = requested.permissions.and(permitted.permissions);
                if !permissions.is_empty() {
                    out.push(Scope {
                        resource,
                        permissions,
                    });
                }
            }
        }
        Self::normalise(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
}

impl fmt::Display for Scopes {
    /// The space-separated v2 form, as the token response's and the access token's `scope`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Interaction::*;
    use super::*;

    fn scopes(s: &str) -> Scopes {
        Scopes::parse(s).unwrap()
    }

    #[test]
    fn a_v2_scope_permits_exactly_its_letters() {
        let s = scopes("system/Patient.rs");
        assert!(s.permits("Patient", Read));
        assert!(s.permits("Patient", Search));
        assert!(!s.permits("Patient", Create));
        assert!(!s.permits("Patient", Update));
        assert!(!s.permits("Patient", Delete));
        assert!(!s.permits("Observation", Read));
    }

    #[test]
    fn the_wildcard_type_covers_every_resource_type() {
        let s = scopes("system/*.cruds");
        for i in Interaction::ALL {
            assert!(s.permits("ServiceRequest", i));
            assert!(s.permits("AuditEvent", i));
        }
    }

    #[test]
    fn v1_scopes_are_mapped_to_v2() {
        assert_eq!(
            scopes("system/Patient.read").to_string(),
            "system/Patient.rs"
        );
        assert_eq!(
            scopes("system/Patient.write").to_string(),
            "system/Patient.cud"
        );
        assert_eq!(
            scopes("system/Patient.*").to_string(),
            "system/Patient.cruds"
        );
        assert_eq!(scopes("system/*.read").to_string(), "system/*.rs");
    }

    #[test]
    fn permissions_out_of_order_duplicated_or_unknown_are_refused() {
        for bad in [
            "system/Patient.sr",
            "system/Patient.rr",
            "system/Patient.x",
            "system/Patient.",
        ] {
            assert!(
                matches!(Scopes::parse(bad), Err(ScopeError::Permissions(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_and_patient_contexts_and_other_scopes_are_refused() {
        for bad in ["user/Patient.rs", "patient/*.rs", "openid", "launch"] {
            assert!(
                matches!(Scopes::parse(bad), Err(ScopeError::NotSystem(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn query_suffixes_and_bad_type_names_are_refused() {
        assert!(matches!(
            Scopes::parse("system/Observation.rs?category=vital-signs"),
            Err(ScopeError::Query(_))
        ));
        assert!(matches!(
            Scopes::parse("system/patient.rs"),
            Err(ScopeError::ResourceType(_))
        ));
        assert!(matches!(
            Scopes::parse("system/Patient"),
            Err(ScopeError::NoPermissions(_))
        ));
        assert_eq!(Scopes::parse("  "), Err(ScopeError::Empty));
    }

    #[test]
    fn scopes_for_the_same_type_are_merged_and_those_covered_by_the_wildcard_dropped() {
        assert_eq!(
            scopes(
                "system/Patient.r system/Patient.s system/*.rs system/Task.cruds system/Encounter.r"
            )
            .to_string(),
            "system/*.rs system/Task.cruds"
        );
    }

    #[test]
    fn a_wildcard_request_against_a_typed_allowance_grants_the_typed_allowance() {
        let granted = scopes("system/*.cruds").intersect(&scopes("system/Patient.rs"));
        assert_eq!(granted.to_string(), "system/Patient.rs");
    }

    #[test]
    fn a_typed_request_against_a_wildcard_allowance_grants_the_typed_request() {
        let granted = scopes("system/Task.cu").intersect(&scopes("system/*.cruds"));
        assert_eq!(granted.to_string(), "system/Task.cu");
    }

    #[test]
    fn permissions_are_intersected_letter_by_letter() {
        let granted =
            scopes("system/Patient.cruds").intersect(&scopes("system/Patient.rs system/*.r"));
        assert_eq!(granted.to_string(), "system/Patient.rs");
    }

    #[test]
    fn disjoint_requests_grant_nothing() {
        let granted = scopes("system/Patient.d").intersect(&scopes("system/Patient.rs"));
        assert!(granted.is_empty());
        let granted = scopes("system/Task.rs").intersect(&scopes("system/Patient.rs"));
        assert!(granted.is_empty());
    }

    #[test]
    fn the_intersection_permits_exactly_what_both_sides_permit() {
        let sides = [
            "system/*.cruds",
            "system/*.rs",
            "system/Patient.rs system/AuditEvent.rs",
            "system/Task.cu system/*.r",
            "system/Patient.d",
            "system/Patient.cruds system/Task.s",
        ];
        for a in sides {
            for b in sides {
                let (a, b) = (scopes(a), scopes(b));
                let granted = a.intersect(&b);
                for t in ["Patient", "Task", "AuditEvent", "Encounter"] {
                    for i in Interaction::ALL {
                        assert_eq!(
                            granted.permits(t, i),
                            a.permits(t, i) && b.permits(t, i),
                            "{a} ∩ {b} on {t} {i}"
                        );
                    }
                }
            }
        }
    }
}
