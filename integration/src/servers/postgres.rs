//! A private PostgreSQL server (Debian's `postgresql` package) on loopback: own data directory,
//! port and Unix socket directory.
//!
//! `initdb` refuses to run as root, so `initdb` and `postgres` run as the `postgres` system user
//! (`setuid` in the spawn; the postmaster's pid is the guard's pid) on a data directory it owns
//! under the scratch dir. The server binaries come from `/usr/lib/postgresql/<ver>/bin` (highest
//! version installed, found at run time).
//!
//! Authentication (`pg_hba.conf` written here):
//! - `postgres` over the Unix socket: `trust` (setup and [`Postgres::admin_sql`] only);
//! - [`USER`] everywhere else: `scram-sha-256`, so a SASL exchange (SASLInitialResponse,
//!   SASLResponse) really crosses the wire; with SCRAM the password itself is never sent;
//! - [`CLEARTEXT_USER`] over TCP: `password`, so the password is sent in clear in a
//!   PasswordMessage (the strongest "never in a span" canary).
//!
//! `ssl = off`: a client's `sslmode=prefer` (libpq's default) sends an SSLRequest, the server
//! answers `N` and the startup continues in plaintext on the same connection. The [`psql`]
//! builder sets `PGGSSENCMODE=disable` so no GSSENCRequest precedes it (libpq sends one only
//! with Kerberos credentials, which makes startup sequences host-dependent).
//!
//! PostgreSQL forks one backend process per connection: SERVER spans carry the backend's pid,
//! not the postmaster's. Find it with psycopg (`connected` line `backend_pid`, from
//! BackendKeyData, no query needed), `SELECT pg_backend_pid()`, or [`Postgres::backends`] while
//! the connection is open (process titles such as `postgres: e2e e2e 127.0.0.1(51234) idle`).
//!
//! [`psql`]: Postgres::psql

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::process::{
    self, Output, ProcessGuard, children_of, cmdline, free_port, poll_until, run_capture,
};

/// The test user (SCRAM over TCP and the socket).
pub const USER: &str = "e2e";
/// [`USER`]'s password: a canary that must never appear in a span.
pub const PASSWORD: &str = "pg-canary-Scram-5e1f";
/// A user authenticated with the cleartext `password` method over TCP.
pub const CLEARTEXT_USER: &str = "e2e_clear";
/// [`CLEARTEXT_USER`]'s password: sent in clear on the wire, must never appear in a span.
pub const CLEARTEXT_PASSWORD: &str = "pg-canary-Clear-77a0";
/// The test database (owned by [`USER`]).
pub const DATABASE: &str = "e2e";

/// Run once after start, as `postgres` in the `postgres` database, one statement at a time
/// (CREATE DATABASE cannot run inside the transaction a multi-statement `-c` is).
const SETUP_ROLES: &[&str] = &[
    "CREATE ROLE e2e LOGIN PASSWORD 'pg-canary-Scram-5e1f'",
    "CREATE ROLE e2e_clear LOGIN PASSWORD 'pg-canary-Clear-77a0'",
    "CREATE DATABASE e2e OWNER e2e",
];

/// Run once after start, as [`USER`] in [`DATABASE`]: the tables the tests use.
const SETUP_TABLES: &str = "
CREATE TABLE t1 (id int PRIMARY KEY, name text NOT NULL, score double precision);
INSERT INTO t1 VALUES (1, 'alice', 1.5), (2, 'bob', 2.5), (3, 'carol', 3.5);
CREATE TABLE t2 (id int PRIMARY KEY, t1_id int REFERENCES t1(id), note text);
INSERT INTO t2 VALUES (10, 1, 'first'), (20, 2, 'second');
CREATE TABLE kv (k text PRIMARY KEY, v text);
GRANT ALL ON ALL TABLES IN SCHEMA public TO e2e_clear;
";

/// Start options.
#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// `log_statement = 'all'`: every statement the server receives is logged (ground truth of
    /// what a client sent; also logs `execute <name>: ...` for prepared statements).
    pub log_statements: bool,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

/// A backend process serving one client connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgBackend {
    pub pid: u32,
    /// The whole process title, e.g. `postgres: e2e e2e 127.0.0.1(51234) idle`.
    pub title: String,
    /// The client's port for TCP connections (`None` for `[local]`).
    pub client_port: Option<u16>,
}

/// A running PostgreSQL server; stopped (fast shutdown) on drop.
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    /// The Unix socket directory (`<socket_dir>/.s.PGSQL.<port>`).
    pub socket_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// The major version found, e.g. `15`.
    pub version: u32,
    log: PathBuf,
    guard: ProcessGuard,
}

/// `/usr/lib/postgresql/<ver>/bin` of the highest version that has `initdb` and `postgres`.
pub fn bin_dir() -> Result<(u32, PathBuf)> {
    let root = Path::new("/usr/lib/postgresql");
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir(root)
        .with_context(|| format!("`{}` missing: is `postgresql` installed?", root.display()))?
        .flatten()
    {
        let Some(ver) = e.file_name().to_str().and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        let bin = e.path().join("bin");
        if bin.join("initdb").exists()
            && bin.join("postgres").exists()
            && best.as_ref().is_none_or(|(v, _)| ver > *v)
        {
            best = Some((ver, bin));
        }
    }
    best.with_context(|| {
        format!(
            "no `{}/<ver>/bin/{{initdb,postgres}}`: install the Debian `postgresql` package",
            root.display()
        )
    })
}

impl Postgres {
    /// [`start_with`](Self::start_with) with default options.
    pub fn start(dir: &Path) -> Result<Postgres> {
        Postgres::start_with(dir, &PgOptions::default())
    }

    /// Initialises `dir/data` (as `postgres`), starts the server on `127.0.0.1:<free port>`
    /// (and `::1` when available) and `dir/sock`, waits for a real round trip, and creates
    /// [`USER`], [`CLEARTEXT_USER`], [`DATABASE`] and its tables. Logs go to `dir/postgres.log`.
    pub fn start_with(dir: &Path, opts: &PgOptions) -> Result<Postgres> {
        let (version, bin_dir) = bin_dir()?;
        let (uid, gid) = process::user_ids("postgres")
            .context("the `postgres` system user (created by the Debian package)")?;
        std::fs::create_dir_all(dir)?;
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        for d in [&data, &socket_dir] {
            std::fs::create_dir_all(d)?;
            std::os::unix::fs::chown(d, Some(uid), Some(gid))
                .with_context(|| format!("chown postgres `{}`", d.display()))?;
        }
        // initdb insists on 0700 or 0750.
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let as_postgres = |program: PathBuf| {
            let mut c = Command::new(program);
            std::os::unix::process::CommandExt::uid(&mut c, uid);
            std::os::unix::process::CommandExt::gid(&mut c, gid);
            c.current_dir(dir)
                .env("HOME", dir)
                .env("USER", "postgres")
                .env("LOGNAME", "postgres")
                .env("LC_ALL", "C.UTF-8");
            c
        };
        let mut initdb = as_postgres(bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
        run_capture(initdb).context("initdb failed")?;

        let hba = dir.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "# Written by the integration harness.\n\
             # TYPE  DATABASE USER      ADDRESS       METHOD\n\
             local   all      postgres                trust\n\
             local   all      all                     scram-sha-256\n\
             host    all      e2e_clear 127.0.0.1/32  password\n\
             host    all      e2e_clear ::1/128       password\n\
             host    all      all       127.0.0.1/32  scram-sha-256\n\
             host    all      all       ::1/128       scram-sha-256\n",
        )?;
        let port = free_port()?;
        let log = dir.join("postgres.log");
        let mut cmd = as_postgres(bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&socket_dir);
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", "127.0.0.1,::1"),
            ("hba_file", &*hba.to_string_lossy()),
            ("ssl", "off"),
            ("password_encryption", "scram-sha-256"),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("shared_buffers", "32MB"),
            ("max_connections", "100"),
            ("unix_socket_permissions", "0777"),
            ("logging_collector", "off"),
            ("log_destination", "stderr"),
            ("log_line_prefix", "%m [%p] %u@%d "),
            ("log_connections", "on"),
            ("log_disconnections", "on"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if opts.log_statements {
            settings.push(("log_statement".into(), "all".into()));
        }
        settings.extend(opts.settings.iter().cloned());
        for (k, v) in &settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        let guard = ProcessGuard::spawn("postgres", cmd, Output::File(log.clone()))?
            .with_stop_signal(libc::SIGINT)
            .with_grace(Duration::from_secs(20));
        let mut pg = Postgres {
            dir: dir.to_path_buf(),
            port,
            socket_dir,
            bin_dir,
            version,
            log,
            guard,
        };
        pg.wait_ready()?;
        for sql in SETUP_ROLES {
            pg.admin_sql("postgres", sql)
                .with_context(|| format!("setup: {sql}"))?;
        }
        let mut c = pg.psql_socket();
        c.arg("-c").arg(SETUP_TABLES);
        run_capture(c).context("creating the test tables")?;
        Ok(pg)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let socket_dir = self.socket_dir.clone();
        let port = self.port;
        let psql = self.bin_dir.join("psql");
        let guard = &mut self.guard;
        poll_until(
            "postgres to accept connections",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                guard.ensure_running()?;
                let out = Command::new(&psql)
                    .args(["-X", "-At", "-U", "postgres", "-d", "postgres", "-h"])
                    .arg(&socket_dir)
                    .arg("-p")
                    .arg(port.to_string())
                    .args(["-c", "SELECT 1"])
                    .output()?;
                Ok(
                    (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1")
                        .then_some(()),
                )
            },
        )
    }

    /// The postmaster's pid (it accepts connections and forks a backend for each; SERVER
    /// spans come from the backends, see [`backends`](Self::backends)).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Every live child of the postmaster (backends and auxiliary processes: checkpointer,
    /// background writer, walwriter, autovacuum launcher, ...).
    pub fn postmaster_children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// The backends currently serving client connections (auxiliary processes excluded).
    pub fn backends(&self) -> Vec<PgBackend> {
        self.postmaster_children()
            .into_iter()
            .filter_map(|pid| {
                let title = cmdline(pid)?;
                parse_backend_title(&title).map(|client_port| PgBackend {
                    pid,
                    title,
                    client_port,
                })
            })
            .collect()
    }

    /// The backend serving the TCP client whose local port is `client_port`, polled briefly
    /// (the title is set once the backend has authenticated the client).
    pub fn backend_for_client_port(&self, client_port: u16) -> Result<u32> {
        poll_until(
            &format!("a postgres backend for client port {client_port}"),
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                Ok(self
                    .backends()
                    .into_iter()
                    .find(|b| b.client_port == Some(client_port))
                    .map(|b| b.pid))
            },
        )
    }

    /// A `psql` command connecting over TCP to `127.0.0.1` as [`USER`] with its password
    /// (`PGPASSWORD`) to [`DATABASE`]; `sslmode` is libpq's default `prefer` (an SSLRequest
    /// answered `N`). Add `-c SQL`, `-f FILE`, or stdin. Runs `-X` (no psqlrc) with
    /// `ON_ERROR_STOP=1`.
    pub fn psql(&self) -> Command {
        self.psql_as(USER, PASSWORD)
    }

    /// As [`psql`](Self::psql) for another user/password (e.g. [`CLEARTEXT_USER`]).
    pub fn psql_as(&self, user: &str, password: &str) -> Command {
        let mut c = self.client_command("psql");
        c.args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", user, "-d", DATABASE])
            .env("PGPASSWORD", password);
        c
    }

    /// A `psql` command over the Unix socket as [`USER`] (SCRAM over the socket).
    pub fn psql_socket(&self) -> Command {
        let mut c = self.client_command("psql");
        c.args(["-X", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", USER, "-d", DATABASE])
            .env("PGPASSWORD", PASSWORD);
        c
    }

    /// A command for one of the server's client binaries (`psql`, `pgbench`, ...) from
    /// [`bin_dir`](Self::bin_dir), with every `PG*` variable of the environment removed and
    /// `PGGSSENCMODE=disable` and no password file.
    pub fn client_command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin_dir.join(program));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PG") {
                c.env_remove(k);
            }
        }
        c.env("PGGSSENCMODE", "disable")
            // A path that does not exist: no ~/.pgpass is read (libpq warns about /dev/null).
            .env("PGPASSFILE", self.dir.join("no-pgpass"))
            .env("PGCONNECT_TIMEOUT", "10");
        c
    }

    /// libpq keyword/value connection string over TCP as [`USER`], e.g.
    /// `host=127.0.0.1 port=5433 dbname=e2e user=e2e password=... sslmode=prefer
    /// gssencmode=disable`.
    pub fn dsn(&self) -> String {
        self.dsn_as(USER, PASSWORD)
    }

    /// As [`dsn`](Self::dsn) for another user.
    pub fn dsn_as(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={DATABASE} user={user} password={password} \
             sslmode=prefer gssencmode=disable connect_timeout=10",
            self.port
        )
    }

    /// Runs SQL as the superuser `postgres` over the Unix socket in `database` (setup, not a
    /// traced-query assertion); returns unaligned, tuples-only output.
    pub fn admin_sql(&self, database: &str, sql: &str) -> Result<String> {
        let mut c = self.client_command("psql");
        c.args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            database,
        ])
        .arg("-h")
        .arg(&self.socket_dir)
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-c")
        .arg(sql);
        run_capture(c)
    }

    /// The server log so far (`log_statement`, connections, errors).
    pub fn log_text(&self) -> Result<String> {
        std::fs::read_to_string(&self.log).context("postgres log")
    }

    /// Statements the server logged (needs [`PgOptions::log_statements`]) as
    /// `(backend pid, text)`, in order, e.g. `(4242, "statement: SELECT 1")` or
    /// `(4242, "execute s1: SELECT ... $1")`.
    pub fn logged_statements(&self) -> Result<Vec<(u32, String)>> {
        Ok(parse_statement_log(&self.log_text()?))
    }

    /// Stops the server now (fast shutdown; also done on drop).
    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

impl super::Server for Postgres {
    fn label(&self) -> String {
        format!("postgres {} 127.0.0.1:{}", self.version, self.port)
    }
    fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.pid()];
        v.extend(self.postmaster_children());
        v
    }
    fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }
    fn stop(&mut self) {
        self.guard.stop();
    }
}

/// `Some(client port)` for a backend title (`None` inside for `[local]`), `None` for auxiliary
/// processes. Titles: `postgres: <user> <db> <host>(<port>) <activity>` or
/// `postgres: <user> <db> [local] <activity>`.
fn parse_backend_title(title: &str) -> Option<Option<u16>> {
    let rest = title.strip_prefix("postgres: ")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let host = words.get(2)?;
    if *host == "[local]" {
        return Some(None);
    }
    let (_, port) = host.strip_suffix(')')?.rsplit_once('(')?;
    Some(Some(port.parse().ok()?))
}

/// `(pid, message)` of `statement:` / `execute ...:` log lines (prefix `%m [%p] %u@%d `).
fn parse_statement_log(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once(" [") else {
            continue;
        };
        let Some((pid, rest)) = rest.split_once("] ") else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let Some((_, msg)) = rest.split_once("LOG:  ") else {
            continue;
        };
        if msg.starts_with("statement: ") || msg.starts_with("execute ") {
            out.push((pid, msg.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_titles() {
        assert_eq!(
            parse_backend_title("postgres: e2e e2e 127.0.0.1(51234) idle"),
            Some(Some(51234))
        );
        assert_eq!(
            parse_backend_title("postgres: e2e e2e ::1(40000) SELECT"),
            Some(Some(40000))
        );
        assert_eq!(
            parse_backend_title("postgres: e2e e2e [local] idle"),
            Some(None)
        );
        assert_eq!(parse_backend_title("postgres: checkpointer "), None);
        assert_eq!(
            parse_backend_title("postgres: logical replication launcher"),
            None
        );
        assert_eq!(
            parse_backend_title("/usr/lib/postgresql/15/bin/postgres -D x"),
            None
        );
    }

    #[test]
    fn statement_log_lines() {
        let log = "2026-11-28 04:00:00.123 UTC [4242] e2e@e2e LOG:  statement: SELECT 1\n\
                   2026-11-28 04:00:00.124 UTC [4242] e2e@e2e LOG:  execute s1: SELECT $1\n\
                   2026-11-28 04:00:00.125 UTC [4242] e2e@e2e DETAIL:  parameters: $1 = '1'\n\
                   2026-11-28 04:00:00.126 UTC [4243] e2e@e2e LOG:  connection authorized: user=e2e\n";
        assert_eq!(
            parse_statement_log(log),
            [
                (4242, "statement: SELECT 1".to_string()),
                (4242, "execute s1: SELECT $1".to_string())
            ]
        );
    }
}
