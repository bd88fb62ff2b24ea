//! The real `berth` binary as a child process, for tests that kill it, read its memory
//! and descriptors from `/proc`, or need what only the binary does (flags, signals).

#![cfg(unix)]

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;

/// `berth serve` as a child process on a fixed port and data directory, so it can be
/// killed and started again on the same state. Killed (SIGKILL) when dropped.
pub struct BerthProcess {
    pub child: Option<Child>,
    pub port: u16,
    pub base: String,
    pub data_dir: PathBuf,
    /// The address it listens on, without the port (`127.0.0.1`, `[::1]`).
    listen: String,
    /// What waits for it to answer (one that trusts its certificate, for HTTPS).
    client: reqwest::Client,
    /// Flags after `serve --addr … --data-dir …`.
    args: Vec<String>,
    /// Variables set for the process (every other `BERTH_*` is removed).
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Length of the log file when the current process was spawned: what it wrote
    /// starts there.
    log_start: u64,
    _dir: tempfile::TempDir,
}

/// The binary under test: this build's, or `BERTH_TEST_BINARY` (to run the same tests
/// against another build, such as the last release, and see which fail).
pub fn berth_binary() -> PathBuf {
    std::env::var_os("BERTH_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth")))
}

/// A port that was free a moment ago: bind port 0, read the port, let it go.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl BerthProcess {
    /// Starts berth with `--open` on a free port with a new, empty data directory.
    pub async fn start() -> BerthProcess {
        BerthProcess::start_with(&["--open"], &[]).await
    }

    /// Starts berth with `args` and environment `env` on a free port with a new, empty
    /// data directory.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> BerthProcess {
        BerthProcess::start_on("http", "127.0.0.1", free_port(), http(), args, env).await
    }

    /// Starts berth listening on `listen` (`[::1]`) and `port`, reached over `scheme`
    /// with `client`.
    pub async fn start_on(
        scheme: &str,
        listen: &str,
        port: u16,
        client: reqwest::Client,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> BerthProcess {
        let dir = tempfile::Builder::new()
            .prefix("berth-crash-")
            .tempdir()
            .unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = dir.path().join("berth.log");
        let mut process = BerthProcess {
            child: None,
            port,
            base: format!("{scheme}://{listen}:{port}"),
            data_dir,
            listen: listen.to_owned(),
            client,
            log,
            log_start: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _dir: dir,
        };
        process.launch().await;
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Spawns `berth serve --addr 127.0.0.1:PORT --data-dir DIR ARGS…`, stdout and
    /// stderr appended to the log file. Settings from the environment (`BERTH_*`) are
    /// removed so only the command line (and `env`) counts.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "berth is already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(
            log,
            "==== berth serve --addr {}:{} ====",
            self.listen, self.port
        )
        .unwrap();
        self.log_start = log.metadata().unwrap().len();
        let stderr = log.try_clone().unwrap();
        let mut command = Command::new(berth_binary());
        command
            .arg("serve")
            .arg("--addr")
            .arg(format!("{}:{}", self.listen, self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BERTH_") {
                command.env_remove(key);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        self.child = Some(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the berth binary: {e}")),
        );
    }

    /// What the current process has logged so far.
    pub fn log_since_spawn(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = (self.log_start as usize).min(text.len());
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    pub fn log_tail(&self) -> String {
        let text =
            String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Waits (10 s at most) until this process answers `GET /v2/` (200, or 401 with auth
    /// on). The answer only counts while the process is alive and has logged its own
    /// address, so a server that took the port in the meantime is not mistaken for it.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = self.client.clone();
        let own_addr = format!("{}:{}", self.listen, self.port);
        loop {
            let child = self.child.as_mut().ok_or("berth is not running")?;
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Err(format!("berth exited before it was ready ({status})"));
            }
            let answered = client
                .get(self.url("/v2/"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(r) = answered
                && (r.status() == 200 || r.status() == 401)
                && self.log_since_spawn().contains(&own_addr)
            {
                let child = self.child.as_mut().ok_or("berth is not running")?;
                if child.try_wait().unwrap().is_none() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("berth did not answer GET /v2/ within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Spawns berth and waits until it is ready. A restart right after a kill may find
    /// the port still held for a moment: berth then fails to bind, and is started again.
    async fn launch(&mut self) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.spawn();
            match self.wait_ready().await {
                Ok(()) => return,
                Err(e)
                    if attempt < 20
                        && self.child.is_none()
                        && self.log_since_spawn().contains("binding") =>
                {
                    eprintln!("berth could not bind yet (attempt {attempt}): {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("{e}\n--- berth log (tail) ---\n{}", self.log_tail()),
            }
        }
    }

    /// `kill -9`: no shutdown, no flush. Asserts the process was alive until then.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("berth is not running");
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "berth should have run until SIGKILL, but ended with {status}\n--- log ---\n{}",
            self.log_tail()
        );
    }

    /// Starts berth again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.launch().await;
    }
}

impl Drop for BerthProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl BerthProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("berth is not running").id()
    }

    /// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
    pub fn status_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"));
        kib / 1024.0
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS")
    }

    /// Open file descriptors now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}
