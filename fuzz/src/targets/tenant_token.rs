//! Tenant token parsing (host/gateway/src/tenant_auth.rs). The first byte picks the form:
//! - 0: the `authorization` value as sent: no such token verifies (the key never signed it);
//! - 1: the claims JSON, which the target signs (HS256) so the checks behind the signature
//!   run. `exp_in`/`nbf_in`/`iat_in` become `exp`/`nbf`/`iat` relative to now, so inputs
//!   stay meaningful whenever they run. An accepted token names a tenant, has an expiry within
//!   the node's maximum lifetime, carries its `sub` (none when empty), names no end user
//!   without an id, and is answered the same from the cache;
//! - 2: a JOSE header line, then claims, signed alike: only an HS256 header is accepted.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use alga_edge_gateway::tenant_auth::{DEFAULT_MAX_LIFETIME, TenantAuth};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The HS256 secret the target signs with.
const SECRET: &str = "fuzz-target-shared-secret-of-32-bytes-or-more";
/// Clock skew the verifier allows, plus slack for the time between signing and checking.
const SKEW_SECS: u64 = 30 + 5;

fn verifier() -> &'static TenantAuth {
    static AUTH: OnceLock<TenantAuth> = OnceLock::new();
    AUTH.get_or_init(|| TenantAuth::hs256(SECRET).expect("a long enough secret"))
}

/// A verifier whose key signed nothing.
fn stranger() -> &'static TenantAuth {
    static AUTH: OnceLock<TenantAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        TenantAuth::hs256("another-secret-that-never-signs-anything!").expect("long enough")
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    match form % 3 {
        0 => {
            let header = String::from_utf8_lossy(rest);
            assert!(
                stranger().authenticate(Some(&header)).is_err(),
                "an unsigned token was accepted"
            );
        }
        1 => signed(br#"{"alg":"HS256","typ":"JWT"}"#, rest),
        _ => {
            let [header, claims] = crate::fields(rest);
            signed(header, claims);
        }
    }
}

/// `claims` with `*_in` offsets turned into times, when they are a JSON object.
fn with_times(claims: &[u8]) -> (Vec<u8>, Option<Map<String, Value>>) {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(claims) else {
        return (claims.to_vec(), None);
    };
    let now = now() as i64;
    for name in ["exp", "nbf", "iat"] {
        if let Some(offset) = object
            .remove(&format!("{name}_in"))
            .and_then(|v| v.as_i64())
        {
            object.insert(name.into(), Value::from(now.saturating_add(offset)));
        }
    }
    let bytes = serde_json::to_vec(&object).expect("a JSON object serialises");
    (bytes, Some(object))
}

fn signed(header: &[u8], claims: &[u8]) {
    let (claims, object) = with_times(claims);
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    let tag = hmac_sha256::HMAC::mac(signing_input.as_bytes(), SECRET.as_bytes());
    let token = format!("Bearer {signing_input}.{}", URL_SAFE_NO_PAD.encode(tag));
    let Ok(caller) = verifier().authenticate(Some(&token)) else {
        return;
    };
    let alg = serde_json::from_slice::<Value>(header)
        .ok()
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
    assert_eq!(
        alg.as_deref(),
        Some("HS256"),
        "accepted a token whose header says {alg:?}"
    );
    let object = object.expect("accepted claims are a JSON object");
    assert!(!caller.tenant.is_empty(), "accepted without a tenant");
    assert_eq!(
        object.get("tenant").and_then(Value::as_str),
        Some(caller.tenant.as_str())
    );
    let exp = object
        .get("exp")
        .and_then(Value::as_f64)
        .expect("accepted without an expiry");
    assert!(
        exp <= (now() + DEFAULT_MAX_LIFETIME.as_secs() + SKEW_SECS) as f64,
        "accepted an expiry {exp} past the maximum lifetime"
    );
    assert_eq!(
        caller.user.as_deref(),
        object
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty()),
        "the caller's user is not the token's (non-empty) sub"
    );
    if let Some(profile) = &caller.profile {
        assert!(!profile.user_id.is_empty(), "a profile without a user id");
    }
    let again = verifier()
        .authenticate(Some(&token))
        .expect("a token accepted a moment ago is accepted again");
    assert_eq!(again, caller, "the cache answered another caller");
}
