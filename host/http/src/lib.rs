//! The HTTP contract every route of an Alga Edge node shares, with no knowledge of wasm:
//! - [`body`]: the response body type ([`HostBody`], [`BoxError`]) and body constructors.
//! - [`error`]: the one JSON error answer ([`ApiError`]): status, code, message, retry-after.
//! - [`read`]: the one bounded request-body reader (413 past a cap, drained so clients see it).
//! - [`auth`]: bearer-token parsing and constant-time comparison of static secrets.
//! - [`request_id`]: the `x-request-id` a request is traced by.
//! - [`trace_context`]: OpenTelemetry spans and the W3C `traceparent` every layer shares.

pub mod auth;
pub mod body;
pub mod error;
pub mod read;
pub mod request_id;
pub mod trace_context;

pub use auth::{BearerSecret, CallerIdentified, authorization, bearer_token};
pub use body::{BoxError, HostBody, bytes_response, empty, full, json_response};
pub use error::ApiError;
pub use read::{declared_length, read_body, read_json};
pub use request_id::{is_usable_request_id, request_id_for};
