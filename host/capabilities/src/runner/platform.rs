//! `ui-proxy`, `invoicing`, `clients`, `services`: the interfaces Alga's runner brokers to the
//! platform. Not built on
//! this node yet: each call answers its interface's own error — `denied` / `not-allowed`
//! without the capability, `internal` (or a result with `success: false` and a message) with
//! it — and logs which piece is missing. Never a trap.

use super::RunnerState;
use super::bindings::alga::extension::{clients, invoicing, services, ui_proxy};
use super::types::{
    ClientReadError, ClientSummary, ClientsListInput, ClientsListResult, CreateManualInvoiceInput,
    CreateManualInvoiceResult, ProxyError, ServiceReadError, ServiceSummary, ServicesListInput,
    ServicesListResult,
};
use crate::RequestCapabilities;

/// What is missing for the platform interfaces.
const NO_PLATFORM: &str =
    "no platform API is configured on this node (platform broker not built yet)";

/// Outcome of the gate in front of an interface that is not built yet.
enum Gate {
    /// The capability is missing.
    Denied(String),
    /// Granted, but nothing serves it here.
    Unavailable(String),
}

impl RunnerState {
    fn gate(&self, granted: bool, label: &'static str, capability: &str, missing: &str) -> Gate {
        if !self.check(granted, label) {
            return Gate::Denied(format!("Permission denied: {capability} not granted"));
        }
        tracing::warn!(
            tenant = %self.context.tenant_id,
            extension = %self.context.extension_id,
            interface = label,
            "{missing}"
        );
        self.metrics.deny(label, "not_available");
        Gate::Unavailable(missing.to_owned())
    }

    fn proxy_gate(&self) -> ProxyError {
        match self.gate(
            self.granted.ui_proxy,
            "ui_proxy",
            crate::names::UI_PROXY,
            NO_PLATFORM,
        ) {
            Gate::Denied(_) => ProxyError::Denied,
            Gate::Unavailable(_) => ProxyError::Internal,
        }
    }

    fn client_error(&self) -> ClientReadError {
        match self.gate(
            self.granted.clients,
            "clients",
            crate::names::CLIENTS,
            NO_PLATFORM,
        ) {
            Gate::Denied(_) => ClientReadError::NotAllowed,
            Gate::Unavailable(_) => ClientReadError::Internal,
        }
    }

    fn service_error(&self) -> ServiceReadError {
        match self.gate(
            self.granted.services,
            "services",
            crate::names::SERVICES,
            NO_PLATFORM,
        ) {
            Gate::Denied(_) => ServiceReadError::NotAllowed,
            Gate::Unavailable(_) => ServiceReadError::Internal,
        }
    }
}

impl ui_proxy::Host for RequestCapabilities {
    async fn call_route(
        &mut self,
        _route: String,
        _payload: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ProxyError> {
        Err(self.runner.proxy_gate())
    }
}

impl invoicing::Host for RequestCapabilities {
    async fn create_manual_invoice(
        &mut self,
        _input: CreateManualInvoiceInput,
    ) -> CreateManualInvoiceResult {
        let runner = &self.runner;
        let error = match runner.gate(
            runner.granted.invoicing,
            "invoicing",
            crate::names::INVOICING,
            NO_PLATFORM,
        ) {
            Gate::Denied(message) | Gate::Unavailable(message) => message,
        };
        CreateManualInvoiceResult {
            success: false,
            invoice_id: None,
            invoice_number: None,
            status: None,
            subtotal: None,
            tax: None,
            total: None,
            error: Some(error),
            field_errors: None,
        }
    }
}

impl clients::Host for RequestCapabilities {
    async fn list_clients(
        &mut self,
        _input: ClientsListInput,
    ) -> Result<ClientsListResult, ClientReadError> {
        Err(self.runner.client_error())
    }

    async fn get_client(
        &mut self,
        _client_id: String,
    ) -> Result<Option<ClientSummary>, ClientReadError> {
        Err(self.runner.client_error())
    }
}

impl services::Host for RequestCapabilities {
    async fn list_services(
        &mut self,
        _input: ServicesListInput,
    ) -> Result<ServicesListResult, ServiceReadError> {
        Err(self.runner.service_error())
    }

    async fn get_service(
        &mut self,
        _service_id: String,
    ) -> Result<Option<ServiceSummary>, ServiceReadError> {
        Err(self.runner.service_error())
    }
}
