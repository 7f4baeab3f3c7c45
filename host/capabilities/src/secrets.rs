//! `alga:extension/secrets` (`cap:secrets.get`): the secrets a tenant sealed into its install.
//! The envelope is opened inside the host on the first call of a request and the values live
//! only in that request's state and the guest's memory: never logged, never in an error.

use std::sync::Arc;

use alga_edge_http::trace_context;
use alga_edge_registry::secrets::{SecretSealer, Secrets};
use wasmtime::component::{HasData, Linker};

use super::bindings::alga::extension::secrets::{self as wit, Error};
use super::{CapabilityMetrics, CapabilityView, Journal};

/// Per-request state behind the `secrets` interface.
pub struct SecretsState {
    granted: bool,
    install_id: String,
    sealed: Option<Arc<[u8]>>,
    sealer: Option<SecretSealer>,
    opened: Option<Secrets>,
    journal: Arc<Journal>,
    metrics: Arc<CapabilityMetrics>,
}

impl SecretsState {
    /// Secrets of `install_id`, sealed in `sealed`, opened with `sealer` when `granted`; or,
    /// when the caller supplied this call's own secrets (`call`), those instead. Once opened,
    /// their values are masked in the request's `journal` (every log line and tail of it).
    pub fn new(
        granted: bool,
        install_id: String,
        sealed: Option<Arc<[u8]>>,
        sealer: Option<SecretSealer>,
        call: Option<Arc<Secrets>>,
        journal: Arc<Journal>,
        metrics: Arc<CapabilityMetrics>,
    ) -> Self {
        let opened = call.map(|secrets| (*secrets).clone());
        if let Some(opened) = &opened {
            mask_values(&journal, opened);
        }
        Self {
            granted,
            install_id,
            sealed,
            sealer,
            opened,
            journal,
            metrics,
        }
    }

    /// The opened secrets, or why they cannot be read (counted when not granted).
    pub(crate) fn secrets(&mut self) -> Result<&Secrets, Error> {
        let mut span = trace_context::span("secrets");
        if !self.granted {
            span.fail("not granted");
            self.metrics.deny("secrets", "not_granted");
            return Err(Error::AccessDenied);
        }
        if self.opened.is_none() {
            let opened = match (&self.sealed, &self.sealer) {
                (None, _) => Secrets::default(),
                (Some(envelope), Some(sealer)) => {
                    sealer.open(&self.install_id, envelope).map_err(|_| {
                        // The node key differs from the one that sealed them (an edge started
                        // without the primary's ALGA_SECRETS_KEY), or the row is damaged.
                        tracing::error!(install = %self.install_id, "cannot open install secrets");
                        Error::Other("the host cannot open this install's secrets".into())
                    })?
                }
                (Some(_), None) => {
                    return Err(Error::Other("this node has no secrets key".into()));
                }
            };
            mask_values(&self.journal, &opened);
            self.opened = Some(opened);
        }
        Ok(self.opened.as_ref().expect("opened above"))
    }
}

impl SecretsState {
    /// The secret `name` for the host's own use (the platform broker's `x-api-key`), when the
    /// install holds `cap:secrets.get`; `None` otherwise, without counting a refusal: the guest
    /// asked for nothing.
    pub(crate) fn for_host(&mut self, name: &str) -> Option<String> {
        if !self.granted {
            return None;
        }
        self.secrets().ok()?.get(name).map(str::to_owned)
    }
}

impl wit::Host for SecretsState {
    fn get(&mut self, name: String) -> Result<Option<String>, Error> {
        Ok(self.secrets()?.get(&name).map(str::to_owned))
    }

    fn list_keys(&mut self) -> Result<Vec<String>, Error> {
        Ok(self.secrets()?.names().map(str::to_owned).collect())
    }
}

/// Masks every value of `secrets` in `journal`'s lines.
fn mask_values(journal: &Journal, secrets: &Secrets) {
    journal.mask_secrets(secrets.names().filter_map(|name| secrets.get(name)));
}

struct SecretsData;

impl HasData for SecretsData {
    type Data<'a> = &'a mut SecretsState;
}

/// Links `alga:extension/secrets`.
pub fn add_to_linker<T: CapabilityView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, SecretsData>(linker, |state: &mut T| &mut state.capabilities().secrets)
}
