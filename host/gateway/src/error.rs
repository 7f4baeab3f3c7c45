//! Every way a gateway or runner request can fail, with its HTTP status and code; answered
//! through the node's one error contract ([`ApiError`], DESIGN §5).

use alga_edge_engine::InvokeError;
use alga_edge_http::{ApiError, HostBody};
use http::{Response, StatusCode};

/// Why a gateway request was not answered by the extension.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matches the request path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// No valid tenant token.
    #[error("{0}")]
    Unauthorized(String),
    /// A stored bundle failed verification at load (signature or hash): never run.
    #[error("the extension's bundle failed verification: {0}")]
    BundleRejected(String),
    /// The request body is over the cap.
    #[error("the request body is larger than {limit_bytes} bytes")]
    BodyTooLarge {
        /// The cap.
        limit_bytes: u64,
    },
    /// Too many or too large request headers.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A rate or concurrency limit refused the request.
    #[error("{reason}; retry after {retry_after} s")]
    RateLimited {
        /// Which limit refused (`tenant_rate`, `install_concurrency`…), a metrics label.
        limit: &'static str,
        /// Seconds until a retry can succeed.
        retry_after: u64,
        /// Which limit.
        reason: String,
    },
    /// The path names no extension the tenant can use.
    #[error("extension '{0}' is not installed for this tenant")]
    UnknownExtension(String),
    /// Endpoint enforcement is on and the manifest declares no such method + path.
    #[error("{method} {path} is not an endpoint declared in the extension's manifest")]
    EndpointNotDeclared {
        /// Request method.
        method: String,
        /// Path the component would have seen.
        path: String,
    },
    /// The request itself is malformed (bad extension id, bad path).
    #[error("{0}")]
    BadRequest(String),
    /// The component trapped: a panic, `unreachable`, a bad memory access…
    #[error("the extension crashed: {0}")]
    GuestTrap(String),
    /// The component tried to grow its memory past the per-instance cap.
    #[error("the extension exceeded its memory limit of {limit_mib} MiB")]
    MemoryLimit {
        /// The cap, in MiB.
        limit_mib: u64,
    },
    /// The component overflowed the wasm stack.
    #[error("the extension overflowed its stack")]
    StackOverflow,
    /// The component answered with an HTTP error code instead of a response, or never answered.
    #[error("the extension returned no valid response: {0}")]
    BadGuestResponse(String),
    /// The component did not finish within the deadline.
    #[error("the extension did not answer within {timeout_ms} ms")]
    Timeout {
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// Every instance slot of this node is busy.
    #[error("this node is at capacity ({max} concurrent instances); retry shortly")]
    AtCapacity {
        /// The node-wide instance cap.
        max: u32,
    },
    /// A failure of the host itself (compile error of a stored component, I/O…).
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute(_) | Self::UnknownExtension(_) | Self::EndpointNotDeclared { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BundleRejected(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::GuestTrap(_)
            | Self::MemoryLimit { .. }
            | Self::StackOverflow
            | Self::BadGuestResponse(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::AtCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable class, the `error` field of the JSON body and a metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute(_) => "not_found",
            Self::UnknownExtension(_) => "extension_not_found",
            Self::EndpointNotDeclared { .. } => "endpoint_not_found",
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::BodyTooLarge { .. } => "payload_too_large",
            Self::HeadersTooLarge(_) => "request_headers_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::BundleRejected(_) => "bundle_rejected",
            Self::GuestTrap(_) => "extension_trap",
            Self::MemoryLimit { .. } => "extension_memory_limit",
            Self::StackOverflow => "extension_stack_overflow",
            Self::BadGuestResponse(_) => "extension_bad_response",
            Self::Timeout { .. } => "extension_timeout",
            Self::AtCapacity { .. } => "node_at_capacity",
            Self::Internal(_) => "internal_error",
        }
    }

    /// Why the gateway refused the request before running anything (a metrics label), or
    /// `None` when the extension ran and failed.
    pub fn denial_reason(&self) -> Option<&'static str> {
        match self {
            Self::RateLimited { limit, .. } => Some(limit),
            Self::NoRoute(_)
            | Self::Unauthorized(_)
            | Self::UnknownExtension(_)
            | Self::EndpointNotDeclared { .. }
            | Self::BadRequest(_)
            | Self::BodyTooLarge { .. }
            | Self::HeadersTooLarge(_)
            | Self::BundleRejected(_)
            | Self::AtCapacity { .. } => Some(self.code()),
            Self::GuestTrap(_)
            | Self::MemoryLimit { .. }
            | Self::StackOverflow
            | Self::BadGuestResponse(_)
            | Self::Timeout { .. }
            | Self::Internal(_) => None,
        }
    }

    /// The full HTTP response for this error.
    pub fn into_response(self, request_id: &str) -> Response<HostBody> {
        ApiError::from(self).into_response(request_id)
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        let retry_after = match error {
            GatewayError::AtCapacity { .. } => Some(1),
            GatewayError::RateLimited { retry_after, .. } => Some(retry_after),
            _ => None,
        };
        let api = ApiError::new(error.status(), error.code(), error.to_string());
        match retry_after {
            Some(seconds) => api.retry_after(seconds),
            None => api,
        }
    }
}

impl From<InvokeError> for GatewayError {
    fn from(error: InvokeError) -> Self {
        match error {
            InvokeError::AtCapacity { max } => Self::AtCapacity { max },
            InvokeError::GuestTrap(message) => Self::GuestTrap(message),
            InvokeError::MemoryLimit { limit_mib } => Self::MemoryLimit { limit_mib },
            InvokeError::StackOverflow => Self::StackOverflow,
            InvokeError::BadGuestResponse(message) => Self::BadGuestResponse(message),
            InvokeError::Timeout { timeout_ms } => Self::Timeout { timeout_ms },
            InvokeError::Internal(message) => Self::Internal(message),
        }
    }
}
