//! SVPL/SIP XML messages (spec/svpl-messages.md, version 1): the care-planning messages municipal systems and
//! the region exchange (Lag 2017:612, HSL 16 kap. 4 §), in and out.
//!
//! # Layout
//! - [`xml`]: an element tree over quick-xml; refuses DTDs, entities, other encodings and namespaces.
//! - [`mapping`]: the declarative mapping in `mappings/svpl/` (element paths, code maps), checked at start-up.
//! - [`message`]: the envelope, the one enum of message types, reading with every problem as a `Fel`.
//! - [`messages`]: one file per message type: read, write, translate.
//! - [`translate`]: the pure translation to FHIR (ids, the case's resources as input, no I/O).
//! - [`patient`]: the Patient made for a patient navet does not know yet.
//! - [`kvittens`]: receipts and `Fel` codes.
//! - [`receive`]: one inbound message in one transaction: checks, case, writes, the kept original, the log.
//! - [`outbound`]: the message a FHIR change sends, enqueued with the change; [`delivery`]: the receiver's
//!   `Kvittens`.

pub mod delivery;
pub mod kvittens;
pub mod mapping;
pub mod message;
pub mod messages;
pub mod outbound;
pub mod patient;
pub mod receive;
pub mod translate;
pub mod xml;

use std::collections::BTreeSet;

use mapping::Mapping;

/// The `format` of kept SVPL messages (store/inbound.rs).
pub const FORMAT: &str = "svpl";
/// spec "Transport": maximum size 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// `Content-Type` of every SVPL answer.
pub const XML_CONTENT_TYPE: &str = "application/xml; charset=utf-8";

/// What SVPL handling needs at run time: the checked mapping and the HSA-ids navet knows (principals and
/// their care units, from the configuration).
#[derive(Debug, Clone)]
pub struct SvplContext {
    pub mapping: Mapping,
    known: BTreeSet<String>,
}

impl SvplContext {
    pub fn new(mapping: Mapping, known: impl IntoIterator<Item = String>) -> Self {
        SvplContext {
            mapping,
            known: known.into_iter().collect(),
        }
    }

    /// The context for the configured principals.
    pub fn for_principals(
        mapping: Mapping,
        principals: &[std::sync::Arc<crate::auth::Principal>],
    ) -> Self {
        let known = principals.iter().flat_map(|p| {
            std::iter::once(p.hsa_id.to_string()).chain(p.units.iter().map(|u| u.to_string()))
        });
        SvplContext::new(mapping, known)
    }

    /// Whether `hsa` is a principal or care unit navet knows.
    pub fn knows(&self, hsa: &str) -> bool {
        self.known.contains(hsa)
    }
}

/// `[svpl]` in navet.toml: `mappings_dir` replaces the embedded `mappings/svpl/` files.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SvplSection {
    pub mappings_dir: Option<std::path::PathBuf>,
}

/// Loads the mapping `section` names (relative to `config_dir`), or the embedded one; every problem at once.
pub fn load_mapping(
    section: &SvplSection,
    config_dir: Option<&std::path::Path>,
) -> Result<Mapping, String> {
    let result = match &section.mappings_dir {
        None => Mapping::build(mapping::EMBEDDED_ELEMENTS, mapping::EMBEDDED_CODES),
        Some(dir) => {
            let dir = match config_dir {
                Some(base) if dir.is_relative() => base.join(dir),
                _ => dir.clone(),
            };
            Mapping::load(&dir)
        }
    };
    result.map_err(|errors| format!("SVPL mapping errors:\n  - {}", errors.join("\n  - ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mappings_dir_is_read_relative_to_the_configuration_and_a_missing_one_is_named() {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let section = SvplSection {
            mappings_dir: Some("mappings/svpl".into()),
        };
        assert!(load_mapping(&section, Some(here)).is_ok());
        let missing = SvplSection {
            mappings_dir: Some("mappings/nowhere".into()),
        };
        let e = load_mapping(&missing, Some(here)).unwrap_err();
        assert!(
            e.contains("nowhere/elements.toml") && e.contains("nowhere/codes.toml"),
            "{e}"
        );
    }
}
