//! Manifest rules, bundle packing/unpacking against hostile archives, and signatures.

use std::path::Path;

mod common;
use common::{RawEntry, entry, raw_archive};

use alga_edge_registry::bundle::{self, BundleError, ContentHash, UnpackLimits};
use alga_edge_registry::manifest::{Manifest, ManifestError};
use alga_edge_registry::signing::{BundleClaims, SigningError, SigningKey, TrustBundle};
use serde_json::{Value, json};

fn valid_manifest() -> Value {
    json!({
        "name": "com.acme.reports",
        "publisher": "Acme",
        "version": "1.2.3",
        "runtime": "wasm-js@1",
        "capabilities": ["http.fetch", "cap:storage.kv"],
        "ui": {"type": "iframe", "entry": "ui/index.html", "hooks": {"appMenu": {"label": "Reports"}}},
        "api": {"endpoints": [
            {"method": "GET", "path": "/agreements", "handler": "list"},
            {"method": "GET", "path": "/agreements/:id", "handler": "get"}
        ]},
        "events": [{"topic": "ticket.created", "handler": "on_ticket"}],
        "assets": ["ui/**/*"]
    })
}

/// Writes an extension folder with `manifest`, a component and a small UI.
fn extension_dir(manifest: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("dist")).unwrap();
    std::fs::create_dir_all(root.join("ui/assets")).unwrap();
    std::fs::write(root.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(root.join("dist/main.wasm"), b"\0asm component bytes").unwrap();
    std::fs::write(root.join("ui/index.html"), b"<!doctype html><p>hi</p>").unwrap();
    std::fs::write(root.join("ui/assets/app.js"), b"console.log(1)").unwrap();
    dir
}

fn unpack_dir(dir: &Path) -> bundle::BundleFiles {
    let packed = bundle::pack(dir).unwrap();
    bundle::unpack(&packed.bytes, UnpackLimits::default()).unwrap()
}

#[test]
fn a_valid_manifest_is_accepted_and_normalised() {
    let dir = extension_dir(&valid_manifest());
    let files = unpack_dir(dir.path());
    let manifest = Manifest::from_bundle(&files).unwrap();
    assert_eq!(manifest.runtime, "wasm-component@1");
    assert_eq!(
        manifest.capabilities,
        vec!["cap:http.fetch", "cap:storage.kv"]
    );
    assert_eq!(files.component().unwrap(), b"\0asm component bytes");
}

/// Each rule: a change to the valid manifest (or bundle) and the field its message must name.
#[test]
fn every_manifest_rule_rejects_its_bad_case_naming_the_field() {
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("name", |m| m["name"] = json!("Acme Reports")),
        ("name", |m| m["name"] = json!("reports")),
        ("name", |m| m["name"] = json!("com..acme")),
        ("publisher", |m| m["publisher"] = json!("  ")),
        ("version", |m| m["version"] = json!("1.2")),
        ("runtime", |m| m["runtime"] = json!("wasm-python@9")),
        ("capabilities[1]", |m| {
            m["capabilities"] = json!(["cap:http.fetch", "cap:fs.write"])
        }),
        ("capabilities[1]", |m| {
            m["capabilities"] = json!(["http.fetch", "cap:http.fetch"])
        }),
        ("ui.type", |m| m["ui"]["type"] = json!("native")),
        ("ui.entry", |m| m["ui"]["entry"] = json!("ui/missing.html")),
        ("ui.entry", |m| m["ui"]["entry"] = json!("../etc/passwd")),
        ("ui.hooks.appMenu.label", |m| {
            m["ui"]["hooks"]["appMenu"]["label"] = json!("")
        }),
        ("api.endpoints[0].method", |m| {
            m["api"]["endpoints"][0]["method"] = json!("TRACE")
        }),
        ("api.endpoints[0].path", |m| {
            m["api"]["endpoints"][0]["path"] = json!("agreements")
        }),
        ("api.endpoints[1].path", |m| {
            m["api"]["endpoints"][1]["path"] = json!("/agreements")
        }),
        ("api.endpoints[0].handler", |m| {
            m["api"]["endpoints"][0]["handler"] = json!("")
        }),
        ("events[0].topic", |m| m["events"][0]["topic"] = json!("")),
        ("entry", |m| m["entry"] = json!("dist/other.wasm")),
        ("precompiled.x86_64-linux-gnu", |m| {
            m["precompiled"] = json!({"x86_64-linux-gnu": "artifacts/main.cwasm"})
        }),
        ("assets[0]", |m| m["assets"] = json!(["ui/.secret/*"])),
        ("assets[0]", |m| m["assets"] = json!(["/etc/*"])),
    ];
    for (field, edit) in cases {
        let mut manifest = valid_manifest();
        edit(&mut manifest);
        let dir = extension_dir(&manifest);
        let files = unpack_dir(dir.path());
        match Manifest::from_bundle(&files) {
            Err(ManifestError::Invalid(violations)) => assert!(
                violations.iter().any(|v| v.field == field),
                "expected a violation of {field} for {manifest}, got {violations:?}"
            ),
            other => panic!("expected {field} to be rejected for {manifest}, got {other:?}"),
        }
    }
}

#[test]
fn unknown_fields_and_wrong_types_are_rejected_by_name() {
    let mut manifest = valid_manifest();
    manifest["capabilites"] = json!(["cap:http.fetch"]);
    let error = Manifest::parse(manifest.to_string().as_bytes()).unwrap_err();
    assert!(error.to_string().contains("capabilites"), "{error}");

    let mut manifest = valid_manifest();
    manifest["version"] = json!(123);
    let error = Manifest::parse(manifest.to_string().as_bytes()).unwrap_err();
    assert!(error.to_string().contains("invalid type"), "{error}");
}

#[test]
fn hidden_files_are_refused_when_packing_and_when_validating() {
    let dir = extension_dir(&valid_manifest());
    std::fs::write(dir.path().join("ui/.env"), b"SECRET=1").unwrap();
    match bundle::pack(dir.path()) {
        Err(BundleError::Unpackable { path, .. }) => assert_eq!(path, "ui/.env"),
        other => panic!("expected the hidden file to be refused, got {other:?}"),
    }
    // A bundle made by another tool that does contain one fails validation.
    let archive = raw_archive(&[
        entry(
            "manifest.json",
            b'0',
            valid_manifest().to_string().as_bytes(),
        ),
        entry("dist/main.wasm", b'0', b"\0asm"),
        entry("ui/index.html", b'0', b"<p>"),
        entry("ui/.env", b'0', b"SECRET=1"),
    ]);
    let files = bundle::unpack(&archive, UnpackLimits::default()).unwrap();
    let Err(ManifestError::Invalid(violations)) = Manifest::from_bundle(&files) else {
        panic!("hidden file accepted");
    };
    assert!(
        violations
            .iter()
            .any(|v| v.field == "assets" && v.message.contains("ui/.env"))
    );
}

#[cfg(unix)]
#[test]
fn links_in_the_extension_folder_are_refused_when_packing() {
    let dir = extension_dir(&valid_manifest());
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("ui/passwd")).unwrap();
    assert!(matches!(
        bundle::pack(dir.path()),
        Err(BundleError::Unpackable { path, .. }) if path == "ui/passwd"
    ));
}

#[test]
fn packing_is_deterministic_and_round_trips() {
    let dir = extension_dir(&valid_manifest());
    let first = bundle::pack(dir.path()).unwrap();
    // Touch every file: times must not leak into the archive.
    for path in ["manifest.json", "dist/main.wasm", "ui/index.html"] {
        let content = std::fs::read(dir.path().join(path)).unwrap();
        std::fs::write(dir.path().join(path), content).unwrap();
    }
    let second = bundle::pack(dir.path()).unwrap();
    assert_eq!(first.content_hash, second.content_hash);
    assert_eq!(first.content_hash, ContentHash::of(&first.bytes));
    let files = bundle::unpack(&first.bytes, UnpackLimits::default()).unwrap();
    assert_eq!(
        files.paths().collect::<Vec<_>>(),
        [
            "dist/main.wasm",
            "manifest.json",
            "ui/assets/app.js",
            "ui/index.html"
        ]
    );
    assert!(ContentHash::parse(first.content_hash.as_str()).is_ok());
    assert!(ContentHash::parse("sha256:XYZ").is_err());
}

/// A `ui/` with a `package.json` is source: the bundle's `ui/` is what `ext build` wrote to
/// `dist/ui/` (never the sources or node_modules); without that build, packing says so.
#[test]
fn a_ui_built_from_sources_is_packed_from_dist_ui() {
    let dir = extension_dir(&valid_manifest());
    let root = dir.path();
    std::fs::write(root.join("ui/package.json"), b"{}").unwrap();
    std::fs::create_dir_all(root.join("ui/node_modules/react")).unwrap();
    std::fs::write(root.join("ui/node_modules/react/index.js"), b"x").unwrap();
    let missing = bundle::pack(root).unwrap_err();
    assert!(missing.to_string().contains("dist/ui"), "{missing}");
    std::fs::create_dir_all(root.join("dist/ui")).unwrap();
    std::fs::write(root.join("dist/ui/index.html"), b"<!doctype html>").unwrap();
    std::fs::write(root.join("dist/ui/app.js"), b"built()").unwrap();
    let files = unpack_dir(root);
    assert_eq!(
        files.paths().collect::<Vec<_>>(),
        [
            "dist/main.wasm",
            "manifest.json",
            "ui/app.js",
            "ui/index.html"
        ]
    );
    assert_eq!(files.get("ui/app.js").unwrap(), b"built()");
}

#[test]
fn hostile_archives_are_refused() {
    let ok = || entry("manifest.json", b'0', b"{}");
    let mut symlink = entry("ui/passwd", b'2', b"");
    symlink.link = b"/etc/passwd".to_vec();
    let mut hardlink = entry("ui/hard", b'1', b"");
    hardlink.link = b"manifest.json".to_vec();
    let unsafe_path = |e: &BundleError| matches!(e, BundleError::UnsafePath(_));
    let forbidden = |e: &BundleError| matches!(e, BundleError::ForbiddenEntry { .. });
    let duplicate = |e: &BundleError| matches!(e, BundleError::Duplicate(_));
    type Expect = fn(&BundleError) -> bool;
    let cases: Vec<(&str, Vec<RawEntry>, Expect)> = vec![
        (
            "parent traversal",
            vec![ok(), entry("../evil.sh", b'0', b"x")],
            unsafe_path,
        ),
        (
            "nested traversal",
            vec![ok(), entry("ui/../../evil", b'0', b"x")],
            unsafe_path,
        ),
        (
            "absolute path",
            vec![ok(), entry("/etc/cron.d/evil", b'0', b"x")],
            unsafe_path,
        ),
        (
            "backslash",
            vec![ok(), entry("ui\\..\\evil", b'0', b"x")],
            unsafe_path,
        ),
        (
            "dot segment",
            vec![ok(), entry("ui/./index.html", b'0', b"x")],
            unsafe_path,
        ),
        ("symlink", vec![ok(), symlink], forbidden),
        ("hard link", vec![ok(), hardlink], forbidden),
        (
            "char device",
            vec![ok(), entry("ui/tty", b'3', b"")],
            forbidden,
        ),
        ("fifo", vec![ok(), entry("ui/pipe", b'6', b"")], forbidden),
        (
            "duplicate",
            vec![ok(), entry("manifest.json", b'0', b"{}")],
            duplicate,
        ),
    ];
    for (what, entries, expected) in cases {
        let archive = raw_archive(&entries);
        match bundle::unpack(&archive, UnpackLimits::default()) {
            Err(error) => assert!(
                expected(&error),
                "{what} refused for the wrong reason: {error}"
            ),
            Ok(_) => panic!("{what} was accepted"),
        }
    }
    assert!(matches!(
        bundle::unpack(b"not zstd at all", UnpackLimits::default()),
        Err(BundleError::Corrupt(_))
    ));
}

#[test]
fn archive_limits_bound_entries_and_decompressed_size() {
    let many: Vec<RawEntry> = (0..20)
        .map(|i| entry(&format!("ui/f{i}"), b'0', b"x"))
        .collect();
    let limits = UnpackLimits {
        max_entries: 10,
        max_total_bytes: 1 << 20,
    };
    assert!(matches!(
        bundle::unpack(&raw_archive(&many), limits),
        Err(BundleError::TooManyEntries(10))
    ));

    // 8 MiB of zeros compresses to a few hundred bytes: the bound applies to what it expands to.
    let bomb = raw_archive(&[entry("ui/zeros", b'0', &vec![0u8; 8 << 20])]);
    assert!(bomb.len() < 64 << 10);
    let limits = UnpackLimits {
        max_entries: 10,
        max_total_bytes: 1 << 20,
    };
    assert!(matches!(
        bundle::unpack(&bomb, limits),
        Err(BundleError::TooLarge(_))
    ));
}

fn claims_for(hash: &ContentHash) -> BundleClaims {
    BundleClaims {
        content_hash: hash.to_string(),
        name: "com.acme.reports".into(),
        version: "1.2.3".into(),
        publisher: "Acme".into(),
    }
}

#[test]
fn signatures_verify_only_for_trusted_keys_and_the_exact_bundle() {
    let dir = extension_dir(&valid_manifest());
    let packed = bundle::pack(dir.path()).unwrap();
    let publisher = SigningKey::generate();
    let signature = publisher.sign(&claims_for(&packed.content_hash)).unwrap();
    assert_eq!(signature.split('.').count(), 3, "compact JWS");

    let other = SigningKey::generate();
    let trust = TrustBundle::from_pem(&format!(
        "{}\n{}",
        other.public_pem(),
        publisher.public_pem()
    ))
    .unwrap();
    let verified = trust
        .verify(&signature, &claims_for(&packed.content_hash))
        .unwrap();
    assert_eq!(verified.key_fingerprint, publisher.fingerprint());

    // One byte changed: a different content hash, which the signature does not cover.
    let mut tampered = packed.bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let tampered_hash = ContentHash::of(&tampered);
    assert_ne!(tampered_hash, packed.content_hash);
    assert!(matches!(
        trust.verify(&signature, &claims_for(&tampered_hash)),
        Err(SigningError::Mismatch {
            field: "content_hash",
            ..
        })
    ));

    // Another version claimed under the same signature.
    let mut claims = claims_for(&packed.content_hash);
    claims.version = "9.9.9".into();
    assert!(matches!(
        trust.verify(&signature, &claims),
        Err(SigningError::Mismatch {
            field: "version",
            ..
        })
    ));

    // Signed by a key nobody trusts.
    let stranger = SigningKey::generate()
        .sign(&claims_for(&packed.content_hash))
        .unwrap();
    assert!(matches!(
        trust.verify(&stranger, &claims_for(&packed.content_hash)),
        Err(SigningError::Untrusted)
    ));

    // Garbage and a flipped signature byte.
    assert!(matches!(
        trust.verify("not.a.jws", &claims_for(&packed.content_hash)),
        Err(SigningError::Untrusted)
    ));
    let mut forged = signature.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(
        trust
            .verify(&forged, &claims_for(&packed.content_hash))
            .is_err()
    );
}

#[test]
fn keys_and_trust_bundles_load_from_pem_files_or_inline() {
    let key = SigningKey::generate();
    let reloaded = SigningKey::from_pem(&key.to_pem()).unwrap();
    assert_eq!(reloaded.fingerprint(), key.fingerprint());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trust.pem");
    std::fs::write(&file, key.public_pem()).unwrap();
    let from_file = TrustBundle::load(file.to_str().unwrap()).unwrap();
    let inline = TrustBundle::load(&key.public_pem()).unwrap();
    assert_eq!(
        from_file.fingerprints().collect::<Vec<_>>(),
        vec![key.fingerprint()]
    );
    assert_eq!(inline.fingerprints().count(), 1);

    assert!(matches!(
        TrustBundle::from_pem("no keys here"),
        Err(SigningError::EmptyTrustBundle)
    ));
    assert!(matches!(
        TrustBundle::load("/definitely/missing.pem"),
        Err(SigningError::Read { .. })
    ));
    assert!(matches!(
        TrustBundle::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
        Err(SigningError::BadKey { .. })
    ));
    assert!(SigningKey::from_pem("garbage").is_err());
}
