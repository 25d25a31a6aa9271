//! A private MariaDB server on loopback: own datadir, port and Unix socket.
//!
//! `mariadb-install-db` initialises the datadir (about half a second), `mariadbd` runs in its own
//! process group, readiness is a real client round trip over the socket. Root logs in through
//! `unix_socket` authentication (the harness runs as root); tests use the `e2e`/`e2e` password
//! account so the handshake is a normal `mysql_native_password` exchange.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::process::{Output, ProcessGuard, is_root, poll_until, run_capture};

pub const USER: &str = "e2e";
pub const PASSWORD: &str = "e2e";
/// Database created for the tests (also the default database of the clients).
pub const DATABASE: &str = "e2e";
/// A second database, for database-switch tests.
pub const OTHER_DATABASE: &str = "other";

/// SQL run once after start: accounts, databases and tables the tests use.
const SETUP_SQL: &str = "
CREATE USER IF NOT EXISTS 'e2e'@'%' IDENTIFIED BY 'e2e';
CREATE USER IF NOT EXISTS 'e2e'@'localhost' IDENTIFIED BY 'e2e';
GRANT ALL PRIVILEGES ON *.* TO 'e2e'@'%';
GRANT ALL PRIVILEGES ON *.* TO 'e2e'@'localhost';
CREATE DATABASE IF NOT EXISTS e2e;
CREATE DATABASE IF NOT EXISTS other;
USE e2e;
CREATE TABLE IF NOT EXISTS e2e.t1 (id INT PRIMARY KEY, name VARCHAR(64), score DOUBLE);
INSERT IGNORE INTO e2e.t1 VALUES (1, 'alice', 1.5), (2, 'bob', 2.5), (3, 'carol', 3.5);
CREATE TABLE IF NOT EXISTS e2e.t2 (id INT PRIMARY KEY, t1_id INT, note TEXT);
INSERT IGNORE INTO e2e.t2 VALUES (10, 1, 'first'), (20, 2, 'second');
CREATE TABLE IF NOT EXISTS e2e.load_marker (id INT PRIMARY KEY);
INSERT IGNORE INTO e2e.load_marker SELECT seq FROM seq_1_to_100;
CREATE TABLE IF NOT EXISTS other.t3 (id INT PRIMARY KEY, v VARCHAR(16));
INSERT IGNORE INTO other.t3 VALUES (1, 'x');
";

/// A running MariaDB server; stopped (SIGTERM to its process group) on drop.
pub struct MariaDb {
    pub dir: PathBuf,
    pub port: u16,
    pub socket: PathBuf,
    guard: ProcessGuard,
}

impl MariaDb {
    /// Initialises `dir/data` and starts `mariadbd` on `127.0.0.1:port` and `dir/mysqld.sock`.
    pub fn start(dir: &Path, port: u16, output: Output) -> Result<MariaDb> {
        MariaDb::start_with(dir, port, output, false)
    }

    /// As [`start`](Self::start); with `general_log` the server logs every command it receives
    /// to `dir/general.log` (ground truth for what a client really sent, see
    /// [`general_log_commands`](Self::general_log_commands)).
    pub fn start_with(dir: &Path, port: u16, output: Output, general_log: bool) -> Result<MariaDb> {
        MariaDb::start_inner(dir, port, output, general_log, None)
    }

    /// As [`start`](Self::start), with `pam_d` bind-mounted over `/etc/pam.d` for the server
    /// alone (a private mount namespace: `unshare -m`, the host's `/etc` is untouched), so a
    /// test can create accounts `IDENTIFIED VIA pam USING '<service>'` (after `INSTALL SONAME
    /// 'auth_pam'`) checked by a PAM service file of its own. Clients then send the password
    /// in clear (the `dialog` plugin).
    pub fn start_with_pam(dir: &Path, port: u16, output: Output, pam_d: &Path) -> Result<MariaDb> {
        MariaDb::start_inner(dir, port, output, false, Some(pam_d))
    }

    fn start_inner(
        dir: &Path,
        port: u16,
        output: Output,
        general_log: bool,
        pam_d: Option<&Path>,
    ) -> Result<MariaDb> {
        let data = dir.join("data");
        if !data.join("mysql").is_dir() {
            std::fs::create_dir_all(&data)?;
            let mut install = Command::new("mariadb-install-db");
            install
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg("--auth-root-authentication-method=socket")
                .arg("--skip-test-db");
            if is_root() {
                install.arg("--user=root");
            }
            run_capture(install).context("mariadb-install-db failed")?;
        }
        let socket = dir.join("mysqld.sock");
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--max-connections=200");
        if is_root() {
            cmd.arg("--user=root");
        }
        if general_log {
            cmd.arg("--general-log=1").arg(format!(
                "--general-log-file={}",
                dir.join("general.log").display()
            ));
        }
        if let Some(pam_d) = pam_d {
            // unshare and sh exec in place: the guard's pid is still mariadbd's.
            let mut wrapped = Command::new("unshare");
            wrapped
                .args(["-m", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$0\" /etc/pam.d && exec \"$@\"")
                .arg(pam_d)
                .arg("mariadbd")
                .args(cmd.get_args());
            cmd = wrapped;
        }
        let guard =
            ProcessGuard::spawn("mariadbd", cmd, output)?.with_grace(Duration::from_secs(20));
        let mut db = MariaDb {
            dir: dir.to_path_buf(),
            port,
            socket,
            guard,
        };
        db.wait_ready()?;
        db.root_sql(SETUP_SQL)
            .context("creating test accounts and tables")?;
        Ok(db)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let socket = self.socket.clone();
        let guard = &mut self.guard;
        poll_until(
            "mariadbd to accept connections",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                guard.ensure_running()?;
                let mut c = Command::new("mariadb");
                c.arg("--no-defaults")
                    .arg("-uroot")
                    .arg("-S")
                    .arg(&socket)
                    .arg("-e")
                    .arg("SELECT 1");
                Ok(c.output().ok().filter(|o| o.status.success()).map(|_| ()))
            },
        )
    }

    /// The server's pid (the process that produces SERVER spans).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Runs SQL as root over the Unix socket (setup, not a traced-query assertion).
    pub fn root_sql(&self, sql: &str) -> Result<String> {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg("-uroot")
            .arg("-S")
            .arg(&self.socket)
            .arg("-N")
            .arg("-B")
            .arg("-e")
            .arg(sql);
        run_capture(c)
    }

    /// A `mariadb` CLI command connecting over TCP as the test user (add `-e SQL` or stdin).
    pub fn cli_tcp(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg("--protocol=tcp")
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-P")
            .arg(self.port.to_string())
            .arg(format!("-u{USER}"))
            .arg(format!("-p{PASSWORD}"));
        c
    }

    /// A `mariadb` CLI command connecting over the Unix socket as the test user.
    pub fn cli_socket(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg("--protocol=socket")
            .arg("-S")
            .arg(&self.socket)
            .arg(format!("-u{USER}"))
            .arg(format!("-p{PASSWORD}"));
        c
    }

    /// `(command, argument)` pairs the server logged for one connection, in order, e.g.
    /// `("Prepare", "SELECT ... = ?")`, `("Execute", "SELECT ... = 1")`, `("Close stmt", "")`.
    /// Needs `general_log`.
    pub fn general_log_commands(&self, connection_id: u64) -> Result<Vec<(String, String)>> {
        let text = std::fs::read_to_string(self.dir.join("general.log")).context("general log")?;
        Ok(parse_general_log(&text, connection_id))
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&mut self) {
        self.guard.stop();
    }

    pub fn log_tail(&self) -> String {
        self.guard.log_tail(30)
    }
}

impl super::Server for MariaDb {
    fn label(&self) -> String {
        format!("mariadbd 127.0.0.1:{}", self.port)
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

/// Commands of one connection in MariaDB's general query log.
pub fn parse_general_log(text: &str, connection_id: u64) -> Vec<(String, String)> {
    {
        let mut out = Vec::new();
        for line in text.lines() {
            // `[yymmdd hh:mm:ss]\t<spaces><id> <Command>\t<argument>`: the first tab-separated
            // field is the timestamp or empty, the second `<id> <Command>` (continuation lines
            // of a multi-line argument have no such field and are skipped).
            let fields: Vec<&str> = line.split('\t').collect();
            let Some(i) = (1..fields.len()).find(|&i| {
                fields[i]
                    .trim_start()
                    .split_once(' ')
                    .is_some_and(|(id, _)| id.parse::<u64>().is_ok())
            }) else {
                continue;
            };
            let Some((id, cmd)) = fields[i].trim_start().split_once(' ') else {
                continue;
            };
            if id.parse::<u64>().ok() == Some(connection_id) {
                out.push((cmd.trim().to_string(), fields[i + 1..].join("\t")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_log_lines_are_split_per_connection() {
        let log = "/usr/sbin/mariadbd, Version: 10.11.19. started with:\n\
Time\t\t    Id Command\tArgument\n\
261124 23:14:05\t     4 Connect\te2e@localhost on e2e using TCP/IP\n\
\t\t     4 Prepare\tSELECT name FROM t1 WHERE id = ?\n\
\t\t     5 Query\tSELECT 1\n\
\t\t     4 Execute\tSELECT name FROM t1 WHERE id = 1\n\
\t\t     4 Close stmt\t\n";
        let cmds = parse_general_log(log, 4);
        let names: Vec<&str> = cmds.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["Connect", "Prepare", "Execute", "Close stmt"]);
        assert_eq!(cmds[1].1, "SELECT name FROM t1 WHERE id = ?");
        assert_eq!(
            parse_general_log(log, 5),
            [("Query".to_string(), "SELECT 1".to_string())]
        );
    }
}
