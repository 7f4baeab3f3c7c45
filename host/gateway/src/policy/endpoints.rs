//! Manifest endpoint enforcement: with it on, a request is served only when its method and path
//! match one of the manifest's `api.endpoints` patterns (`/agreements/:id`, trailing `*`).

use alga_edge_registry::manifest::Endpoint;

/// Whether `method path` (the path the component sees) matches a declared endpoint. `HEAD`
/// matches `GET` endpoints; one trailing slash is ignored.
pub fn endpoint_declared(endpoints: &[Endpoint], method: &str, path: &str) -> bool {
    endpoints.iter().any(|endpoint| {
        let method_ok = endpoint.method.eq_ignore_ascii_case(method)
            || (method.eq_ignore_ascii_case("HEAD") && endpoint.method.eq_ignore_ascii_case("GET"));
        method_ok && path_matches(&endpoint.path, path)
    })
}

/// Segment-wise match: `:name` matches one non-empty segment, a final `*` (or `*name`) matches
/// the rest of the path (zero or more segments), anything else must be equal.
fn path_matches(pattern: &str, path: &str) -> bool {
    let trim = |p: &'_ str| -> String {
        let p = p.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(p);
        p.to_owned()
    };
    let (pattern, path) = (trim(pattern), trim(path));
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), _) if w.starts_with('*') => return wanted.next().is_none(),
            (Some(w), Some(g)) if w.starts_with(':') && w.len() > 1 => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(method: &str, path: &str) -> Endpoint {
        Endpoint {
            method: method.into(),
            path: path.into(),
            handler: "h".into(),
            schedulable: false,
        }
    }

    #[test]
    fn matches_methods_params_and_wildcards() {
        let endpoints = [
            endpoint("GET", "/agreements/:id"),
            endpoint("POST", "/agreements"),
            endpoint("GET", "/files/*"),
            endpoint("GET", "/"),
        ];
        let ok = |m: &str, p: &str| endpoint_declared(&endpoints, m, p);
        assert!(ok("GET", "/agreements/42"));
        assert!(ok("get", "/agreements/42/"));
        assert!(ok("HEAD", "/agreements/42"));
        assert!(!ok("DELETE", "/agreements/42"));
        assert!(!ok("GET", "/agreements/42/extra"));
        assert!(!ok("GET", "/agreements/"), "a parameter needs a segment");
        assert!(ok("POST", "/agreements"));
        assert!(!ok("GET", "/agreements"));
        assert!(ok("GET", "/files"));
        assert!(ok("GET", "/files/a/b/c"));
        assert!(!ok("GET", "/filesx"));
        assert!(ok("GET", "/"));
        assert!(!ok("GET", "/other"));
        assert!(!endpoint_declared(&[], "GET", "/"));
    }
}
