//! The crate layout holds (DESIGN §1): host crates depend one way along the data path
//! (http → capabilities → engine → gateway → node), the registry and the UI cache are leaves,
//! the HTTP contract crate has no wasm runtime in it, and no host crate has a `use crate::`
//! cycle between its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use alga_edge_e2e::repo_root;

/// The host crates, lowest first: each may depend only on crates before it.
const ORDER: [&str; 5] = [
    "alga-edge-http",
    "alga-edge-capabilities",
    "alga-edge-engine",
    "alga-edge-gateway",
    "alga-edge",
];

/// Crates that depend on none of ours.
const LEAVES: [&str; 2] = ["alga-edge-registry", "alga-edge-ui-cache"];

fn metadata(no_deps: bool) -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(repo_root());
    if no_deps {
        command.arg("--no-deps");
    } else {
        // The resolve graph of this platform only: other platforms' crates are not in the
        // local cache, and the test reaches no registry.
        command.args([
            "--filter-platform",
            &format!(
                "{}-unknown-{}-gnu",
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
        ]);
    }
    let out = command.output().expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// The layering violations in `metadata`'s normal (non-dev) dependencies between our crates.
fn violations(metadata: &serde_json::Value) -> Vec<String> {
    let ours: BTreeSet<&str> = ORDER.iter().chain(LEAVES.iter()).copied().collect();
    let rank = |name: &str| ORDER.iter().position(|c| *c == name);
    let mut found = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name");
        if !ours.contains(name) {
            continue;
        }
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            let normal = dep["kind"].is_null();
            if !normal || !ours.contains(dep_name) {
                continue;
            }
            if LEAVES.contains(&name) {
                found.push(format!("{name} is a leaf but depends on {dep_name}"));
            } else if let (Some(from), Some(to)) = (rank(name), rank(dep_name))
                && to >= from
            {
                found.push(format!("{name} depends on {dep_name}, which is above it"));
            }
        }
    }
    found
}

#[test]
fn host_crates_depend_one_way_and_leaves_stay_leaves() {
    let metadata = metadata(true);
    let names: BTreeSet<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for crate_name in ORDER.iter().chain(LEAVES.iter()) {
        assert!(
            names.contains(crate_name),
            "{crate_name} is not in the workspace"
        );
    }
    let found = violations(&metadata);
    assert!(
        found.is_empty(),
        "layering violations:\n{}",
        found.join("\n")
    );

    // The checker itself sees an upward edge: an engine that used the gateway.
    let mut upward = metadata.clone();
    for package in upward["packages"].as_array_mut().unwrap() {
        if package["name"] == "alga-edge-engine" {
            package["dependencies"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "alga-edge-gateway", "kind": null}));
        }
    }
    assert_eq!(
        violations(&upward),
        ["alga-edge-engine depends on alga-edge-gateway, which is above it"]
    );
}

#[test]
fn the_http_contract_crate_has_no_wasm_runtime() {
    let metadata = metadata(false);
    let id_of = |name: &str| {
        metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["id"].as_str())
            .unwrap_or_else(|| panic!("{name} not found"))
            .to_owned()
    };
    let nodes: BTreeMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve graph")
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
                })
                .filter_map(|d| d["pkg"].as_str())
                .collect();
            (node["id"].as_str().unwrap(), deps)
        })
        .collect();
    let wasm: Vec<_> = reachable(&nodes, &id_of("alga-edge-http"))
        .into_iter()
        .filter(|id| id.contains("wasmtime"))
        .collect();
    assert!(wasm.is_empty(), "alga-edge-http pulls in {wasm:?}");
    // And the walk is real: from the gateway it does reach wasmtime.
    assert!(
        reachable(&nodes, &id_of("alga-edge-gateway"))
            .iter()
            .any(|id| id.contains("wasmtime")),
        "the walk from alga-edge-gateway reaches no wasmtime: the resolve graph is not read right"
    );
}

/// Every package id `from` depends on, directly or not, in the resolve graph `nodes`.
fn reachable<'a>(nodes: &BTreeMap<&'a str, Vec<&'a str>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(id) = stack.pop() {
        if seen.insert(id.clone()) {
            stack.extend(
                nodes
                    .get(id.as_str())
                    .into_iter()
                    .flatten()
                    .map(|d| d.to_string()),
            );
        }
    }
    seen
}

/// Every `.rs` file under `src`, as (top-level module name, text).
fn modules(src: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).unwrap();
                let first = relative.components().next().unwrap();
                let module = Path::new(first.as_os_str())
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((module, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files
}

/// Edges between top-level modules: `a` names `crate::b`.
fn module_edges(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in files {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let is_module = files.iter().any(|(m, _)| *m == target);
            if is_module && target != *module && module != "lib" && module != "main" {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// A cycle in `edges`, if there is one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_host_crate_has_a_module_cycle() {
    let root = repo_root();
    let crates: [PathBuf; 5] = [
        root.join("host/http/src"),
        root.join("host/capabilities/src"),
        root.join("host/engine/src"),
        root.join("host/gateway/src"),
        root.join("host/src"),
    ];
    for src in &crates {
        let edges = module_edges(&modules(src));
        assert!(
            cycle(&edges).is_none(),
            "{}: modules import each other: {:?}",
            src.display(),
            cycle(&edges)
        );
    }
    // The checker finds a cycle when there is one.
    let looped = module_edges(&[
        ("a".into(), "use crate::b::X;".into()),
        ("b".into(), "fn f() { crate::a::g() }".into()),
    ]);
    assert_eq!(
        cycle(&looped),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
