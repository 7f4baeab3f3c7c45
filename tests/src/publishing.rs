//! Publishing helpers for end-to-end tests: a publisher key, signed bundles of the built
//! components, a node that trusts them, and the admin CLI and tenant tokens against it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::{Finished, Node, component, request, run_to_exit, send, tempfile, ureq};

/// The admin token test nodes are started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

/// The service token of the runner API (`/v1/execute`) on nodes started with `--service-token`.
pub const SERVICE_TOKEN: &str = "e2e-runner-service-token-0123456789";

/// The id tests publish the `hello` component under.
pub const HELLO: &str = "com.alga.test.hello";

/// The id tests publish the `faulty` component under.
pub const FAULTY: &str = "com.alga.test.faulty";

/// A second extension id, for checks that one extension's data or files never reach another.
pub const OTHER: &str = "com.alga.test.other";

/// How long one CLI command may take.
pub const LIMIT: Duration = Duration::from_secs(120);

/// The `alga-edge` binary cargo built for this test run (next to the test executable's folder).
pub fn binary() -> String {
    let exe = std::env::current_exe().expect("current test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .join("alga-edge");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with cargo test",
        bin.display()
    );
    bin.to_str().expect("utf-8 path").to_owned()
}

/// Runs `alga-edge` with `args` to completion.
pub fn cli(args: &[&str]) -> Finished {
    run_to_exit(&binary(), args, LIMIT)
}

/// A path as `&str` for command lines.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A publisher key and a place for bundles and node data.
pub struct Fixture {
    /// Holds keys, bundles and node data.
    pub dir: tempfile::TempDir,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// A fresh fixture with a publisher key made by `alga-edge keygen`.
    pub fn new() -> Self {
        let fixture = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = cli(&["keygen", "--out", path(&fixture.keys())]);
        assert!(out.ok, "keygen: {}", out.stderr);
        fixture
    }

    /// The publisher key folder.
    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The node data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    /// An extension folder for `name@version` running the built `component`, packed and signed
    /// with the CLI; returns the bundle path (its signature is `<bundle>.sig`).
    pub fn bundle(&self, name: &str, version: &str, component_name: &str) -> PathBuf {
        self.bundle_with(name, version, component_name, serde_json::json!({}))
    }

    /// [`Fixture::bundle`] with `extra` manifest fields (e.g. `api`) merged in.
    pub fn bundle_with(
        &self,
        name: &str,
        version: &str,
        component_name: &str,
        extra: serde_json::Value,
    ) -> PathBuf {
        let ext = self.dir.path().join(format!("src-{name}-{version}"));
        std::fs::create_dir_all(ext.join("dist")).unwrap();
        let mut manifest = serde_json::json!({
            "name": name,
            "publisher": "E2E Publisher",
            "version": version,
            "runtime": "wasm-component@1",
            "capabilities": [],
        });
        if let (Some(fields), Some(extra)) = (manifest.as_object_mut(), extra.as_object()) {
            fields.extend(extra.clone());
        }
        std::fs::write(ext.join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::copy(component(component_name), ext.join("dist/main.wasm")).unwrap();
        self.pack_and_sign(
            &ext,
            self.dir.path().join(format!("{name}-{version}.tar.zst")),
        )
    }

    /// Packs the extension folder `ext` into `bundle` and signs it with the fixture's key, both
    /// with the CLI; returns `bundle` (its signature is `<bundle>.sig`).
    pub fn pack_and_sign(&self, ext: &Path, bundle: PathBuf) -> PathBuf {
        let out = cli(&["pack", path(ext), "--out", path(&bundle)]);
        assert!(out.ok, "pack {}: {}", ext.display(), out.stderr);
        let key = self.keys().join("publisher.pem");
        let out = cli(&["sign", path(&bundle), "--key", path(&key)]);
        assert!(out.ok, "sign {}: {}", bundle.display(), out.stderr);
        bundle
    }

    /// Starts `serve` on the fixture's data dir, trusting its key, with the test admin token.
    pub fn start(&self, extra: &[&str]) -> Node {
        self.start_with_env(extra, &[])
    }

    /// [`Fixture::start`] with environment variables.
    pub fn start_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let trust = self.keys().join("publisher.pub.pem");
        let mut args = vec!["--trust-bundle", path(&trust), "--admin-token", ADMIN_TOKEN];
        args.extend_from_slice(extra);
        Node::start_in(&binary(), &self.data(), &args, env)
    }
}

/// Runs an admin CLI command against `node`.
pub fn admin(node: &Node, command: &[&str]) -> Finished {
    let base = node.base();
    let mut args = command.to_vec();
    args.extend_from_slice(&["--registry", &base, "--token", ADMIN_TOKEN]);
    cli(&args)
}

/// [`admin`], failing the test unless it succeeds; returns stdout.
pub fn admin_ok(node: &Node, command: &[&str]) -> String {
    let out = admin(node, command);
    assert!(out.ok, "{command:?} failed: {}", out.stderr);
    out.stdout
}

/// Installs `name@version` for `tenant` with the admin CLI, granting each of `grants`, with
/// `extra` install arguments (`--config`, `--secret`, `--policy`, `--json`); fails the test
/// unless it succeeds; returns stdout.
pub fn install(
    node: &Node,
    name: &str,
    version: &str,
    tenant: &str,
    grants: &[&str],
    extra: &[&str],
) -> String {
    let mut args = vec!["install", name, "--version", version, "--tenant", tenant];
    for grant in grants {
        args.extend_from_slice(&["--grant", grant]);
    }
    args.extend_from_slice(extra);
    admin_ok(node, &args)
}

/// `method /admin/v1/{route}` on `node` with `token` (none: no authorization header), `headers`
/// and `body`: status and answer. The admin API answers JSON to everything, refusals included,
/// so an answer that is not JSON fails the test.
pub fn admin_call(
    node: &Node,
    method: &str,
    route: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let authorization = token.map(bearer);
    let mut all: Vec<(&str, &str)> = authorization
        .iter()
        .map(|a| ("authorization", a.as_str()))
        .collect();
    all.extend_from_slice(headers);
    let (status, _, text) = request(node, method, &format!("/admin/v1/{route}"), &all, body);
    (status, json(&text))
}

/// [`admin_call`] with the test admin token and, when given, a JSON body.
pub fn admin_json(node: &Node, method: &str, route: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string().into_bytes());
    let headers = [("content-type", "application/json")];
    admin_call(node, method, route, Some(ADMIN_TOKEN), &headers, body)
}

/// The content hash of the newest published version of `name` on `node`.
pub fn content_hash(node: &Node, name: &str) -> String {
    let (status, answer) = admin_json(node, "GET", &format!("extensions/{name}"), None);
    assert_eq!(status, 200, "{answer}");
    answer["versions"][0]["content_hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no version of {name} in {answer}"))
        .to_owned()
}

/// The newest `limit` rows of `tenant`'s execution log (newest first), as the admin API lists
/// them now: the log is written in batches, so a caller that expects rows polls.
pub fn execution_rows(node: &Node, tenant: &str, limit: usize) -> Vec<Value> {
    let route = format!("tenants/{tenant}/executions?limit={limit}");
    let (status, answer) = admin_json(node, "GET", &route, None);
    assert_eq!(status, 200, "{answer}");
    answer["executions"]
        .as_array()
        .unwrap_or_else(|| panic!("no executions in {answer}"))
        .clone()
}

/// A tenant token minted with the node's dev key.
pub fn token(node: &Node, tenant: &str) -> String {
    let out = cli(&[
        "token",
        "--tenant",
        tenant,
        "--data-dir",
        path(node.data_dir()),
    ]);
    assert!(out.ok, "token: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// The `authorization` header value that presents `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// GET with an optional bearer token: status and body text.
pub fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> (u16, String) {
    let authorization = token.map(bearer);
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|a| ("authorization", a.as_str()))
        .collect();
    let (status, _, text) = send(agent, "GET", url, &headers, None);
    (status, text)
}

/// `METHOD route` on `node` with a bearer token and a body: status and body text.
pub fn call(node: &Node, method: &str, route: &str, token: &str, body: &str) -> (u16, String) {
    let authorization = bearer(token);
    let headers = [("authorization", authorization.as_str())];
    let (status, _, text) = request(node, method, route, &headers, Some(body.into()));
    (status, text)
}

/// Parses JSON or fails the test showing the text.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Sync token of multi-node (primary + edges) tests.
pub const SYNC_TOKEN: &str = "e2e-sync-token-0123456789abcdef";
/// HS256 secret nodes verify tenant tokens with (the platform's shared secret), set with
/// `ALGA_TENANT_JWT_HS256_SECRET`; in a multi-node test one token then works at every node.
pub const SHARED_JWT_SECRET: &str = "e2e-tenant-jwt-secret-0123456789abcdef";

/// The custom claim of a platform tenant token.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct TenantClaims {
    /// The tenant the token is for.
    pub tenant: String,
}

/// A tenant token for `tenant` (user `user-1`) signed with HS256 and `secret`, expiring
/// `valid_for` seconds from now (negative: already expired).
pub fn hs256_token(secret: &str, tenant: &str, valid_for: i64) -> String {
    use jwt_simple::prelude::*;
    let mut claims = Claims::with_custom_claims(
        TenantClaims {
            tenant: tenant.into(),
        },
        jwt_simple::prelude::Duration::from_secs(60),
    )
    .with_subject("user-1");
    let now = Clock::now_since_epoch().as_secs() as i64;
    claims.expires_at = Some(UnixTimeStamp::from_secs((now + valid_for) as u64));
    HS256Key::from_bytes(secret.as_bytes())
        .authenticate(claims)
        .unwrap()
}

/// A tenant token signed with [`SHARED_JWT_SECRET`], valid for ten minutes.
pub fn shared_token(tenant: &str) -> String {
    hs256_token(SHARED_JWT_SECRET, tenant, 600)
}

impl Fixture {
    /// Starts a node of a multi-node test on `dir`: trusts the fixture's key, accepts
    /// [`shared_token`]s, uses [`SYNC_TOKEN`], no tenant rate limit; plus `extra`.
    pub fn start_node_in(&self, dir: &Path, extra: &[&str]) -> Node {
        let trust = self.keys().join("publisher.pub.pem");
        let mut args = vec![
            "--trust-bundle",
            path(&trust),
            "--admin-token",
            ADMIN_TOKEN,
            "--sync-token",
            SYNC_TOKEN,
            "--tenant-rate",
            "0",
        ];
        args.extend_from_slice(extra);
        Node::start_in(
            &binary(),
            dir,
            &args,
            &[("ALGA_TENANT_JWT_HS256_SECRET", SHARED_JWT_SECRET)],
        )
    }

    /// [`Fixture::start_node_in`] as an edge that follows `primary` (a base URL), syncing every
    /// `sync_interval_ms`; plus `extra`.
    pub fn start_edge_in(
        &self,
        dir: &Path,
        primary: &str,
        sync_interval_ms: u64,
        extra: &[&str],
    ) -> Node {
        let interval = sync_interval_ms.to_string();
        let mut args = vec![
            "--role",
            "edge",
            "--primary",
            primary,
            "--sync-interval-ms",
            &interval,
        ];
        args.extend_from_slice(extra);
        self.start_node_in(dir, &args)
    }
}
