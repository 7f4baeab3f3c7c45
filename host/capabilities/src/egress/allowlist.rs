//! Outbound HTTP allowlists: entries `[scheme://]host[:port]`.
//!
//! - `host` matches that host and its subdomains (`example.com` matches `api.example.com`);
//!   `*.example.com` matches subdomains only. Matching is case-insensitive, trailing dots
//!   ignored.
//! - An IP literal (`127.0.0.1`, `[::1]`) matches exactly that address. Only such entries can
//!   reach private, loopback or link-local addresses (see [`super::client`]): a name never
//!   does, whatever it resolves to.
//! - Without a scheme, `http` and `https` both match; without a port, only the scheme's default
//!   port (80/443) matches.

use std::net::IpAddr;

/// A parsed allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    scheme: Option<String>,
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// This name and its subdomains.
    Name(String),
    /// Subdomains of this name only.
    Subdomains(String),
    /// Exactly this address.
    Ip(IpAddr),
}

/// A set of allowlist entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

/// An outbound request's target, as the allowlist judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name without a trailing dot, or an IP literal (no brackets).
    pub host: String,
    /// The port (the scheme's default when the URI has none).
    pub port: u16,
}

impl Destination {
    /// The destination of `uri`, `None` when it has no usable scheme or host.
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = normalize_host(uri.host()?);
        if host.is_empty() {
            return None;
        }
        Some(Self {
            port: uri.port_u16().unwrap_or(default_port),
            scheme,
            host,
        })
    }

    /// The host as an IP address, when it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "http" { 80 } else { 443 }
}

impl Allowlist {
    /// Parses comma- or whitespace-separated entries.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::from_entries(text.split([',', ' ', '\n', '\t']).filter(|s| !s.is_empty()))
    }

    /// Parses one entry per item.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let entries = entries
            .into_iter()
            .map(|e| parse_entry(e.trim()))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether no entry exists (nothing is allowed).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether some entry allows `destination`.
    pub fn allows(&self, destination: &Destination) -> bool {
        let ip = destination.ip();
        self.entries.iter().any(|entry| {
            let scheme_ok = entry
                .scheme
                .as_deref()
                .is_none_or(|s| s == destination.scheme);
            let port = entry
                .port
                .unwrap_or_else(|| default_port(&destination.scheme));
            let host_ok = match (&entry.host, ip) {
                (Host::Ip(allowed), Some(ip)) => *allowed == ip,
                (Host::Ip(_), None) => false,
                (_, Some(_)) => false,
                (Host::Name(name), None) => {
                    destination.host == *name || is_subdomain(&destination.host, name)
                }
                (Host::Subdomains(name), None) => is_subdomain(&destination.host, name),
            };
            scheme_ok && host_ok && port == destination.port
        })
    }
}

fn is_subdomain(host: &str, parent: &str) -> bool {
    host.len() > parent.len() + 1
        && host.ends_with(parent)
        && host.as_bytes()[host.len() - parent.len() - 1] == b'.'
}

fn parse_entry(text: &str) -> Result<Entry, String> {
    let bad = |why: &str| format!("invalid egress allowlist entry '{text}': {why}");
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(bad("the scheme must be http or https"));
            }
            (Some(scheme), rest)
        }
        None => (None, text),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(bad(
            "use [scheme://]host[:port], without path or credentials",
        ));
    }
    // Bracketed IPv6, or host[:port] where a bare IPv6 literal has more than one colon.
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (ip, after) = inner.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad("unexpected text after ']'")),
        };
        (ip, port)
    } else if rest.matches(':').count() > 1 {
        (rest, None)
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| bad("the port must be 1-65535"))
        })
        .transpose()?;
    if port == Some(0) {
        return Err(bad("the port must be 1-65535"));
    }
    let host = normalize_host(host);
    let host = if let Ok(ip) = host.parse::<IpAddr>() {
        Host::Ip(ip)
    } else if let Some(parent) = host.strip_prefix("*.") {
        check_name(parent).map_err(bad)?;
        Host::Subdomains(parent.to_owned())
    } else {
        check_name(&host).map_err(bad)?;
        Host::Name(host)
    };
    Ok(Entry { scheme, host, port })
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err("not a host name (wildcards only as a leading '*.')")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(uri: &str) -> Destination {
        Destination::of(&uri.parse().unwrap()).unwrap()
    }

    #[test]
    fn names_match_themselves_and_subdomains_at_the_right_port() {
        let list = Allowlist::parse("example.com, https://api.acme.io:8443 *.svc.test").unwrap();
        assert!(list.allows(&dest("https://example.com/x")));
        assert!(list.allows(&dest("http://EXAMPLE.com./x")));
        assert!(list.allows(&dest("https://a.b.example.com/")));
        assert!(!list.allows(&dest("https://badexample.com/")));
        assert!(!list.allows(&dest("https://example.com.evil.net/")));
        assert!(!list.allows(&dest("https://example.com:8080/")));
        assert!(list.allows(&dest("https://api.acme.io:8443/")));
        assert!(!list.allows(&dest("http://api.acme.io:8443/")), "scheme");
        assert!(!list.allows(&dest("https://api.acme.io/")), "port");
        assert!(list.allows(&dest("https://x.svc.test/")));
        assert!(
            !list.allows(&dest("https://svc.test/")),
            "apex of a wildcard"
        );
    }

    #[test]
    fn ip_literals_match_only_themselves() {
        let list = Allowlist::parse("127.0.0.1:8080,[::1]:9000").unwrap();
        assert!(list.allows(&dest("http://127.0.0.1:8080/")));
        assert!(!list.allows(&dest("http://127.0.0.1:8081/")));
        assert!(!list.allows(&dest("http://localhost:8080/")));
        assert!(list.allows(&dest("http://[::1]:9000/")));
        assert!(
            !Allowlist::parse("example.com")
                .unwrap()
                .allows(&dest("http://93.184.216.34/"))
        );
    }

    #[test]
    fn refuses_malformed_entries() {
        for bad in [
            "ftp://x.com",
            "x.com/path",
            "user@x.com",
            "x.com:0",
            "x.com:99999",
            "*",
            "a.*.com",
            "[::1",
            "exa mple",
        ] {
            assert!(Allowlist::from_entries([bad]).is_err(), "{bad}");
        }
        assert!(Allowlist::parse("").unwrap().is_empty());
    }
}
