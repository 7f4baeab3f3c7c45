//! Method + path routing to async handlers.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use wstd::http::{Body, Error, Method, Request, Response};

use crate::response::json;

/// Path parameters of a matched route (`:id` → value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// The value of `:name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

type Handler = Box<
    dyn Fn(Request<Body>, Params) -> Pin<Box<dyn Future<Output = Result<Response<Body>, Error>>>>,
>;

struct Route {
    method: Method,
    pattern: Vec<Segment>,
    handler: Handler,
}

enum Segment {
    Literal(String),
    Param(String),
    /// Trailing `*`: the rest of the path.
    Rest,
}

fn parse(pattern: &str) -> Vec<Segment> {
    pattern
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "*" => Segment::Rest,
            s if s.starts_with(':') => Segment::Param(s[1..].to_owned()),
            s => Segment::Literal(s.to_owned()),
        })
        .collect()
}

fn matches(pattern: &[Segment], path: &str) -> Option<Params> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut params = BTreeMap::new();
    for (i, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Rest => {
                params.insert("*".to_owned(), parts.get(i..).unwrap_or(&[]).join("/"));
                return Some(Params(params));
            }
            Segment::Literal(literal) => {
                if parts.get(i) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.insert(name.clone(), (*parts.get(i)?).to_owned());
            }
        }
    }
    (parts.len() == pattern.len()).then_some(Params(params))
}

/// Routes requests to handlers by method and path pattern (`/items/:id`, `/files/*`).
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` and `pattern`.
    pub fn route<F, Fut>(mut self, method: Method, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request<Body>, Params) -> Fut + 'static,
        Fut: Future<Output = Result<Response<Body>, Error>> + 'static,
    {
        self.routes.push(Route {
            method,
            pattern: parse(pattern),
            handler: Box::new(move |request, params| Box::pin(handler(request, params))),
        });
        self
    }

    /// `GET pattern` (also answers `HEAD`).
    pub fn get<F, Fut>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request<Body>, Params) -> Fut + 'static,
        Fut: Future<Output = Result<Response<Body>, Error>> + 'static,
    {
        self.route(Method::GET, pattern, handler)
    }

    /// `POST pattern`.
    pub fn post<F, Fut>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request<Body>, Params) -> Fut + 'static,
        Fut: Future<Output = Result<Response<Body>, Error>> + 'static,
    {
        self.route(Method::POST, pattern, handler)
    }

    /// `PUT pattern`.
    pub fn put<F, Fut>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request<Body>, Params) -> Fut + 'static,
        Fut: Future<Output = Result<Response<Body>, Error>> + 'static,
    {
        self.route(Method::PUT, pattern, handler)
    }

    /// `DELETE pattern`.
    pub fn delete<F, Fut>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Request<Body>, Params) -> Fut + 'static,
        Fut: Future<Output = Result<Response<Body>, Error>> + 'static,
    {
        self.route(Method::DELETE, pattern, handler)
    }

    /// Runs the first matching route; 404 JSON when no pattern matches, 405 when only the
    /// method differs.
    pub async fn handle(&self, request: Request<Body>) -> Result<Response<Body>, Error> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let mut path_matched = false;
        for route in &self.routes {
            let Some(params) = matches(&route.pattern, &path) else {
                continue;
            };
            path_matched = true;
            if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
                return (route.handler)(request, params).await;
            }
        }
        if path_matched {
            json(
                405,
                &serde_json::json!({"error": "method_not_allowed", "path": path}),
            )
        } else {
            json(
                404,
                &serde_json::json!({"error": "not_found", "path": path}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::text;

    fn params(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        matches(&parse(pattern), path).map(|p| p.0.into_iter().collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn literal_param_and_rest_patterns_match_whole_paths_only() {
        assert_eq!(params("/greet", "/greet"), pairs(&[]));
        assert_eq!(params("/greet", "/greet/"), pairs(&[]));
        assert_eq!(params("/greet", "/greet/x"), None);
        assert_eq!(params("/greet", "/gree"), None);
        assert_eq!(params("/items/:id", "/items/42"), pairs(&[("id", "42")]));
        assert_eq!(params("/items/:id", "/items"), None);
        assert_eq!(params("/items/:id", "/items/42/more"), None);
        assert_eq!(
            params("/a/:x/b/:y", "/a/1/b/2"),
            pairs(&[("x", "1"), ("y", "2")])
        );
        assert_eq!(params("/files/*", "/files"), pairs(&[("*", "")]));
        assert_eq!(
            params("/files/*", "/files/a/b.txt"),
            pairs(&[("*", "a/b.txt")])
        );
        assert_eq!(params("/", "/"), pairs(&[]));
        assert_eq!(params("/", "/x"), None);
    }

    fn request(method: Method, path: &str) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .body(Body::empty())
            .unwrap()
    }

    fn router() -> Router {
        Router::new()
            .get("/items/:id", |_req, params: Params| async move {
                text(200, format!("item {}", params.get("id").unwrap_or("?")))
            })
            .post("/items", |_req, _params| async { text(201, "created") })
            .delete("/items/:id", |_req, _params| async { text(204, "") })
    }

    fn status(method: Method, path: &str) -> u16 {
        futures_lite::future::block_on(router().handle(request(method, path)))
            .unwrap()
            .status()
            .as_u16()
    }

    #[test]
    fn dispatches_by_method_and_answers_404_and_405() {
        assert_eq!(status(Method::GET, "/items/7"), 200);
        assert_eq!(
            status(Method::HEAD, "/items/7"),
            200,
            "HEAD runs the GET route"
        );
        assert_eq!(status(Method::POST, "/items"), 201);
        assert_eq!(status(Method::DELETE, "/items/7"), 204);
        assert_eq!(status(Method::PUT, "/items/7"), 405);
        assert_eq!(
            status(Method::GET, "/items"),
            405,
            "only POST /items exists"
        );
        assert_eq!(status(Method::GET, "/nothing"), 404);
    }
}
