//! Harness for end-to-end tests: starts the real `alga-edge` binary on a free loopback port with
//! real components built from `components/`, and talks HTTP to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod metrics;
pub mod otlp;
pub mod platform;
pub mod publishing;
pub mod tail;
pub mod upstream;

pub use tempfile;
pub use ureq;

/// How long a node may take to compile its components and start listening.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root. Read at run time (cargo sets `CARGO_MANIFEST_DIR` for the test
/// process, a direct child folder of the root), so a build cache shared by several checkouts
/// never points a test at another checkout's files.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().unwrap().to_owned()
}

/// A built guest component (`ALGA_COMPONENTS_DIR`, default `<repo>/target/components`).
pub fn component(name: &str) -> PathBuf {
    let dir = std::env::var_os("ALGA_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/components"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the guest components first (scripts/build-components.sh)",
        path.display()
    );
    path
}

/// The packable sample extension folders build-components.sh lays out.
pub fn samples_dir() -> PathBuf {
    component("hello")
        .parent()
        .expect("components dir")
        .join("extensions")
}

/// Precompiled-component cache shared by test nodes, so each test doesn't recompile.
fn shared_cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("e2e-compiled")
}

/// A running `alga-edge serve` process, killed when dropped.
pub struct Node {
    child: Child,
    addr: String,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    log: PathBuf,
    stdout: mpsc::Receiver<String>,
}

impl Node {
    /// Starts `binary serve` (the `alga-edge` under test) with the `hello` and `faulty`
    /// components dev-mapped and `extra` arguments; `env` sets environment variables of the
    /// process. Its data directory is a fresh temporary one.
    pub fn start(binary: &str, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let temp = tempfile::tempdir().expect("temp data dir");
        let hello = format!("hello={}", component("hello").display());
        let faulty = format!("faulty={}", component("faulty").display());
        let mut args = vec!["--component", &hello, "--component", &faulty];
        args.extend_from_slice(extra);
        let mut node = Self::spawn(binary, temp.path(), &args, env);
        node._temp = Some(temp);
        node
    }

    /// Starts `binary serve` on the data directory `data_dir` (which outlives the node, so a
    /// restart finds its registry), without dev components.
    pub fn start_in(binary: &str, data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
        Self::spawn(binary, data_dir, extra, env)
    }

    /// Starts `binary demo` on `data_dir` with the built samples.
    pub fn start_demo(binary: &str, data_dir: &Path) -> Node {
        let samples = samples_dir();
        let args = [
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--samples",
            samples.to_str().expect("utf-8 path"),
        ];
        Self::spawn_subcommand(binary, "demo", data_dir, &args, &[], true)
    }

    fn spawn(binary: &str, data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let mut args = vec!["--data-dir", data_dir.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        Self::spawn_subcommand(binary, "serve", data_dir, &args, env, false)
    }

    fn spawn_subcommand(
        binary: &str,
        subcommand: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        new_user: bool,
    ) -> Node {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = data_dir.join(format!("node-{}.log", unique()));
        let mut command = Command::new(binary);
        if new_user {
            as_new_user(&mut command);
        }
        command
            .arg(subcommand)
            .args(if extra.contains(&"--listen") {
                vec![]
            } else {
                vec!["--listen", "127.0.0.1:0"]
            })
            .args(extra)
            .args(if extra.contains(&"--cache-dir") {
                vec![]
            } else {
                vec!["--cache-dir".into(), shared_cache_dir()]
            })
            .env_remove("EXT_GATEWAY_TIMEOUT_MS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = command.spawn().expect("spawn alga-edge");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            addr: String::new(),
            data_dir: data_dir.to_owned(),
            _temp: None,
            log,
            stdout: rx,
        };
        match node.wait_for_line("alga-edge listening on http://", START_TIMEOUT) {
            Some(addr) => node.addr = addr,
            None => panic!("alga-edge did not start; its log:\n{}", node.log_text()),
        }
        node
    }

    /// The rest of the next stdout line starting with `prefix` (earlier lines are skipped);
    /// `None` when the process ends or `limit` passes first.
    pub fn wait_for_line(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.stdout.recv_timeout(left).ok()?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.to_owned());
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `base()` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Kills the process with SIGKILL (no drain, no cleanup) and waits for it.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `limit` for the exit; `Some(success)`
    /// when it exited, `None` when it was still running (it is then killed).
    pub fn terminate(mut self, limit: Duration) -> Option<bool> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id (for RSS checks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the node wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The node's log once `check` holds for it, within `limit` (the node writes INFO lines in
    /// batches, up to 50 ms after the event); fails the test with the log otherwise.
    pub fn wait_for_log(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let started = std::time::Instant::now();
        loop {
            let log = self.log_text();
            if check(&log) {
                return log;
            }
            assert!(
                started.elapsed() < limit,
                "the node log never showed {what} within {limit:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size of the node, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS line")
            * 1024
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished command printed.
pub struct Finished {
    /// Whether it exited successfully.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Variables the test command sets that a new user's shell does not have: build caches and
/// settings (`CARGO_*`, `ALGA_*`, rustup's), which could hide a bug in a default path.
/// Toolchain locations stay (`ALGA_COMPONENTIZE_PY`, `ALGA_COMPONENTIZE_JS`, `ALGA_ESBUILD`):
/// where the test command installed a toolchain is not a default the command under test
/// derives.
fn is_test_setting(name: &str) -> bool {
    const TOOLCHAINS: [&str; 3] = [
        "ALGA_COMPONENTIZE_PY",
        "ALGA_COMPONENTIZE_JS",
        "ALGA_ESBUILD",
    ];
    let setting = ["CARGO", "ALGA_", "RUSTUP_", "RUSTC", "RUSTFLAGS", "RUSTDOC"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name == "CI";
    setting && !TOOLCHAINS.contains(&name)
}

/// Gives `command` the environment of a new user: the test command's settings removed (see
/// [`is_test_setting`]), everything else (HOME, PATH) kept.
pub fn as_new_user(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_none_or(is_test_setting) {
            command.env_remove(&name);
        }
    }
    command
}

/// Runs `binary` with `args` until it exits (killed, and the test failed, after `limit`).
pub fn run_to_exit(binary: &str, args: &[&str], limit: Duration) -> Finished {
    let mut command = Command::new(binary);
    command.args(args);
    run_command_to_exit(command, limit)
}

/// Runs `binary` with `args` as a new user would (see [`as_new_user`]) until it exits.
pub fn run_as_new_user(binary: &str, args: &[&str], limit: Duration) -> Finished {
    let mut command = Command::new(binary);
    as_new_user(&mut command).args(args);
    run_command_to_exit(command, limit)
}

/// Runs `command` with stdin closed until it exits (killed, and the test failed, after `limit`).
pub fn run_command_to_exit(mut command: Command, limit: Duration) -> Finished {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain both pipes on threads so a chatty command cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        ok: status.success(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// An HTTP client that returns non-2xx responses instead of failing, with a bounded timeout.
pub fn client() -> ureq::Agent {
    client_with_timeout(Duration::from_secs(60))
}

/// [`client`] with another bound: for a first request that compiles a large component (a
/// JavaScript engine) in a debug build on a loaded machine.
pub fn client_with_timeout(limit: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(limit))
        .build()
        .into()
}

/// `method url` with `headers` and, when given, `body`, over `agent`: status, headers and body
/// text. Fails the test only when no answer arrives (every status is an answer: see [`client`]).
pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, http::HeaderMap, String) {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    // No body at all rather than an empty one, so a GET stays a plain GET.
    let mut response = match body {
        Some(body) => agent.run(builder.body(body).unwrap()),
        None => agent.run(builder.body(()).unwrap()),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, headers, text)
}

/// [`send`] to `route` (a path with its query) of `node`, over a fresh [`client`].
pub fn request(
    node: &Node,
    method: &str,
    route: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, http::HeaderMap, String) {
    send(&client(), method, &node.url(route), headers, body)
}

/// A GET that returns status, headers and the body parsed as JSON (Null when not JSON).
pub fn get_json(agent: &ureq::Agent, url: &str) -> (u16, http::HeaderMap, serde_json::Value) {
    let (status, headers, text) = send(agent, "GET", url, &[], None);
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

/// Calls `check` every 20 ms until it holds, and returns how long that took; fails the test,
/// naming `what` it waited for, once `limit` has passed. For what a node does in the
/// background (replication, the execution log's batches), which has no event to wait on.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// A number unique within this test process.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` and returns its result with the elapsed time.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// A local S3-compatible server (moto, installed by `scripts/test.sh`) on a free loopback port,
/// killed when dropped.
pub struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    /// Starts `$ALGA_MOTO_SERVER` and waits until it answers.
    pub fn start() -> S3Server {
        let binary = std::env::var("ALGA_MOTO_SERVER").expect(
            "ALGA_MOTO_SERVER is not set: run the suite with scripts/test.sh, which installs moto",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let agent = client();
        wait_until(
            Duration::from_secs(60),
            &format!("moto to answer on port {port}"),
            || agent.get(&server.endpoint).call().is_ok(),
        );
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let response = client()
            .put(&format!("{}/{bucket}", self.endpoint))
            .send_empty()
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }

    /// The size of `key` in `bucket` from a bucket listing (anonymous object reads are refused
    /// by the server; listings are not), if the key exists.
    pub fn object_size(&self, bucket: &str, key: &str) -> Option<u64> {
        let mut response = client()
            .get(&format!(
                "{}/{bucket}?list-type=2&prefix={key}",
                self.endpoint
            ))
            .call()
            .expect("list bucket");
        assert_eq!(response.status(), 200, "list bucket");
        let listing = response.body_mut().read_to_string().expect("listing");
        let entry = listing
            .split("<Contents>")
            .skip(1)
            .find(|entry| entry.contains(&format!("<Key>{key}</Key>")))?;
        let size = entry.split("<Size>").nth(1)?.split('<').next()?;
        size.parse().ok()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 exchange with `node` (no client-side decoding or path normalisation, so
/// encodings and dot segments reach the node as written): status, lowercase headers, body.
pub fn raw(
    node: &Node,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let address = node.base().trim_start_matches("http://").to_owned();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw_bytes(node, request.as_bytes(), Duration::from_secs(10))
}

/// Sends `request` (head and any body, as written) to `node` on a fresh connection, without
/// closing the sending side, and reads the answer for at most `limit`.
pub fn raw_bytes(
    node: &Node,
    request: &[u8],
    limit: Duration,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{Read, Write};
    let address = node.base().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = answer[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}

/// The value of the (lowercase) header `name` among `headers` from [`raw`].
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
