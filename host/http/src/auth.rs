//! Bearer tokens: reading the `authorization` header, and static secrets (admin, runner,
//! sync, metrics tokens) compared in constant time.

use sha2::Digest;

use crate::error::ApiError;

/// Marks a response (in its extensions) whose caller proved who it is: a tenant token, the
/// service token or the admin token was accepted. The server always logs such requests; the
/// log lines of everyone else's failures are rate-limited, since anyone can cause them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerIdentified;

/// The `authorization` header's value, when there is a readable one.
pub fn authorization(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The token of an `authorization: Bearer <token>` header value (scheme case-insensitive),
/// if there is a non-empty one.
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    Some(token.trim()).filter(|t| scheme.eq_ignore_ascii_case("bearer") && !t.is_empty())
}

/// A static bearer secret, kept only as its SHA-256 and compared without early exit, so
/// timing does not reveal how much of a guess matched.
pub struct BearerSecret {
    digest: [u8; 32],
}

impl BearerSecret {
    /// Accepts exactly `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            digest: sha2::Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Whether the `authorization` header value carries the secret as a bearer token; `None`
    /// when there is no bearer token at all.
    pub fn check(&self, authorization: Option<&str>) -> Option<bool> {
        Some(self.matches(bearer_token(authorization)?))
    }

    /// Whether `token` is the secret (for secrets sent in a header of their own).
    pub fn matches(&self, token: &str) -> bool {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let differs = digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        differs == 0
    }

    /// `Ok` when `headers` carry the secret; else the one 401 answer, whose message says
    /// `what` token the route needs.
    pub fn require(&self, headers: &http::HeaderMap, what: &str) -> Result<(), ApiError> {
        match self.check(authorization(headers)) {
            Some(true) => Ok(()),
            Some(false) => Err(ApiError::unauthorized(format!("the {what} is not valid"))),
            None => Err(ApiError::unauthorized(format!(
                "missing {what}: send 'authorization: Bearer <{what}>'"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed_and_checked() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        let secret = BearerSecret::new("s3cret");
        assert_eq!(secret.check(Some("Bearer s3cret")), Some(true));
        assert_eq!(secret.check(Some("Bearer s3cre")), Some(false));
        assert_eq!(secret.check(None), None);
    }
}
