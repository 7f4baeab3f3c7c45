//! Author commands over the real binary: keygen → pack → sign, then the signed bundle (with the
//! real `hello` component) verifies and publishes into a registry.

use std::path::Path;

use alga_edge_e2e::publishing::{cli, path};
use alga_edge_e2e::{component, tempfile};
use alga_edge_registry::Registry;
use alga_edge_registry::bundle::ContentHash;
use alga_edge_registry::signing::TrustBundle;
use alga_edge_registry::store::BundleStore;

/// An extension folder around the built hello component.
fn hello_extension(root: &Path, manifest: serde_json::Value) {
    std::fs::create_dir_all(root.join("dist")).unwrap();
    std::fs::create_dir_all(root.join("ui")).unwrap();
    std::fs::write(root.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::copy(component("hello"), root.join("dist/main.wasm")).unwrap();
    std::fs::write(
        root.join("ui/index.html"),
        "<!doctype html><title>hello</title>",
    )
    .unwrap();
}

fn hello_manifest() -> serde_json::Value {
    serde_json::json!({
        "name": "com.alga.samples.hello",
        "publisher": "Alga Samples",
        "version": "0.1.0",
        "runtime": "wasm-component@1",
        "capabilities": [],
        "ui": {"type": "iframe", "entry": "ui/index.html"}
    })
}

#[tokio::test]
async fn keygen_pack_sign_then_the_bundle_verifies_and_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");

    let out = cli(&["keygen", "--out", path(&keys)]);
    assert!(out.ok, "keygen failed: {}", out.stderr);
    assert!(
        out.stdout.contains("fingerprint: sha256:"),
        "{}",
        out.stdout
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("publisher.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private key must be owner-only");
    }
    let again = cli(&["keygen", "--out", path(&keys)]);
    assert!(
        !again.ok && again.stderr.contains("already exists"),
        "{}",
        again.stderr
    );

    let ext = dir.path().join("hello");
    hello_extension(&ext, hello_manifest());
    let bundle = dir.path().join("hello.tar.zst");
    let out = cli(&["pack", path(&ext), "--out", path(&bundle)]);
    assert!(out.ok, "pack failed: {}", out.stderr);
    let bytes = std::fs::read(&bundle).unwrap();
    let hash = ContentHash::of(&bytes);
    assert!(
        out.stdout
            .starts_with(&format!("{hash} com.alga.samples.hello@0.1.0 ")),
        "pack printed {}",
        out.stdout
    );

    let out = cli(&[
        "sign",
        path(&bundle),
        "--key",
        path(&keys.join("publisher.pem")),
    ]);
    assert!(out.ok, "sign failed: {}", out.stderr);
    let signature_path = dir.path().join("hello.tar.zst.sig");
    assert_eq!(out.stdout.trim(), path(&signature_path));
    let signature = std::fs::read_to_string(&signature_path).unwrap();

    // The node side: trust the public key, publish the bundle (signature, manifest, and the
    // real component's imports are all checked).
    let trust = TrustBundle::load(path(&keys.join("publisher.pub.pem"))).unwrap();
    let registry = Registry::open(&dir.path().join("registry.db"))
        .await
        .unwrap();
    let store = BundleStore::local(dir.path().join("bundles")).unwrap();
    let published = registry
        .publish(&bytes, &signature, &trust, &store)
        .await
        .unwrap();
    assert_eq!(published.content_hash, hash);
    assert_eq!(published.name, "com.alga.samples.hello");
}

#[test]
fn pack_refuses_an_invalid_manifest_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let ext = dir.path().join("bad");
    let mut manifest = hello_manifest();
    manifest["version"] = serde_json::json!("one");
    hello_extension(&ext, manifest);
    let out = cli(&[
        "pack",
        path(&ext),
        "--out",
        path(&dir.path().join("b.tar.zst")),
    ]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("version:") && out.stderr.contains("semver"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.path().join("b.tar.zst").exists(),
        "nothing written for an invalid bundle"
    );

    let out = cli(&["pack", path(&dir.path().join("missing"))]);
    assert!(
        !out.ok && out.stderr.contains("manifest.json"),
        "{}",
        out.stderr
    );
}
