//! Authentication costs: access-token verification without the cache (cold: ES256 verify plus claim checks)
//! and with it (warm: SHA-256 of the token and a map lookup), minting an access token, and a whole token
//! request (client assertion verify, ES384 or RS384, plus replay check, plus minting).
//!
//! `cargo bench --bench auth` (criterion; `-- --save-baseline NAME` / `--baseline NAME` compare two runs,
//! e.g. before and after the move to jsonwebtoken in issue 8).

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

use navet::auth::access_token::{self, AccessTokenClaims};
use navet::auth::keys::KeyRing;
use navet::auth::service::JWT_BEARER;
use navet::auth::{
    AuthConfig, AuthService, AuthSettings, FileSource, ManualClock, MemoryJtiStore, TokenRequest,
    build, cli, demo,
};
use navet::domain::HsaId;

const BASE: &str = "https://navet.bench";
const TOKEN_URL: &str = "https://navet.bench/auth/token";
const NOW: i64 = 1_750_000_000;

fn service(dir: &std::path::Path) -> AuthService {
    let cfg = AuthConfig::from_toml(demo::AUTH_DEMO_TOML).expect("demo config");
    let settings = AuthSettings::new(BASE, dir, FileSource::Embedded(demo::embedded_file))
        .with_clock(Arc::new(ManualClock::new(NOW)));
    // The demo users' roles, as the demo seed's PractitionerRoles give them (an in-memory directory: the
    // benchmark measures token work, not the store).
    let roles = cfg.users.iter().map(|u| {
        (
            HsaId::parse(&u.hsa_id).expect("hsa"),
            HsaId::parse(&u.care_unit).expect("hsa"),
        )
    });
    let store = Arc::new(MemoryJtiStore::with_roles(roles));
    build(&cfg, settings, store).expect("demo auth service")
}

fn request(client_id: &str) -> TokenRequest {
    let key = demo::demo_key(client_id).expect("demo key").private_pem;
    let user = cli::user_claims(
        &AuthConfig::from_toml(demo::AUTH_DEMO_TOML).expect("demo config"),
        "SE2321000255-P0001",
        navet::auth::PurposeOfUse::Treat,
    )
    .expect("demo user");
    let user = (client_id == "demo-csk").then_some(&user);
    TokenRequest {
        grant_type: Some("client_credentials".into()),
        scope: Some("system/*.cruds".into()),
        client_assertion_type: Some(JWT_BEARER.into()),
        client_assertion: Some(
            cli::client_assertion(client_id, TOKEN_URL, key, user, NOW).expect("assertion"),
        ),
        client_id: None,
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = service(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let token = runtime
        .block_on(service.issue_token(request("demo-csk")))
        .expect("token")
        .access_token;
    let header = format!("Bearer {token}");

    c.bench_function("access token verify, cold (no cache)", |b| {
        b.iter(|| {
            service
                .verify_uncached(std::hint::black_box(&token), NOW + 1)
                .expect("valid")
        })
    });
    service.authenticate(Some(&header)).expect("valid");
    c.bench_function("access token verify, warm (cache hit)", |b| {
        b.iter(|| {
            service
                .authenticate(Some(std::hint::black_box(&header)))
                .expect("valid")
        })
    });

    let ring = KeyRing::ephemeral(NOW).expect("key");
    let claims: AccessTokenClaims = {
        let payload = token.split('.').nth(1).expect("payload");
        use base64::Engine;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64");
        serde_json::from_slice(&json).expect("claims")
    };
    c.bench_function("access token mint (ES256 sign)", |b| {
        b.iter(|| access_token::mint(&ring, std::hint::black_box(&claims)).expect("minted"))
    });

    for (client, alg) in [("demo-csk", "ES384"), ("demo-itacih", "RS384")] {
        c.bench_function(&format!("token request, {alg} assertion"), |b| {
            b.iter_batched(
                || request(client),
                |req| runtime.block_on(service.issue_token(req)).expect("issued"),
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(auth, benches);
criterion_main!(auth);
