//! Referrals and ordinations for the mobile teams (spec/ordination.md v2): the rules an order is checked
//! against ([`rules`], from `profiles/ordination-rules.toml`), intake inside the write's transaction
//! ([`intake`]), deterministic visit planning ([`plan`]) and the work it creates ([`work`]: Tasks,
//! Communications, itACiH deliveries through the outbox).
//!
//! The FHIR write paths (single creates and updates, transactions, batches) call [`intake::after_writes`]
//! inside their store job, so an order, its plan, its Tasks and its outbox rows commit together or not at all.

pub mod intake;
pub mod plan;
pub mod rules;
pub mod work;

use crate::caremap::CareMap;
use rules::Rules;

/// What ordination needs at run time, loaded once at start-up and shared through the FHIR context.
#[derive(Debug, Clone)]
pub struct Ordination {
    pub rules: Rules,
    pub care: CareMap,
    /// The itACiH link, when configured: planned visits are enqueued for it.
    pub itacih: Option<crate::itacih::Link>,
    /// The configuration names a care map (`[caremap] file`): it is written to the store at start-up even
    /// without the demo seed (the embedded demo map is written with the demo seed only).
    pub care_map_configured: bool,
}

impl Ordination {
    /// The shipped rules and the demo care map, no itACiH link.
    pub fn demo() -> Self {
        Ordination {
            rules: Rules::embedded(),
            care: CareMap::demo(),
            itacih: None,
            care_map_configured: false,
        }
    }
}

/// Loads the rules, the care map (`[caremap] file`, else the demo region's) and the itACiH link; every
/// error goes to `errors`.
pub fn load(
    caremap: &crate::caremap::config::CareMapSection,
    itacih: &crate::itacih::ItacihSection,
    allow: &[crate::outbox::config::AllowRule],
    config_dir: Option<&std::path::Path>,
    errors: &mut Vec<String>,
) -> std::sync::Arc<Ordination> {
    let rules = Rules::embedded();
    let care = match &caremap.file {
        None => Some(CareMap::demo()),
        Some(path) => {
            let path = match config_dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.clone(),
            };
            match std::fs::read_to_string(&path) {
                Err(e) => {
                    errors.push(format!("caremap.file {}: {e}", path.display()));
                    None
                }
                Ok(text) => toml::from_str::<crate::caremap::CareMapConfig>(&text)
                    .map_err(|e| vec![format!("caremap.file {}: {e}", path.display())])
                    .and_then(|c| crate::caremap::config::build(&c, &rules))
                    .map_err(|mut e| errors.append(&mut e))
                    .ok(),
            }
        }
    };
    let care = care.unwrap_or_else(CareMap::demo);
    let itacih = crate::itacih::build(itacih, &care, allow, config_dir, errors);
    std::sync::Arc::new(Ordination {
        rules,
        care,
        itacih,
        care_map_configured: caremap.file.is_some(),
    })
}

/// Identifier system of the stable itACiH `externtId` on each visit's Task.
pub const EXTERNT_ID_SYSTEM: &str = "http://navet.example/identifier/itacih-externt-id";
/// Extension on a Task: the planned visit's number within its order.
pub const VISIT_NUMBER_EXTENSION: &str = "http://navet.example/StructureDefinition/visit-number";
/// Code system of a patient's main need (eligibility: MTN excludes psychiatric needs).
pub const MAIN_NEED_SYSTEM: &str = "http://navet.example/CodeSystem/main-need";
/// Code system of the clinical reason on an order (mapped per site to itACiH's kontaktorsak).
pub const REASON_SYSTEM: &str = "http://navet.example/CodeSystem/reason";
/// The municipality where the patient stays (on Patient), as the demo seed writes it.
pub const MUNICIPALITY_EXTENSION: &str = "http://navet.example/StructureDefinition/municipality";
