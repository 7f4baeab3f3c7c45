//! The pooled outbound HTTP client and its connector. The connector resolves names itself and
//! refuses to connect a name to a private, loopback, link-local or otherwise non-public
//! address, so DNS cannot turn an allowlisted name into a path to the node's own admin API or a
//! cloud metadata endpoint; it connects to the very address it checked (no second lookup).
//! IP literals were judged by the allowlist before the request got here (see
//! [`super::allowlist`]) and are connected as given.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use wasmtime_wasi_http::WasiBody;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the connector refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Every address the name resolved to is non-public.
    #[error("{host} resolves only to non-public addresses ({addresses})")]
    Prohibited {
        /// The name.
        host: String,
        /// What it resolved to.
        addresses: String,
    },
    /// The name did not resolve.
    #[error("cannot resolve {0}: {1}")]
    Dns(String, std::io::Error),
    /// The URI has no host.
    #[error("the request has no host")]
    NoHost,
    /// Connecting failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// Connecting took too long.
    #[error("connecting to {0} timed out")]
    Timeout(SocketAddr),
}

/// Whether `ip` is a public unicast address (what a name may lead to).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 (embeds IPv4)
        }
    }
}

/// Resolves and connects, refusing non-public addresses for names.
#[derive(Clone, Debug, Default)]
pub struct GuardedConnector;

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().ok_or(ConnectError::NoHost)?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let candidates: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => {
                    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                        .await
                        .map_err(|e| ConnectError::Dns(host.clone(), e))?
                        .collect();
                    let public: Vec<SocketAddr> = resolved
                        .iter()
                        .copied()
                        .filter(|a| is_public(a.ip()))
                        .collect();
                    if public.is_empty() {
                        let addresses = resolved
                            .iter()
                            .map(|a| a.ip().to_string())
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(ConnectError::Prohibited { host, addresses });
                    }
                    public
                }
            };
            let mut last = None;
            for address in candidates {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(e)) => last = Some(ConnectError::Connect(address, e)),
                    Err(_) => last = Some(ConnectError::Timeout(address)),
                }
            }
            Err(last.unwrap_or(ConnectError::NoHost))
        })
    }
}

type Https = hyper_rustls::HttpsConnector<GuardedConnector>;

/// The node's outbound HTTP client: pooled connections (HTTP/1.1, TLS with the webpki roots)
/// through [`GuardedConnector`].
pub struct EgressClient {
    client: Client<Https, WasiBody>,
}

impl Default for EgressClient {
    fn default() -> Self {
        Self::new()
    }
}

impl EgressClient {
    /// A client with an empty pool.
    pub fn new() -> Self {
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        })
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .build(https);
        Self { client }
    }

    /// Sends `request` (absolute URI).
    pub async fn send(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(request).await
    }
}

/// The wasi:http error for a failed send.
pub fn classify(error: &hyper_util::client::legacy::Error) -> wasmtime_wasi_http::Error {
    use wasmtime_wasi_http::Error;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(connect) = cause.downcast_ref::<ConnectError>() {
            return match connect {
                ConnectError::Prohibited { .. } => Error::DestinationIpProhibited,
                ConnectError::Dns(..) => Error::DnsError {
                    rcode: Some("NXDOMAIN".into()),
                    info_code: None,
                },
                ConnectError::NoHost => Error::HttpRequestUriInvalid,
                ConnectError::Connect(_, e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    Error::ConnectionRefused
                }
                ConnectError::Connect(..) => Error::DestinationUnavailable,
                ConnectError::Timeout(_) => Error::ConnectionTimeout,
            };
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return Error::TlsProtocolError;
        }
        source = cause.source();
    }
    if error.is_connect() {
        Error::DestinationUnavailable
    } else {
        Error::HttpProtocolError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let mut connector = GuardedConnector;
        let uri: Uri = "http://localhost:9/".parse().unwrap();
        let refused = tower_service::Service::call(&mut connector, uri).await;
        assert!(
            matches!(refused, Err(ConnectError::Prohibited { .. })),
            "{refused:?}"
        );
    }
}
