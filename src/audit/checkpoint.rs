//! Signed checkpoints of the access log: (sequence, head hash) of both chains, signed with navet's checkpoint
//! key, kept in the access database and in an append-only file beside it that an operator can ship elsewhere.
//! A checkpoint is what makes a truncated or fully recomputed chain evident (FORMAT.md "Checkpoints").
//!
//! The key is its own ECDSA P-256 key (`audit-checkpoint.key.pem` in the data directory, mode 0600), not the
//! access-token signing key: token keys rotate and are deleted after a token lifetime, while a checkpoint must
//! verify for as long as the log is kept.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};

use super::chain::{Chain, Hash, from_hex, hex};

/// The checkpoint file beside the databases: one line per checkpoint, oldest first.
pub const FILE: &str = "audit-checkpoints.log";
/// The checkpoint signing key beside the databases.
pub const KEY_FILE: &str = "audit-checkpoint.key.pem";
/// What the signed text starts with.
const MAGIC: &str = "navet-audit-checkpoint/1";

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// 1, 2, 3, … in the order they were made.
    pub n: i64,
    /// When it was made (epoch ms).
    pub time_ms: i64,
    pub access: (i64, Hash),
    pub change: (i64, Hash),
    /// The public key (uncompressed P-256 point, 65 bytes) and the signature (r ‖ s, 64 bytes).
    pub key: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    pub fn head(&self, chain: Chain) -> (i64, Hash) {
        match chain {
            Chain::Access => self.access,
            Chain::Change => self.change,
        }
    }

    /// The signed text: `navet-audit-checkpoint/1 n=… t=… access=SEQ:HASH change=SEQ:HASH key=HEX`.
    pub fn message(&self) -> String {
        format!(
            "{MAGIC} n={} t={} access={}:{} change={}:{} key={}",
            self.n,
            self.time_ms,
            self.access.0,
            hex(&self.access.1),
            self.change.0,
            hex(&self.change.1),
            hex(&self.key)
        )
    }

    /// The stored line: the message and ` sig=HEX`.
    pub fn line(&self) -> String {
        format!("{} sig={}", self.message(), hex(&self.signature))
    }

    pub fn parse(line: &str) -> Result<Checkpoint, String> {
        let mut parts = line.trim_end().split(' ');
        if parts.next() != Some(MAGIC) {
            return Err("not a navet checkpoint line".into());
        }
        let mut field = |name: &str| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(name))
                .and_then(|p| p.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| format!("the checkpoint has no {name}"))
        };
        let (n, t, access, change, key, sig) = (
            field("n")?,
            field("t")?,
            field("access")?,
            field("change")?,
            field("key")?,
            field("sig")?,
        );
        let number = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| format!("'{s}' is not a number"))
        };
        let head = |s: &str| -> Result<(i64, Hash), String> {
            let (seq, hash) = s.split_once(':').ok_or("a head is SEQ:HASH")?;
            let bytes = from_hex(hash)
                .filter(|b| b.len() == 32)
                .ok_or("a hash is 64 hex digits")?;
            let mut h = [0u8; 32];
            h.copy_from_slice(&bytes);
            Ok((number(seq)?, h))
        };
        let checkpoint = Checkpoint {
            n: number(&n)?,
            time_ms: number(&t)?,
            access: head(&access)?,
            change: head(&change)?,
            key: from_hex(&key).ok_or("the key is not hex")?,
            signature: from_hex(&sig).ok_or("the signature is not hex")?,
        };
        // The line must be exactly what this code writes, so two copies can be compared as text.
        if checkpoint.line() != line.trim_end() {
            return Err("the checkpoint line is not in its canonical form".into());
        }
        Ok(checkpoint)
    }

    /// Whether the signature is the key's over the message.
    pub fn signature_verifies(&self) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.key)
            .verify(self.message().as_bytes(), &self.signature)
            .is_ok()
    }
}

/// navet's checkpoint signing key.
pub struct CheckpointKey {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointKey([private])")
    }
}

impl CheckpointKey {
    /// Reads the key in `dir`, generating it on first start (PKCS#8 PEM, mode 0600).
    pub fn load_or_generate(dir: &Path) -> Result<CheckpointKey, String> {
        let path = dir.join(KEY_FILE);
        let read = |path: &Path| -> Result<CheckpointKey, String> {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let pem = pem::parse(text).map_err(|e| format!("{}: {e}", path.display()))?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pem.contents())
                .map_err(|_| format!("{}: not an EC P-256 PKCS#8 key", path.display()))?;
            Ok(CheckpointKey { pair })
        };
        if path.exists() {
            return read(&path);
        }
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| "could not generate the checkpoint key".to_owned())?;
        let text = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        read(&path)
    }

    /// The public key (uncompressed point) checkpoints carry.
    pub fn public(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// A signed checkpoint of these heads.
    pub fn sign(
        &self,
        n: i64,
        time_ms: i64,
        access: (i64, Hash),
        change: (i64, Hash),
    ) -> Result<Checkpoint, String> {
        let mut checkpoint = Checkpoint {
            n,
            time_ms,
            access,
            change,
            key: self.public(),
            signature: Vec::new(),
        };
        let signature = self
            .pair
            .sign(&SystemRandom::new(), checkpoint.message().as_bytes())
            .map_err(|_| "signing the checkpoint failed".to_owned())?;
        checkpoint.signature = signature.as_ref().to_vec();
        Ok(checkpoint)
    }
}

/// Appends a checkpoint line to the file and syncs it.
pub fn append_to_file(dir: &Path, checkpoint: &Checkpoint) -> Result<(), String> {
    let path = dir.join(FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(format!("{}\n", checkpoint.line()).as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The checkpoints of a checkpoint file (none when it does not exist); a line that does not parse is an
/// error naming its line number.
pub fn read_file(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            Checkpoint::parse(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The checkpoints of the database and of the file(s) as one list ordered by number, after checking each
/// signature, that the key is navet's (when the key is at hand), the numbering, and that two copies of a
/// checkpoint agree. The error names the first checkpoint that fails.
pub fn merge(
    sources: &[(&str, Vec<Checkpoint>)],
    trusted_key: Option<&[u8]>,
) -> Result<Vec<Checkpoint>, String> {
    let mut all: std::collections::BTreeMap<i64, (&str, Checkpoint)> =
        std::collections::BTreeMap::new();
    for (source, list) in sources {
        for c in list {
            if !c.signature_verifies() {
                return Err(format!(
                    "checkpoint {} in {source} is not validly signed: it was forged or changed",
                    c.n
                ));
            }
            if let Some(key) = trusted_key
                && key != c.key.as_slice()
            {
                return Err(format!(
                    "checkpoint {} in {source} is signed by a key that is not navet's checkpoint key",
                    c.n
                ));
            }
            match all.get(&c.n) {
                Some((other, existing)) if existing != c => {
                    return Err(format!(
                        "checkpoint {} differs between {other} and {source}",
                        c.n
                    ));
                }
                Some(_) => {}
                None => {
                    all.insert(c.n, (*source, c.clone()));
                }
            }
        }
    }
    let list: Vec<Checkpoint> = all.into_values().map(|(_, c)| c).collect();
    for pair in list.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.access.0 > b.access.0 || a.change.0 > b.change.0 {
            return Err(format!(
                "checkpoint {} covers fewer records than checkpoint {}",
                b.n, a.n
            ));
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_line_round_trips_and_any_change_breaks_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        let key = CheckpointKey::load_or_generate(dir.path()).unwrap();
        let again = CheckpointKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(key.public(), again.public(), "the key is kept");
        let c = key.sign(1, 5, (3, [1; 32]), (0, [0; 32])).unwrap();
        assert!(c.signature_verifies());
        assert_eq!(Checkpoint::parse(&c.line()).unwrap(), c);
        let forged = c.line().replace("access=3:", "access=2:");
        assert!(!Checkpoint::parse(&forged).unwrap().signature_verifies());
        assert!(Checkpoint::parse("navet-audit-checkpoint/1 n=1").is_err());
        assert!(Checkpoint::parse(&format!("{} ", c.line().replace(" t=5", " t=05"))).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic_the_checkpoint_parser(line in ".{0,300}") {
            let _ = Checkpoint::parse(&line);
            let _ = Checkpoint::parse(&format!("navet-audit-checkpoint/1 {line}"));
        }
    }

    #[test]
    fn merging_copies_refuses_a_foreign_key_a_disagreement_and_a_shrinking_log() {
        let dir = tempfile::tempdir().unwrap();
        let key = CheckpointKey::load_or_generate(dir.path()).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = CheckpointKey::load_or_generate(other_dir.path()).unwrap();
        let c1 = key.sign(1, 5, (3, [1; 32]), (1, [2; 32])).unwrap();
        let c2 = key.sign(2, 6, (4, [1; 32]), (1, [2; 32])).unwrap();
        let pk = key.public();
        let merged = merge(
            &[
                ("db", vec![c1.clone()]),
                ("file", vec![c1.clone(), c2.clone()]),
            ],
            Some(pk.as_slice()),
        )
        .unwrap();
        assert_eq!(merged, [c1.clone(), c2.clone()]);
        let foreign = other.sign(2, 6, (4, [1; 32]), (1, [2; 32])).unwrap();
        assert!(
            merge(&[("file", vec![foreign.clone()])], Some(pk.as_slice()))
                .unwrap_err()
                .contains("not navet's")
        );
        assert!(
            merge(&[("db", vec![c2.clone()]), ("file", vec![foreign])], None)
                .unwrap_err()
                .contains("differs")
        );
        let shrunk = key.sign(3, 7, (2, [1; 32]), (1, [2; 32])).unwrap();
        assert!(
            merge(&[("db", vec![c2, shrunk])], Some(pk.as_slice()))
                .unwrap_err()
                .contains("fewer")
        );
    }
}
