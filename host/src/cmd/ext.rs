//! `alga-edge ext new|build`: an author's path from nothing to `dist/main.wasm`, the same for
//! Rust, Python and JavaScript (then `pack`, `sign`, `publish` as for any extension).
//!
//! - `new NAME --lang rust|python|js`: a working extension folder (manifest v2, source, `ui/`,
//!   README) from the templates in `sdk/templates/`, embedded in this binary.
//! - `build DIR`: the component, with the language's toolchain: Rust through Debian's wasm32
//!   recipe (DESIGN §7) and the `alga-extension` SDK, Python through componentize-py, JS
//!   through componentize-js; then the manifest is checked against the component's imports,
//!   as publish will.
//! - `new NAME --abi alga --lang rust|js`: an extension of Alga PSA's ABI instead (world
//!   `runner` of the unversioned `alga:extension` package, export `handler`), from
//!   `sdk/templates/alga/`. Such a folder holds `alga-edge.toml` with `abi = "alga"`, which is
//!   how `build` tells it apart; `build` then binds `wit/runner` of this checkout (copied into
//!   the folder's `wit/runner.wit`), Rust with wit-bindgen, JavaScript/TypeScript bundled by
//!   esbuild and made a component by componentize-js, as Alga PSA's own samples are built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use alga_edge_registry::imports::{capability_for_import, check_imports, component_imports};
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

/// Component ABIs `ext new` scaffolds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Abi {
    /// `wasi:http/incoming-handler` with Alga Edge's capability interfaces.
    #[value(name = "wasi-http")]
    WasiHttp,
    /// Alga PSA's `runner` world: `handler(execute-request) -> execute-response`.
    Alga,
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
        /// Component ABI: wasi:http, or Alga PSA's `runner` world (rust and js only).
        #[arg(long, value_enum, default_value_t = Abi::WasiHttp)]
        abi: Abi,
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
        /// WIT world for Python and JavaScript [default: alga:extension/kv-config-extension];
        /// an Alga-ABI folder (`alga-edge.toml`: `abi = "alga"`) is always built for `runner`.
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
const ALGA_COMMON: [Template; 6] = [
    Template(
        "manifest.json",
        include_str!("../../../sdk/templates/alga/common/manifest.json"),
    ),
    Template(
        "README.md",
        include_str!("../../../sdk/templates/alga/common/README.md"),
    ),
    Template(
        ALGA_MARKER,
        include_str!("../../../sdk/templates/alga/common/alga-edge.toml"),
    ),
    Template(RUNNER_WIT, include_str!("../../../wit/runner/runner.wit")),
    Template(
        "ui/index.html",
        include_str!("../../../sdk/templates/common/ui/index.html"),
    ),
    Template(
        "ui/app.js",
        include_str!("../../../sdk/templates/common/ui/app.js"),
    ),
];
const ALGA_RUST: [Template; 4] = [
    Template(
        "Cargo.toml",
        include_str!("../../../sdk/templates/alga/rust/Cargo.toml"),
    ),
    Template(
        "src/lib.rs",
        include_str!("../../../sdk/templates/alga/rust/src/lib.rs"),
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
const ALGA_JS: [Template; 2] = [
    Template(
        "src/index.ts",
        include_str!("../../../sdk/templates/alga/js/src/index.ts"),
    ),
    Template(
        "package.json",
        include_str!("../../../sdk/templates/alga/js/package.json"),
    ),
];
/// The file that marks a folder as an Alga-ABI extension (`abi = "alga"`).
const ALGA_MARKER: &str = "alga-edge.toml";
/// Where an Alga-ABI extension keeps the runner world's WIT (refreshed by `ext build`).
const RUNNER_WIT: &str = "wit/runner.wit";
/// componentize-js's WASI features, all off: the runner world exports only `handler`.
const COMPONENTIZE_JS_DISABLE: [&str; 5] = ["stdio", "random", "clocks", "http", "fetch-event"];
const IFRAME_SDK: &str = include_str!("../../../sdk/iframe/alga-iframe.js");

/// Runs an `ext` command.
pub fn run(command: ExtCommand) -> anyhow::Result<()> {
    match command {
        ExtCommand::New {
            name,
            lang,
            abi,
            dir,
            publisher,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            scaffold(&name, abi, lang, &dir, &publisher)?;
            eprintln!(
                "created {} ({lang:?}, {abi:?} ABI); next: alga-edge ext build {}",
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

/// What `ext new` writes for one ABI and language.
struct Plan {
    capabilities: &'static [&'static str],
    toolchain: &'static str,
    runtime: &'static str,
    files: Vec<&'static Template>,
}

/// The templates of `abi` × `lang`, or why that pair is not offered.
fn plan(abi: Abi, lang: Lang, sdk_rust: &Path) -> anyhow::Result<Plan> {
    let make = |capabilities,
                toolchain,
                runtime,
                common: &'static [Template],
                files: &'static [Template]| Plan {
        capabilities,
        toolchain,
        runtime,
        files: common.iter().chain(files).collect(),
    };
    const COMPONENT: &str = "wasm-component@1";
    Ok(match (abi, lang) {
        (Abi::WasiHttp, Lang::Rust) => {
            if !sdk_rust.join("Cargo.toml").exists() {
                bail!(
                    "the Rust SDK is not at {}: set ALGA_SDK_DIR to the sdk/ folder of an alga-edge checkout",
                    sdk_rust.display()
                );
            }
            let caps: &[&str] = &["cap:storage.kv", "cap:config.get", "cap:log.emit"];
            make(
                caps,
                "Debian's wasm32 Rust toolchain",
                COMPONENT,
                &COMMON,
                &RUST,
            )
        }
        (Abi::WasiHttp, Lang::Python) => {
            let caps: &[&str] = &["cap:storage.kv", "cap:config.get"];
            make(caps, "componentize-py", COMPONENT, &COMMON, &PYTHON)
        }
        (Abi::WasiHttp, Lang::Js) => {
            let caps: &[&str] = &["cap:storage.kv", "cap:config.get"];
            make(caps, "componentize-js", COMPONENT, &COMMON, &JS)
        }
        (Abi::Alga, Lang::Rust) => make(
            &[],
            "Debian's wasm32 Rust toolchain and wit-bindgen",
            COMPONENT,
            &ALGA_COMMON,
            &ALGA_RUST,
        ),
        (Abi::Alga, Lang::Js) => make(
            &[],
            "esbuild and componentize-js",
            "wasm-js@1",
            &ALGA_COMMON,
            &ALGA_JS,
        ),
        (Abi::Alga, Lang::Python) => bail!(
            "--abi alga --lang python is not supported yet: Alga PSA's runner world has no Python \
             toolchain here; use --lang rust or --lang js (or --abi wasi-http for Python)"
        ),
    })
}

/// Refuses a `name` that is not a valid extension id.
fn check_extension_id(name: &str, publisher: &str) -> anyhow::Result<()> {
    let manifest_probe = serde_json::json!({
        "name": name, "publisher": publisher, "version": "0.1.0", "runtime": "wasm-component@1",
    });
    let probe = Manifest::parse(manifest_probe.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("'{name}' cannot be an extension id: {e}"))?;
    if let Some(violation) = probe.violations(None).first() {
        bail!("'{name}' cannot be an extension id: {violation}");
    }
    Ok(())
}

fn scaffold(name: &str, abi: Abi, lang: Lang, dir: &Path, publisher: &str) -> anyhow::Result<()> {
    check_extension_id(name, publisher)?;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk_rust = repo_path("ALGA_SDK_DIR", "sdk")?.join("rust");
    let plan = plan(abi, lang, &sdk_rust)?;
    let crate_name = name.replace(['.', '-'], "_");
    let label = name.rsplit('.').next().unwrap_or(name).replace('"', "'");
    let sdk_rust = std::fs::canonicalize(&sdk_rust).unwrap_or(sdk_rust);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{publisher}}", &publisher.replace('"', "'"))
            .replace("{{lang}}", &format!("{lang:?}").to_lowercase())
            .replace("{{toolchain}}", plan.toolchain)
            .replace("{{runtime}}", plan.runtime)
            .replace("{{label}}", &label)
            .replace("{{sdk_rust}}", &sdk_rust.display().to_string())
            .replace(
                "{{capabilities}}",
                &serde_json::to_string(plan.capabilities).expect("strings serialize"),
            )
    };
    for Template(path, text) in plan.files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // The WIT is copied as it is: it is the ABI, not a template.
        let text = if *path == RUNNER_WIT {
            text.to_string()
        } else {
            fill(text)
        };
        std::fs::write(&target, text)
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

/// Whether `dir` is an Alga-ABI extension: its `alga-edge.toml` says `abi = "alga"`.
fn is_alga(dir: &Path) -> anyhow::Result<bool> {
    let marker = dir.join(ALGA_MARKER);
    if !marker.is_file() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&marker)
        .with_context(|| format!("cannot read {}", marker.display()))?;
    let abi = text.lines().find_map(|line| {
        let (key, value) = line.split('#').next()?.split_once('=')?;
        (key.trim() == "abi").then(|| value.trim().trim_matches('"').to_owned())
    });
    match abi.as_deref() {
        Some("alga") => Ok(true),
        Some("wasi-http") | None => Ok(false),
        Some(other) => bail!(
            "{}: unknown abi \"{other}\" (alga or wasi-http)",
            marker.display()
        ),
    }
}

/// The language of an Alga-ABI extension folder: `Cargo.toml`, or `src/index.ts|js` (the
/// layout of Alga PSA's samples).
fn detect_alga(dir: &Path) -> anyhow::Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if js_entry(dir).is_some() {
        Ok(Lang::Js)
    } else {
        bail!(
            "{} is marked abi = \"alga\" but has no Cargo.toml or src/index.ts (src/index.js); \
             Python is not supported for Alga's ABI yet",
            dir.display()
        )
    }
}

fn js_entry(dir: &Path) -> Option<PathBuf> {
    ["src/index.ts", "src/index.js"]
        .into_iter()
        .map(|file| dir.join(file))
        .find(|path| path.is_file())
}

fn build(dir: &Path, world: Option<&str>) -> anyhow::Result<PathBuf> {
    // Every path derived from here on is absolute: the toolchains run in other directories.
    let dir = &absolute(dir)?;
    let manifest_bytes = std::fs::read(dir.join("manifest.json"))
        .with_context(|| format!("{} has no manifest.json", dir.display()))?;
    let manifest = Manifest::parse(&manifest_bytes).context("manifest.json")?;
    let alga = is_alga(dir)?;
    let lang = if alga {
        detect_alga(dir)?
    } else {
        detect(dir)?
    };
    std::fs::create_dir_all(dir.join("dist"))?;
    let out = dir.join("dist/main.wasm");
    let started = Instant::now();
    let world = world.unwrap_or(DEFAULT_WORLD);
    match (alga, lang) {
        (true, Lang::Rust) => {
            sync_runner_wit(dir)?;
            build_rust(dir, &out)?
        }
        (true, _) => {
            sync_runner_wit(dir)?;
            build_alga_js(dir, &out)?
        }
        (false, Lang::Rust) => build_rust(dir, &out)?,
        (false, Lang::Python) => build_python(dir, &out, world)?,
        (false, Lang::Js) => build_js(
            dir,
            &out,
            world,
            manifest.capability_set().contains("cap:http.fetch"),
        )?,
    }
    if dir.join("ui/package.json").is_file() {
        build_ui(dir)?;
    } else if dir.join("ui").is_dir() {
        std::fs::write(dir.join("ui/alga-iframe.js"), IFRAME_SDK)?;
    }
    let wasm =
        std::fs::read(&out).with_context(|| format!("the build left no {}", out.display()))?;
    let checked = if alga {
        check_alga_imports(&wasm, &manifest)?
    } else {
        check_imports(&wasm, &manifest.capability_set()).with_context(|| {
            "the component needs more than manifest.json's capabilities".to_string()
        })?;
        "manifest capabilities cover its imports"
    };
    eprintln!(
        "==> built {} ({} KiB) in {:.1} s; {checked}",
        out.display(),
        wasm.len() / 1024,
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// An Alga-ABI component's imports: the runner world's interfaces (unversioned
/// `alga:extension/*`), whose capabilities are checked on each call as on Alga PSA's runner,
/// and otherwise only what the manifest's capabilities cover.
fn check_alga_imports(wasm: &[u8], manifest: &Manifest) -> anyhow::Result<&'static str> {
    let capabilities = manifest.capability_set();
    for import in component_imports(wasm)? {
        // The world's own type imports (`execute-request`, `execute-response`) name no package.
        let runner_interface = import.starts_with("alga:extension/") && !import.contains('@');
        if runner_interface || !import.contains(':') {
            continue;
        }
        if let Some(capability) = capability_for_import(&import)?
            && !capabilities.contains(capability)
        {
            bail!("the component imports {import}, which needs {capability} in manifest.json");
        }
    }
    Ok("imports: the runner world (capabilities checked per call) and what the manifest covers")
}

/// Copies this checkout's runner world (`wit/runner/runner.wit`, or `$ALGA_WIT_DIR/runner`)
/// into `dir/wit/runner.wit`; without a checkout, the folder's own copy is used.
fn sync_runner_wit(dir: &Path) -> anyhow::Result<()> {
    let source = repo_path("ALGA_WIT_DIR", "wit")?.join("runner/runner.wit");
    let target = dir.join(RUNNER_WIT);
    match std::fs::read(&source) {
        Ok(wit) => {
            if std::fs::read(&target).ok().as_ref() != Some(&wit) {
                std::fs::create_dir_all(dir.join("wit"))?;
                std::fs::write(&target, wit)
                    .with_context(|| format!("cannot write {}", target.display()))?;
            }
            Ok(())
        }
        Err(_) if target.is_file() => Ok(()),
        Err(e) => bail!(
            "no runner world: {} ({e}) and {} are missing; set ALGA_WIT_DIR to an alga-edge \
             checkout's wit/",
            source.display(),
            target.display()
        ),
    }
}

/// An Alga-ABI extension in JavaScript or TypeScript, built as Alga PSA's samples are: esbuild
/// bundles `src/index.ts` (the `alga:extension/*` imports left to the component), then
/// componentize-js makes the component of world `runner` with WASI features off.
fn build_alga_js(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let esbuild = tool(
        "ALGA_ESBUILD",
        "alga-js/node_modules/.bin/esbuild",
        "esbuild",
        "mkdir -p ~/.cache/alga-edge/tools/alga-js && cd ~/.cache/alga-edge/tools/alga-js \
         && npm install esbuild@0.28 @alga-psa/extension-runtime@0.3.0",
    )?;
    let componentize = componentize_js()?;
    let entry = js_entry(dir).context("no src/index.ts or src/index.js")?;
    let bundle = dir.join("dist/js/index.js");
    // Packages the bundle imports (@alga-psa/extension-runtime) resolve from the folder's own
    // node_modules first, then from the toolchain's.
    let toolchain_modules = esbuild.parent().and_then(Path::parent).map(Path::to_owned);
    let mut bundler = Command::new(&esbuild);
    bundler
        .arg(&entry)
        .args([
            "--bundle",
            "--format=esm",
            "--platform=neutral",
            "--target=es2022",
        ])
        .args(["--external:alga:extension/*", "--log-level=warning"])
        .arg(format!("--outfile={}", bundle.display()));
    if let Some(modules) = toolchain_modules {
        bundler.env("NODE_PATH", modules);
    }
    run_step("bundling the handler (esbuild)", &mut bundler)?;
    run_step(
        "building the JavaScript component (componentize-js, world runner)",
        Command::new(componentize)
            .arg(&bundle)
            .arg("-w")
            .arg(dir.join("wit"))
            .args(["-n", "runner", "-d"])
            .args(COMPONENTIZE_JS_DISABLE)
            .arg("-o")
            .arg(out),
    )
}

/// Runs `command`, streaming its output, failing with `what` and its exit status.
/// A UI with a package.json (React and `@alga-psa/ui-kit`, say): `npm ci` and esbuild into
/// dist/ui/, which `pack` puts in the bundle as ui/ (scripts/build-ui.sh, shared with the
/// samples' build).
fn build_ui(dir: &Path) -> anyhow::Result<()> {
    let script = repo_path("ALGA_SCRIPTS_DIR", "scripts")?.join("build-ui.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg(dir.join("ui"))
        .arg(dir.join(alga_edge_registry::bundle::BUILT_UI_DIR));
    run_step("building the UI (npm ci, esbuild)", &mut command)
}

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

/// The componentize-js CLI (0.23).
fn componentize_js() -> anyhow::Result<PathBuf> {
    tool(
        "ALGA_COMPONENTIZE_JS",
        "componentize-js/node_modules/.bin/componentize-js",
        "componentize-js",
        "mkdir -p ~/.cache/alga-edge/tools/componentize-js && cd ~/.cache/alga-edge/tools/componentize-js \
         && npm install @bytecodealliance/componentize-js@0.23",
    )
}

/// `fetch`: the manifest requests outbound HTTP (otherwise componentize-js's own `fetch()`
/// import is left out, so the component imports only what the manifest covers).
fn build_js(dir: &Path, out: &Path, world: &str, fetch: bool) -> anyhow::Result<()> {
    let componentize = componentize_js()?;
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
