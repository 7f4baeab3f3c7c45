//! Publishing helpers for end-to-end tests: a publisher key, signed bundles of the built
//! components, a node that trusts them, and the admin CLI and tenant tokens against it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Finished, Node, component, run_to_exit, tempfile, ureq};

/// The admin token test nodes are started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

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
        let bundle = self.dir.path().join(format!("{name}-{version}.tar.zst"));
        let out = cli(&["pack", path(&ext), "--out", path(&bundle)]);
        assert!(out.ok, "pack: {}", out.stderr);
        let key = self.keys().join("publisher.pem");
        let out = cli(&["sign", path(&bundle), "--key", path(&key)]);
        assert!(out.ok, "sign: {}", out.stderr);
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

/// GET with an optional bearer token: status and body text.
pub fn get(agent: &ureq::Agent, url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = agent.get(url);
    if let Some(bearer) = bearer {
        request = request.header("authorization", &format!("Bearer {bearer}"));
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// `METHOD route` on `node` with a bearer token and a body: status and body text.
pub fn call(node: &Node, method: &str, route: &str, bearer: &str, body: &str) -> (u16, String) {
    let request = http::Request::builder()
        .method(method)
        .uri(node.url(route))
        .header("authorization", format!("Bearer {bearer}"))
        .body(body.to_owned())
        .unwrap();
    let mut response = crate::client()
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {route}: {e}"));
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Parses JSON or fails the test showing the text.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Sync token of multi-node (primary + edges) tests.
pub const SYNC_TOKEN: &str = "e2e-sync-token-0123456789abcdef";
/// HS256 secret every node of a multi-node test verifies tenant tokens with (the platform's
/// shared secret), so one token works at every node.
pub const SHARED_JWT_SECRET: &str = "e2e-tenant-jwt-secret-0123456789abcdef";

#[derive(serde::Serialize, serde::Deserialize)]
struct TenantClaims {
    tenant: String,
}

/// A tenant token signed with [`SHARED_JWT_SECRET`], valid for ten minutes.
pub fn shared_token(tenant: &str) -> String {
    use jwt_simple::prelude::*;
    let claims = Claims::with_custom_claims(
        TenantClaims {
            tenant: tenant.into(),
        },
        jwt_simple::prelude::Duration::from_secs(600),
    );
    HS256Key::from_bytes(SHARED_JWT_SECRET.as_bytes())
        .authenticate(claims)
        .unwrap()
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
}
