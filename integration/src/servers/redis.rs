//! A private Redis server (`redis-server` from Debian) on `127.0.0.1:<free port>` and a Unix
//! socket in the scratch dir, without persistence (`save ""`, `appendonly no`).
//!
//! With [`RedisOptions::password`] the server has `requirepass`: clients send `AUTH <password>`
//! in clear RESP (the canary [`PASSWORD`] must never appear in a span). `DEBUG` is enabled for
//! local connections so tests can make a slow reply with `DEBUG SLEEP 0.2`. One process serves
//! every connection (`io-threads 1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::process::{Output, ProcessGuard, free_port, poll_until};

/// The canary password for [`RedisOptions::with_password`].
pub const PASSWORD: &str = "redis-canary-Auth-4711";

/// Start options.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// `requirepass`: clients must `AUTH` first.
    pub password: Option<String>,
    /// Extra `--name value` directives, e.g. `("maxmemory", "64mb")`.
    pub directives: Vec<(String, String)>,
}

impl RedisOptions {
    /// `requirepass` [`PASSWORD`].
    pub fn with_password() -> RedisOptions {
        RedisOptions {
            password: Some(PASSWORD.to_string()),
            ..RedisOptions::default()
        }
    }
}

/// A running Redis; stopped (SIGTERM) on drop.
pub struct Redis {
    pub dir: PathBuf,
    pub port: u16,
    pub socket: PathBuf,
    pub password: Option<String>,
    guard: ProcessGuard,
}

impl Redis {
    /// No password.
    pub fn start(dir: &Path) -> Result<Redis> {
        Redis::start_with(dir, &RedisOptions::default())
    }

    /// Starts `redis-server` (log `dir/redis.log`) and waits until `PING` answers `PONG`.
    pub fn start_with(dir: &Path, opts: &RedisOptions) -> Result<Redis> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let socket = dir.join("redis.sock");
        let mut cmd = Command::new("redis-server");
        let mut directives: Vec<(String, String)> = [
            ("port", port.to_string()),
            ("bind", "127.0.0.1".to_string()),
            ("unixsocket", socket.to_string_lossy().into_owned()),
            ("unixsocketperm", "777".to_string()),
            ("dir", dir.to_string_lossy().into_owned()),
            ("save", String::new()),
            ("appendonly", "no".to_string()),
            ("daemonize", "no".to_string()),
            ("supervised", "no".to_string()),
            ("protected-mode", "no".to_string()),
            ("io-threads", "1".to_string()),
            ("enable-debug-command", "local".to_string()),
            ("logfile", String::new()),
            ("loglevel", "notice".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(pw) = &opts.password {
            directives.push(("requirepass".into(), pw.clone()));
        }
        directives.extend(opts.directives.iter().cloned());
        for (k, v) in &directives {
            cmd.arg(format!("--{k}")).arg(v);
        }
        let guard = ProcessGuard::spawn("redis-server", cmd, Output::File(dir.join("redis.log")))?;
        let mut r = Redis {
            dir: dir.to_path_buf(),
            port,
            socket,
            password: opts.password.clone(),
            guard,
        };
        r.wait_ready()?;
        Ok(r)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let mut ping = self.cli();
        ping.arg("PING");
        let guard = &mut self.guard;
        poll_until(
            "redis-server to answer PING",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                guard.ensure_running()?;
                let out = ping.output()?;
                Ok((String::from_utf8_lossy(&out.stdout).trim() == "PONG").then_some(()))
            },
        )
    }

    /// The server's pid (one process serves every connection).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// A `redis-cli` command over TCP, authenticated (`-a`, AUTH on the wire) when the server
    /// has a password. Append a command (`PING`, `SET k v`) or feed commands on stdin.
    pub fn cli(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p"]).arg(self.port.to_string());
        self.auth_args(&mut c);
        c
    }

    /// A `redis-cli` command without credentials (to see `NOAUTH`, or to send `AUTH` itself).
    pub fn cli_noauth(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p"]).arg(self.port.to_string());
        c
    }

    /// A `redis-cli` command over the Unix socket.
    pub fn cli_socket(&self) -> Command {
        let mut c = Command::new("redis-cli");
        c.arg("-s").arg(&self.socket);
        self.auth_args(&mut c);
        c
    }

    /// A `redis-benchmark` command against the TCP port (authenticated when needed).
    pub fn benchmark(&self) -> Command {
        let mut c = Command::new("redis-benchmark");
        c.args(["-h", "127.0.0.1", "-p"]).arg(self.port.to_string());
        if let Some(pw) = &self.password {
            c.arg("-a").arg(pw);
        }
        c
    }

    fn auth_args(&self, c: &mut Command) {
        if let Some(pw) = &self.password {
            c.arg("-a").arg(pw).arg("--no-auth-warning");
        }
    }

    /// `redis://[:password@]127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

impl super::Server for Redis {
    fn label(&self) -> String {
        format!("redis-server 127.0.0.1:{}", self.port)
    }
    fn pids(&self) -> Vec<u32> {
        vec![self.pid()]
    }
    fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }
    fn stop(&mut self) {
        self.guard.stop();
    }
}
