//! Minimal PEM (RFC 7468) reading and writing for the key files navet handles: `PUBLIC KEY`
//! (SubjectPublicKeyInfo), `RSA PUBLIC KEY` (PKCS#1) and `PRIVATE KEY` (PKCS#8).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("no PEM block found (expected a line like -----BEGIN PUBLIC KEY-----)")]
    NoBlock,
    #[error("the PEM block {0:?} has no matching END line")]
    Unterminated(String),
    #[error("the PEM block {0:?} is not valid base64")]
    Base64(String),
    #[error("found a PEM block {found:?}, expected {expected}")]
    WrongLabel { found: String, expected: String },
    #[error("the file holds more than one PEM block; put one key per file")]
    SeveralBlocks,
}

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

/// Decodes the single PEM block in `text`. Text outside the block (comments) is ignored, as RFC 7468 §2
/// allows.
pub fn decode_one(text: &str) -> Result<PemBlock, PemError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut terminated = false;
        for inner in lines.by_ref() {
            if inner == end {
                terminated = true;
                break;
            }
            body.push_str(inner);
        }
        if !terminated {
            return Err(PemError::Unterminated(label.to_owned()));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| PemError::Base64(label.to_owned()))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            der,
        });
    }
    match blocks.len() {
        0 => Err(PemError::NoBlock),
        1 => Ok(blocks.remove(0)),
        _ => Err(PemError::SeveralBlocks),
    }
}

/// Decodes the single block in `text` and checks its label.
pub fn decode_labelled(text: &str, expected: &str) -> Result<Vec<u8>, PemError> {
    let block = decode_one(text)?;
    if block.label != expected {
        return Err(PemError::WrongLabel {
            found: block.label,
            expected: expected.to_owned(),
        });
    }
    Ok(block.der)
}

/// Encodes `der` as a PEM block with 64-character lines (RFC 7468 §2).
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_block_decodes_to_the_same_bytes() {
        let der: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let pem = encode("PUBLIC KEY", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(decode_labelled(&pem, "PUBLIC KEY").unwrap(), der);
    }

    #[test]
    fn text_around_the_block_is_ignored() {
        let pem = format!("a comment\n{}trailing\n", encode("PRIVATE KEY", b"abc"));
        assert_eq!(decode_one(&pem).unwrap().der, b"abc");
    }

    #[test]
    fn a_wrong_label_missing_end_or_bad_base64_is_named() {
        assert!(matches!(
            decode_labelled(&encode("PRIVATE KEY", b"x"), "PUBLIC KEY"),
            Err(PemError::WrongLabel { .. })
        ));
        assert_eq!(
            decode_one("-----BEGIN PUBLIC KEY-----\nAAAA\n"),
            Err(PemError::Unterminated("PUBLIC KEY".into()))
        );
        assert_eq!(
            decode_one("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n"),
            Err(PemError::Base64("PUBLIC KEY".into()))
        );
        assert_eq!(decode_one("nothing"), Err(PemError::NoBlock));
    }

    #[test]
    fn two_blocks_in_one_file_are_refused() {
        let two = format!(
            "{}{}",
            encode("PUBLIC KEY", b"a"),
            encode("PUBLIC KEY", b"b")
        );
        assert_eq!(decode_one(&two), Err(PemError::SeveralBlocks));
    }
}
