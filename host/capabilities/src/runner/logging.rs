//! `logging.log-info/warn/error` (`cap:log.emit`, granted by default): the same path as
//! `wasi:logging` ([`crate::logging`]): the node log and the request's execution-log row.

use super::bindings::alga::extension::logging;
use crate::RequestCapabilities;
use crate::logging::Level;

/// The `context` our log lines carry for this interface.
const CONTEXT: &str = "alga";

impl logging::Host for RequestCapabilities {
    async fn log_info(&mut self, message: String) {
        self.logging.log(Level::Info, CONTEXT, &message);
    }

    async fn log_warn(&mut self, message: String) {
        self.logging.log(Level::Warn, CONTEXT, &message);
    }

    async fn log_error(&mut self, message: String) {
        self.logging.log(Level::Error, CONTEXT, &message);
    }
}
