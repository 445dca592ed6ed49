//! A gateway in a process of its own: the `switchyard serve` command (built
//! by this package as `switchyard-test-cli`), for what only a separate process
//! shows: its own file-descriptor limit, and what it writes to its log.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `switchyard serve`, killed when dropped.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl GatewayProcess {
    /// Starts `switchyard serve` on the config `text` (its `[server] listen`
    /// should be `127.0.0.1:0`), with `env` set and, when `open_files` is
    /// given, the process's soft and hard limits on open files set to it.
    /// Waits until it listens.
    pub fn start(text: &str, env: &[(&str, &str)], open_files: Option<u32>) -> GatewayProcess {
        let dir = crate::temp_store().with_extension("d");
        std::fs::create_dir_all(&dir).expect("gateway dir");
        let config = dir.join("gateway.toml");
        std::fs::write(&config, text).expect("write config");
        let log = dir.join("gateway.log");
        let binary = crate::cli_binary();
        let mut command = match open_files {
            // `ulimit -n` sets both limits; `exec` keeps the pid.
            Some(n) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--store")
            .arg(dir.join("store.db"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("log file"),
            );
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start switchyard serve");
        // The log goes to standard output: into the log file, beside
        // standard error, watching for the address.
        let stdout = child.stdout.take().expect("stdout");
        let mut copy = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("log file");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Write as _;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(copy, "{line}");
                if let Some(addr) = line.strip_prefix("switchyard listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the gateway did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        GatewayProcess { addr, child, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the gateway has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle` (or `timeout` passes); returns the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
