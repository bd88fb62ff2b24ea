//! Helpers that drive real registry clients against a test server: the
//! shared image generator (`shared/tools/mkimage.py`), skopeo, and a private
//! Docker engine (one `dockerd` per test process).
//!
//! Everything here is blocking (it runs child processes): from a
//! `#[tokio::test]` call it through [`blocking`], since the server under test
//! runs on the same runtime.
//!
//! The clients come from Debian packages (`skopeo`, `docker.io`); the test
//! command (`scripts/test.sh`, which runs `scripts/install-test-deps.sh`)
//! installs them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

// ---------------------------------------------------------------------------
// Generic helpers
// ---------------------------------------------------------------------------

/// Runs a blocking closure (client processes) on tokio's blocking pool and
/// waits for it; a panic inside is re-raised with its original message.
pub async fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task failed: {e}"),
    }
}

/// The `shared` folder beside the repository checkout
/// (`<repo>/../shared`); override with `BERTH_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_SHARED_DIR")
        && !dir.is_empty()
    {
        return PathBuf::from(dir);
    }
    // CARGO_MANIFEST_DIR is <repo>/crates/berth.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    dir.canonicalize().unwrap_or(dir)
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run(cmd: Command, what: &str) -> Output {
    run_with_input(cmd, what, None)
}

/// Runs `cmd` with `input` on its standard input (none: /dev/null).
pub fn run_with_input(mut cmd: Command, what: &str, input: Option<&str>) -> Output {
    use std::io::Write as _;
    let line = describe(&cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} ({line}): {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to {what}'s stdin ({line}): {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({line}): {e}"))
}

fn assert_success(out: &Output, line: &str) {
    if !out.status.success() {
        panic!(
            "command failed ({}): {line}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Finds an executable on PATH (and in the sbin folders, which a non-login
/// PATH may lack).
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A short, unique scratch directory under /tmp (unix socket paths must stay
/// under 108 bytes, so TMPDIR is not used for the Docker daemon).
fn short_scratch_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = if Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("{prefix}-{}-{nanos:x}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
}

// ---------------------------------------------------------------------------
// mkimage.py and OCI layouts
// ---------------------------------------------------------------------------

/// Runs `python3 <shared>/tools/mkimage.py <out> <args...>` and returns its
/// JSON summary: an array with one entry per written tag (the base image
/// first, then the derived image), each with `layout`, `tag`, `kind`
/// ("manifest" or "index"), `digest`, `size`, `media_type` and `images`
/// (per platform: `platform`, `manifest`, `config`, `layers[]` with
/// `digest`, `size`, `diff_id`).
pub fn mkimage(out: &Path, args: &[&str]) -> Value {
    let script = shared_dir().join("tools").join("mkimage.py");
    assert!(
        script.is_file(),
        "mkimage.py not found at {} (set BERTH_SHARED_DIR to the shared folder)",
        script.display()
    );
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(out).args(args);
    let line = describe(&cmd);
    let output = run(cmd, "python3");
    assert_success(&output, &line);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "mkimage printed no JSON summary ({e}): {line}\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// A string field of a JSON value, panicking with context when absent.
/// An OCI layout reference as skopeo takes it: `oci:DIR:TAG`.
pub fn oci_ref(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

/// The manifest digest from the "TAG: digest: sha256:… size: N" line of `docker push`.
pub fn pushed_digest(push_output: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    let line = push_output
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' line in docker push output:\n{push_output}"));
    let rest = &line[prefix.len()..];
    let (digest, size) = rest
        .split_once(" size: ")
        .unwrap_or_else(|| panic!("no size in {line:?}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "bad digest in {line:?}"
    );
    assert!(size.trim().parse::<u64>().is_ok(), "bad size in {line:?}");
    digest.to_string()
}

pub fn json_str<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string field {key:?} in {v}"))
}

/// Layer digests ("sha256:…") of image `n` (platform index) of a summary entry.
pub fn summary_layers(entry: &Value, n: usize) -> Vec<String> {
    entry["images"][n]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers for image {n} in {entry}"))
        .iter()
        .map(|l| json_str(l, "digest").to_string())
        .collect()
}

/// Diff IDs ("sha256:…" of the uncompressed tars) of image `n` of a summary entry.
pub fn summary_diff_ids(entry: &Value, n: usize) -> Vec<String> {
    entry["images"][n]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers for image {n} in {entry}"))
        .iter()
        .map(|l| json_str(l, "diff_id").to_string())
        .collect()
}

/// "sha256:abc…" → "abc…".
pub fn hex_of(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

/// Path of a blob in an OCI layout.
pub fn layout_blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs").join("sha256").join(hex_of(digest))
}

/// Bytes of a blob in an OCI layout.
pub fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let p = layout_blob_path(layout, digest);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The digest that `index.json` of a layout gives for a ref name (tag).
pub fn layout_ref_digest(layout: &Path, tag: &str) -> String {
    let p = layout.join("index.json");
    let text = std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    let index: Value = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
    let manifests = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests in {}", p.display()));
    manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag))
        .map(|m| json_str(m, "digest").to_string())
        .unwrap_or_else(|| panic!("tag {tag:?} not in {}: {index}", p.display()))
}

/// Names (hex digests) of the blob files of an OCI layout, sorted.
pub fn layout_blob_names(layout: &Path) -> Vec<String> {
    let dir = layout.join("blobs").join("sha256");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Every blob of `src` exists in `dst` with identical bytes.
pub fn assert_layout_blobs_identical(src: &Path, dst: &Path) {
    let names = layout_blob_names(src);
    assert!(!names.is_empty(), "no blobs in {}", src.display());
    for name in names {
        let a = src.join("blobs/sha256").join(&name);
        let b = dst.join("blobs/sha256").join(&name);
        let ab = std::fs::read(&a).unwrap_or_else(|e| panic!("cannot read {}: {e}", a.display()));
        let bb = std::fs::read(&b).unwrap_or_else(|e| {
            panic!(
                "blob {name} missing from pulled layout {}: {e}",
                dst.display()
            )
        });
        assert!(
            ab == bb,
            "blob {name} differs: {} bytes in {}, {} bytes in {}",
            ab.len(),
            src.display(),
            bb.len(),
            dst.display()
        );
    }
}

/// Regular files named exactly `hex` anywhere under `root` (a blob stored
/// content-addressed appears once however many repositories reference it).
pub fn count_files_named(root: &Path, hex: &str) -> usize {
    let mut count = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        };
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            let ft = entry
                .file_type()
                .unwrap_or_else(|e| panic!("cannot stat {}: {e}", entry.path().display()));
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() && entry.file_name().to_string_lossy() == hex {
                count += 1;
            }
        }
    }
    count
}

// ---------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------

/// Where containers/image (skopeo 1.9) keeps its blob-info cache when run as
/// root. No flag or environment variable relocates it (the library's
/// `BlobInfoCacheDir` is not exposed by skopeo), so [`Skopeo`] bind-mounts a
/// private folder over it in a private mount namespace (`unshare --mount`).
const SYSTEM_BLOB_INFO_CACHE: &str = "/var/lib/containers/cache";

const UNSHARE_SCRIPT: &str = r#"c=$1; shift
mkdir -p /var/lib/containers/cache && mount --bind "$c" /var/lib/containers/cache && exec skopeo "$@""#;

/// Whether `unshare --mount` + bind mount works here (root with
/// CAP_SYS_ADMIN); checked once per process.
fn cache_isolation_works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        if std::env::var_os("BERTH_SKOPEO_SHARED_CACHE").is_some() {
            return false;
        }
        let Ok(probe) = tempfile::tempdir() else { return false };
        if std::fs::write(probe.path().join("probe"), b"").is_err() {
            return false;
        }
        // `test -e` succeeds only if the bind mount really took effect (the
        // probe file exists only in the probe dir).
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                r#"mkdir -p {SYSTEM_BLOB_INFO_CACHE} && mount --bind "$1" {SYSTEM_BLOB_INFO_CACHE} && test -e {SYSTEM_BLOB_INFO_CACHE}/probe"#
            ))
            .arg("sh")
            .arg(probe.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// A skopeo with its own blob-info cache and temp folder (when the machine
/// allows a private mount namespace; otherwise the system cache is shared and
/// a note is printed). Always passes `--insecure-policy`, so no
/// `/etc/containers/policy.json` is needed. Cheap to clone; the folders live
/// as long as any clone.
#[derive(Clone)]
pub struct Skopeo {
    dir: Arc<tempfile::TempDir>,
    isolated_cache: bool,
}

impl Default for Skopeo {
    fn default() -> Self {
        Self::new()
    }
}

impl Skopeo {
    pub fn new() -> Skopeo {
        assert!(
            find_executable("skopeo").is_some(),
            "skopeo not found: the real-client tests need the Debian package skopeo; \
             run the README test command (scripts/test.sh), which installs it \
             (or bash scripts/install-test-deps.sh)"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-skopeo-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for skopeo: {e}"));
        for sub in ["cache", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap_or_else(|e| {
                panic!("cannot create {sub} under {}: {e}", dir.path().display())
            });
        }
        let isolated_cache = cache_isolation_works();
        if !isolated_cache {
            static NOTE: OnceLock<()> = OnceLock::new();
            NOTE.get_or_init(|| {
                eprintln!(
                    "note: cannot bind-mount a private skopeo blob-info cache here; \
                     all tests share {SYSTEM_BLOB_INFO_CACHE}"
                )
            });
        }
        Skopeo {
            dir: Arc::new(dir),
            isolated_cache,
        }
    }

    /// This instance's blob-info cache folder (holds
    /// `blob-info-cache-v1.boltdb` after a copy, when isolated).
    pub fn cache_dir(&self) -> PathBuf {
        if self.isolated_cache {
            self.dir.path().join("cache")
        } else {
            PathBuf::from(SYSTEM_BLOB_INFO_CACHE)
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let tmp = self.dir.path().join("tmp");
        let mut cmd = if self.isolated_cache {
            let mut c = Command::new("unshare");
            c.args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                UNSHARE_SCRIPT,
                "sh",
            ])
            .arg(self.dir.path().join("cache"));
            c
        } else {
            Command::new("skopeo")
        };
        cmd.arg("--insecure-policy")
            .arg("--tmpdir")
            .arg(tmp)
            .args(args);
        cmd
    }

    /// Runs skopeo with the given arguments (after the global flags).
    pub fn run(&self, args: &[&str]) -> Output {
        run(self.command(args), "skopeo")
    }

    /// Runs skopeo, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ok_bytes(args);
        String::from_utf8(out).unwrap_or_else(|e| panic!("skopeo printed non-UTF-8: {e}"))
    }

    /// Runs skopeo, asserts success, returns stdout as bytes (for `inspect --raw`).
    pub fn ok_bytes(&self, args: &[&str]) -> Vec<u8> {
        let cmd = self.command(args);
        let line = describe(&cmd);
        let out = run(cmd, "skopeo");
        assert_success(&out, &line);
        out.stdout
    }

    /// Runs skopeo, asserts success, parses stdout as JSON (inspect, list-tags).
    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("skopeo {args:?} printed no JSON ({e}): {text}"))
    }

    /// Runs skopeo, asserts that it FAILS, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let cmd = self.command(args);
        let line = describe(&cmd);
        let out = run(cmd, "skopeo");
        assert!(
            !out.status.success(),
            "expected failure but skopeo succeeded: {line}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn default_skopeo() -> &'static Skopeo {
    static DEFAULT: OnceLock<Skopeo> = OnceLock::new();
    DEFAULT.get_or_init(Skopeo::new)
}

/// Runs skopeo (`--insecure-policy` + the process-wide private cache) with `args`.
pub fn skopeo(args: &[&str]) -> Output {
    default_skopeo().run(args)
}

/// Like [`skopeo`], asserting success; returns stdout.
pub fn skopeo_ok(args: &[&str]) -> String {
    default_skopeo().ok(args)
}

// ---------------------------------------------------------------------------
// Docker engine
// ---------------------------------------------------------------------------

/// Watchdog wrapper around dockerd. Arguments: `$1` = scratch dir, the rest =
/// the dockerd command line. Its stdin is a pipe whose only write end is held
/// by the test process (Rust opens pipes close-on-exec, so no other child
/// inherits it): `read` returns EOF exactly when the test process is gone,
/// however it ended. It then stops dockerd (TERM, KILL after 15 s), kills a
/// left-over containerd, and removes the scratch dir (vfs image store
/// included). It ignores INT/HUP/TERM so that a Ctrl-C to the process group
/// does not skip the cleanup.
const DOCKERD_WATCHDOG: &str = r#"dir=$1; shift
"$@" </dev/null >"$dir/dockerd.log" 2>&1 &
child=$!
echo "$child" >"$dir/dockerd.launch.pid"
trap '' INT HUP PIPE TERM
while read -r _line; do :; done
kill -TERM "$child" 2>/dev/null
i=0
while kill -0 "$child" 2>/dev/null && [ "$i" -lt 150 ]; do
  [ "$(cut -d' ' -f3 "/proc/$child/stat" 2>/dev/null)" = Z ] && break
  sleep 0.1; i=$((i+1))
done
kill -KILL "$child" 2>/dev/null
wait "$child" 2>/dev/null
cpid=$(cat "$dir/exec/containerd/containerd.pid" 2>/dev/null)
if [ -n "$cpid" ]; then kill -KILL "$cpid" 2>/dev/null; fi
rm -rf "$dir"
"#;

/// One private Docker engine (dockerd 20.10 from docker.io) per test process:
/// vfs storage, its own data-root/exec-root/socket in a scratch dir, no
/// bridge and no iptables. The engine treats 127.0.0.0/8 and `localhost` as
/// insecure registries by default, so `localhost:PORT/...` works over HTTP.
pub struct DockerDaemon {
    dir: PathBuf,
    socket: PathBuf,
    config_dir: PathBuf,
    /// The watchdog shell; its stdin pipe stays open for the life of the
    /// process (the static is never dropped).
    _watchdog: Mutex<Child>,
}

impl DockerDaemon {
    /// The daemon of this test process, started on first use.
    pub fn shared() -> &'static DockerDaemon {
        static DAEMON: OnceLock<DockerDaemon> = OnceLock::new();
        DAEMON.get_or_init(DockerDaemon::start)
    }

    fn start() -> DockerDaemon {
        let not_installed = "the Docker engine tests need dockerd and the docker CLI (Debian package \
                             docker.io); run the README test command (scripts/test.sh), which installs \
                             it (or bash scripts/install-test-deps.sh)";
        let dockerd = find_executable("dockerd")
            .unwrap_or_else(|| panic!("dockerd not found: {not_installed}"));
        assert!(
            find_executable("docker").is_some(),
            "docker CLI not found: {not_installed}"
        );

        let dir = short_scratch_dir("berth-dkr");
        let socket = dir.join("docker.sock");
        let config_dir = dir.join("config");
        std::fs::create_dir(&config_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", config_dir.display()));
        // An empty daemon.json keeps /etc/docker/daemon.json out of the way.
        let daemon_json = dir.join("daemon.json");
        std::fs::write(&daemon_json, b"{}\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", daemon_json.display()));

        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(DOCKERD_WATCHDOG)
            .arg("sh")
            .arg(&dir)
            .arg(&dockerd)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--config-file")
            .arg(&daemon_json)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ])
            .stdin(Stdio::piped())
            // Not the test's stdout/stderr: a test runner must not wait on
            // pipes that the watchdog holds while it cleans up.
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let watchdog = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd via sh: {e}"));
        let daemon = DockerDaemon {
            dir,
            socket,
            config_dir,
            _watchdog: Mutex::new(watchdog),
        };

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = daemon.docker(&["version", "--format", "{{.Server.Version}}"]);
            if out.status.success() {
                break;
            }
            let dead = daemon.dockerd_exited();
            if dead || Instant::now() > deadline {
                // Dropping `daemon` closes the pipe: the watchdog cleans up.
                panic!(
                    "dockerd {} (socket {}); docker version said: {}\n--- dockerd.log ---\n{}",
                    if dead {
                        "exited during start-up"
                    } else {
                        "not ready after 30 s"
                    },
                    daemon.socket.display(),
                    String::from_utf8_lossy(&out.stderr),
                    daemon.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    fn dockerd_exited(&self) -> bool {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("dockerd.launch.pid")) else {
            return false; // not launched yet
        };
        match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
            // Field 3 is the state; a zombie has exited.
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
            Err(_) => true,
        }
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Points the daemon's `registry-mirrors` at `mirrors` (a reload: SIGHUP, as
    /// `dockerd` allows for this setting) and waits until it uses them. Mirrors serve
    /// Docker Hub names only, which no other test pulls.
    pub fn set_registry_mirrors(&self, mirrors: &[String]) {
        let config = serde_json::json!({ "registry-mirrors": mirrors });
        std::fs::write(self.dir.join("daemon.json"), config.to_string()).unwrap();
        let pid = std::fs::read_to_string(self.dir.join("dockerd.pid")).unwrap();
        let out = Command::new("kill")
            .args(["-HUP", pid.trim()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = self.docker_ok(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"]);
            if mirrors
                .iter()
                .all(|m| info.contains(m.trim_end_matches('/')))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not take the mirrors: {info}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// DOCKER_CONFIG for this daemon's CLI (where `docker login` keeps credentials).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// DOCKER_HOST value for this daemon.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", &self.config_dir)
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        cmd
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        run(self.command(args), "docker")
    }

    /// Runs the docker CLI with `input` on its standard input (`login --password-stdin`).
    pub fn docker_input(&self, args: &[&str], input: &str) -> Output {
        run_with_input(self.command(args), "docker", Some(input))
    }

    /// Runs the docker CLI, asserts success, returns stdout (push/pull
    /// progress goes to stdout when it is not a terminal).
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let cmd = self.command(args);
        let line = describe(&cmd);
        let out = run(cmd, "docker");
        if !out.status.success() {
            panic!(
                "command failed ({}): {line}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- dockerd.log (tail) ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail(&self.log(), 40)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
