//! `secrets.get` / `secrets.list-keys` (`cap:secrets.get`): the same secrets as
//! `alga:extension/secrets@0.1.0` ([`crate::secrets`]), with Alga's error cases.

use super::bindings::alga::extension::secrets;
use super::types::SecretError;
use crate::RequestCapabilities;
use crate::bindings::alga::extension::secrets::Error;

impl secrets::Host for RequestCapabilities {
    async fn get(&mut self, key: String) -> Result<String, SecretError> {
        match self.secrets.secrets() {
            Ok(opened) => opened
                .get(&key)
                .map(str::to_owned)
                .ok_or(SecretError::Missing),
            Err(Error::AccessDenied) => Err(SecretError::Denied),
            Err(Error::Other(_)) => Err(SecretError::Internal),
        }
    }

    async fn list_keys(&mut self) -> Vec<String> {
        // The interface has no error: a refused or failed listing is empty (and counted or
        // logged by the secrets module).
        self.secrets
            .secrets()
            .map(|opened| opened.names().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}
