//! The author's path over the real binary, for every language: `ext new` → `ext build` →
//! pack → sign → publish → install → request, from a clean temporary folder; and the README's
//! author quick start, run as written. Author commands run with a new user's environment
//! (`run_as_new_user`): the test command's build caches would hide bugs in default paths.

use std::path::Path;
use std::time::Duration;

use alga_edge_e2e::publishing::{
    Fixture, admin_ok, bearer, binary, call, cli, install, json, path, token,
};
use alga_edge_e2e::{Node, client_with_timeout, repo_root, run_as_new_user, send, tempfile};

/// Packs and signs the built extension at `dir` with the fixture's key, publishes it on `node`
/// and installs it for tenant `acme` with KV and config granted and `config` set.
fn publish_and_install(fixture: &Fixture, node: &Node, dir: &Path, name: &str, config: &str) {
    let bundle = fixture.pack_and_sign(dir, dir.parent().unwrap().join(format!("{name}.tar.zst")));
    admin_ok(node, &["publish", path(&bundle)]);
    let grants = ["storage.kv", "config.get"];
    install(node, name, "0.1.0", "acme", &grants, &["--config", config]);
}

/// [`call`] patient enough for a first request, which compiles the component: componentize-js's
/// holds a JavaScript engine, which a debug build on a busy machine can take minutes to compile.
fn first_call(node: &Node, method: &str, route: &str, token: &str, body: &str) -> (u16, String) {
    let authorization = bearer(token);
    let (status, _, text) = send(
        &client_with_timeout(Duration::from_secs(600)),
        method,
        &node.url(route),
        &[("authorization", authorization.as_str())],
        Some(body.as_bytes().to_vec()),
    );
    (status, text)
}

#[test]
fn every_language_goes_from_new_to_a_served_request() {
    let fixture = Fixture::new();
    let node = fixture.start(&["--tenant-rate", "0"]);
    let work = tempfile::tempdir().unwrap();
    for lang in ["rust", "python", "js"] {
        let name = format!("com.example.{lang}notes");
        let dir = work.path().join(&name);
        let out = run_as_new_user(
            &binary(),
            &["ext", "new", &name, "--lang", lang, "--dir", path(&dir)],
            Duration::from_secs(60),
        );
        assert!(out.ok, "ext new {lang}: {}", out.stderr);
        for file in ["manifest.json", "README.md", "ui/index.html"] {
            assert!(dir.join(file).is_file(), "{lang}: {file} missing");
        }
        let built = run_as_new_user(
            &binary(),
            &["ext", "build", path(&dir)],
            Duration::from_secs(900),
        );
        assert!(built.ok, "ext build {lang}:\n{}", built.stderr);
        assert!(
            built
                .stderr
                .contains("manifest capabilities cover its imports"),
            "{}",
            built.stderr
        );
        assert!(
            dir.join("ui/alga-iframe.js").is_file(),
            "the build copies the iframe SDK into ui/"
        );

        publish_and_install(
            &fixture,
            &node,
            &dir,
            &name,
            &format!("greeting=Hi from {lang}"),
        );
        let bearer = token(&node, "acme");
        let (status, body) = first_call(&node, "GET", &format!("/api/ext/{name}/"), &bearer, "");
        assert_eq!(status, 200, "{lang}: {body}");
        let body = json(&body);
        assert_eq!(
            body["message"],
            format!("Hi from {lang}, acme!"),
            "{lang}: {body}"
        );
        assert_eq!(body["lang"], lang);
        assert_eq!(body["extension"], name.as_str());
        for expected in [1, 2] {
            let (status, body) = call(
                &node,
                "POST",
                &format!("/api/ext/{name}/visits"),
                &bearer,
                "",
            );
            assert_eq!(status, 200, "{lang}: {body}");
            assert_eq!(json(&body)["visits"], expected, "{lang}: {body}");
        }
        println!("{lang}: new → build → publish → install → request OK");
    }

    // Clear errors: an existing folder, a bad id, a folder that is no extension.
    let existing = cli(&[
        "ext",
        "new",
        "com.example.rustnotes",
        "--dir",
        path(&work.path().join("com.example.rustnotes")),
    ]);
    assert!(
        !existing.ok && existing.stderr.contains("not empty"),
        "{}",
        existing.stderr
    );
    let bad = cli(&[
        "ext",
        "new",
        "Not An Id",
        "--dir",
        path(&work.path().join("bad")),
    ]);
    assert!(
        !bad.ok && bad.stderr.contains("cannot be an extension id"),
        "{}",
        bad.stderr
    );
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(
        empty.join("manifest.json"),
        std::fs::read(work.path().join("com.example.jsnotes/manifest.json")).unwrap(),
    )
    .unwrap();
    let none = cli(&["ext", "build", path(&empty)]);
    assert!(
        !none.ok && none.stderr.contains("no Cargo.toml, app.py or app.js"),
        "{}",
        none.stderr
    );
}

#[test]
fn alga_abi_projects_go_from_new_to_a_served_request() {
    let fixture = Fixture::new();
    let node = fixture.start(&["--tenant-rate", "0"]);
    let work = tempfile::tempdir().unwrap();
    let python_dir = work.path().join("com.example.py");
    let python = run_as_new_user(
        &binary(),
        &[
            "ext",
            "new",
            "com.example.py",
            "--abi",
            "alga",
            "--lang",
            "python",
            "--dir",
            path(&python_dir),
        ],
        Duration::from_secs(60),
    );
    assert!(
        !python.ok && python.stderr.contains("not supported yet"),
        "{}",
        python.stderr
    );
    assert!(
        !python_dir.exists(),
        "a refused ext new leaves nothing behind"
    );
    for lang in ["rust", "js"] {
        let name = format!("com.example.alga{lang}");
        let dir = work.path().join(&name);
        let out = run_as_new_user(
            &binary(),
            &[
                "ext",
                "new",
                &name,
                "--abi",
                "alga",
                "--lang",
                lang,
                "--dir",
                path(&dir),
            ],
            Duration::from_secs(60),
        );
        assert!(out.ok, "ext new --abi alga {lang}: {}", out.stderr);
        let built = run_as_new_user(
            &binary(),
            &["ext", "build", path(&dir)],
            Duration::from_secs(900),
        );
        assert!(built.ok, "ext build {lang}:\n{}", built.stderr);
        let bundle =
            fixture.pack_and_sign(&dir, dir.parent().unwrap().join(format!("{name}.tar.zst")));
        admin_ok(&node, &["publish", path(&bundle)]);
        install(&node, &name, "0.1.0", "acme", &[], &[]);
        let (status, body) = first_call(
            &node,
            "POST",
            &format!("/api/ext/{name}/?q=1"),
            &token(&node, "acme"),
            "hi",
        );
        assert_eq!(status, 200, "{lang}: {body}");
        let body = json(&body);
        assert_eq!(
            (&body["method"], &body["url"], &body["body"]),
            (
                &serde_json::json!("POST"),
                &serde_json::json!("/?q=1"),
                &serde_json::json!("hi")
            ),
            "{lang}: {body}"
        );
        assert_eq!(
            body["context_import"]["tenant_id"], "acme",
            "{lang}: {body}"
        );
        println!("{lang}: Alga ABI new → build → publish → install → request OK");
    }
}

#[test]
fn the_python_and_javascript_samples_keep_notes_in_kv_with_a_configured_title() {
    let fixture = Fixture::new();
    let node = fixture.start(&["--tenant-rate", "0"]);
    let work = tempfile::tempdir().unwrap();
    for (sample, lang) in [("notes-py", "python"), ("notes-js", "js")] {
        // Build a copy: the repository's sample folders stay free of build output.
        let dir = work.path().join(sample);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(repo_root().join("components").join(sample)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        let built = run_as_new_user(
            &binary(),
            &["ext", "build", path(&dir)],
            Duration::from_secs(900),
        );
        assert!(built.ok, "ext build {sample}:\n{}", built.stderr);
        let name = format!("com.alga.samples.{sample}");
        publish_and_install(
            &fixture,
            &node,
            &dir,
            &name,
            &format!("title=Notes in {lang}"),
        );
        let bearer = token(&node, "acme");
        let route = format!("/api/ext/{name}/notes");
        for (id, text) in [(1, "first note"), (2, "second, with ünïcode")] {
            let (status, body) = first_call(&node, "POST", &route, &bearer, text);
            assert_eq!(status, 200, "{sample}: {body}");
            assert_eq!(json(&body)["id"], id, "{sample}: {body}");
        }
        let (status, body) = call(&node, "GET", &route, &bearer, "");
        assert_eq!(status, 200, "{sample}: {body}");
        let body = json(&body);
        assert_eq!(body["title"], format!("Notes in {lang}"));
        assert_eq!(
            body["notes"],
            serde_json::json!(["first note", "second, with ünïcode"])
        );
        assert_eq!(body["lang"], lang);
        println!("{sample}: notes stored and listed");
    }
}

#[test]
fn the_readme_author_quick_start_runs_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("<!-- author-quickstart:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- author-quickstart:end -->").next())
        .expect("README has the author quick start between its markers");
    let script = section
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the quick start has a sh block");
    let work = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(&binary()).parent().unwrap().to_owned();
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let wrapper = work.path().join("quickstart.sh");
    std::fs::write(
        &wrapper,
        format!(
            "set -euo pipefail\ncd {}\nexport PATH={path_var}\n{script}",
            path(work.path())
        ),
    )
    .unwrap();
    let run = run_as_new_user("bash", &[path(&wrapper)], Duration::from_secs(900));
    println!("{}\n{}", run.stdout, run.stderr);
    assert!(
        run.ok,
        "the quick start failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(json)
        .collect();
    assert!(
        lines.iter().any(|v| v["message"] == "Welcome, acme!"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|v| v["visits"] == 1), "{lines:?}");
}
