//! The install's config (`cap:config.get`, `wasi:config/store`).

use crate::CapabilityError;
use crate::bindings::wasi::config::store;

fn error(e: store::Error) -> CapabilityError {
    match e {
        store::Error::Upstream(message) if message.starts_with("access denied") => {
            CapabilityError::Denied("cap:config.get")
        }
        store::Error::Upstream(message) | store::Error::Io(message) => {
            CapabilityError::Failed(message)
        }
    }
}

/// The value of `key`.
pub fn get(key: &str) -> Result<Option<String>, CapabilityError> {
    store::get(key).map_err(error)
}

/// Every entry.
pub fn all() -> Result<Vec<(String, String)>, CapabilityError> {
    store::get_all().map_err(error)
}
