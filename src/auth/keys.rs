//! navet's own access-token signing keys: ECDSA P-256 (ES256), generated into the signing key directory on
//! first start, rotated on request, published at `GET /auth/jwks`.
//!
//! Why ES256 and not ES384: measured here (aws-lc-rs, 2 cores), an ES256 verify costs about a quarter of
//! an ES384 verify and a signature about a fifth, and verification runs on every API request that misses
//! the token cache. P-256 gives 128-bit security, ample for five-minute tokens.
//!
//! # Files
//! One PKCS#8 PEM file per key, `es256-<created unix seconds>-<tag>.key.pem`, created with mode 0600 (set
//! when the file is created, never a chmod afterwards) in a directory created with mode 0700. An operator
//! may provision keys the same way (for several nodes sharing one key, or from a secret store). Files that
//! do not follow the pattern are ignored. A key file that group or others may read or write is refused at
//! start (and by `navet rotate-key`) with the `chmod` that fixes it: navet cannot tell whether a key that
//! was open to others has leaked, so the operator decides (and rotates if it may have). PEM is read with
//! rustls' pki-types and written with the `pem` crate; signing and the JWK are jsonwebtoken's.
//!
//! # Rotation rule
//! The newest key (largest creation time) signs. Each older key was *rotated out* when its successor was
//! created: `rotated_at` = the successor's creation time. It stays in the verifying set and the JWKS until
//! `rotated_at + token_lifetime + LEEWAY_SECS`, the latest moment a token it signed can still be valid, and
//! is dropped after that (and its file deleted by the next rotation). So rotating never invalidates a token
//! that was valid, and a retired key never verifies anything new.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

use crate::auth::jws::VerifyingKey;

/// Clock leeway for navet's own tokens (several nodes' clocks may differ by this much).
pub const LEEWAY_SECS: i64 = 30;

const FILE_PREFIX: &str = "es256-";
const FILE_SUFFIX: &str = ".key.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot create the signing key directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the signing key directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read signing key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {path} is not a PKCS#8 EC P-256 private key in PEM: {reason}")]
    InvalidKey { path: PathBuf, reason: String },
    #[error(
        "signing key {path} is readable or writable by other users (mode {mode:o}); navet refuses to \
         use it. Run `chmod 600 {path}` and, if others may have read it, `navet rotate-key`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot write signing key {path}: {source}")]
    WriteKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating a signing key failed")]
    Generate,
    #[error("the signing key directory {0} has no key that is still valid and none could be made")]
    NoKey(PathBuf),
}

/// One ES256 key pair: jsonwebtoken's encoding key (PKCS#8) and the public key that verifies it.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    verifier: VerifyingKey,
    jwk: serde_json::Value,
    created_at: i64,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_pkcs8(pkcs8: &[u8], created_at: i64, path: Option<PathBuf>) -> Result<Self, String> {
        let encoding = EncodingKey::from_ec_der(pkcs8);
        // jsonwebtoken derives the public JWK from the private key; this also checks it is a P-256 key.
        let public = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| format!("not an EC P-256 key: {e}"))?;
        let verifier = VerifyingKey::es256(public.algorithm)?;
        let jwk = serde_json::to_value(verifier.jwk()).map_err(|e| e.to_string())?;
        Ok(SigningKey {
            kid: verifier.kid().to_owned(),
            jwk,
            encoding,
            verifier,
            created_at,
            path,
        })
    }

    /// A new key. Generation is aws-lc-rs's (jsonwebtoken generates no keys).
    fn generate(created_at: i64) -> Result<(Self, Vec<u8>), KeyError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyError::Generate)?;
        let der = pkcs8.as_ref().to_vec();
        let key = SigningKey::from_pkcs8(&der, created_at, None).map_err(|_| KeyError::Generate)?;
        Ok((key, der))
    }

    /// The RFC 7638 thumbprint, used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// What jsonwebtoken signs access tokens with.
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub(crate) fn verifier(&self) -> &VerifyingKey {
        &self.verifier
    }
}

/// A retired key and when it stops verifying.
#[derive(Debug)]
struct Retired {
    key: Arc<SigningKey>,
    verify_until: i64,
}

/// The signing key and the previous keys that still verify.
#[derive(Debug)]
pub struct KeyRing {
    current: Arc<SigningKey>,
    retired: Vec<Retired>,
}

impl KeyRing {
    /// Loads the keys in `dir`, generating the first key when there is none. `now` decides which older keys
    /// still verify (see the module's rotation rule).
    pub fn load_or_generate(
        dir: &Path,
        now: i64,
        token_lifetime: i64,
    ) -> Result<KeyRing, KeyError> {
        ensure_dir(dir)?;
        let mut keys = read_dir_keys(dir)?;
        if keys.is_empty() {
            write_new_key(dir, now)?;
            keys = read_dir_keys(dir)?;
        }
        Self::from_sorted(keys, now, token_lifetime).ok_or_else(|| KeyError::NoKey(dir.to_owned()))
    }

    /// Writes a new key into `dir`, which becomes the signing key; deletes key files whose verification
    /// window has closed; returns the new ring.
    pub fn rotate(dir: &Path, now: i64, token_lifetime: i64) -> Result<KeyRing, KeyError> {
        ensure_dir(dir)?;
        // A rotation in the same second as the last key creation gets the next second, so creation times
        // (and the rotation rule that hangs on them) stay strictly ordered.
        let newest = read_dir_keys(dir)?.last().map(|k| k.created_at);
        let created = newest.map_or(now, |n| now.max(n.saturating_add(1)));
        write_new_key(dir, created)?;
        let keys = read_dir_keys(dir)?;
        for (i, key) in keys.iter().enumerate() {
            let Some(successor) = keys.get(i + 1) else {
                continue;
            };
            if successor
                .created_at
                .saturating_add(token_lifetime)
                .saturating_add(LEEWAY_SECS)
                <= now
                && let Some(path) = &key.path
            {
                // Best effort: a file that cannot be deleted is simply ignored by the next load too.
                if let Err(e) = fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not delete a retired signing key");
                }
            }
        }
        Self::load_or_generate(dir, now, token_lifetime)
    }

    /// A ring with one fresh key that is never written anywhere: tests, and tools that only need a
    /// throwaway signer.
    pub fn ephemeral(now: i64) -> Result<KeyRing, KeyError> {
        let (key, _) = SigningKey::generate(now)?;
        Ok(KeyRing {
            current: Arc::new(key),
            retired: Vec::new(),
        })
    }

    fn from_sorted(keys: Vec<SigningKey>, now: i64, token_lifetime: i64) -> Option<KeyRing> {
        let mut keys: Vec<Arc<SigningKey>> = keys.into_iter().map(Arc::new).collect();
        let current = keys.pop()?;
        let mut retired = Vec::new();
        let mut successor_created = current.created_at;
        for key in keys.into_iter().rev() {
            let verify_until = successor_created
                .saturating_add(token_lifetime)
                .saturating_add(LEEWAY_SECS);
            successor_created = key.created_at;
            if verify_until > now {
                retired.push(Retired { key, verify_until });
            }
        }
        Some(KeyRing { current, retired })
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> &Arc<SigningKey> {
        &self.current
    }

    /// The key with this `kid` if it verifies at `now`.
    pub fn verifying_key(&self, kid: &str, now: i64) -> Option<&SigningKey> {
        if self.current.kid == kid {
            return Some(&self.current);
        }
        self.retired
            .iter()
            .find(|r| r.key.kid == kid && r.verify_until > now)
            .map(|r| &*r.key)
    }

    /// The JWKS (RFC 7517 §5) of every key that verifies at `now`, signing key first.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = std::iter::once(&self.current.jwk)
            .chain(
                self.retired
                    .iter()
                    .filter(|r| r.verify_until > now)
                    .map(|r| &r.key.jwk),
            )
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        warn_if_directory_open_to_others(dir);
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| KeyError::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

/// The creation time in a key file name, or `None` when the name is not a key file's.
fn created_at_of(file_name: &str) -> Option<i64> {
    let middle = file_name
        .strip_prefix(FILE_PREFIX)?
        .strip_suffix(FILE_SUFFIX)?;
    let (created, _tag) = middle.split_once('-')?;
    created.parse().ok()
}

/// Every key file in `dir`, oldest first.
fn read_dir_keys(dir: &Path) -> Result<Vec<SigningKey>, KeyError> {
    let read_dir_error = |source| KeyError::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let mut keys = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_dir_error)? {
        let entry = entry.map_err(read_dir_error)?;
        let name = entry.file_name();
        let Some(created_at) = name.to_str().and_then(created_at_of) else {
            continue;
        };
        let path = entry.path();
        refuse_if_open_to_others(&path)?;
        let text = fs::read(&path).map_err(|source| KeyError::ReadKey {
            path: path.clone(),
            source,
        })?;
        let invalid = |reason: String| KeyError::InvalidKey {
            path: path.clone(),
            reason,
        };
        let der = PrivatePkcs8KeyDer::from_pem_slice(&text)
            .map_err(|e| invalid(format!("no PRIVATE KEY PEM block: {e}")))?;
        keys.push(
            SigningKey::from_pkcs8(der.secret_pkcs8_der(), created_at, Some(path.clone()))
                .map_err(invalid)?,
        );
    }
    keys.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.path.cmp(&b.path))
    });
    Ok(keys)
}

fn write_new_key(dir: &Path, created_at: i64) -> Result<(), KeyError> {
    let (_, der) = SigningKey::generate(created_at)?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let path = dir.join(format!(
        "{FILE_PREFIX}{created_at}-{}{FILE_SUFFIX}",
        &tag[..8]
    ));
    let pem = pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    let write_error = |source| KeyError::WriteKey {
        path: path.clone(),
        source,
    };
    // Owner-only from the moment the file exists (mode given to open(2), not a chmod after writing), and
    // never over an existing file.
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(write_error)?;
    file.write_all(pem.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    tracing::info!(path = %path.display(), "generated a new access-token signing key");
    Ok(())
}

/// A key file that others may read (or write) is refused, not quietly fixed: navet cannot know whether it
/// was already copied, so the operator decides (chmod it, and rotate if it may have leaked). The check is
/// made before the file is read. The directory itself is only warned about: the files are the secrets.
fn refuse_if_open_to_others(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(|source| KeyError::ReadKey {
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn warn_if_directory_open_to_others(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(dir)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %dir.display(), "the signing key directory is open to other users; chmod 700 it");
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIME: i64 = 300;

    #[test]
    fn the_first_start_generates_one_key_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("auth/keys");
        let ring = KeyRing::load_or_generate(&keys_dir, 1_000, LIFETIME).unwrap();
        let files: Vec<_> = fs::read_dir(&keys_dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = files[0].as_ref().unwrap().path();
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(&keys_dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        assert_eq!(ring.jwks(1_000)["keys"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_restart_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap();
        let second = KeyRing::load_or_generate(dir.path(), 2_000, LIFETIME).unwrap();
        assert_eq!(first.signing_key().kid(), second.signing_key().kid());
    }

    #[test]
    fn after_rotation_the_new_key_signs_and_the_old_one_verifies_until_its_tokens_expired() {
        let dir = tempfile::tempdir().unwrap();
        let old = KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap();
        let old_kid = old.signing_key().kid().to_owned();
        let ring = KeyRing::rotate(dir.path(), 2_000, LIFETIME).unwrap();
        assert_ne!(ring.signing_key().kid(), old_kid);
        let kids = |ring: &KeyRing, now| -> Vec<String> {
            ring.jwks(now)["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            kids(&ring, 2_000),
            vec![ring.signing_key().kid().to_owned(), old_kid.clone()]
        );
        let last_second = 2_000 + LIFETIME + LEEWAY_SECS - 1;
        assert!(ring.verifying_key(&old_kid, last_second).is_some());
        assert!(ring.verifying_key(&old_kid, last_second + 1).is_none());
        assert_eq!(kids(&ring, last_second + 1).len(), 1);
        // A restart after the window no longer loads the old key at all.
        let later = KeyRing::load_or_generate(dir.path(), last_second + 1, LIFETIME).unwrap();
        assert!(later.verifying_key(&old_kid, last_second + 1).is_none());
    }

    #[test]
    fn a_rotation_deletes_key_files_whose_window_has_closed() {
        let dir = tempfile::tempdir().unwrap();
        KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap();
        KeyRing::rotate(dir.path(), 2_000, LIFETIME).unwrap();
        KeyRing::rotate(dir.path(), 10_000, LIFETIME).unwrap();
        // The first key's window closed at 2_330; the second's is open until 10_330.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn two_rotations_in_one_second_keep_creation_times_ordered() {
        let dir = tempfile::tempdir().unwrap();
        KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap();
        let a = KeyRing::rotate(dir.path(), 1_000, LIFETIME).unwrap();
        let b = KeyRing::rotate(dir.path(), 1_000, LIFETIME).unwrap();
        assert!(b.signing_key().created_at() > a.signing_key().created_at());
        assert_eq!(b.jwks(1_000)["keys"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_corrupt_key_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        write_owner_only(&dir.path().join("es256-5-abc.key.pem"), b"garbage");
        let err = KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap_err();
        assert!(matches!(err, KeyError::InvalidKey { .. }), "{err}");
        assert!(err.to_string().contains("es256-5-abc.key.pem"));
    }

    fn write_owner_only(path: &Path, bytes: &[u8]) {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(path).unwrap().write_all(bytes).unwrap();
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_rotated_key_is_owner_only_too() {
        let dir = tempfile::tempdir().unwrap();
        KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap();
        KeyRing::rotate(dir.path(), 2_000, LIFETIME).unwrap();
        let files: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2);
        for file in files {
            assert_eq!(mode_of(&file), 0o600, "{}", file.display());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_is_refused_with_the_fix_and_left_unchanged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap();
        let file = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        for loose in [0o644, 0o640, 0o604, 0o620] {
            fs::set_permissions(&file, fs::Permissions::from_mode(loose)).unwrap();
            let err = KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap_err();
            assert!(
                matches!(&err, KeyError::TooOpen { path, mode } if *path == file && *mode == loose),
                "{err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
            // Refused, not "fixed" behind the operator's back.
            assert_eq!(mode_of(&file), loose);
            // A rotation refuses too (it reads the existing keys first).
            assert!(matches!(
                KeyRing::rotate(dir.path(), 2_000, LIFETIME).unwrap_err(),
                KeyError::TooOpen { .. }
            ));
        }
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        KeyRing::load_or_generate(dir.path(), 1_000, LIFETIME).unwrap();
        // Only the original key: the refused rotations wrote nothing.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn files_not_named_like_keys_are_ignored() {
        assert_eq!(
            created_at_of("es256-1700000000-ab12cd34.key.pem"),
            Some(1_700_000_000)
        );
        assert_eq!(created_at_of("README"), None);
        assert_eq!(created_at_of("es256-x-ab.key.pem"), None);
    }

    #[test]
    fn the_jwks_entry_is_a_public_p256_key_with_its_thumbprint_as_kid() {
        let ring = KeyRing::ephemeral(0).unwrap();
        let jwks = ring.jwks(0);
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert!(
            jwk.get("d").is_none(),
            "the private scalar must never be published"
        );
        assert_eq!(jwk["kid"], ring.signing_key().kid());
        // jsonwebtoken computes the same RFC 7638 thumbprint.
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
        assert_eq!(
            parsed
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            ring.signing_key().kid()
        );
    }
}
