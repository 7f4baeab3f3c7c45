//! Tenant authentication for gateway routes: the platform sends a short-lived JWT (EdDSA or
//! HS256, by config) whose claims name the tenant, the end user and their scopes (DESIGN §5).
//!
//! With no key configured a node uses a dev Ed25519 key kept in its data directory, and
//! `alga-edge token` mints tokens with it, so one machine works with no setup.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jwt_simple::prelude::*;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use alga_edge_capabilities::runner::EndUser;

use crate::keys::{self, KeyFileError};

/// Largest clock skew accepted between the platform and this node.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// The platform-specific claims of a tenant token (`sub` carries the user id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantClaims {
    /// Tenant id.
    pub tenant: String,
    /// What the user may do (checked by policies; carried through unchanged for now).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The end user's profile, as Alga's runner-world `user` interface reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EndUser>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Tenant id.
    pub tenant: String,
    /// End user id (`sub`), when the platform named one.
    pub user: Option<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// The end user (id from `sub`, profile from the `user` claim), when the token names one.
    pub profile: Option<Arc<EndUser>>,
}

/// The end user of a token: its `user` claim with `user_id` defaulting to `sub`, or a user
/// known only by `sub`; `None` when the token names no user (an empty `sub` names none).
fn end_user(subject: Option<&str>, profile: Option<EndUser>) -> Option<Arc<EndUser>> {
    match (subject, profile) {
        (_, Some(mut profile)) => {
            if profile.user_id.is_empty() {
                profile.user_id = subject.unwrap_or_default().to_owned();
            }
            Some(Arc::new(profile)).filter(|p| !p.user_id.is_empty())
        }
        (Some(sub), None) if !sub.is_empty() => Some(Arc::new(EndUser::with_id(sub.to_owned()))),
        (_, None) => None,
    }
}

/// Why a token was refused. Messages are safe to return to the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token in `authorization`.
    #[error("missing bearer token: send 'authorization: Bearer <tenant JWT>'")]
    Missing,
    /// The token failed verification (signature, expiry, format).
    #[error("invalid tenant token: {0}")]
    Invalid(String),
    /// Verified, but without the claims every token must carry.
    #[error("tenant token lacks {0}")]
    MissingClaim(&'static str),
}

/// Why the verifier could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The configured key cannot be parsed.
    #[error("invalid tenant token key: {0}")]
    BadKey(String),
    /// A key file cannot be read or created.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

enum VerifyKey {
    EdDsa(Ed25519PublicKey),
    Hs256(HS256Key),
}

/// Verified tokens remembered (by SHA-256) until they expire.
const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// The longest a tenant token may still be valid for when it is presented, unless configured.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Verifies tenant tokens, remembering verified ones until their expiry so a platform that
/// reuses a token pays for the signature check once.
pub struct TenantAuth {
    key: VerifyKey,
    max_lifetime: Duration,
    cache: Mutex<LruCache<[u8; 32], (Caller, u64)>>,
    stats: TokenCacheStats,
}

/// Token cache counters, for metrics.
#[derive(Debug, Default)]
pub struct TokenCacheStats {
    /// Tokens answered from the cache.
    pub hits: AtomicU64,
    /// Tokens whose signature was checked.
    pub misses: AtomicU64,
}

impl TenantAuth {
    /// Verifies EdDSA tokens with a public key: PEM text, or the path of a PEM file.
    pub fn eddsa(spec: &str) -> Result<Self, AuthConfigError> {
        let pem = if spec.contains("-----BEGIN") {
            spec.to_owned()
        } else {
            std::fs::read_to_string(spec).map_err(|source| KeyFileError {
                path: spec.into(),
                source,
            })?
        };
        let key = Ed25519PublicKey::from_pem(&pem)
            .map_err(|e| AuthConfigError::BadKey(format!("Ed25519 public key: {e}")))?;
        Ok(Self::with_key(VerifyKey::EdDsa(key)))
    }

    fn with_key(key: VerifyKey) -> Self {
        Self {
            key,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(TOKEN_CACHE_ENTRIES).expect("non-zero"),
            )),
            stats: TokenCacheStats::default(),
        }
    }

    /// Refuses tokens that are still valid for longer than `max` when presented (a token
    /// minted for years would be a standing credential); [`DEFAULT_MAX_LIFETIME`] otherwise.
    pub fn with_max_lifetime(mut self, max: std::time::Duration) -> Self {
        self.max_lifetime = Duration::from_secs(max.as_secs());
        self
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> &TokenCacheStats {
        &self.stats
    }

    /// Verifies HS256 tokens with a shared secret.
    pub fn hs256(secret: &str) -> Result<Self, AuthConfigError> {
        if secret.len() < 32 {
            return Err(AuthConfigError::BadKey(
                "the HS256 secret must be at least 32 bytes".into(),
            ));
        }
        Ok(Self::with_key(VerifyKey::Hs256(HS256Key::from_bytes(
            secret.as_bytes(),
        ))))
    }

    /// Verifies tokens minted by the dev key of `data_dir` (see [`DevTokenIssuer`]).
    pub fn dev(data_dir: &Path) -> Result<Self, AuthConfigError> {
        let issuer = DevTokenIssuer::open(data_dir)?;
        Ok(Self::with_key(VerifyKey::EdDsa(issuer.pair.public_key())))
    }

    /// The caller named by the `authorization` header value, if its token verifies.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let token = alga_edge_http::bearer_token(authorization).ok_or(AuthError::Missing)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Clock::now_since_epoch().as_secs();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&digest) {
                Some((caller, expires)) if now <= expires + CLOCK_SKEW.as_secs() => {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(caller.clone());
                }
                Some(_) => {
                    cache.pop(&digest);
                }
                None => {}
            }
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let options = VerificationOptions {
            time_tolerance: Some(CLOCK_SKEW),
            ..VerificationOptions::default()
        };
        let claims = match &self.key {
            VerifyKey::EdDsa(key) => key.verify_token::<TenantClaims>(token, Some(options)),
            VerifyKey::Hs256(key) => key.verify_token::<TenantClaims>(token, Some(options)),
        }
        .map_err(|e| AuthError::Invalid(e.to_string()))?;
        // Tokens must be short-lived: one without an expiry would be valid forever.
        let Some(expires) = claims.expires_at else {
            return Err(AuthError::MissingClaim("an expiry ('exp')"));
        };
        if expires.as_secs() > now + self.max_lifetime.as_secs() + CLOCK_SKEW.as_secs() {
            return Err(AuthError::Invalid(format!(
                "it is valid for longer than this node's maximum token lifetime of {} s: mint tokens that expire sooner",
                self.max_lifetime.as_secs()
            )));
        }
        if claims.custom.tenant.is_empty() {
            return Err(AuthError::MissingClaim("a 'tenant' claim"));
        }
        // An empty `sub` names no user (found by fuzzing: it became a user with an empty id).
        let subject = claims.subject.filter(|s| !s.is_empty());
        let profile = end_user(subject.as_deref(), claims.custom.user);
        let caller = Caller {
            tenant: claims.custom.tenant,
            user: subject,
            scopes: claims.custom.scopes,
            profile,
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(digest, (caller.clone(), expires.as_secs()));
        Ok(caller)
    }
}

/// Mints dev tenant tokens with the node's dev key (`<data-dir>/keys/tenant-token.pem`).
pub struct DevTokenIssuer {
    pair: Ed25519KeyPair,
}

impl DevTokenIssuer {
    /// The dev key of `data_dir`, created on first use.
    pub fn open(data_dir: &Path) -> Result<Self, AuthConfigError> {
        let path = data_dir.join("keys").join("tenant-token.pem");
        let pem = keys::read_or_create(&path, || Ed25519KeyPair::generate().to_pem())?;
        let pair = Ed25519KeyPair::from_pem(&pem)
            .map_err(|e| AuthConfigError::BadKey(format!("{}: {e}", path.display())))?;
        Ok(Self { pair })
    }

    /// A token for `tenant` (and `user`, with its `profile`) valid for `ttl`.
    pub fn mint(
        &self,
        tenant: &str,
        user: Option<&str>,
        profile: Option<EndUser>,
        scopes: Vec<String>,
        ttl: std::time::Duration,
    ) -> Result<String, AuthConfigError> {
        let custom = TenantClaims {
            tenant: tenant.to_owned(),
            scopes,
            user: profile,
        };
        let mut claims = Claims::with_custom_claims(custom, Duration::from_secs(ttl.as_secs()));
        if let Some(user) = user {
            claims = claims.with_subject(user);
        }
        self.pair
            .sign(claims)
            .map_err(|e| AuthConfigError::BadKey(format!("cannot sign: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_tokens_verify_and_carry_their_claims() {
        let dir = tempfile_dir("dev-tokens");
        let issuer = DevTokenIssuer::open(&dir).unwrap();
        let auth = TenantAuth::dev(&dir).unwrap();
        let token = issuer
            .mint("acme", Some("u1"), None, vec!["ext:read".into()], HOUR)
            .unwrap();
        let caller = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(caller.tenant, "acme");
        assert_eq!(caller.user.as_deref(), Some("u1"));
        assert_eq!(caller.scopes, vec!["ext:read".to_owned()]);
        // The second use is answered from the cache, with the same caller.
        let again = auth.authenticate(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(again, caller);
        assert_eq!(auth.cache_stats().hits.load(Ordering::Relaxed), 1);
        assert_eq!(auth.cache_stats().misses.load(Ordering::Relaxed), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_empty_subject_names_no_user() {
        // Found by fuzzing (fuzz/regressions/tenant_token): `sub: ""` became a user whose id
        // is empty, where the runner envelope refuses one.
        let dir = tempfile_dir("empty-sub");
        let token = DevTokenIssuer::open(&dir)
            .unwrap()
            .mint("acme", Some(""), None, vec![], HOUR)
            .unwrap();
        let caller = TenantAuth::dev(&dir)
            .unwrap()
            .authenticate(Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!((caller.user, caller.profile), (None, None));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_missing_foreign_and_tampered_tokens() {
        let dir = tempfile_dir("bad-tokens");
        let other = tempfile_dir("other-key");
        let auth = TenantAuth::dev(&dir).unwrap();
        assert!(matches!(auth.authenticate(None), Err(AuthError::Missing)));
        assert!(matches!(
            auth.authenticate(Some("Basic abc")),
            Err(AuthError::Missing)
        ));
        let foreign = DevTokenIssuer::open(&other)
            .unwrap()
            .mint("acme", None, None, vec![], HOUR)
            .unwrap();
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {foreign}"))),
            Err(AuthError::Invalid(_))
        ));
        let mut token = DevTokenIssuer::open(&dir)
            .unwrap()
            .mint("acme", None, None, vec![], HOUR)
            .unwrap();
        // Rewrite the claims to another tenant and keep the original signature.
        let parts: Vec<&str> = token.split('.').collect();
        let claims = Base64UrlSafeNoPadding::decode_to_vec(parts[1], None).unwrap();
        let forged = String::from_utf8(claims)
            .unwrap()
            .replace("\"acme\"", "\"globex\"");
        assert!(forged.contains("globex"));
        let forged = Base64UrlSafeNoPadding::encode_to_string(forged).unwrap();
        token = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert!(auth.authenticate(Some(&format!("Bearer {token}"))).is_err());
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other).unwrap();
    }

    #[test]
    fn refuses_expired_tokens_past_the_clock_skew_and_tokens_without_expiry() {
        let dir = tempfile_dir("expired");
        let issuer = DevTokenIssuer::open(&dir).unwrap();
        let auth = TenantAuth::dev(&dir).unwrap();
        let custom = TenantClaims {
            tenant: "acme".into(),
            scopes: vec![],
            user: None,
        };
        let mut expired = Claims::with_custom_claims(custom.clone(), Duration::from_secs(60));
        let now = Clock::now_since_epoch();
        expired.issued_at = Some(now - Duration::from_secs(600));
        expired.invalid_before = Some(now - Duration::from_secs(600));
        expired.expires_at = Some(now - Duration::from_secs(120));
        let token = issuer.pair.sign(expired).unwrap();
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {token}"))),
            Err(AuthError::Invalid(_))
        ));
        let mut forever = Claims::with_custom_claims(custom, Duration::from_secs(60));
        forever.expires_at = None;
        let token = issuer.pair.sign(forever).unwrap();
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {token}"))),
            Err(AuthError::MissingClaim(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn hs256_needs_a_long_secret_and_verifies() {
        assert!(TenantAuth::hs256("short").is_err());
        let secret = "0123456789abcdef0123456789abcdef";
        let auth = TenantAuth::hs256(secret).unwrap();
        let key = HS256Key::from_bytes(secret.as_bytes());
        let claims = Claims::with_custom_claims(
            TenantClaims {
                tenant: "t9".into(),
                scopes: vec![],
                user: Some(EndUser {
                    user_email: "ann@example.com".into(),
                    ..EndUser::default()
                }),
            },
            Duration::from_secs(60),
        )
        .with_subject("u7");
        let token = key.authenticate(claims).unwrap();
        let caller = auth.authenticate(Some(&format!("bearer {token}"))).unwrap();
        assert_eq!(caller.tenant, "t9");
        // The `user` claim's profile takes its id from `sub`.
        let profile = caller.profile.expect("a profile");
        assert_eq!(
            (profile.user_id.as_str(), profile.user_email.as_str()),
            ("u7", "ann@example.com")
        );
    }

    #[test]
    fn refuses_tokens_valid_for_longer_than_the_maximum_lifetime() {
        let dir = tempfile_dir("lifetime");
        let issuer = DevTokenIssuer::open(&dir).unwrap();
        let auth = TenantAuth::dev(&dir).unwrap();
        let ten_years = std::time::Duration::from_secs(10 * 365 * 24 * 3600);
        let long = issuer.mint("acme", None, None, vec![], ten_years).unwrap();
        let error = auth
            .authenticate(Some(&format!("Bearer {long}")))
            .unwrap_err();
        assert!(
            error.to_string().contains("maximum token lifetime"),
            "{error}"
        );
        let day = issuer.mint("acme", None, None, vec![], 24 * HOUR).unwrap();
        assert!(auth.authenticate(Some(&format!("Bearer {day}"))).is_ok());
        let strict = TenantAuth::dev(&dir).unwrap().with_max_lifetime(HOUR / 2);
        let hour = issuer.mint("acme", None, None, vec![], HOUR).unwrap();
        assert!(
            strict
                .authenticate(Some(&format!("Bearer {hour}")))
                .is_err()
        );
    }

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "alga-auth-{name}-{}-{}",
            std::process::id(),
            keys::random_token()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
