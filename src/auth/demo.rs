//! The demo region's client keys and authentication configuration (`spec/demo-region.md`), compiled into
//! the binary so `navet serve` and `navet token` work from any directory.
//!
//! THESE PRIVATE KEYS ARE PUBLIC TEST DATA. They are committed to the repository so the README's first
//! commands work; anyone can sign as any demo client with them. Never register them in production
//! (`src/demo/keys-demo-only/README.md`).

/// One demo client's key pair (PEM).
#[derive(Debug, Clone, Copy)]
pub struct DemoKey {
    pub client_id: &'static str,
    /// PKCS#8 private key.
    pub private_pem: &'static str,
    /// SubjectPublicKeyInfo public key.
    pub public_pem: &'static str,
}

/// Every demo client's keys: ES384 except `demo-lasarettet-ystad` and `demo-itacih` (RS384), so both
/// accepted algorithms are exercised.
pub const DEMO_KEYS: &[DemoKey] = &[
    DemoKey {
        client_id: "demo-kommun-kristianstad",
        private_pem: include_str!("../demo/keys-demo-only/demo-kommun-kristianstad.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-kommun-kristianstad.pub.pem"),
    },
    DemoKey {
        client_id: "demo-kommun-ystad",
        private_pem: include_str!("../demo/keys-demo-only/demo-kommun-ystad.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-kommun-ystad.pub.pem"),
    },
    DemoKey {
        client_id: "demo-vc-nasby",
        private_pem: include_str!("../demo/keys-demo-only/demo-vc-nasby.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-vc-nasby.pub.pem"),
    },
    DemoKey {
        client_id: "demo-vc-ystad",
        private_pem: include_str!("../demo/keys-demo-only/demo-vc-ystad.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-vc-ystad.pub.pem"),
    },
    DemoKey {
        client_id: "demo-csk",
        private_pem: include_str!("../demo/keys-demo-only/demo-csk.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-csk.pub.pem"),
    },
    DemoKey {
        client_id: "demo-lasarettet-ystad",
        private_pem: include_str!("../demo/keys-demo-only/demo-lasarettet-ystad.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-lasarettet-ystad.pub.pem"),
    },
    DemoKey {
        client_id: "demo-mtn-kristianstad",
        private_pem: include_str!("../demo/keys-demo-only/demo-mtn-kristianstad.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-mtn-kristianstad.pub.pem"),
    },
    DemoKey {
        client_id: "demo-mtn-ystad",
        private_pem: include_str!("../demo/keys-demo-only/demo-mtn-ystad.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-mtn-ystad.pub.pem"),
    },
    DemoKey {
        client_id: "demo-ambulans",
        private_pem: include_str!("../demo/keys-demo-only/demo-ambulans.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-ambulans.pub.pem"),
    },
    DemoKey {
        client_id: "demo-asih",
        private_pem: include_str!("../demo/keys-demo-only/demo-asih.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-asih.pub.pem"),
    },
    DemoKey {
        client_id: "demo-auditor",
        private_pem: include_str!("../demo/keys-demo-only/demo-auditor.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-auditor.pub.pem"),
    },
    DemoKey {
        client_id: "demo-admin",
        private_pem: include_str!("../demo/keys-demo-only/demo-admin.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-admin.pub.pem"),
    },
    DemoKey {
        client_id: "demo-itacih",
        private_pem: include_str!("../demo/keys-demo-only/demo-itacih.key.pem"),
        public_pem: include_str!("../demo/keys-demo-only/demo-itacih.pub.pem"),
    },
];

/// The `[[principals]]`, `[[clients]]` and `[[users]]` of the demo region.
pub const AUTH_DEMO_TOML: &str = include_str!("../demo/auth-demo.toml");

/// The demo client `client_id`'s key pair.
pub fn demo_key(client_id: &str) -> Option<&'static DemoKey> {
    DEMO_KEYS.iter().find(|k| k.client_id == client_id)
}

/// The embedded file at a path the demo configuration names (relative to `src/demo/`), for
/// [`crate::auth::config::FileSource::Embedded`].
pub fn embedded_file(path: &str) -> Option<&'static str> {
    let name = path
        .strip_prefix("keys-demo-only/")?
        .strip_suffix(".pub.pem")?;
    demo_key(name).map(|k| k.public_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_key_pair_matches_and_has_the_documented_algorithm() {
        use crate::auth::jws::{JwsAlg, VerifyingKey};
        for key in DEMO_KEYS {
            let public = VerifyingKey::from_public_pem(key.public_pem).unwrap();
            let expected = match key.client_id {
                "demo-lasarettet-ystad" | "demo-itacih" => JwsAlg::Rs384,
                _ => JwsAlg::Es384,
            };
            assert_eq!(public.alg(), expected, "{}", key.client_id);
            // The private key signs what the public key verifies.
            let assertion = crate::auth::cli::client_assertion(
                key.client_id,
                "https://x/auth/token",
                key.private_pem,
                None,
                0,
            )
            .unwrap();
            let mut validation = jsonwebtoken::Validation::new(expected.algorithm());
            validation.set_audience(&["https://x/auth/token"]);
            validation.validate_exp = false;
            jsonwebtoken::decode::<serde_json::Value>(
                &assertion,
                public.decoding_key(),
                &validation,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", key.client_id));
            assert_eq!(
                embedded_file(&format!("keys-demo-only/{}.pub.pem", key.client_id)),
                Some(key.public_pem)
            );
        }
    }
}
