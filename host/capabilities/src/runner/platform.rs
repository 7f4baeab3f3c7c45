//! `clients`, `services`, `invoicing` and `ui-proxy`: the interfaces Alga's runner brokers to
//! the platform, served through [`PlatformBroker`] with Alga's operations and bodies.
//!
//! Each is gated by its own capability (`not-allowed` / `denied` / a `success: false` result
//! naming it, counted in `alga_capability_denials_total`). Answers are validated against the
//! WIT types (Alga's camelCase field names, snake_case accepted as Alga's runner does): a
//! malformed, oversized, late or failed answer becomes the interface's `internal` error (or
//! `success: false` with the message), and the message goes to the execution log. Never a trap.
//!
//! Differences from Alga's runner, all stricter: a field of the wrong type is refused rather
//! than dropped, and the `x-api-key` of `ui-proxy` (the install's `api_key` secret) is sent
//! only when the install holds `cap:secrets.get`.

use serde_json::{Map, Value};

use super::RunnerState;
use super::bindings::alga::extension::{clients, invoicing, services, ui_proxy};
use super::types::{
    ClientReadError, ClientSummary, ClientsListInput, ClientsListResult, CreateManualInvoiceInput,
    CreateManualInvoiceResult, DiscountType, ProxyError, ServiceBillingMethod, ServiceItemKind,
    ServiceReadError, ServiceSummary, ServicesListInput, ServicesListResult,
};
use crate::RequestCapabilities;
use crate::platform_broker::{PlatformBroker, PlatformCall, PlatformError};

/// Largest page Alga's runner lets a guest ask for.
const MAX_PAGE_SIZE: u32 = 100;

impl RunnerState {
    /// The identity of a platform call of this request; `None` without an install (a dev
    /// mapping), which has no install id for the platform to scope the call to.
    fn platform_call(&self, api_key: Option<String>) -> Option<PlatformCall<'_>> {
        let context = &self.context;
        Some(PlatformCall {
            tenant: &context.tenant_id,
            extension: &context.extension_id,
            install_id: context.install_id.as_deref()?,
            version_id: context.version_id.as_deref(),
            request_id: context.request_id.as_deref().unwrap_or_default(),
            user: self
                .user
                .as_deref()
                .map(|user| (user.user_id.as_str(), user.user_email.as_str())),
            api_key,
            journal: &self.journal,
            calls: &self.platform_calls,
        })
    }

    /// The user part of a clients/services body (`{userId, userType}`), as Alga's runner sends it.
    fn user_payload(&self, payload: &mut Map<String, Value>) {
        if let Some(user) = &self.user {
            payload.insert(
                "user".into(),
                serde_json::json!({"userId": user.user_id, "userType": user.user_type}),
            );
        }
    }

    /// Sends one read of `kind` (`clients`/`services`) and parses its answer with `parse`.
    async fn read<T>(
        &self,
        granted: bool,
        kind: &'static str,
        operation: &str,
        input: Map<String, Value>,
        parse: impl FnOnce(Value) -> Result<T, String>,
    ) -> Result<T, ReadFailure> {
        if !self.check(granted, kind) {
            return Err(ReadFailure::NotAllowed);
        }
        let call = self.platform_call(None).ok_or(ReadFailure::NotAllowed)?;
        let mut payload = Map::from_iter([("input".to_owned(), Value::Object(input))]);
        self.user_payload(&mut payload);
        self.platform
            .internal(kind, operation, payload, &call, parse)
            .await
            .map_err(ReadFailure::Platform)
    }
}

/// Why a clients/services read failed.
enum ReadFailure {
    NotAllowed,
    InvalidInput,
    Platform(PlatformError),
}

impl ReadFailure {
    /// Alga's mapping: 401/403 → not allowed, 400 → invalid input, anything else → internal.
    fn case(&self) -> ReadCase {
        match self {
            Self::NotAllowed => ReadCase::NotAllowed,
            Self::InvalidInput => ReadCase::InvalidInput,
            Self::Platform(PlatformError::Status { status, .. }) => match status {
                401 | 403 => ReadCase::NotAllowed,
                400 => ReadCase::InvalidInput,
                _ => ReadCase::Internal,
            },
            Self::Platform(_) => ReadCase::Internal,
        }
    }
}

enum ReadCase {
    NotAllowed,
    InvalidInput,
    Internal,
}

impl From<ReadFailure> for ClientReadError {
    fn from(failure: ReadFailure) -> Self {
        match failure.case() {
            ReadCase::NotAllowed => Self::NotAllowed,
            ReadCase::InvalidInput => Self::InvalidInput,
            ReadCase::Internal => Self::Internal,
        }
    }
}

impl From<ReadFailure> for ServiceReadError {
    fn from(failure: ReadFailure) -> Self {
        match failure.case() {
            ReadCase::NotAllowed => Self::NotAllowed,
            ReadCase::InvalidInput => Self::InvalidInput,
            ReadCase::Internal => Self::Internal,
        }
    }
}

/// `{page, pageSize}` of a list input, or why it is refused (before any call, as Alga does).
fn page(page: Option<u32>, page_size: Option<u32>) -> Result<(u32, u32), ReadFailure> {
    let (page, size) = (page.unwrap_or(1), page_size.unwrap_or(25));
    if page < 1 || !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(ReadFailure::InvalidInput);
    }
    Ok((page, size))
}

fn page_fields(filter: &mut Map<String, Value>, (page, size): (u32, u32)) {
    filter.insert("page".into(), page.into());
    filter.insert("pageSize".into(), size.into());
}

impl clients::Host for RequestCapabilities {
    async fn list_clients(
        &mut self,
        input: ClientsListInput,
    ) -> Result<ClientsListResult, ClientReadError> {
        let runner = &self.runner;
        if !runner.check(runner.granted.clients, "clients") {
            return Err(ClientReadError::NotAllowed);
        }
        let paging = page(input.page, input.page_size)?;
        let mut filter = Map::new();
        if let Some(search) = input.search {
            filter.insert("search".into(), search.into());
        }
        if let Some(include) = input.include_inactive {
            filter.insert("includeInactive".into(), include.into());
        }
        page_fields(&mut filter, paging);
        Ok(runner
            .read(
                runner.granted.clients,
                "clients",
                "list",
                filter,
                |answer| {
                    list(answer, client_summary).map(|(items, total_count, page, page_size)| {
                        ClientsListResult {
                            items,
                            total_count,
                            page,
                            page_size,
                        }
                    })
                },
            )
            .await?)
    }

    async fn get_client(
        &mut self,
        client_id: String,
    ) -> Result<Option<ClientSummary>, ClientReadError> {
        let runner = &self.runner;
        let input = Map::from_iter([("clientId".to_owned(), Value::String(client_id))]);
        Ok(runner
            .read(runner.granted.clients, "clients", "get", input, |answer| {
                item(answer, client_summary)
            })
            .await?)
    }
}

impl services::Host for RequestCapabilities {
    async fn list_services(
        &mut self,
        input: ServicesListInput,
    ) -> Result<ServicesListResult, ServiceReadError> {
        let runner = &self.runner;
        if !runner.check(runner.granted.services, "services") {
            return Err(ServiceReadError::NotAllowed);
        }
        let paging = page(input.page, input.page_size)?;
        let mut filter = Map::new();
        if let Some(search) = input.search {
            filter.insert("search".into(), search.into());
        }
        if let Some(kind) = input.item_kind {
            filter.insert("itemKind".into(), item_kind_name(kind).into());
        }
        if let Some(active) = input.is_active {
            filter.insert("isActive".into(), active.into());
        }
        if let Some(method) = input.billing_method {
            filter.insert("billingMethod".into(), billing_method_name(method).into());
        }
        page_fields(&mut filter, paging);
        Ok(runner
            .read(
                runner.granted.services,
                "services",
                "list",
                filter,
                |answer| {
                    list(answer, service_summary).map(|(items, total_count, page, page_size)| {
                        ServicesListResult {
                            items,
                            total_count,
                            page,
                            page_size,
                        }
                    })
                },
            )
            .await?)
    }

    async fn get_service(
        &mut self,
        service_id: String,
    ) -> Result<Option<ServiceSummary>, ServiceReadError> {
        let runner = &self.runner;
        let input = Map::from_iter([("serviceId".to_owned(), Value::String(service_id))]);
        Ok(runner
            .read(
                runner.granted.services,
                "services",
                "get",
                input,
                |answer| item(answer, service_summary),
            )
            .await?)
    }
}

impl invoicing::Host for RequestCapabilities {
    async fn create_manual_invoice(
        &mut self,
        input: CreateManualInvoiceInput,
    ) -> CreateManualInvoiceResult {
        let runner = &self.runner;
        if !runner.check(runner.granted.invoicing, "invoicing") {
            return failed_invoice(format!(
                "Permission denied: {} not granted",
                crate::names::INVOICING
            ));
        }
        let Some(call) = runner.platform_call(None) else {
            return failed_invoice("Permission denied: install_id missing".into());
        };
        let outcome = runner
            .platform
            .internal(
                "invoicing",
                "createManualInvoice",
                invoice_payload(input),
                &call,
                invoice_result,
            )
            .await;
        outcome.unwrap_or_else(|error| failed_invoice(error.to_string()))
    }
}

impl ui_proxy::Host for RequestCapabilities {
    async fn call_route(
        &mut self,
        route: String,
        payload: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ProxyError> {
        if !self.runner.check(self.runner.granted.ui_proxy, "ui_proxy") {
            return Err(ProxyError::Denied);
        }
        let api_key = self.secrets.for_host("api_key");
        let runner = &self.runner;
        let call = runner.platform_call(api_key).ok_or(ProxyError::Denied)?;
        let broker: &PlatformBroker = &runner.platform;
        broker
            .ui_proxy(&route, payload, &call)
            .await
            .map_err(|error| match error {
                // What Alga's runner answers when UI_PROXY_BASE_URL is unset.
                PlatformError::NotConfigured(_) => ProxyError::RouteNotFound,
                PlatformError::BadRoute(_) => ProxyError::BadRequest,
                PlatformError::Status { status, .. } => match status {
                    401 | 403 | 429 => ProxyError::Denied,
                    404 => ProxyError::RouteNotFound,
                    400..=499 => ProxyError::BadRequest,
                    _ => ProxyError::Internal,
                },
                _ => ProxyError::Internal,
            })
    }
}

/// A `success: false` invoice result carrying `error`.
fn failed_invoice(error: String) -> CreateManualInvoiceResult {
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

/// Alga's `createManualInvoice` body. Absent optional fields are left out rather than sent as
/// `null`: Alga's server validators treat `null` as present.
fn invoice_payload(input: CreateManualInvoiceInput) -> Map<String, Value> {
    let number =
        |n: f64| serde_json::Number::from_f64(n).map_or_else(|| Value::from(0), Value::Number);
    let items = input
        .items
        .into_iter()
        .map(|item| {
            let mut line = Map::new();
            line.insert("serviceId".into(), item.service_id.into());
            line.insert("quantity".into(), number(item.quantity));
            line.insert("description".into(), item.description.into());
            line.insert("rate".into(), number(item.rate));
            if let Some(discount) = item.is_discount {
                line.insert("isDiscount".into(), discount.into());
            }
            if let Some(kind) = item.discount_type {
                let kind = match kind {
                    DiscountType::Percentage => "percentage",
                    DiscountType::Fixed => "fixed",
                };
                line.insert("discountType".into(), kind.into());
            }
            if let Some(id) = item.applies_to_item_id {
                line.insert("appliesToItemId".into(), id.into());
            }
            if let Some(id) = item.applies_to_service_id {
                line.insert("appliesToServiceId".into(), id.into());
            }
            Value::Object(line)
        })
        .collect();
    let mut payload = Map::new();
    payload.insert("clientId".into(), input.client_id.into());
    payload.insert("items".into(), Value::Array(items));
    for (key, value) in [
        ("invoiceDate", input.invoice_date),
        ("dueDate", input.due_date),
        ("poNumber", input.po_number),
    ] {
        if let Some(value) = value {
            payload.insert(key.into(), value.into());
        }
    }
    payload
}

/// The fields of one JSON object of an answer, typed as the WIT records need them. Each field
/// is looked up under Alga's camelCase name, then its snake_case one.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value, what: &'static str) -> Result<Self, String> {
        value
            .as_object()
            .map(|object| Self { object, what })
            .ok_or_else(|| format!("{what} is not an object"))
    }

    /// The value under `camel` or `snake`; JSON `null` counts as absent.
    fn get(&self, camel: &str, snake: &str) -> Option<&'a Value> {
        self.object
            .get(camel)
            .or_else(|| self.object.get(snake))
            .filter(|v| !v.is_null())
    }

    fn wrong(&self, name: &str, expected: &str) -> String {
        format!("{}.{name} is not {expected}", self.what)
    }

    fn text(&self, camel: &str, snake: &str) -> Result<Option<String>, String> {
        match self.get(camel, snake) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(camel, "a string")),
        }
    }

    fn required_text(&self, camel: &str, snake: &str) -> Result<String, String> {
        self.text(camel, snake)?
            .ok_or_else(|| format!("{}.{camel} is missing", self.what))
    }

    fn flag(&self, camel: &str, snake: &str) -> Result<Option<bool>, String> {
        match self.get(camel, snake) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(camel, "a boolean")),
        }
    }

    fn number(&self, camel: &str, snake: &str) -> Result<Option<f64>, String> {
        match self.get(camel, snake) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(camel, "a number")),
            Some(_) => Err(self.wrong(camel, "a number")),
        }
    }

    fn count(&self, camel: &str, snake: &str) -> Result<Option<u32>, String> {
        match self.get(camel, snake) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(camel, "a count")),
        }
    }
}

/// A list answer `{items, totalCount, page, pageSize}` (Alga's defaults for absent counts).
fn list<T>(
    answer: Value,
    parse: fn(&Value) -> Result<T, String>,
) -> Result<(Vec<T>, u32, u32, u32), String> {
    let fields = Fields::of(&answer, "answer")?;
    let items = match fields.get("items", "items") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(parse).collect::<Result<_, _>>()?,
        Some(_) => return Err(fields.wrong("items", "a list")),
    };
    Ok((
        items,
        fields.count("totalCount", "total_count")?.unwrap_or(0),
        fields.count("page", "page")?.unwrap_or(1),
        fields.count("pageSize", "page_size")?.unwrap_or(25),
    ))
}

/// A get answer `{item}`: `null` is "not found"; a missing `item` is malformed.
fn item<T>(answer: Value, parse: fn(&Value) -> Result<T, String>) -> Result<Option<T>, String> {
    let fields = Fields::of(&answer, "answer")?;
    match fields.object.get("item") {
        None => Err("answer.item is missing".into()),
        Some(Value::Null) => Ok(None),
        Some(value) => parse(value).map(Some),
    }
}

fn client_summary(value: &Value) -> Result<ClientSummary, String> {
    let f = Fields::of(value, "client")?;
    Ok(ClientSummary {
        client_id: f.required_text("clientId", "client_id")?,
        client_name: f.required_text("clientName", "client_name")?,
        client_type: f.text("clientType", "client_type")?,
        is_inactive: f.flag("isInactive", "is_inactive")?.unwrap_or(false),
        default_currency_code: f.text("defaultCurrencyCode", "default_currency_code")?,
        account_manager_id: f.text("accountManagerId", "account_manager_id")?,
        account_manager_name: f.text("accountManagerName", "account_manager_name")?,
        billing_email: f.text("billingEmail", "billing_email")?,
    })
}

fn service_summary(value: &Value) -> Result<ServiceSummary, String> {
    let f = Fields::of(value, "service")?;
    let item_kind = match f.required_text("itemKind", "item_kind")?.as_str() {
        "service" => ServiceItemKind::Service,
        "product" => ServiceItemKind::Product,
        other => return Err(format!("service.itemKind {other:?} is unknown")),
    };
    let billing_method = match f.required_text("billingMethod", "billing_method")?.as_str() {
        "fixed" => ServiceBillingMethod::Fixed,
        "hourly" => ServiceBillingMethod::Hourly,
        "usage" => ServiceBillingMethod::Usage,
        other => return Err(format!("service.billingMethod {other:?} is unknown")),
    };
    Ok(ServiceSummary {
        service_id: f.required_text("serviceId", "service_id")?,
        service_name: f.required_text("serviceName", "service_name")?,
        item_kind,
        billing_method,
        service_type_id: f.text("serviceTypeId", "service_type_id")?,
        service_type_name: f.text("serviceTypeName", "service_type_name")?,
        default_rate: f.number("defaultRate", "default_rate")?.unwrap_or(0.0),
        unit_of_measure: f
            .text("unitOfMeasure", "unit_of_measure")?
            .unwrap_or_default(),
        is_active: f.flag("isActive", "is_active")?.unwrap_or(true),
        sku: f.text("sku", "sku")?,
    })
}

/// `createManualInvoice`'s answer; invoice fields may also sit under `invoice`, as Alga's
/// runner accepts.
fn invoice_result(answer: Value) -> Result<CreateManualInvoiceResult, String> {
    let top = Fields::of(&answer, "answer")?;
    let invoice = match top.get("invoice", "invoice") {
        None => None,
        Some(value) => Some(Fields::of(value, "answer.invoice")?),
    };
    let text = |camel: &str, snake: &str| -> Result<Option<String>, String> {
        match top.text(camel, snake)? {
            Some(s) => Ok(Some(s)),
            None => invoice
                .as_ref()
                .map_or(Ok(None), |inner| inner.text(camel, snake)),
        }
    };
    let number = |camel: &str| -> Result<Option<f64>, String> {
        match top.number(camel, camel)? {
            Some(n) => Ok(Some(n)),
            None => invoice
                .as_ref()
                .map_or(Ok(None), |inner| inner.number(camel, camel)),
        }
    };
    let field_errors = match top.get("fieldErrors", "field_errors") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Ok(CreateManualInvoiceResult {
        success: top.flag("success", "success")?.unwrap_or(false),
        invoice_id: text("invoiceId", "invoice_id")?,
        invoice_number: text("invoiceNumber", "invoice_number")?,
        status: text("status", "status")?,
        subtotal: number("subtotal")?,
        tax: number("tax")?,
        total: number("total")?,
        error: top.text("error", "error")?,
        field_errors,
    })
}

fn item_kind_name(kind: ServiceItemKind) -> &'static str {
    match kind {
        ServiceItemKind::Service => "service",
        ServiceItemKind::Product => "product",
    }
}

fn billing_method_name(method: ServiceBillingMethod) -> &'static str {
    match method {
        ServiceBillingMethod::Fixed => "fixed",
        ServiceBillingMethod::Hourly => "hourly",
        ServiceBillingMethod::Usage => "usage",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_checked_against_the_wit_types() {
        let ok = json!({"items": [{"clientId": "c1", "clientName": "Acme", "isInactive": false}],
            "totalCount": 1, "page": 1, "pageSize": 25});
        let (items, total, _, _) = list(ok, client_summary).unwrap();
        assert_eq!((items[0].client_name.as_str(), total), ("Acme", 1));
        for bad in [
            json!([]),
            json!({"items": {}}),
            json!({"items": [{"clientId": 7, "clientName": "x"}]}),
            json!({"items": [{"clientName": "x"}]}),
            json!({"items": [], "totalCount": -1}),
            json!({"items": [], "totalCount": 5_000_000_000u64}),
        ] {
            assert!(list(bad.clone(), client_summary).is_err(), "{bad}");
        }
        assert!(
            item(json!({"item": null}), client_summary)
                .unwrap()
                .is_none()
        );
        assert!(item(json!({}), client_summary).is_err());
        assert!(
            item(
                json!({"item": {"serviceId": "s", "serviceName": "n", "itemKind": "gift", "billingMethod": "fixed"}}),
                service_summary
            )
            .is_err()
        );
        let invoice =
            invoice_result(json!({"success": true, "invoice": {"invoiceId": "i1", "total": 10}}))
                .unwrap();
        assert_eq!(
            (invoice.invoice_id.as_deref(), invoice.total),
            (Some("i1"), Some(10.0))
        );
        assert!(invoice_result(json!({"success": "yes"})).is_err());
        assert!(invoice_result(json!("ok")).is_err());
    }
}
