//! A real `redis-server` on a loopback port, for the shared-state tests: the
//! Debian package's binary (`apt-get install redis-server`), or the one named
//! by `SWITCHYARD_REDIS_SERVER`. Its data is kept in an append-only file
//! (fsync on every write), so a server killed with SIGKILL and restarted on
//! the same port comes back with what it had, as a production Redis would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed, until restarted) `redis-server`.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn binary() -> String {
    std::env::var("SWITCHYARD_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts a fresh server on a free loopback port.
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-redis-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("redis data dir");
        let mut server = RedisServer {
            port: free_port(),
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and data directory, and
    /// waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(binary())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}. These tests need a real Redis: `apt-get install redis-server` (or set SWITCHYARD_REDIS_SERVER)",
                    binary()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.command(&["PING"]).is_ok_and(|r| r == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs one command and returns its reply as text (integers and bulk
    /// strings as they are, nil as an empty string, arrays joined by
    /// newlines).
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut reader = Reply {
            stream,
            buf: Vec::new(),
        };
        reader.value()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Reply {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Reply {
    fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).to_string();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn value(&mut self) -> std::io::Result<String> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        match kind {
            "+" | ":" => Ok(rest.to_string()),
            "-" => Err(std::io::Error::other(rest.to_string())),
            "$" => {
                let len: i64 = rest.parse().map_err(std::io::Error::other)?;
                if len < 0 {
                    return Ok(String::new());
                }
                let len = len as usize;
                while self.buf.len() < len + 2 {
                    self.fill()?;
                }
                let text = String::from_utf8_lossy(&self.buf[..len]).to_string();
                self.buf.drain(..len + 2);
                Ok(text)
            }
            "*" => {
                let n: i64 = rest.parse().map_err(std::io::Error::other)?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.value()?);
                }
                Ok(items.join("\n"))
            }
            _ => Err(std::io::Error::other(format!("unexpected reply {line:?}"))),
        }
    }
}
