//! Bundle signatures: a compact JWS (EdDSA / Ed25519, via jwt-simple) whose claims bind the
//! bundle's `content_hash`, `name`, `version` and `publisher`, and the trust bundle of publisher
//! public keys (`SIGNING_TRUST_BUNDLE`: PEM text inline, or a path to a PEM file) that verifies it.
//! An extension name's owner key also signs [`DelegationClaims`], letting another key publish
//! versions of that name.

use jwt_simple::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a signature vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleClaims {
    /// `sha256:<hex>` of the bundle archive.
    pub content_hash: String,
    /// Manifest `name`.
    pub name: String,
    /// Manifest `version`.
    pub version: String,
    /// Manifest `publisher`.
    pub publisher: String,
}

/// What an owner key vouches for when it lets another key publish versions of its extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationClaims {
    /// Always [`DelegationClaims::PURPOSE`], so no other signed document can pass for one.
    pub purpose: String,
    /// The extension name.
    pub extension: String,
    /// Fingerprint (`sha256:<hex>`) of the key that may publish it.
    pub delegate: String,
}

impl DelegationClaims {
    /// The `purpose` claim of every delegation.
    pub const PURPOSE: &'static str = "alga-edge/delegate-publishing";

    /// The claims letting `delegate` publish `extension`.
    pub fn new(extension: &str, delegate: &str) -> Self {
        Self {
            purpose: Self::PURPOSE.to_owned(),
            extension: extension.to_owned(),
            delegate: delegate.to_owned(),
        }
    }
}

/// Why signing or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A key could not be parsed.
    #[error("invalid {what}: {reason}")]
    BadKey {
        /// Which key.
        what: &'static str,
        /// Parser message.
        reason: String,
    },
    /// The trust bundle holds no key.
    #[error("the trust bundle contains no Ed25519 public key (expected PEM 'PUBLIC KEY' blocks)")]
    EmptyTrustBundle,
    /// The trust bundle file cannot be read.
    #[error("cannot read the trust bundle {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No trusted key produced this signature (or it is not a valid JWS at all).
    #[error("the signature is not valid for any trusted publisher key")]
    Untrusted,
    /// Signed by a trusted key, but for something else.
    #[error("the signature is for {field} '{signed}', not '{expected}'")]
    Mismatch {
        /// The claim that differs.
        field: &'static str,
        /// What was signed.
        signed: String,
        /// What is being verified.
        expected: String,
    },
    /// The key that must have signed is not in the trust bundle (any more).
    #[error("the key {fingerprint} is not in this node's trust bundle")]
    KeyNotTrusted {
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// Producing the token failed.
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A publisher's Ed25519 private key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self::with_fingerprint_kid(Ed25519KeyPair::generate())
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self, SigningError> {
        let pair = Ed25519KeyPair::from_pem(pem).map_err(|e| SigningError::BadKey {
            what: "Ed25519 private key",
            reason: e.to_string(),
        })?;
        Ok(Self::with_fingerprint_kid(pair))
    }

    fn with_fingerprint_kid(pair: Ed25519KeyPair) -> Self {
        let kid = fingerprint(&pair.public_key());
        Self {
            pair: pair.with_key_id(&kid),
        }
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        self.pair.to_pem()
    }

    /// The public key as SPKI PEM, the form a trust bundle holds.
    pub fn public_pem(&self) -> String {
        self.pair.public_key().to_pem()
    }

    /// `sha256:<hex>` of the raw public key, also the signature's `kid`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.pair.public_key())
    }

    /// Signs `claims`, returning the compact JWS. Signatures do not expire: a bundle stays
    /// trusted for as long as its publisher key is in the trust bundle.
    pub fn sign(&self, claims: &BundleClaims) -> Result<String, SigningError> {
        let mut jwt = Claims::with_custom_claims(claims.clone(), Duration::from_secs(0));
        jwt.expires_at = None;
        self.pair
            .sign(jwt)
            .map_err(|e| SigningError::Sign(e.to_string()))
    }
}

impl SigningKey {
    /// Signs a delegation letting the key `delegate` (a fingerprint) publish `extension`.
    /// Delegations do not expire; the registry records them and an admin can revoke them.
    pub fn sign_delegation(&self, extension: &str, delegate: &str) -> Result<String, SigningError> {
        let mut jwt = Claims::with_custom_claims(
            DelegationClaims::new(extension, delegate),
            Duration::from_secs(0),
        );
        jwt.expires_at = None;
        self.pair
            .sign(jwt)
            .map_err(|e| SigningError::Sign(e.to_string()))
    }
}

/// The publisher keys this node trusts.
pub struct TrustBundle {
    keys: Vec<(Ed25519PublicKey, String)>,
}

/// A verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Fingerprint of the trusted key that made it.
    pub key_fingerprint: String,
}

impl TrustBundle {
    /// Loads `SIGNING_TRUST_BUNDLE`-style input: PEM text when it contains a PEM header,
    /// otherwise the path of a PEM file.
    pub fn load(spec: &str) -> Result<Self, SigningError> {
        if spec.contains("-----BEGIN") {
            return Self::from_pem(spec);
        }
        let text = std::fs::read_to_string(spec).map_err(|source| SigningError::Read {
            path: spec.to_owned(),
            source,
        })?;
        Self::from_pem(&text)
    }

    /// Every `PUBLIC KEY` block of `text`; other blocks (certificates, comments) are ignored.
    pub fn from_pem(text: &str) -> Result<Self, SigningError> {
        const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
        const END: &str = "-----END PUBLIC KEY-----";
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(BEGIN) {
            let Some(end) = rest[start..].find(END) else {
                return Err(SigningError::BadKey {
                    what: "trust bundle",
                    reason: "a PUBLIC KEY block has no END line".into(),
                });
            };
            let block = &rest[start..start + end + END.len()];
            let key = Ed25519PublicKey::from_pem(block).map_err(|e| SigningError::BadKey {
                what: "trust bundle public key",
                reason: e.to_string(),
            })?;
            let print = fingerprint(&key);
            keys.push((key, print));
            rest = &rest[start + end + END.len()..];
        }
        if keys.is_empty() {
            return Err(SigningError::EmptyTrustBundle);
        }
        Ok(Self { keys })
    }

    /// Fingerprints of the trusted keys.
    pub fn fingerprints(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(_, print)| print.as_str())
    }

    /// The claims of `signature` when a trusted key made it. Callers must still compare every
    /// claim with what they hold; [`TrustBundle::verify`] does that.
    pub fn signed_claims(&self, signature: &str) -> Result<(BundleClaims, Verified), SigningError> {
        let signature = signature.trim();
        self.keys
            .iter()
            .find_map(|(key, print)| {
                let token = key.verify_token::<BundleClaims>(signature, None).ok()?;
                Some((
                    token.custom,
                    Verified {
                        key_fingerprint: print.clone(),
                    },
                ))
            })
            .ok_or(SigningError::Untrusted)
    }

    /// The delegation `token` when the trusted key `signer` (a fingerprint) made it; any other
    /// key's signature, or a token that is not a delegation, is refused.
    pub fn verify_delegation(
        &self,
        token: &str,
        signer: &str,
    ) -> Result<DelegationClaims, SigningError> {
        let (key, _) = self
            .keys
            .iter()
            .find(|(_, print)| print == signer)
            .ok_or_else(|| SigningError::KeyNotTrusted {
                fingerprint: signer.to_owned(),
            })?;
        let claims = key
            .verify_token::<DelegationClaims>(token.trim(), None)
            .map_err(|_| SigningError::Untrusted)?
            .custom;
        if claims.purpose != DelegationClaims::PURPOSE {
            return Err(SigningError::Mismatch {
                field: "purpose",
                signed: claims.purpose,
                expected: DelegationClaims::PURPOSE.to_owned(),
            });
        }
        Ok(claims)
    }

    /// Checks that `signature` was made by a trusted key for exactly `expected`.
    pub fn verify(
        &self,
        signature: &str,
        expected: &BundleClaims,
    ) -> Result<Verified, SigningError> {
        let (signed, verified) = self.signed_claims(signature)?;
        signed.check_matches(expected)?;
        Ok(verified)
    }
}

impl BundleClaims {
    /// Errors naming the first claim that differs from `expected`.
    pub fn check_matches(&self, expected: &BundleClaims) -> Result<(), SigningError> {
        let fields = [
            ("content_hash", &self.content_hash, &expected.content_hash),
            ("name", &self.name, &expected.name),
            ("version", &self.version, &expected.version),
            ("publisher", &self.publisher, &expected.publisher),
        ];
        for (field, signed, expected) in fields {
            if signed != expected {
                return Err(SigningError::Mismatch {
                    field,
                    signed: signed.clone(),
                    expected: expected.clone(),
                });
            }
        }
        Ok(())
    }
}

fn fingerprint(key: &Ed25519PublicKey) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.to_bytes())))
}
