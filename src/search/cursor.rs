//! Paging cursors (`_cursor`): opaque to the client, signed by navet, bound to the query and the caller.
//!
//! A cursor names a position, not only an offset: in the default order (newest first) the last resource of
//! the page (keyset paging, so a resource written during the walk never shifts a page or repeats an entry);
//! under `_sort`, an offset into the matches as they stood when the walk began (a snapshot instant: what is
//! written later is not in this walk). It is HMAC-SHA256-signed over the position, the request path, the
//! query (less `_cursor`) and the caller, so a client can neither forge a position nor replay a cursor with
//! another query or another caller's token: such a cursor is refused as "not one navet issued".
//!
//! The key is 32 random bytes kept in the store's settings (created at first start), so cursors survive a
//! restart and hold across nodes that share one database.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::store::{Actor, Store, StoreError};

/// The setting holding the key (hex).
const KEY_SETTING: &str = "search_cursor_key";
/// Longer cursors are refused before any decoding (navet's are under 200 characters).
const MAX_CURSOR_LEN: usize = 512;

/// A position in a result list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// After this resource in the default order (`lu_ms DESC, id ASC`).
    After { lu_ms: i64, id: String },
    /// `offset` matches into the list as of `snapshot_ms` (`_sort`, history).
    Offset { offset: usize, snapshot_ms: i64 },
}

impl Position {
    fn payload(&self) -> String {
        match self {
            Position::After { lu_ms, id } => format!("k:{lu_ms}:{id}"),
            Position::Offset {
                offset,
                snapshot_ms,
            } => format!("o:{offset}:{snapshot_ms}"),
        }
    }

    /// Parsing only: no slicing, no arithmetic on the untrusted text.
    fn parse(payload: &str) -> Option<Position> {
        let mut parts = payload.splitn(3, ':');
        let (kind, a, b) = (parts.next()?, parts.next()?, parts.next()?);
        match kind {
            "k" => {
                let id = b.to_owned();
                crate::search::index::is_valid_id(&id).then_some(())?;
                Some(Position::After {
                    lu_ms: a.parse().ok()?,
                    id,
                })
            }
            "o" => Some(Position::Offset {
                offset: a.parse().ok()?,
                snapshot_ms: b.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// The signing key. Shared, not copied: the application state holding it is cloned for every extractor of
/// every request, and copying an HMAC key copies its hashing contexts (measured: 6% of a cheap request).
#[derive(Clone)]
pub struct CursorKey(std::sync::Arc<hmac::Key>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        CursorKey(std::sync::Arc::new(hmac::Key::new(
            hmac::HMAC_SHA256,
            bytes,
        )))
    }

    /// A fresh random key (tests; the server keeps its key in the store, [`load_or_create`]).
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        // aws-lc's generator fails only if the OS has no entropy source at all; a zero key then still signs.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        Self::from_bytes(&bytes)
    }

    /// A cursor for `position` under `binding` ([`binding`]).
    pub fn mint(&self, binding: &str, position: &Position) -> String {
        let payload = position.payload();
        let tag = hmac::sign(&self.0, signed_text(binding, &payload).as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The position of a cursor navet minted under the same binding; `None` for anything else.
    pub fn open(&self, binding: &str, cursor: &str) -> Option<Position> {
        if cursor.len() > MAX_CURSOR_LEN {
            return None;
        }
        let (payload, tag) = cursor.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.0, signed_text(binding, &payload).as_bytes(), &tag).ok()?;
        Position::parse(&payload)
    }
}

fn signed_text(binding: &str, payload: &str) -> String {
    format!("navet-cursor-v1\n{binding}\n{payload}")
}

/// What a cursor is bound to: the request path, its parameters (less `_cursor`, in a canonical order) and
/// the caller (principal, client, user and what they may see).
pub fn binding(path: &str, pairs: &[(String, String)], actor: &Actor) -> String {
    let mut kept: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "_cursor").collect();
    kept.sort();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    format!(
        "{path}?{query}\n{}|{}|{}|{:?}",
        actor.principal,
        actor.client_id.as_deref().unwrap_or(""),
        actor.user.as_deref().unwrap_or(""),
        actor.visibility
    )
}

/// The store's cursor key, created on first use.
pub async fn load_or_create(store: &dyn Store) -> Result<CursorKey, StoreError> {
    if let Some(hex) = store.get_setting(KEY_SETTING).await?
        && let Some(bytes) = from_hex(&hex)
    {
        return Ok(CursorKey::from_bytes(&bytes));
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| StoreError::Open("no random source for the cursor key".into()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Two nodes starting at once: the first key written wins, and both read it back.
    let written = store
        .transact(&Actor::system(), move |tx| {
            if let Some(existing) = tx.setting(KEY_SETTING)? {
                return Ok(existing);
            }
            tx.set_setting(KEY_SETTING, &hex)?;
            Ok(hex)
        })
        .await
        .map_err(|e| StoreError::Open(format!("could not store the cursor key: {e}")))?;
    let bytes = from_hex(&written).ok_or_else(|| StoreError::Corrupt("cursor key".into()))?;
    Ok(CursorKey::from_bytes(&bytes))
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn actor(principal: &str) -> Actor {
        Actor {
            principal: principal.into(),
            client_id: Some("c1".into()),
            user: None,
            visibility: crate::fhir::visibility::Visibility::Everything,
            population_register: false,
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_cursor_opens_under_its_own_binding_only() {
        let key = CursorKey::random();
        let b = binding("/fhir/Task", &pairs(&[("status", "ready")]), &actor("SE1"));
        let position = Position::After {
            lu_ms: 1_700_000_000_123,
            id: "t-1".into(),
        };
        let cursor = key.mint(&b, &position);
        assert_eq!(key.open(&b, &cursor), Some(position));
        // Another query, another caller, another key: refused.
        let other_query = binding("/fhir/Task", &pairs(&[("status", "done")]), &actor("SE1"));
        let other_caller = binding("/fhir/Task", &pairs(&[("status", "ready")]), &actor("SE2"));
        assert_eq!(key.open(&other_query, &cursor), None);
        assert_eq!(key.open(&other_caller, &cursor), None);
        assert_eq!(CursorKey::random().open(&b, &cursor), None);
    }

    #[test]
    fn the_cursor_parameter_and_parameter_order_do_not_change_the_binding() {
        let a = binding(
            "/fhir/Task",
            &pairs(&[("a", "1"), ("b", "2"), ("_cursor", "x")]),
            &actor("SE1"),
        );
        let b = binding(
            "/fhir/Task",
            &pairs(&[("b", "2"), ("a", "1")]),
            &actor("SE1"),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn a_tampered_position_is_refused() {
        let key = CursorKey::random();
        let b = binding("/fhir/Task", &[], &actor("SE1"));
        let cursor = key.mint(
            &b,
            &Position::Offset {
                offset: 50,
                snapshot_ms: 1,
            },
        );
        let (_, tag) = cursor.split_once('.').expect("two parts");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("o:5000:1"));
        assert_eq!(key.open(&b, &forged), None);
        assert_eq!(key.open(&b, "bzM"), None, "the old bare offset form");
    }

    proptest! {
        #[test]
        fn arbitrary_cursor_text_never_panics_and_never_opens(text in ".{0,600}") {
            let key = CursorKey::random();
            let b = binding("/fhir/Patient", &[], &actor("SE1"));
            prop_assert_eq!(key.open(&b, &text), None);
        }

        #[test]
        fn arbitrary_signed_payloads_never_panic(payload in "[ko]:[-0-9a-z.:]{0,40}") {
            // Even a correctly signed payload is parsed without panicking.
            let _ = Position::parse(&payload);
        }
    }
}
