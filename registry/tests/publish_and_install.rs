//! Publishing into a real libsql registry file and a real bundle store, and the install
//! lifecycle on top of it.

use std::path::Path;

use alga_edge_registry::bundle::{self, ContentHash};
use alga_edge_registry::signing::{BundleClaims, SigningKey, TrustBundle};
use alga_edge_registry::store::BundleStore;
use alga_edge_registry::{InstallPolicy, InstallRequest, Registry, RegistryError};
use serde_json::json;

mod common;
use common::{entry, raw_archive};

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    store: BundleStore,
    store_root: std::path::PathBuf,
    publisher: SigningKey,
    trust: TrustBundle,
}

impl Fixture {
    /// The gateway's view of `tenant`'s install of `name`.
    async fn resolved(
        &self,
        tenant: &str,
        name: &str,
    ) -> Option<alga_edge_registry::ResolvedInstall> {
        self.registry.resolve(tenant, name).await.unwrap()
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&dir.path().join("registry.db"))
        .await
        .unwrap();
    let store_root = dir.path().join("bundles");
    let store = BundleStore::local(&store_root).unwrap();
    let publisher = SigningKey::generate();
    let trust = TrustBundle::from_pem(&publisher.public_pem()).unwrap();
    Fixture {
        _dir: dir,
        registry,
        store,
        store_root,
        publisher,
        trust,
    }
}

/// A real (empty) component importing `imports`; `marker` goes into a custom section so tests
/// can make components with different content hashes.
fn component(imports: &[&str], marker: &[u8]) -> Vec<u8> {
    use wasm_encoder::{
        ComponentImportSection, ComponentTypeRef, ComponentTypeSection, CustomSection, InstanceType,
    };
    let mut component = wasm_encoder::Component::new();
    if !imports.is_empty() {
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        component.section(&types);
        let mut section = ComponentImportSection::new();
        for name in imports {
            section.import(*name, ComponentTypeRef::Instance(0));
        }
        component.section(&section);
    }
    component.section(&CustomSection {
        name: "alga-test".into(),
        data: marker.into(),
    });
    component.finish()
}

/// Bundle bytes for `name@version` with `capabilities`; `marker` varies the component.
fn bundle_bytes(
    name: &str,
    publisher: &str,
    version: &str,
    capabilities: &[&str],
    marker: &[u8],
) -> Vec<u8> {
    bundle_with_component(
        name,
        publisher,
        version,
        capabilities,
        &component(&[], marker),
    )
}

/// Bundle bytes for `name@version` with `capabilities` around `component`.
fn bundle_with_component(
    name: &str,
    publisher: &str,
    version: &str,
    capabilities: &[&str],
    component: &[u8],
) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("dist")).unwrap();
    std::fs::create_dir_all(root.join("ui")).unwrap();
    let manifest = json!({
        "name": name, "publisher": publisher, "version": version,
        "runtime": "wasm-component@1", "capabilities": capabilities,
        "ui": {"type": "iframe", "entry": "ui/index.html"},
        "api": {"endpoints": [{"method": "GET", "path": "/greet", "handler": "greet", "schedulable": true}]}
    });
    std::fs::write(root.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(root.join("dist/main.wasm"), component).unwrap();
    std::fs::write(root.join("ui/index.html"), b"<p>ui</p>").unwrap();
    bundle::pack(root).unwrap().bytes
}

fn sign(key: &SigningKey, bytes: &[u8], name: &str, publisher: &str, version: &str) -> String {
    key.sign(&BundleClaims {
        content_hash: ContentHash::of(bytes).to_string(),
        name: name.into(),
        version: version.into(),
        publisher: publisher.into(),
    })
    .unwrap()
}

fn store_files(root: &Path) -> usize {
    std::fs::read_dir(root.join("sha256")).unwrap().count()
}

#[tokio::test]
async fn publish_is_verified_idempotent_and_conflict_checked() {
    let f = fixture().await;
    let bytes = bundle_bytes("com.acme.hello", "Acme", "1.0.0", &["http.fetch"], b"v1");
    let signature = sign(&f.publisher, &bytes, "com.acme.hello", "Acme", "1.0.0");

    let published = f
        .registry
        .publish(&bytes, &signature, &f.trust, &f.store)
        .await
        .unwrap();
    assert!(published.created);
    assert_eq!(published.content_hash, ContentHash::of(&bytes));
    assert!(f.store.contains(&published.content_hash).await.unwrap());

    // Same bundle again: nothing new.
    let again = f
        .registry
        .publish(&bytes, &signature, &f.trust, &f.store)
        .await
        .unwrap();
    assert!(!again.created);

    let version = f
        .registry
        .version("com.acme.hello", "1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version.manifest.capabilities, vec!["cap:http.fetch"]);
    assert_eq!(version.signature, signature);
    assert_eq!(
        f.registry.extensions().await.unwrap(),
        vec!["com.acme.hello"]
    );

    // Same version, different content.
    let other = bundle_bytes("com.acme.hello", "Acme", "1.0.0", &[], b"v1-changed");
    let other_signature = sign(&f.publisher, &other, "com.acme.hello", "Acme", "1.0.0");
    let error = f
        .registry
        .publish(&other, &other_signature, &f.trust, &f.store)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::VersionConflict { .. }),
        "{error}"
    );
    assert_eq!(error.status(), 409);
    assert!(
        !f.store.contains(&ContentHash::of(&other)).await.unwrap(),
        "a refused bundle stays out of the store"
    );

    // Another publisher (even with a trusted key) cannot take over the name.
    let intruder = bundle_bytes("com.acme.hello", "Mallory", "2.0.0", &[], b"evil");
    let intruder_signature = sign(
        &f.publisher,
        &intruder,
        "com.acme.hello",
        "Mallory",
        "2.0.0",
    );
    let error = f
        .registry
        .publish(&intruder, &intruder_signature, &f.trust, &f.store)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::PublisherMismatch { .. }),
        "{error}"
    );
    assert_eq!(error.status(), 403);
}

#[tokio::test]
async fn rejected_bundles_leave_nothing_in_the_store_or_the_tables() {
    let f = fixture().await;
    let name = "com.acme.hello";
    let bytes = bundle_bytes(name, "Acme", "1.0.0", &[], b"component");
    let good_signature = sign(&f.publisher, &bytes, name, "Acme", "1.0.0");

    let mut tampered = bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let untrusted = sign(&SigningKey::generate(), &bytes, name, "Acme", "1.0.0");
    let other_bytes = bundle_bytes(name, "Acme", "1.0.0", &[], b"other component");
    let for_other_hash = sign(&f.publisher, &other_bytes, name, "Acme", "1.0.0");
    let manifest = json!({"name": name, "publisher": "Acme", "version": "1.0.0", "runtime": "wasm-component@1"});
    let valid_component = component(&[], b"component");
    let traversal = raw_archive(&[
        entry("manifest.json", b'0', manifest.to_string().as_bytes()),
        entry("dist/main.wasm", b'0', &valid_component),
        entry("../escape.sh", b'0', b"#!/bin/sh"),
    ]);
    let traversal_signature = sign(&f.publisher, &traversal, name, "Acme", "1.0.0");
    let mut symlink = entry("ui/passwd", b'2', b"");
    symlink.link = b"/etc/passwd".to_vec();
    let with_symlink = raw_archive(&[
        entry("manifest.json", b'0', manifest.to_string().as_bytes()),
        entry("dist/main.wasm", b'0', &valid_component),
        symlink,
    ]);
    let symlink_signature = sign(&f.publisher, &with_symlink, name, "Acme", "1.0.0");

    // A signed manifest that disagrees with the signature's claims.
    let renamed = bundle_bytes("com.acme.other", "Acme", "1.0.0", &[], b"component");
    let renamed_signature = sign(&f.publisher, &renamed, name, "Acme", "1.0.0");
    let cases: Vec<(&str, &[u8], &str, u16)> = vec![
        (
            "manifest name differs from the signed name",
            &renamed,
            &renamed_signature,
            403,
        ),
        // Refused before unpacking: the signature does not cover these bytes.
        ("one byte changed", &tampered, &good_signature, 403),
        ("untrusted key", &bytes, &untrusted, 403),
        ("signature for another hash", &bytes, &for_other_hash, 403),
        ("../ entry", &traversal, &traversal_signature, 400),
        ("symlink entry", &with_symlink, &symlink_signature, 400),
    ];
    for (what, bundle, signature, status) in cases {
        let error = f
            .registry
            .publish(bundle, signature, &f.trust, &f.store)
            .await
            .unwrap_err();
        assert_eq!(error.status(), status, "{what}: {error}");
        assert_eq!(
            store_files(&f.store_root),
            0,
            "{what} left a bundle in the store"
        );
        assert!(
            f.registry.extensions().await.unwrap().is_empty(),
            "{what} left a registry row"
        );
        assert!(
            f.registry.versions(name).await.unwrap().is_empty(),
            "{what} left a version row"
        );
    }
}

#[tokio::test]
async fn component_imports_must_be_covered_by_the_manifest_capabilities() {
    let f = fixture().await;
    let kv_component = component(
        &[
            "wasi:keyvalue/store@0.2.0-draft",
            "alga:extension/context@0.1.0",
        ],
        b"kv",
    );
    async fn publish(
        f: &Fixture,
        capabilities: &[&str],
        wasm: Vec<u8>,
        version: &str,
    ) -> Result<alga_edge_registry::Published, RegistryError> {
        let name = "com.acme.kv";
        let bytes = bundle_with_component(name, "Acme", version, capabilities, &wasm);
        let signature = sign(&f.publisher, &bytes, name, "Acme", version);
        f.registry
            .publish(&bytes, &signature, &f.trust, &f.store)
            .await
    }

    let error = publish(&f, &[], kv_component.clone(), "1.0.0")
        .await
        .unwrap_err();
    assert_eq!(error.status(), 400);
    assert!(
        error.to_string().contains("wasi:keyvalue/store")
            && error.to_string().contains("cap:storage.kv"),
        "{error}"
    );

    let error = publish(
        &f,
        &["cap:storage.kv"],
        component(&["acme:evil/rootkit"], b"evil"),
        "1.0.1",
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("does not provide"), "{error}");
    let error = publish(&f, &[], b"\0asm\x01\0\0\0".to_vec(), "1.0.2")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("core module"), "{error}");
    assert_eq!(
        store_files(&f.store_root),
        0,
        "refused components left bundles behind"
    );

    publish(&f, &["storage.kv"], kv_component, "1.0.3")
        .await
        .unwrap();
}

#[tokio::test]
async fn install_lifecycle_and_per_tenant_versions() {
    let f = fixture().await;
    let name = "com.acme.hello";
    let mut hashes = Vec::new();
    for (version, caps) in [
        ("1.0.0", vec!["cap:storage.kv", "cap:http.fetch"]),
        ("2.0.0", vec!["cap:storage.kv"]),
    ] {
        let bytes = bundle_bytes(name, "Acme", version, &caps, version.as_bytes());
        let signature = sign(&f.publisher, &bytes, name, "Acme", version);
        hashes.push(
            f.registry
                .publish(&bytes, &signature, &f.trust, &f.store)
                .await
                .unwrap()
                .content_hash,
        );
    }

    let request = |tenant: &str, version: &str, grants: &[&str]| InstallRequest {
        tenant: tenant.into(),
        extension: name.into(),
        version: version.into(),
        grants: grants.iter().map(|g| g.to_string()).collect(),
        config: [("greeting".to_string(), "hi".to_string())].into(),
        secrets: Default::default(),
        policy: Default::default(),
    };

    // Grants must be requested by the manifest.
    let error = f
        .registry
        .install(&request("tenant-a", "1.0.0", &["cap:secrets.get"]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::GrantNotRequested { .. }),
        "{error}"
    );
    assert_eq!(error.status(), 400);
    assert!(
        f.registry
            .install_of("tenant-a", name)
            .await
            .unwrap()
            .is_none()
    );

    let a = f
        .registry
        .install(&request(
            "tenant-a",
            "1.0.0",
            &["storage.kv", "cap:http.fetch"],
        ))
        .await
        .unwrap();
    assert_eq!(a.grants, vec!["cap:http.fetch", "cap:storage.kv"]);
    assert_eq!(a.config["greeting"], "hi");
    // A default grant (Alga's runner gives every install context, logging and user) may be
    // listed although 2.0.0's manifest does not request it.
    let b = f
        .registry
        .install(&request(
            "tenant-b",
            "2.0.0",
            &["cap:storage.kv", "log.emit"],
        ))
        .await
        .unwrap();
    assert_eq!(b.grants, vec!["cap:log.emit", "cap:storage.kv"]);

    // Each tenant gets its own version.
    let resolved_a = f.resolved("tenant-a", name).await.unwrap();
    let resolved_b = f.resolved("tenant-b", name).await.unwrap();
    assert_eq!(resolved_a.content_hash, hashes[0]);
    assert_eq!(resolved_b.content_hash, hashes[1]);
    assert!(f.resolved("tenant-c", name).await.is_none());

    let error = f
        .registry
        .install(&request("tenant-a", "2.0.0", &[]))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 409, "{error}");

    // Disable → not resolvable; enable → back.
    f.registry
        .set_enabled("tenant-a", name, false)
        .await
        .unwrap();
    assert!(f.resolved("tenant-a", name).await.is_none());
    f.registry
        .set_enabled("tenant-a", name, true)
        .await
        .unwrap();
    assert!(f.resolved("tenant-a", name).await.is_some());

    // 2.0.0 no longer requests http.fetch, which tenant-a granted: the update is refused.
    let error = f
        .registry
        .update("tenant-a", name, "2.0.0")
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::GrantNotRequested { .. }),
        "{error}"
    );
    f.registry.uninstall("tenant-b", name).await.unwrap();
    f.registry
        .install(&request("tenant-b", "1.0.0", &[]))
        .await
        .unwrap();
    let updated = f.registry.update("tenant-b", name, "2.0.0").await.unwrap();
    assert_eq!(updated.version, "2.0.0");
    assert_eq!(
        f.resolved("tenant-b", name).await.unwrap().content_hash,
        hashes[1]
    );

    // Deprecated versions keep their installs but take no new ones.
    f.registry.deprecate(name, "1.0.0").await.unwrap();
    assert!(f.resolved("tenant-a", name).await.is_some());
    let error = f
        .registry
        .install(&request("tenant-c", "1.0.0", &[]))
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::Deprecated { .. }), "{error}");

    // Uninstall → gone; a second uninstall says so.
    f.registry.uninstall("tenant-a", name).await.unwrap();
    assert!(f.resolved("tenant-a", name).await.is_none());
    assert_eq!(
        f.registry
            .uninstall("tenant-a", name)
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        f.registry
            .set_enabled("nobody", name, true)
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert!(matches!(
        f.registry
            .install(&request("bad tenant!", "2.0.0", &[]))
            .await
            .unwrap_err(),
        RegistryError::BadTenant(_)
    ));
    assert!(matches!(
        f.registry
            .install(&InstallRequest {
                extension: "com.nobody.x".into(),
                ..request("t", "1.0.0", &[])
            })
            .await
            .unwrap_err(),
        RegistryError::UnknownExtension(_)
    ));
}

#[tokio::test]
async fn registry_data_survives_reopening_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let store = BundleStore::local(dir.path().join("bundles")).unwrap();
    let key = SigningKey::generate();
    let trust = TrustBundle::from_pem(&key.public_pem()).unwrap();
    {
        let registry = Registry::open(&path).await.unwrap();
        let bytes = bundle_bytes("com.acme.kept", "Acme", "0.1.0", &[], b"kept");
        let signature = sign(&key, &bytes, "com.acme.kept", "Acme", "0.1.0");
        registry
            .publish(&bytes, &signature, &trust, &store)
            .await
            .unwrap();
    }
    let registry = Registry::open(&path).await.unwrap();
    assert_eq!(registry.extensions().await.unwrap(), vec!["com.acme.kept"]);
}

#[tokio::test]
async fn install_secrets_are_sealed_at_rest_and_open_for_their_install_only() {
    use alga_edge_registry::secrets::{SecretSealer, Secrets};
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("registry.db");
    let key = SecretSealer::generate_key_hex();
    let registry = Registry::open(&db_path)
        .await
        .unwrap()
        .with_secret_sealer(SecretSealer::from_hex(&key).unwrap());
    let store = BundleStore::local(dir.path().join("bundles")).unwrap();
    let publisher = SigningKey::generate();
    let trust = TrustBundle::from_pem(&publisher.public_pem()).unwrap();
    let name = "com.acme.secretive";
    let bytes = bundle_bytes(name, "Acme", "1.0.0", &["cap:secrets.get"], b"s");
    let signature = sign(&publisher, &bytes, name, "Acme", "1.0.0");
    registry
        .publish(&bytes, &signature, &trust, &store)
        .await
        .unwrap();

    let plaintext = "plaintext-token-4f1c9e";
    let request = InstallRequest {
        tenant: "tenant-a".into(),
        extension: name.into(),
        version: "1.0.0".into(),
        grants: vec!["cap:secrets.get".into()],
        config: Default::default(),
        secrets: Secrets::new([("api_token".to_string(), plaintext.to_string())].into()),
        policy: Default::default(),
    };
    registry.install(&request).await.unwrap();
    let opened = registry.secrets("tenant-a", name).await.unwrap();
    assert_eq!(opened.get("api_token"), Some(plaintext));
    assert!(
        registry
            .resolve("tenant-a", name)
            .await
            .unwrap()
            .unwrap()
            .sealed_secrets
            .is_some()
    );

    // Nowhere in the database files (main file and WAL) is the plaintext.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let raw = std::fs::read(&path).unwrap();
            assert!(
                !raw.windows(plaintext.len())
                    .any(|w| w == plaintext.as_bytes()),
                "plaintext secret found in {}",
                path.display()
            );
        }
    }

    // A registry without the node key can neither store nor open secrets.
    drop(registry);
    let keyless = Registry::open(&db_path).await.unwrap();
    assert!(matches!(
        keyless.secrets("tenant-a", name).await.unwrap_err(),
        RegistryError::NoSecretsKey
    ));
    let error = keyless
        .install(&InstallRequest {
            tenant: "tenant-b".into(),
            ..request.clone()
        })
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::NoSecretsKey), "{error}");
    // With the wrong key, the envelope does not open.
    let wrong = Registry::open(&db_path)
        .await
        .unwrap()
        .with_secret_sealer(SecretSealer::from_hex(&SecretSealer::generate_key_hex()).unwrap());
    assert!(matches!(
        wrong.secrets("tenant-a", name).await.unwrap_err(),
        RegistryError::Secrets(_)
    ));
}

#[tokio::test]
async fn install_policies_are_validated_stored_and_resolved_with_the_endpoints() {
    let f = fixture().await;
    let name = "com.acme.hello";
    let bytes = bundle_bytes(name, "Acme", "1.0.0", &[], b"p");
    let signature = sign(&f.publisher, &bytes, name, "Acme", "1.0.0");
    f.registry
        .publish(&bytes, &signature, &f.trust, &f.store)
        .await
        .unwrap();
    let mut policy = InstallPolicy::default();
    policy.set("timeout_ms=300").unwrap();
    let mut request = InstallRequest {
        tenant: "t".into(),
        extension: name.into(),
        version: "1.0.0".into(),
        policy: InstallPolicy {
            timeout_ms: Some(0),
            ..Default::default()
        },
        ..Default::default()
    };
    let error = f.registry.install(&request).await.unwrap_err();
    assert_eq!(error.status(), 400, "{error}");
    assert!(f.registry.install_of("t", name).await.unwrap().is_none());
    request.policy = policy.clone();
    assert_eq!(f.registry.install(&request).await.unwrap().policy, policy);
    let resolved = f.registry.resolve("t", name).await.unwrap().unwrap();
    assert_eq!(resolved.install.policy.timeout_ms, Some(300));
    let endpoints: Vec<_> = resolved
        .endpoints
        .iter()
        .map(|e| (e.method.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(endpoints, [("GET", "/greet")]);
    policy.set("enforce_endpoints=true").unwrap();
    let updated = f.registry.set_policy("t", name, &policy).await.unwrap();
    assert_eq!(updated.policy.enforce_endpoints, Some(true));
    assert!(matches!(
        f.registry
            .set_policy("nobody", name, &policy)
            .await
            .unwrap_err(),
        RegistryError::NotInstalled { .. }
    ));
}

/// Two processes on one registry (two handles on the same file): only the lease holder claims,
/// a due time is claimed once (missed fires coalesced), and when the lease lapses the new
/// holder takes over and marks the old holder's unfinished run interrupted, not run again.
#[tokio::test]
async fn one_lease_holder_claims_each_due_time_once() {
    use alga_edge_registry::schedules::{INTERRUPTED, RUNNING, ScheduleChange, ScheduleLimits};
    let f = fixture().await;
    let name = "com.acme.hello";
    let bytes = bundle_bytes(name, "Acme", "1.0.0", &[], b"s");
    let signature = sign(&f.publisher, &bytes, name, "Acme", "1.0.0");
    f.registry
        .publish(&bytes, &signature, &f.trust, &f.store)
        .await
        .unwrap();
    let request = InstallRequest {
        tenant: "t".into(),
        extension: name.into(),
        version: "1.0.0".into(),
        ..Default::default()
    };
    f.registry.install(&request).await.unwrap();
    let change = ScheduleChange {
        endpoint: Some("GET /greet".into()),
        cron: Some("* * * * *".into()),
        ..Default::default()
    };
    let limits = ScheduleLimits {
        max_per_install: 5,
        min_interval_secs: 60,
    };
    let created = f
        .registry
        .create_schedule("t", name, &change, limits)
        .await
        .unwrap();
    let due = created.next_run_at.unwrap();
    let ms = due * 1000;
    let other = Registry::open(&f._dir.path().join("registry.db"))
        .await
        .unwrap();

    assert!(
        f.registry
            .take_scheduler_lease("a", ms, 10_000)
            .await
            .unwrap()
    );
    assert!(!other.take_scheduler_lease("b", ms, 10_000).await.unwrap());
    assert!(
        other
            .claim_due_runs("b", due, ms, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Two fire times missed: one run, the next fire after now.
    let late = due + 125;
    let claimed = f.registry.claim_due_runs("a", late, ms, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].schedule.next_run_at, Some(late - late % 60 + 60));
    assert!(
        f.registry
            .claim_due_runs("a", late, ms, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // a's lease lapses mid-run: b takes over; a can neither renew nor claim.
    assert!(
        other
            .take_scheduler_lease("b", ms + 10_001, 10_000)
            .await
            .unwrap()
    );
    assert!(
        !f.registry
            .take_scheduler_lease("a", ms + 10_002, 10_000)
            .await
            .unwrap()
    );
    assert!(
        f.registry
            .claim_due_runs("a", late + 3600, ms + 10_002, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(other.interrupt_orphaned_runs("b").await.unwrap(), 1);
    let after = other
        .schedule("t", name, &created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.runs, after.last_run_status.as_deref()),
        (1, Some(INTERRUPTED))
    );
    // a's late report of the interrupted run changes nothing.
    f.registry
        .finish_run(&created.id, late, "success", None)
        .await
        .unwrap();
    let after = other
        .schedule("t", name, &created.id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(after.last_run_status.as_deref(), Some(RUNNING));
    assert_eq!(after.last_run_status.as_deref(), Some(INTERRUPTED));
    // Uninstalling removes the schedules with the install.
    f.registry.uninstall("t", name).await.unwrap();
    f.registry.install(&request).await.unwrap();
    assert!(f.registry.schedules("t", name).await.unwrap().is_empty());
}
