//! Property tests of the two token parsers on the network path (issue 8): the token endpoint
//! (`POST /auth/token`, `client_assertion`) and the bearer path (`Authorization: Bearer …` on a FHIR
//! endpoint). Whatever arrives — arbitrary bytes, arbitrary JOSE headers (JSON objects and other JSON, with
//! non-ASCII `alg`/`kid`/`typ`/`crit`), arbitrary claim sets with extreme integers, and even correctly
//! signed tokens whose times are out of bounds — the answer is 400 or 401: never a panic (a dropped
//! connection fails the request here), never a token, never access.

mod common;

use common::*;
use navet::auth::service::JWT_BEARER;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Strings with non-ASCII and control characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        ".{0,8}",
        Just("€".to_owned()),
        Just("H€".to_owned()),
        Just("none".to_owned()),
        Just("HS256".to_owned()),
        Just("ES384".to_owned()),
        Just("RS384".to_owned()),
        Just("ES256".to_owned()),
        Just("at+jwt".to_owned()),
    ]
}

/// Integers where arithmetic overflows, and other things a NumericDate is not.
fn numeric_date() -> impl Strategy<Value = Value> {
    let now = jiff::Timestamp::now().as_second();
    prop_oneof![
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(i64::MAX - 29)),
        Just(json!(u64::MAX)),
        Just(json!(0)),
        Just(json!(1.0e300)),
        Just(json!(-0.5)),
        any::<i64>().prop_map(|n| json!(n)),
        (now - 1_000..now + 1_000).prop_map(|n| json!(n)),
        text().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JOSE header: an object with arbitrary members and maybe `alg`, `kid`, `typ`, `crit` (strings or any
/// JSON), or some other JSON value altogether.
fn jose_header() -> impl Strategy<Value = Value> {
    let member = || {
        prop_oneof![
            3 => text().prop_map(Value::from),
            1 => json_value(),
        ]
    };
    let object = (
        prop::collection::btree_map(text(), json_value(), 0..3),
        prop::option::of(member()),
        prop::option::of(member()),
        prop::option::of(member()),
        prop::option::of(prop_oneof![
            prop::collection::vec(text().prop_map(Value::from), 0..3).prop_map(Value::from),
            json_value(),
        ]),
    )
        .prop_map(|(extra, alg, kid, typ, crit)| {
            let mut h: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in [("alg", alg), ("kid", kid), ("typ", typ), ("crit", crit)] {
                if let Some(value) = value {
                    h.insert(name.to_owned(), value);
                }
            }
            Value::Object(h)
        });
    prop_oneof![4 => object, 1 => json_value()]
}

/// A claim set: the registered claims from plausible and arbitrary values, extreme times, arbitrary
/// extensions and extra members.
fn claim_set(base: String) -> impl Strategy<Value = Value> {
    let client = prop_oneof![
        Just("demo-csk".to_owned()),
        Just(DEFAULT_CLIENT.to_owned()),
        text()
    ];
    let aud = prop_oneof![
        Just(Value::from(format!("{base}/auth/token"))),
        Just(Value::from(base.clone())),
        json_value(),
    ];
    (
        prop::option::of(client.clone()),
        prop::option::of(client),
        prop::option::of(aud),
        prop::option::of(numeric_date()),
        prop::option::of(numeric_date()),
        prop::option::of(numeric_date()),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::collection::btree_map(text(), json_value(), 0..3),
    )
        .prop_map(|(iss, sub, aud, exp, iat, nbf, jti, extensions, extra)| {
            let mut c: Map<String, Value> = extra.into_iter().collect();
            let named = [
                ("iss", iss.map(Value::from)),
                ("sub", sub.map(Value::from)),
                ("aud", aud),
                ("exp", exp),
                ("iat", iat),
                ("nbf", nbf),
                ("jti", jti),
                ("extensions", extensions),
            ];
            for (name, value) in named {
                if let Some(value) = value {
                    c.insert(name.to_owned(), value);
                }
            }
            Value::Object(c)
        })
}

/// What goes on the wire as the token: arbitrary bytes, or three base64url parts made of an arbitrary
/// header, an arbitrary claim set and an arbitrary signature (sometimes with raw bytes in a part).
fn unsigned_token(base: String) -> impl Strategy<Value = Vec<u8>> {
    let part = |json: BoxedStrategy<Value>| {
        prop_oneof![
            4 => json.prop_map(|v| b64url(v.to_string().as_bytes())),
            1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| b64url(&b)),
            1 => ".{0,10}",
        ]
    };
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..200),
        4 => (
            part(jose_header().boxed()),
            part(claim_set(base).boxed()),
            prop::collection::vec(any::<u8>(), 0..100),
        )
            .prop_map(|(h, c, s)| format!("{h}.{c}.{}", b64url(&s)).into_bytes()),
    ]
}

struct Probe {
    app: TestApp,
    runtime: tokio::runtime::Runtime,
}

impl Probe {
    fn new() -> Probe {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let app = runtime.block_on(spawn_app());
        Probe { app, runtime }
    }

    /// The token at the token endpoint: its status.
    fn token_endpoint(&self, token: &[u8]) -> u16 {
        let assertion = String::from_utf8_lossy(token).into_owned();
        self.runtime.block_on(async {
            self.app
                .anonymous
                .post(format!("{}/auth/token", self.app.base))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/*.rs"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .expect("an answer, not a dropped connection")
                .status()
                .as_u16()
        })
    }

    /// The token as a bearer token on a FHIR endpoint: its status (`None` when the bytes cannot be an
    /// HTTP header value at all, e.g. a line break).
    fn bearer(&self, token: &[u8]) -> Option<u16> {
        let value = [b"Bearer ".as_slice(), token].concat();
        let value = reqwest::header::HeaderValue::from_bytes(&value).ok()?;
        Some(self.runtime.block_on(async {
            self.app
                .anonymous
                .get(format!("{}/Patient", self.app.fhir))
                .header(reqwest::header::AUTHORIZATION, value)
                .send()
                .await
                .expect("an answer, not a dropped connection")
                .status()
                .as_u16()
        }))
    }

    fn navet_signing_key(&self) -> (jsonwebtoken::EncodingKey, String) {
        let dir = self.app.data_dir.path().join("auth/keys");
        let file = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap();
        let key =
            jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(file.path()).unwrap()).unwrap();
        let jwks: Value = self.runtime.block_on(async {
            self.app
                .anonymous
                .get(format!("{}/auth/jwks", self.app.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        (key, jwks["keys"][0]["kid"].as_str().unwrap().to_owned())
    }
}

fn refused(status: u16, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        status == 400 || status == 401,
        "{what} answered {status}, not 400/401"
    );
    Ok(())
}

#[test]
fn arbitrary_tokens_are_refused_on_both_paths() {
    let probe = Probe::new();
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&unsigned_token(probe.app.base.clone()), |token| {
            refused(probe.token_endpoint(&token), "the token endpoint")?;
            if let Some(status) = probe.bearer(&token) {
                refused(status, "the bearer path")?;
            }
            Ok(())
        })
        .unwrap();
}

/// The test's own running time: the server's clock reads at least the test's `now` and, say, at most a
/// minute more. The predicates below hold for every server time in that window.
const SLACK: i128 = 60;

/// Access-token times navet refuses whatever its clock reads in the window: `exp` passed, `iat` or `nbf`
/// beyond the 30-second leeway, or a lifetime over 300 + 30 seconds. In i128, so the predicate itself
/// cannot overflow.
fn access_token_times_refused(now: i64, iat: i64, nbf: i64, exp: i64) -> bool {
    let (now, iat, nbf, exp) = (now as i128, iat as i128, nbf as i128, exp as i128);
    exp <= now || iat > now + SLACK + 30 || nbf > now + SLACK + 30 || exp - iat > 330
}

/// Client-assertion times navet refuses in the window: expired beyond the leeway, `exp` more than five
/// minutes (+ leeway) ahead, or (when present) `iat`/`nbf` beyond the leeway.
fn assertion_times_refused(now: i64, iat: Option<i64>, nbf: Option<i64>, exp: i64) -> bool {
    let (now, exp) = (now as i128, exp as i128);
    let future = |t: Option<i64>| t.is_some_and(|t| t as i128 > now + SLACK + 30);
    exp <= now - 30 || exp > now + SLACK + 330 || future(iat) || future(nbf)
}

fn extreme_i64() -> impl Strategy<Value = i64> {
    let now = jiff::Timestamp::now().as_second();
    prop_oneof![
        Just(i64::MAX),
        Just(i64::MIN),
        Just(i64::MAX - 29),
        Just(0),
        any::<i64>(),
        (now - 100_000..now + 100_000),
    ]
}

#[test]
fn correctly_signed_tokens_with_times_out_of_bounds_are_refused() {
    let probe = Probe::new();
    let base = probe.app.base.clone();
    let now = jiff::Timestamp::now().as_second();
    let (navet_key, kid) = probe.navet_signing_key();
    let client_key = jsonwebtoken::EncodingKey::from_ec_pem(
        navet::auth::cli::demo_private_key("demo-csk")
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let times = (extreme_i64(), extreme_i64(), extreme_i64())
        .prop_filter("times that are never valid", move |(iat, nbf, exp)| {
            access_token_times_refused(now, *iat, *nbf, *exp)
        });
    let mut runner = TestRunner::new(Config::with_cases(128));
    runner
        .run(
            &(times, prop::option::of(json_value()), any::<bool>()),
            |((iat, nbf, exp), extensions, with_iat)| {
                // A client assertion signed with demo-csk's registered key, otherwise valid: exp is what
                // decides (an assertion needs only exp; iat/nbf sometimes left out).
                let mut assertion = json!({
                    "iss": "demo-csk", "sub": "demo-csk", "aud": format!("{base}/auth/token"),
                    "exp": exp, "jti": uuid::Uuid::new_v4().to_string(),
                });
                if with_iat {
                    assertion["iat"] = json!(iat);
                    assertion["nbf"] = json!(nbf);
                }
                if let Some(extensions) = &extensions {
                    assertion["extensions"] = extensions.clone();
                }
                let (sent_iat, sent_nbf) = if with_iat {
                    (Some(iat), Some(nbf))
                } else {
                    (None, None)
                };
                // Only assertions navet must refuse whatever its clock: a valid one would (rightly) get a
                // token, and this property is about refusals.
                if assertion_times_refused(now, sent_iat, sent_nbf, exp) {
                    let signed = jsonwebtoken::encode(
                        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384),
                        &assertion,
                        &client_key,
                    )
                    .unwrap();
                    refused(probe.token_endpoint(signed.as_bytes()), "a signed assertion")?;
                }
                // An access token signed with navet's own key, right kid and typ, right claims but the times.
                let claims = json!({
                    "iss": format!("{base}/auth"), "aud": base, "sub": DEFAULT_CLIENT,
                    "client_id": DEFAULT_CLIENT, "principal": DEFAULT_PRINCIPAL, "principal_kind": "mtn",
                    "scope": "system/*.cruds", "jti": uuid::Uuid::new_v4().to_string(),
                    "iat": iat, "nbf": nbf, "exp": exp,
                });
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                header.typ = Some("at+jwt".into());
                header.kid = Some(kid.clone());
                let token = jsonwebtoken::encode(&header, &claims, &navet_key).unwrap();
                let status = probe.bearer(token.as_bytes()).expect("a header value");
                prop_assert_eq!(status, 401, "iat {} nbf {} exp {}", iat, nbf, exp);
                Ok(())
            },
        )
        .unwrap();
}
