//! The configuration file (issue 20): `alga-edge.toml` under the environment and flags,
//! `config print` and its sources, the annotated example kept current, and start-up refusing
//! a bad file with the key and line named.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use alga_edge_e2e::publishing::{binary, cli, path};
use alga_edge_e2e::{Finished, Node, request, run_command_to_exit};

/// The example file at the repository root.
fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../alga-edge.example.toml")
}

/// `alga-edge args…` with `env` set, to its exit.
fn run(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut command = Command::new(binary());
    command.args(args).envs(env.iter().copied());
    // The settings under test must not come from the test runner's environment.
    for var in ["EXT_CPU_BUDGET_MS", "EXT_GATEWAY_TIMEOUT_MS", "ALGA_CONFIG"] {
        if !env.iter().any(|(name, _)| *name == var) {
            command.env_remove(var);
        }
    }
    run_command_to_exit(command, Duration::from_secs(60))
}

/// `config print`'s settings without where each came from: `key = value` lines (and the
/// commented-out unset ones), in order.
fn values(printed: &str) -> Vec<String> {
    printed
        .lines()
        .filter(|line| !line.starts_with("# configuration file"))
        .map(|line| match line.rsplit_once("  # ") {
            Some((setting, _origin)) => setting.to_owned(),
            None => line.to_owned(),
        })
        .collect()
}

/// The `key = value  # origin` line of `key` in `printed`.
fn line_of<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|line| line.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{printed}"))
}

#[test]
fn the_example_file_is_current_and_sets_every_setting_to_its_default() {
    let generated = cli(&["config", "example"]);
    assert!(generated.ok, "{}", generated.stderr);
    let committed = std::fs::read_to_string(example_path()).expect("alga-edge.example.toml");
    assert!(
        committed == generated.stdout,
        "alga-edge.example.toml is not what `alga-edge config example` prints (a setting was \
         added, changed or documented differently): regenerate it with \
         `cargo run -p alga-edge -- config example > alga-edge.example.toml`"
    );

    let from_file = run(&["config", "print", "--config", path(&example_path())], &[]);
    assert!(
        from_file.ok,
        "the example does not load: {}",
        from_file.stderr
    );
    let defaults = run(&["config", "print"], &[]);
    assert!(defaults.ok, "{}", defaults.stderr);
    assert_eq!(
        values(&from_file.stdout),
        values(&defaults.stdout),
        "the example's values are not the defaults"
    );
    // Every setting with a default is set by the file; the rest are unset in both.
    let settings: Vec<&str> = from_file
        .stdout
        .lines()
        .filter(|line| line.contains(" = ") && !line.starts_with('['))
        .collect();
    assert!(settings.len() >= 60, "{}", from_file.stdout);
    for line in settings {
        assert!(
            line.ends_with("  # file") || line.ends_with("# unset (default)"),
            "not from the file: {line}"
        );
    }
}

#[test]
fn a_node_from_a_file_behaves_as_with_the_equivalent_flags_and_env_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alga-edge.toml");
    std::fs::write(
        &file,
        "# a node of the e2e suite\n\
         [limits]\n\
         timeout_ms = 1_500\n\
         cpu_budget_ms = 100\n\
         \n\
         [requests]\n\
         max_body_kib = 1\n\
         tenant_rate = 0\n\
         \n\
         [node]\n\
         dev_tenant = \"filed-tenant\"\n\
         \n\
         [auth]\n\
         admin_token = \"file-admin-token-0123456789abcdef\"\n",
    )
    .unwrap();
    let flags = [
        "--timeout-ms",
        "1500",
        "--cpu-budget-ms",
        "100",
        "--max-body-kib",
        "1",
        "--tenant-rate",
        "0",
        "--dev-tenant",
        "filed-tenant",
        "--admin-token",
        "file-admin-token-0123456789abcdef",
    ];
    let from_file = run(&["config", "print", "--config", path(&file)], &[]);
    assert!(from_file.ok, "{}", from_file.stderr);
    let mut print_flags = vec!["config", "print"];
    print_flags.extend_from_slice(&flags);
    let from_flags = run(&print_flags, &[]);
    assert!(from_flags.ok, "{}", from_flags.stderr);
    assert_eq!(values(&from_file.stdout), values(&from_flags.stdout));
    assert_eq!(
        line_of(&from_file.stdout, "timeout_ms"),
        "timeout_ms = 1500  # file"
    );
    assert_eq!(
        line_of(&from_flags.stdout, "timeout_ms"),
        "timeout_ms = 1500  # flag"
    );
    assert_eq!(
        line_of(&from_file.stdout, "max_headers"),
        "max_headers = 100  # default"
    );
    assert_eq!(
        line_of(&from_file.stdout, "admin_token"),
        "admin_token = \"***\"  # file"
    );
    assert!(
        !from_file.stdout.contains("file-admin-token"),
        "{}",
        from_file.stdout
    );

    // The environment overrides the file; a flag overrides both.
    let env = [("EXT_CPU_BUDGET_MS", "250")];
    let with_env = run(&["config", "print", "--config", path(&file)], &env);
    assert!(with_env.ok, "{}", with_env.stderr);
    assert_eq!(
        line_of(&with_env.stdout, "cpu_budget_ms"),
        "cpu_budget_ms = 250  # env"
    );
    let with_flag = run(
        &[
            "config",
            "print",
            "--config",
            path(&file),
            "--cpu-budget-ms",
            "300",
        ],
        &env,
    );
    assert_eq!(
        line_of(&with_flag.stdout, "cpu_budget_ms"),
        "cpu_budget_ms = 300  # flag"
    );
    let via_env = run(&["config", "print"], &[("ALGA_CONFIG", path(&file))]);
    assert_eq!(values(&via_env.stdout), values(&from_file.stdout));

    // A node started from the file applies it: the CPU budget, the body cap, the deadline.
    let node = Node::start(&binary(), &["--config", path(&file)], &[]);
    let (status, _, body) = request(&node, "GET", "/api/ext/faulty/loop", &[], None);
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("extension_cpu_budget") && body.contains("100 ms"),
        "{body}"
    );
    let big = vec![b'x'; 2048];
    let (status, _, body) = request(&node, "POST", "/api/ext/hello/echo", &[], Some(big));
    assert_eq!(status, 413, "{body}");
    let started = Instant::now();
    let (status, _, body) = request(&node, "GET", "/api/ext/faulty/sleep", &[], None);
    assert_eq!(status, 504, "{body}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1450) && waited < Duration::from_secs(20),
        "the file's 1.5 s deadline: {waited:?}"
    );
    assert!(
        node.log_text().contains("configuration file"),
        "{}",
        node.log_text()
    );
    drop(node);

    // The same file with the environment's budget: the node uses the environment's.
    let node = Node::start(&binary(), &["--config", path(&file)], &env);
    let (status, _, body) = request(&node, "GET", "/api/ext/faulty/loop", &[], None);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("250 ms"), "{body}");
}

#[test]
fn a_bad_file_fails_start_up_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[limits]\ntimeout_ms = 100\ntimeot_ms = 5\n",
            ":3: unknown key `limits.timeot_ms`",
        ),
        (
            "[limits]\n\ntimeout_ms = 0\n",
            ":3: `limits.timeout_ms`: invalid value '0'",
        ),
        (
            "[requests]\ntenant_rate = \"fast\"\n",
            ":2: `requests.tenant_rate` must be a number",
        ),
        (
            "[node]\ntimeout_ms = 5\n",
            ":2: `node.timeout_ms` is not a setting: `timeout_ms` belongs in [limits]",
        ),
        ("[nodes]\nlisten = \"x\"\n", ":1: unknown section [nodes]"),
        ("[node\n", "not valid TOML"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let data = dir.path().join(format!("data-{i}"));
        let started = run(
            &[
                "serve",
                "--config",
                path(&file),
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                path(&data),
            ],
            &[],
        );
        assert!(!started.ok, "started with {text:?}");
        let named = format!("{}{expected}", file.display());
        assert!(
            started.stderr.contains(&named) || (i == 5 && started.stderr.contains(expected)),
            "{text:?}: expected {named:?} in {}",
            started.stderr
        );
        assert!(
            !data.join("registry.db").exists(),
            "a bad file still opened the registry"
        );
    }
    let missing = run(&["serve", "--config", "/nonexistent/alga-edge.toml"], &[]);
    assert!(!missing.ok);
    assert!(
        missing
            .stderr
            .contains("cannot read the configuration file /nonexistent/alga-edge.toml"),
        "{}",
        missing.stderr
    );
}
