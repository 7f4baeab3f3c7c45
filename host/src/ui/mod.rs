//! `/ext-ui/{extensionId}/{content_hash}/{path…}`: the files of a bundle's `ui/`, served
//! forever-cacheable by content hash to the sandboxed iframes tenants load (DESIGN §6).
//!
//! A hash is served only when it is a version of that extension some tenant installed, or one
//! an admin marked previewable (so one extension's URL space can never show another's files,
//! and nobody makes this node extract bundles no one uses); the path is checked ([`path`]) and
//! looked up in the bundle's index, never on disk; answers carry a strong ETag (the file's
//! sha256), honour `If-None-Match` (304), single byte ranges (206/416), precompressed br/gzip
//! variants, and `HEAD`. Only this route says `immutable`.

pub mod http_rules;
mod path;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use alga_edge_registry::Registry;
use alga_edge_registry::bundle::ContentHash;
use alga_edge_ui_cache::{Encoding, UiCache, UiCacheError, UiFile, UiIndex};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use lru::LruCache;

use alga_edge_gateway::catalog::is_valid_extension_id;
use alga_edge_gateway::ext_api::Gateway;
use alga_edge_http::ApiError;
use alga_edge_http::HostBody;
use http_rules::RangeAnswer;

pub use path::{PathError, ui_path};

/// Path prefix of UI routes.
pub const UI_PREFIX: &str = "/ext-ui/";

/// `Cache-Control` of every UI answer: the URL names the content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// (extension, content hash) pairs known to be servable, each with the registry's change count
/// when it was checked (an uninstall moves it).
const SERVABLE_CACHE: usize = 4096;

/// Serves UI files.
pub struct UiRoute {
    cache: Arc<UiCache>,
    registry: Arc<Registry>,
    gateway: Arc<Gateway>,
    servable: Mutex<LruCache<(String, String), u64>>,
    csp: HeaderValue,
}

impl UiRoute {
    /// UI files of the bundles the `gateway` runs, extracted into `cache`; `frame_ancestors`
    /// are the CSP sources allowed to frame them (e.g. `'self'`, `https://psa.example.com`).
    pub fn new(
        cache: Arc<UiCache>,
        registry: Arc<Registry>,
        gateway: Arc<Gateway>,
        frame_ancestors: &[String],
    ) -> Result<Self, String> {
        let ancestors = if frame_ancestors.is_empty() {
            "'self'".to_owned()
        } else {
            frame_ancestors.join(" ")
        };
        // The iframe is sandboxed (opaque origin) and talks to the host page by postMessage
        // only: it may load its own bundle's files and nothing else, and make no requests.
        let csp = format!(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; font-src 'self'; connect-src 'none'; object-src 'none'; \
             base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
        );
        let csp = HeaderValue::from_str(&csp)
            .map_err(|_| format!("invalid frame ancestors {frame_ancestors:?}"))?;
        Ok(Self {
            cache,
            registry,
            gateway,
            servable: Mutex::new(LruCache::new(
                NonZeroUsize::new(SERVABLE_CACHE).expect("non-zero"),
            )),
            csp,
        })
    }

    /// Answers one `/ext-ui/…` request.
    pub async fn handle<B>(&self, request: &Request<B>, request_id: &str) -> Response<HostBody> {
        match self.serve(request).await {
            Ok(response) => response,
            Err((status, code, message)) => {
                let mut response = ApiError::new(status, code, message).into_response(request_id);
                if status == StatusCode::METHOD_NOT_ALLOWED {
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                }
                response
            }
        }
    }

    async fn serve<B>(&self, request: &Request<B>) -> Result<Response<HostBody>, Refusal> {
        let head = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                return Err((
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "UI files answer GET and HEAD".into(),
                ));
            }
        };
        let raw = request
            .uri()
            .path()
            .strip_prefix(UI_PREFIX)
            .unwrap_or_default();
        let mut parts = raw.splitn(3, '/');
        let (extension, hash, rest) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next(),
        );
        let not_found = |what: String| (StatusCode::NOT_FOUND, "not_found", what);
        if !is_valid_extension_id(extension) {
            return Err(not_found(format!("no extension '{extension}'")));
        }
        let hash = percent_encoding::percent_decode_str(hash).decode_utf8_lossy();
        let hash = ContentHash::parse(&hash)
            .map_err(|_| not_found(format!("'{hash}' is not a content hash (sha256:<hex>)")))?;
        let Some(rest) = rest else {
            // `/ext-ui/{ext}/{hash}` without the slash: relative URLs in the page need it.
            return Ok(redirect(&format!("{}/", request.uri().path())));
        };
        let path = ui_path(rest)
            .map_err(|e| (StatusCode::BAD_REQUEST, "bad_path", e.message().to_owned()))?;
        self.check_servable(extension, &hash).await?;

        let mut attempts = 0;
        let (index, name, file, bytes, encoding, answer) = loop {
            attempts += 1;
            let index = self.index(&hash).await?;
            let Some((name, file)) = index.lookup(&path) else {
                return Err(not_found(format!("no file '{path}' in the extension's UI")));
            };
            let file = file.clone();
            let etag = http_rules::etag(&file);
            if http_rules::not_modified(request.headers(), &etag) {
                return Ok(self.not_modified(&file, &etag));
            }
            let answer = http_rules::range(request.headers(), file.size, &etag);
            // Ranges address the identity bytes.
            let encoding = if answer == RangeAnswer::Full {
                http_rules::negotiate(request.headers(), &file)
            } else {
                Encoding::Identity
            };
            if head {
                break (index, name, file, Bytes::new(), encoding, answer);
            }
            match self.cache.read(hash.hex(), &file, encoding).await {
                Ok(bytes) => break (index, name, file, bytes, encoding, answer),
                // Evicted between lookup and read: extract again, once more at most.
                Err(UiCacheError::Evicted) if attempts < 2 => continue,
                Err(e) => return Err(internal(e)),
            }
        };
        drop(index);
        Ok(self.answer(&name, &file, bytes, encoding, answer, head))
    }

    async fn check_servable(&self, extension: &str, hash: &ContentHash) -> Result<(), Refusal> {
        let key = (extension.to_owned(), hash.to_string());
        let changes = self.registry.change_count();
        if self.lock_servable().get(&key) == Some(&changes) {
            return Ok(());
        }
        let servable = self
            .registry
            .ui_servable(extension, hash.as_str())
            .await
            .map_err(|e| internal(e.to_string()))?;
        if !servable {
            return Err((
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "{hash} is not a version of '{extension}' that a tenant installed or an admin marked previewable"
                ),
            ));
        }
        self.lock_servable().put(key, changes);
        Ok(())
    }

    /// Extracts and precompresses the UI of bundle `hash` now (a no-op when it already is), so
    /// no viewer waits for it: the primary calls this when a bundle is published.
    pub async fn prepare(&self, hash: &ContentHash) -> Result<(), String> {
        self.index(hash).await.map(|_| ()).map_err(|(_, _, e)| e)
    }

    async fn index(&self, hash: &ContentHash) -> Result<Arc<UiIndex>, Refusal> {
        self.cache
            .index(hash.hex(), || async {
                let files = self.gateway.installed().bundle_files(hash.as_str()).await?;
                Ok::<_, String>(
                    files
                        .into_iter()
                        .filter_map(|(path, bytes)| {
                            path.strip_prefix("ui/").map(|p| (p.to_owned(), bytes))
                        })
                        .collect(),
                )
            })
            .await
            .map_err(internal)
    }

    fn not_modified(&self, file: &UiFile, etag: &str) -> Response<HostBody> {
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let headers = response.headers_mut();
        self.common_headers(headers, file);
        if let Ok(value) = HeaderValue::from_str(etag) {
            headers.insert(header::ETAG, value);
        }
        response
    }

    fn answer(
        &self,
        name: &str,
        file: &UiFile,
        bytes: Bytes,
        encoding: Encoding,
        range: RangeAnswer,
        head: bool,
    ) -> Response<HostBody> {
        let size = file.size_of(encoding).unwrap_or(file.size);
        let (status, body, length) = match range {
            RangeAnswer::Full => (StatusCode::OK, bytes, size),
            RangeAnswer::Partial { start, end } => {
                let body = if head {
                    Bytes::new()
                } else {
                    bytes.slice(start as usize..=end as usize)
                };
                (StatusCode::PARTIAL_CONTENT, body, end - start + 1)
            }
            RangeAnswer::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new(), 0),
        };
        let mut response = Response::new(if head || body.is_empty() {
            empty()
        } else {
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        });
        *response.status_mut() = status;
        let headers = response.headers_mut();
        self.common_headers(headers, file);
        let content_type = if file.mime.starts_with("text/")
            || file.mime == "application/javascript"
            || file.mime == "application/json"
        {
            format!("{}; charset=utf-8", file.mime)
        } else {
            file.mime.clone()
        };
        let values = [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, http_rules::etag(file)),
            (header::CONTENT_LENGTH, length.to_string()),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        if let Some(token) = encoding.token() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
        }
        match range {
            RangeAnswer::Partial { start, end } => {
                if let Ok(value) =
                    HeaderValue::from_str(&format!("bytes {start}-{end}/{}", file.size))
                {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            RangeAnswer::Unsatisfiable => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", file.size)) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            RangeAnswer::Full => {}
        }
        tracing::debug!(file = name, status = status.as_u16(), "ui file");
        response
    }

    fn common_headers(&self, headers: &mut http::HeaderMap, file: &UiFile) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        // The sandboxed iframe has an opaque origin: its module scripts are cross-origin
        // requests to this route.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            "cross-origin-resource-policy",
            HeaderValue::from_static("cross-origin"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if file.gzip.is_some() || file.br.is_some() {
            headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
    }

    fn lock_servable(&self) -> std::sync::MutexGuard<'_, LruCache<(String, String), u64>> {
        self.servable.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Status, error code and message of a refused request.
type Refusal = (StatusCode, &'static str, String);

fn internal(error: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %error, "UI route failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("cannot serve the UI file: {error}"),
    )
}

fn empty() -> HostBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn redirect(location: &str) -> Response<HostBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
