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
    /// Running the request would reserve more instance memory than the node's budget (503)
    /// or the tenant's share of it (429) allows.
    #[error("{reason}; retry after {retry_after} s")]
    MemoryBudget {
        /// Which bound refused.
        scope: MemoryScope,
        /// Seconds until a retry can succeed.
        retry_after: u64,
        /// What was refused, for the caller.
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
    /// Authenticated, but the request contradicts itself or asks for what the caller may not.
    #[error("{0}")]
    Forbidden(String),
    /// A valid request for something this node does not do (yet).
    #[error("{0}")]
    NotImplemented(String),
    /// The engine ran the component and got no usable response (trap, memory or stack limit,
    /// deadline, bad answer), or had no instance slot free.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// A failure of the host itself (compile error of a stored component, I/O…).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which memory bound refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryScope {
    /// The node's budget, shared by all tenants.
    Node,
    /// One tenant's share of it.
    Tenant,
}

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute(_) | Self::UnknownExtension(_) | Self::EndpointNotDeclared { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::MemoryBudget {
                scope: MemoryScope::Node,
                ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            Self::MemoryBudget {
                scope: MemoryScope::Tenant,
                ..
            } => StatusCode::TOO_MANY_REQUESTS,
            Self::BundleRejected(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Invoke(InvokeError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            Self::Invoke(InvokeError::AtCapacity { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Invoke(InvokeError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Invoke(InvokeError::RequestBodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invoke(InvokeError::RequestBody(_)) => StatusCode::BAD_REQUEST,
            Self::Invoke(_) => StatusCode::BAD_GATEWAY,
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
            Self::Forbidden(_) => "forbidden",
            Self::NotImplemented(_) => "not_implemented",
            Self::Unauthorized(_) => "unauthorized",
            Self::BodyTooLarge { .. } => "payload_too_large",
            Self::HeadersTooLarge(_) => "request_headers_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::MemoryBudget {
                scope: MemoryScope::Node,
                ..
            } => "node_memory_budget",
            Self::MemoryBudget {
                scope: MemoryScope::Tenant,
                ..
            } => "tenant_memory_budget",
            Self::BundleRejected(_) => "bundle_rejected",
            Self::Invoke(error) => error.code(),
            Self::Internal(_) => "internal_error",
        }
    }

    /// Why the gateway refused the request before running anything (a metrics label), or
    /// `None` when the extension ran and failed.
    pub fn denial_reason(&self) -> Option<&'static str> {
        match self {
            Self::RateLimited { limit, .. } => Some(limit),
            Self::NoRoute(_)
            | Self::MemoryBudget { .. }
            | Self::Unauthorized(_)
            | Self::UnknownExtension(_)
            | Self::EndpointNotDeclared { .. }
            | Self::BadRequest(_)
            | Self::Forbidden(_)
            | Self::NotImplemented(_)
            | Self::BodyTooLarge { .. }
            | Self::HeadersTooLarge(_)
            | Self::BundleRejected(_)
            | Self::Invoke(InvokeError::AtCapacity { .. }) => Some(self.code()),
            Self::Invoke(_) | Self::Internal(_) => None,
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
            GatewayError::Invoke(InvokeError::AtCapacity { .. }) => Some(1),
            GatewayError::RateLimited { retry_after, .. }
            | GatewayError::MemoryBudget { retry_after, .. } => Some(retry_after),
            _ => None,
        };
        let api = ApiError::new(error.status(), error.code(), error.to_string());
        match retry_after {
            Some(seconds) => api.retry_after(seconds),
            None => api,
        }
    }
}
