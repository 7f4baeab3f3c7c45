//! Install secrets sealed at rest (DESIGN §2, `cap:secrets.get`): the registry stores only an
//! AEAD envelope; the host opens it with the node key when a component asks.
//!
//! Envelope: `0x01 ‖ 24-byte nonce ‖ XChaCha20-Poly1305(JSON map)`, with the install id as
//! associated data, so an envelope copied onto another install does not open.

use std::collections::BTreeMap;
use std::fmt;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const ENVELOPE_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// Why secrets could not be sealed or opened. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The node key is not 32 bytes of hex.
    #[error("invalid secrets key: expected 64 hex characters (32 bytes)")]
    BadKey,
    /// The envelope is damaged, for another install, or sealed with another key.
    #[error("the sealed secrets cannot be opened (wrong node key, wrong install, or damaged)")]
    Unseal,
    /// Sealing failed.
    #[error("cannot seal secrets")]
    Seal,
}

/// Plaintext secrets of one install; `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

impl Secrets {
    /// Wraps a name → value map.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self(values)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether there are no secrets.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Secret names, sorted (what `list-keys` returns).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.names().map(|n| format!("{n}=<redacted>")))
            .finish()
    }
}

/// Seals and opens install secrets with the node key.
#[derive(Clone)]
pub struct SecretSealer {
    cipher: XChaCha20Poly1305,
}

impl SecretSealer {
    /// A sealer from a 32-byte key given as 64 hex characters.
    pub fn from_hex(key: &str) -> Result<Self, SecretsError> {
        let bytes = hex::decode(key.trim()).map_err(|_| SecretsError::BadKey)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SecretsError::BadKey)?;
        Ok(Self { cipher })
    }

    /// A fresh random key as hex (for `keygen` and dev setups).
    pub fn generate_key_hex() -> String {
        hex::encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// Seals `secrets` for the install `install_id`.
    pub fn seal(&self, install_id: &str, secrets: &Secrets) -> Result<Vec<u8>, SecretsError> {
        let plaintext = serde_json::to_vec(&secrets.0).map_err(|_| SecretsError::Seal)?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: install_id.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Seal)?;
        let mut envelope = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        envelope.push(ENVELOPE_VERSION);
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&sealed);
        Ok(envelope)
    }

    /// Opens an envelope sealed for `install_id`.
    pub fn open(&self, install_id: &str, envelope: &[u8]) -> Result<Secrets, SecretsError> {
        if envelope.len() < 1 + NONCE_LEN || envelope[0] != ENVELOPE_VERSION {
            return Err(SecretsError::Unseal);
        }
        let nonce = XNonce::from_slice(&envelope[1..1 + NONCE_LEN]);
        let plaintext = self
            .cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &envelope[1 + NONCE_LEN..],
                    aad: install_id.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Unseal)?;
        serde_json::from_slice(&plaintext)
            .map(Secrets)
            .map_err(|_| SecretsError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets::new([("api_key".to_string(), "s3cr3t-value".to_string())].into())
    }

    #[test]
    fn seals_and_opens_only_for_the_same_install_and_key() {
        let sealer = SecretSealer::from_hex(&SecretSealer::generate_key_hex()).unwrap();
        let envelope = sealer.seal("install-1", &secrets()).unwrap();
        assert!(
            !envelope
                .windows(b"s3cr3t-value".len())
                .any(|w| w == b"s3cr3t-value"),
            "plaintext visible in the envelope"
        );
        assert_eq!(sealer.open("install-1", &envelope).unwrap(), secrets());
        // Two seals of the same secrets differ (fresh nonce).
        assert_ne!(sealer.seal("install-1", &secrets()).unwrap(), envelope);

        assert!(matches!(
            sealer.open("install-2", &envelope),
            Err(SecretsError::Unseal)
        ));
        let other = SecretSealer::from_hex(&SecretSealer::generate_key_hex()).unwrap();
        assert!(matches!(
            other.open("install-1", &envelope),
            Err(SecretsError::Unseal)
        ));
        let mut damaged = envelope.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            sealer.open("install-1", &damaged),
            Err(SecretsError::Unseal)
        ));
        assert!(matches!(
            sealer.open("install-1", b"\x01short"),
            Err(SecretsError::Unseal)
        ));
    }

    #[test]
    fn debug_output_never_shows_values() {
        let text = format!("{:?}", secrets());
        assert!(text.contains("api_key"));
        assert!(!text.contains("s3cr3t"));
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(matches!(
            SecretSealer::from_hex("abcd"),
            Err(SecretsError::BadKey)
        ));
        assert!(matches!(
            SecretSealer::from_hex("zz"),
            Err(SecretsError::BadKey)
        ));
    }
}
