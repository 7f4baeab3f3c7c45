//! Path routing by a declared table (matchit, the router axum uses) instead of hand-written
//! prefix and slice matching: the node's front ([`crate::server`]), the admin API and the
//! replication API each declare theirs.

use alga_edge_http::ApiError;

/// Path parameters of a matched route, owned (the request moves on without its path).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of `name`; empty when the route has no such parameter (a table bug, never
    /// user input: every declared parameter is present in a match).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_default()
    }
}

/// A table of path patterns (`a/{param}/b`, `x/{*rest}`) to route values.
pub struct RouteTable<T> {
    router: matchit::Router<T>,
}

impl<T: Copy> RouteTable<T> {
    /// The table of `routes`. Patterns are relative (no leading `/`); a conflicting or
    /// malformed pattern is a bug in the table and panics at start-up, never per request.
    pub fn new(routes: &[(&str, T)]) -> Self {
        let mut router = matchit::Router::new();
        for (pattern, value) in routes {
            if let Err(e) = router.insert(format!("/{pattern}"), *value) {
                panic!("route table: {pattern}: {e}");
            }
        }
        Self { router }
    }

    /// The route serving `path`, a request's own path (with its leading `/`), without
    /// collecting parameters: the hot path of the node's front allocates nothing here.
    pub fn route(&self, path: &str) -> Option<T> {
        self.router.at(path).ok().map(|matched| *matched.value)
    }

    /// The route serving `path` (relative, as [`normalized`] returns it) and its parameters.
    pub fn find(&self, path: &str) -> Option<(T, Params)> {
        let rooted = format!("/{path}");
        let matched = self.router.at(&rooted).ok()?;
        let params = matched
            .params
            .iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        Some((*matched.value, Params(params)))
    }
}

impl<T: Copy> RouteTable<T> {
    /// The route serving the request path `path` of an API mounted at `prefix`, with doubled
    /// and trailing slashes ignored; the one 404 answer naming the `api` otherwise.
    pub fn resolve(&self, prefix: &str, path: &str, api: &str) -> Result<(T, Params), ApiError> {
        let relative = normalized(path.strip_prefix(prefix).unwrap_or_default());
        self.find(&relative)
            .ok_or_else(|| ApiError::not_found(format!("no {api} route {path}")))
    }
}

/// `path` without empty segments (`a//b/` → `a/b`): the APIs have always accepted doubled and
/// trailing slashes.
pub fn normalized(path: &str) -> String {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_routes_and_their_parameters() {
        let table = RouteTable::new(&[("a", 1), ("a/{id}", 2), ("a/{id}/b", 3)]);
        assert_eq!(table.find("a").map(|(v, _)| v), Some(1));
        let (value, params) = table.find(&normalized("a//x7/b/")).unwrap();
        assert_eq!((value, params.get("id")), (3, "x7"));
        assert!(table.find("a/x/c").is_none());
        assert!(table.find("").is_none());
        assert_eq!(table.route("/a/x7"), Some(2));
        assert_eq!(table.route("a"), None);
    }
}
