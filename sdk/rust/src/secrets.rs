//! The install's secrets (`cap:secrets.get`, `alga:extension/secrets`): opened by the host at
//! call time. Keep values out of responses and logs.

use crate::CapabilityError;
use crate::bindings::alga::extension::secrets;

fn error(e: secrets::Error) -> CapabilityError {
    match e {
        secrets::Error::AccessDenied => CapabilityError::Denied("cap:secrets.get"),
        secrets::Error::Other(message) => CapabilityError::Failed(message),
    }
}

/// The value of secret `name`.
pub fn get(name: &str) -> Result<Option<String>, CapabilityError> {
    secrets::get(name).map_err(error)
}

/// The names of the install's secrets.
pub fn names() -> Result<Vec<String>, CapabilityError> {
    secrets::list_keys().map_err(error)
}
