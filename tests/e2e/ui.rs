//! Extension UI delivery over the real binary: `/ext-ui/{extensionId}/{content_hash}/{path…}`
//! (immutable caching, ETag revalidation, precompressed encodings, byte ranges, HEAD, path
//! safety, hash-to-extension binding) and, in Debian's Chromium, the demo host page opening
//! the hello sample's UI in a sandboxed iframe that talks to its route through the bridge.

use std::path::{Path, PathBuf};
use std::time::Duration;

use alga_edge_e2e::publishing::{
    ADMIN_TOKEN, Fixture, OTHER, admin_ok, bearer, content_hash, install, path, token,
};
use alga_edge_e2e::{Node, header, raw, repo_root, run_to_exit, samples_dir, tempfile, wait_until};

use crate::BIN;

/// The hello sample's own id (its `manifest.json`), which carries a `ui/`.
const HELLO: &str = "com.alga.samples.hello";
const HOST_ORIGIN: &str = "https://psa.example.com";

#[test]
fn ui_files_are_served_immutable_by_hash_with_revalidation_encodings_and_ranges() {
    let fixture = Fixture::new();
    // The hello sample as built, with its `ui/`.
    let hello = fixture.pack_and_sign(
        &samples_dir().join("hello"),
        fixture.dir.path().join("hello-ui.tar.zst"),
    );
    let other = fixture.bundle(OTHER, "1.0.0", "hello");
    let node = fixture.start(&["--ui-frame-ancestors", HOST_ORIGIN]);
    admin_ok(&node, &["publish", path(&hello)]);
    admin_ok(&node, &["publish", path(&other)]);
    let hash = content_hash(&node, HELLO);
    let base = format!("/ext-ui/{HELLO}/{hash}");
    let on_disk = std::fs::read(samples_dir().join("hello/ui/index.html")).unwrap();

    // The primary extracts (and precompresses) a bundle's UI when it is published, so no viewer
    // pays for it; but it serves a version's UI only once a tenant installed it or an admin
    // marked it previewable.
    let index = node
        .data_dir()
        .join("ui-cache")
        .join(hash.trim_start_matches("sha256:"))
        .join("index.json");
    wait_until(
        Duration::from_secs(60),
        "the UI extracted at publish",
        || index.exists(),
    );
    let page = format!("{base}/index.html");
    let (status, _, body) = raw(&node, "GET", &page, &[]);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 404, "published, installed by no one: {text}");
    assert!(text.contains("previewable"), "{text}");
    admin_ok(&node, &["preview", HELLO, "--version", "0.1.0"]);
    assert_eq!(raw(&node, "GET", &page, &[]).0, 200, "previewable");
    admin_ok(&node, &["preview", HELLO, "--version", "0.1.0", "--off"]);
    assert_eq!(
        raw(&node, "GET", &page, &[]).0,
        404,
        "no longer previewable"
    );
    install(&node, HELLO, "0.1.0", "t1", &[], &[]);

    // 200 with type, strong ETag, immutable caching, CSP frame-ancestors, nosniff.
    let (status, headers, body) = raw(&node, "GET", &format!("{base}/index.html"), &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, on_disk);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let csp = header(&headers, "content-security-policy").unwrap();
    assert!(
        csp.contains(&format!("frame-ancestors 'self' {HOST_ORIGIN}")),
        "{csp}"
    );
    let etag = header(&headers, "etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert_eq!(
        header(&headers, "content-length"),
        Some(on_disk.len().to_string().as_str())
    );

    // A directory serves its index.html; the SDK and scripts get JavaScript types.
    let (status, headers, body) = raw(&node, "GET", &format!("{base}/"), &[]);
    assert_eq!(
        (status, header(&headers, "etag")),
        (200, Some(etag.as_str()))
    );
    assert_eq!(body, on_disk);
    let (status, headers, _) = raw(&node, "GET", &format!("{base}/alga-iframe.js"), &[]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    // Without the trailing slash, relative URLs would break: redirect.
    let (status, headers, _) = raw(&node, "GET", &base, &[]);
    assert_eq!(
        (status, header(&headers, "location")),
        (301, Some(format!("{base}/").as_str()))
    );

    // Revalidation.
    let (status, headers, body) = raw(
        &node,
        "GET",
        &format!("{base}/index.html"),
        &[("if-none-match", &etag)],
    );
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    let (status, _, _) = raw(
        &node,
        "GET",
        &format!("{base}/index.html"),
        &[("if-none-match", "\"other\"")],
    );
    assert_eq!(status, 200);

    // Precompressed variants, negotiated (the SDK is large enough to be compressed).
    let sdk = std::fs::read(repo_root().join("sdk/iframe/alga-iframe.js")).unwrap();
    for (accept, encoding, magic) in [
        ("br", "br", None),
        ("gzip", "gzip", Some([0x1f, 0x8b])),
        ("gzip, br", "br", None),
    ] {
        let (status, headers, body) = raw(
            &node,
            "GET",
            &format!("{base}/alga-iframe.js"),
            &[("accept-encoding", accept)],
        );
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "content-encoding"),
            Some(encoding),
            "{accept}"
        );
        assert_eq!(header(&headers, "vary"), Some("accept-encoding"));
        assert!(
            body.len() < sdk.len() / 2,
            "{accept}: {} of {} bytes",
            body.len(),
            sdk.len()
        );
        if let Some(magic) = magic {
            assert_eq!(body[..2], magic);
        }
    }
    let (_, headers, body) = raw(
        &node,
        "GET",
        &format!("{base}/alga-iframe.js"),
        &[("accept-encoding", "identity")],
    );
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body, sdk);

    // Byte ranges of the identity bytes; out of range is 416.
    let (status, headers, body) = raw(
        &node,
        "GET",
        &format!("{base}/index.html"),
        &[("range", "bytes=0-9"), ("accept-encoding", "br")],
    );
    assert_eq!(status, 206);
    assert_eq!(body, on_disk[..10]);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes 0-9/{}", on_disk.len()).as_str())
    );
    assert_eq!(header(&headers, "content-encoding"), None);
    let (status, _, body) = raw(
        &node,
        "GET",
        &format!("{base}/index.html"),
        &[("range", "bytes=-5")],
    );
    assert_eq!(
        (status, body.as_slice()),
        (206, &on_disk[on_disk.len() - 5..])
    );
    let (status, headers, _) = raw(
        &node,
        "GET",
        &format!("{base}/index.html"),
        &[("range", "bytes=100000-")],
    );
    assert_eq!(status, 416);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes */{}", on_disk.len()).as_str())
    );

    // HEAD: the same headers, no body.
    let (status, headers, body) = raw(&node, "HEAD", &format!("{base}/index.html"), &[]);
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert_eq!(
        header(&headers, "content-length"),
        Some(on_disk.len().to_string().as_str())
    );
    let (status, headers, _) = raw(
        &node,
        "POST",
        &format!("{base}/index.html"),
        &[("content-length", "0")],
    );
    assert_eq!(
        (status, header(&headers, "allow")),
        (405, Some("GET, HEAD"))
    );

    // The hash must be a published version of that very extension.
    let other_hash = content_hash(&node, OTHER);
    for target in [
        format!("/ext-ui/{OTHER}/{hash}/index.html"),
        format!("/ext-ui/{HELLO}/{other_hash}/index.html"),
        format!("/ext-ui/{HELLO}/sha256:{}/index.html", "0".repeat(64)),
        format!("/ext-ui/{HELLO}/not-a-hash/index.html"),
        format!("/ext-ui/no..such/{hash}/index.html"),
        format!("{base}/missing.html"),
    ] {
        let (status, _, _) = raw(&node, "GET", &target, &[]);
        assert_eq!(status, 404, "{target}");
    }

    // Traversal never reaches a file outside ui/ (manifest.json, dist/main.wasm).
    for attempt in [
        "../manifest.json",
        "%2e%2e/manifest.json",
        "..%2fmanifest.json",
        "%2E%2E%2Fdist%2Fmain.wasm",
        "..%5cmanifest.json",
        "..\\manifest.json",
        "index.html%00.png",
        "%2fetc%2fpasswd",
        ".hidden",
        "a//b",
    ] {
        let (status, _, body) = raw(&node, "GET", &format!("{base}/{attempt}"), &[]);
        assert!(status == 400 || status == 404, "{attempt}: {status}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            !body.starts_with(b"\0asm") && !text.contains("\"publisher\""),
            "{attempt}: {text}"
        );
    }

    // `immutable` belongs to this route only.
    let (tenant, admin) = (bearer(&token(&node, "t1")), bearer(ADMIN_TOKEN));
    for (target, auth) in [
        (format!("/api/ext/{HELLO}/greet"), tenant.as_str()),
        ("/admin/v1/extensions".to_owned(), admin.as_str()),
        ("/healthz".to_owned(), ""),
    ] {
        let (status, headers, _) = raw(&node, "GET", &target, &[("authorization", auth)]);
        assert_eq!(status, 200, "{target}");
        let cache = header(&headers, "cache-control").unwrap_or("");
        assert!(!cache.contains("immutable"), "{target}: {cache}");
    }
    // Uninstalled by its only tenant: no longer served.
    admin_ok(&node, &["uninstall", HELLO, "--tenant", "t1"]);
    assert_eq!(raw(&node, "GET", &page, &[]).0, 404, "uninstalled");
}

#[test]
fn the_hello_ui_renders_through_the_bridge_in_chromium() {
    let playwright = std::env::var("ALGA_PLAYWRIGHT_CORE").unwrap_or_else(|_| {
        panic!(
            "ALGA_PLAYWRIGHT_CORE is not set: run the suite with scripts/test.sh, which installs \
             Debian's Chromium and playwright-core"
        )
    });
    assert!(
        Path::new(&playwright).join("index.mjs").exists(),
        "{playwright} has no index.mjs"
    );
    let dir = tempfile::tempdir().unwrap();
    let demo = Node::start_demo(BIN, &dir.path().join("demo"));
    demo.wait_for_line("host page ", Duration::from_secs(120))
        .expect("the demo prints its host page");
    let artifacts = std::env::var_os("ALGA_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/artifacts"));
    let script = repo_root().join("tests/browser/ui.mjs");
    let run = run_to_exit(
        "node",
        &[path(&script), &demo.base(), path(&artifacts)],
        Duration::from_secs(120),
    );
    println!("{}\n{}", run.stdout, run.stderr);
    assert!(
        run.ok,
        "the browser test failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.contains("browser test passed"));
    assert!(artifacts.join("host-page-hello-ui.png").exists());
}
