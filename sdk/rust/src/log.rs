//! Logging (`cap:log.emit`, `wasi:logging`): lines go to the node log and the request's
//! execution-log row. Without the grant they are dropped (the interface has no error).

use crate::bindings::wasi::logging::logging::{Level, log};

const CONTEXT: &str = "extension";

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, CONTEXT, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, CONTEXT, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, CONTEXT, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, CONTEXT, message);
}
