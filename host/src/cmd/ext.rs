//! `alga-edge ext new|build`: an author's path from nothing to `dist/main.wasm`, the same for
//! Rust, Python and JavaScript (then `pack`, `sign`, `publish` as for any extension).
//!
//! - `new NAME --lang rust|python|js`: a working extension folder (manifest v2, source, `ui/`,
//!   README) from the templates in `sdk/templates/`, embedded in this binary.
//! - `build DIR`: the component, with the language's toolchain: Rust through Debian's wasm32
//!   recipe (DESIGN §7) and the `alga-extension` SDK, Python through componentize-py, JS
//!   through componentize-js; then the manifest is checked against the component's imports,
//!   as publish will.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use alga_edge_registry::imports::check_imports;
use alga_edge_registry::manifest::Manifest;
use anyhow::{Context as _, bail};

/// Source languages `ext new` scaffolds and `ext build` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the `alga-extension` SDK (Debian's wasm32 toolchain).
    Rust,
    /// Python (componentize-py).
    Python,
    /// JavaScript (componentize-js).
    Js,
}

/// `alga-edge ext …`.
#[derive(clap::Subcommand)]
pub enum ExtCommand {
    /// Scaffold a working extension: manifest v2, source, ui/, README.
    New {
        /// Extension id (reverse domain, e.g. com.example.notes).
        name: String,
        /// Source language.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Folder to create [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Publisher name in the manifest.
        #[arg(long, default_value = "Extension Author")]
        publisher: String,
    },
    /// Build DIR's component into DIR/dist/main.wasm with the language's toolchain.
    Build {
        /// The extension folder.
        dir: PathBuf,
        /// WIT world for Python and JavaScript [default: alga:extension/kv-config-extension].
        #[arg(long)]
        world: Option<String>,
    },
}

const DEFAULT_WORLD: &str = "alga:extension/kv-config-extension";

/// The version of the WASI packages componentize-js's engine binds (its world must match).
const COMPONENTIZE_JS_WASI: &str = "0.2.10";

struct Template(&'static str, &'static str);

const COMMON: [Template; 4] = [
    Template(
        "manifest.json",
        include_str!("../../../sdk/templates/common/manifest.json"),
    ),
    Template(
        "README.md",
        include_str!("../../../sdk/templates/common/README.md"),
    ),
    Template(
        "ui/index.html",
        include_str!("../../../sdk/templates/common/ui/index.html"),
    ),
    Template(
        "ui/app.js",
        include_str!("../../../sdk/templates/common/ui/app.js"),
    ),
];
const RUST: [Template; 4] = [
    Template(
        "Cargo.toml",
        include_str!("../../../sdk/templates/rust/Cargo.toml"),
    ),
    Template(
        "src/lib.rs",
        include_str!("../../../sdk/templates/rust/src/lib.rs"),
    ),
    Template(
        ".cargo/config.toml",
        include_str!("../../../sdk/templates/rust/.cargo/config.toml"),
    ),
    Template(
        "rust-toolchain.toml",
        include_str!("../../../sdk/templates/rust/rust-toolchain.toml"),
    ),
];
const PYTHON: [Template; 1] = [Template(
    "app.py",
    include_str!("../../../sdk/templates/python/app.py"),
)];
const JS: [Template; 1] = [Template(
    "app.js",
    include_str!("../../../sdk/templates/js/app.js"),
)];
const IFRAME_SDK: &str = include_str!("../../../sdk/iframe/alga-iframe.js");

/// Runs an `ext` command.
pub fn run(command: ExtCommand) -> anyhow::Result<()> {
    match command {
        ExtCommand::New {
            name,
            lang,
            dir,
            publisher,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            scaffold(&name, lang, &dir, &publisher)?;
            eprintln!(
                "created {} ({lang:?}); next: alga-edge ext build {}",
                dir.display(),
                dir.display()
            );
            println!("{}", dir.display());
            Ok(())
        }
        ExtCommand::Build { dir, world } => {
            let wasm = build(&dir, world.as_deref())?;
            println!("{}", wasm.display());
            Ok(())
        }
    }
}

/// Where this checkout's SDK and WIT live (`ALGA_SDK_DIR` / `ALGA_WIT_DIR` override), as an
/// absolute path: toolchains run with other working directories.
fn repo_path(env: &str, relative: &str) -> anyhow::Result<PathBuf> {
    match std::env::var_os(env) {
        Some(path) => absolute(Path::new(&path)),
        None => Ok(checkout().join(relative)),
    }
}

/// The checkout this binary was built from.
fn checkout() -> PathBuf {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent().unwrap_or(host).to_owned()
}

/// `path` made absolute against the working directory (not resolving symlinks, so error
/// messages name the folder the author typed).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

fn scaffold(name: &str, lang: Lang, dir: &Path, publisher: &str) -> anyhow::Result<()> {
    let manifest_probe = serde_json::json!({
        "name": name, "publisher": publisher, "version": "0.1.0", "runtime": "wasm-component@1",
    });
    let probe = Manifest::parse(manifest_probe.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("'{name}' cannot be an extension id: {e}"))?;
    if let Some(violation) = probe.violations(None).first() {
        bail!("'{name}' cannot be an extension id: {violation}");
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk_rust = repo_path("ALGA_SDK_DIR", "sdk")?.join("rust");
    let (capabilities, toolchain, files): (&[&str], &str, &[Template]) = match lang {
        Lang::Rust => {
            if !sdk_rust.join("Cargo.toml").exists() {
                bail!(
                    "the Rust SDK is not at {}: set ALGA_SDK_DIR to the sdk/ folder of an alga-edge checkout",
                    sdk_rust.display()
                );
            }
            (
                &["cap:storage.kv", "cap:config.get", "cap:log.emit"],
                "Debian's wasm32 Rust toolchain",
                &RUST,
            )
        }
        Lang::Python => (
            &["cap:storage.kv", "cap:config.get"],
            "componentize-py",
            &PYTHON,
        ),
        Lang::Js => (
            &["cap:storage.kv", "cap:config.get"],
            "componentize-js",
            &JS,
        ),
    };
    let crate_name = name.replace(['.', '-'], "_");
    let sdk_rust = std::fs::canonicalize(&sdk_rust).unwrap_or(sdk_rust);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{publisher}}", &publisher.replace('"', "'"))
            .replace("{{lang}}", &format!("{lang:?}").to_lowercase())
            .replace("{{toolchain}}", toolchain)
            .replace("{{sdk_rust}}", &sdk_rust.display().to_string())
            .replace(
                "{{capabilities}}",
                &serde_json::to_string(capabilities).expect("strings serialize"),
            )
    };
    for Template(path, text) in COMMON.iter().chain(files) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, fill(text))
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(())
}

/// The language of an extension folder, by its source files.
fn detect(dir: &Path) -> anyhow::Result<Lang> {
    let found: Vec<Lang> = [
        ("Cargo.toml", Lang::Rust),
        ("app.py", Lang::Python),
        ("app.js", Lang::Js),
    ]
    .into_iter()
    .filter(|(file, _)| dir.join(file).is_file())
    .map(|(_, lang)| lang)
    .collect();
    match found.as_slice() {
        [lang] => Ok(*lang),
        [] => bail!(
            "{} has no Cargo.toml, app.py or app.js: is it an extension folder (alga-edge ext new)?",
            dir.display()
        ),
        _ => bail!(
            "{} has sources of several languages: keep one of Cargo.toml, app.py, app.js",
            dir.display()
        ),
    }
}

fn build(dir: &Path, world: Option<&str>) -> anyhow::Result<PathBuf> {
    // Every path derived from here on is absolute: the toolchains run in other directories.
    let dir = &absolute(dir)?;
    let manifest_bytes = std::fs::read(dir.join("manifest.json"))
        .with_context(|| format!("{} has no manifest.json", dir.display()))?;
    let manifest = Manifest::parse(&manifest_bytes).context("manifest.json")?;
    let lang = detect(dir)?;
    std::fs::create_dir_all(dir.join("dist"))?;
    let out = dir.join("dist/main.wasm");
    let started = Instant::now();
    let world = world.unwrap_or(DEFAULT_WORLD);
    match lang {
        Lang::Rust => build_rust(dir, &out)?,
        Lang::Python => build_python(dir, &out, world)?,
        Lang::Js => build_js(
            dir,
            &out,
            world,
            manifest.capability_set().contains("cap:http.fetch"),
        )?,
    }
    if dir.join("ui").is_dir() {
        std::fs::write(dir.join("ui/alga-iframe.js"), IFRAME_SDK)?;
    }
    let wasm =
        std::fs::read(&out).with_context(|| format!("the build left no {}", out.display()))?;
    check_imports(&wasm, &manifest.capability_set()).with_context(|| {
        "the component needs more than manifest.json's capabilities".to_string()
    })?;
    eprintln!(
        "==> built {} ({} KiB) in {:.1} s; manifest capabilities cover its imports",
        out.display(),
        wasm.len() / 1024,
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Runs `command`, streaming its output, failing with `what` and its exit status.
fn run_step(what: &str, command: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {what}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<()> {
    const APT: &str =
        "apt-get install rustc-web cargo-web rust-web-src rust-web-llvm wasi-libc lld-19";
    for needed in [
        "/usr/bin/cargo",
        "/usr/bin/rustc",
        "/usr/bin/wasm-ld-19",
        "/usr/lib/wasm32-wasi",
    ] {
        if !Path::new(needed).exists() {
            bail!("Debian's wasm32 Rust toolchain is missing ({needed} not found): {APT}");
        }
    }
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml"))?;
    let crate_name = cargo_toml
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "name").then(|| value.trim().trim_matches('"').to_owned())
        })
        .context("Cargo.toml has no [package] name")?;
    let target_dir = match std::env::var_os("ALGA_GUEST_TARGET_DIR") {
        Some(path) => absolute(Path::new(&path))?,
        None => dir.join("target"),
    };
    run_step(
        "building the Rust component (Debian cargo, wasm32-wasip2, -Zbuild-std)",
        Command::new("/usr/bin/cargo")
            .current_dir(dir)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-Zbuild-std=std,panic_abort",
            ])
            .env("CARGO", "/usr/bin/cargo")
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTDOC", "/usr/bin/rustdoc")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", &target_dir)
            // RUSTFLAGS replaces (not extends) the project's .cargo/config.toml flags, so the
            // build works with or without that file; with --target it applies to the
            // component only, not to build scripts.
            .env(
                "RUSTFLAGS",
                "-L /usr/lib/wasm32-wasi -Clink-arg=--wasm-ld-path=/usr/bin/wasm-ld-19",
            ),
    )?;
    let built = target_dir.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        crate_name.replace('-', "_")
    ));
    std::fs::copy(&built, out).with_context(|| format!("cannot copy {}", built.display()))?;
    Ok(())
}

/// The standard WIT the guests bind (`wit/` with `deps/` filled by the component build).
fn wit_dir() -> anyhow::Result<PathBuf> {
    let wit = repo_path("ALGA_WIT_DIR", "wit")?;
    if !wit.join("deps/http.wit").exists() {
        bail!(
            "{} has no deps/: run scripts/build-components.sh once (it copies the standard WIT \
             from the crates that ship it), or set ALGA_WIT_DIR",
            wit.display()
        );
    }
    Ok(wit)
}

/// A tool: `env` when set; else `<tools>/<relative>` in the first tools folder that has it
/// (`ALGA_TOOLS_DIR`, this checkout's `target/tools` where `scripts/test.sh` installs them,
/// `~/.cache/alga-edge/tools`); else `name` on PATH. Always an absolute path.
fn tool(env: &str, relative: &str, name: &str, install: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = absolute(Path::new(&path))?;
        if !path.is_file() {
            bail!(
                "{env} names {}, which does not exist: {install}",
                path.display()
            );
        }
        return Ok(path);
    }
    let tools_dirs = std::env::var_os("ALGA_TOOLS_DIR")
        .map(|dir| absolute(Path::new(&dir)))
        .transpose()?
        .into_iter()
        .chain([checkout().join("target/tools")])
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/alga-edge/tools")));
    if let Some(path) = tools_dirs.map(|t| t.join(relative)).find(|p| p.exists()) {
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .filter_map(|d| absolute(&d.join(name)).ok())
        .find(|p| p.is_file());
    on_path.ok_or_else(|| anyhow::anyhow!("{name} not found (set {env}, or install it: {install})"))
}

fn build_python(dir: &Path, out: &Path, world: &str) -> anyhow::Result<()> {
    let componentize = tool(
        "ALGA_COMPONENTIZE_PY",
        "componentize-py/bin/componentize-py",
        "componentize-py",
        "python3 -m venv ~/.cache/alga-edge/tools/componentize-py && \
         ~/.cache/alga-edge/tools/componentize-py/bin/pip install 'componentize-py==0.25.*'",
    )?;
    let wit = wit_dir()?;
    run_step(
        &format!("building the Python component (componentize-py, world {world})"),
        Command::new(componentize)
            .arg("-d")
            .arg(&wit)
            .args(["-w", world, "componentize", "app", "-p"])
            .arg(dir)
            .arg("-o")
            .arg(out),
    )
}

/// `fetch`: the manifest requests outbound HTTP (otherwise componentize-js's own `fetch()`
/// import is left out, so the component imports only what the manifest covers).
fn build_js(dir: &Path, out: &Path, world: &str, fetch: bool) -> anyhow::Result<()> {
    let componentize = tool(
        "ALGA_COMPONENTIZE_JS",
        "componentize-js/node_modules/.bin/componentize-js",
        "componentize-js",
        "mkdir -p ~/.cache/alga-edge/tools/componentize-js && cd ~/.cache/alga-edge/tools/componentize-js \
         && npm install @bytecodealliance/componentize-js@0.23",
    )?;
    let wit = js_wit(&wit_dir()?)?;
    let mut command = Command::new(componentize);
    command
        .arg(dir.join("app.js"))
        .arg("-w")
        .arg(wit.path())
        .args(["-n", world, "-o"])
        .arg(out);
    if !fetch {
        command.args(["-d", "http"]);
    }
    run_step(
        &format!("building the JavaScript component (componentize-js, world {world})"),
        &mut command,
    )
}

/// A copy of `wit` whose WASI packages are at the version componentize-js's engine binds (WASI
/// 0.2 patch releases share their interfaces; the engine exports exactly that version).
fn js_wit(wit: &Path) -> anyhow::Result<tempfile::TempDir> {
    let http = std::fs::read_to_string(wit.join("deps/http.wit"))?;
    let version = http
        .lines()
        .find_map(|l| l.trim().strip_prefix("package wasi:http@"))
        .map(|v| v.trim_end_matches(';').trim().to_owned())
        .context("deps/http.wit names no wasi:http version")?;
    let copy = tempfile::tempdir()?;
    std::fs::create_dir_all(copy.path().join("deps"))?;
    let rewrite = |from: &Path, to: &Path, text_too: bool| -> anyhow::Result<()> {
        let text = std::fs::read_to_string(from)?;
        let text = if text_too {
            // Every mention, `@since(version = …)` gates included (a gate past the package's
            // version does not resolve).
            text.replace(version.as_str(), COMPONENTIZE_JS_WASI)
        } else {
            text
        };
        std::fs::write(to, text)?;
        Ok(())
    };
    for entry in std::fs::read_dir(wit)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wit") {
            rewrite(
                &path,
                &copy.path().join(path.file_name().expect("file")),
                true,
            )?;
        }
    }
    for entry in std::fs::read_dir(wit.join("deps"))? {
        let path = entry?.path();
        let target = copy
            .path()
            .join("deps")
            .join(path.file_name().expect("file"));
        if path.is_dir() {
            std::fs::create_dir_all(&target)?;
            for file in std::fs::read_dir(&path)? {
                let file = file?.path();
                rewrite(&file, &target.join(file.file_name().expect("file")), false)?;
            }
        } else {
            rewrite(&path, &target, true)?;
        }
    }
    Ok(copy)
}
