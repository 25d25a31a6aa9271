//! A private DNS server: `dnsmasq` (Debian `dnsmasq-base`, no system service) in the
//! foreground on a loopback address such as `127.77.0.1`, **port 53** (glibc's resolv.conf
//! cannot name a port), UDP and TCP, authoritative for [`DOMAIN`] only.
//!
//! Records (`--local=/e2e.test/`: any other name under the domain is NXDOMAIN; names outside it
//! are REFUSED, there is no upstream):
//!
//! | name | answer |
//! |---|---|
//! | [`WEB`] | A [`WEB_V4`], AAAA [`WEB_V6`] |
//! | [`V4ONLY`] | A [`V4ONLY_V4`]; AAAA is NOERROR with no answer |
//! | [`ALIAS`] | CNAME [`WEB`] (+ its A/AAAA) |
//! | [`TXT`] | TXT [`TXT_VALUE`] |
//! | [`MANY`] | [`MANY_COUNT`] A records `10.2.0.1..`: over UDP without EDNS (glibc's default) the answer is truncated (TC), so glibc retries over TCP |
//! | [`NXDOMAIN`] | NXDOMAIN |
//!
//! dnsmasq answers UDP in its main process ([`Dnsmasq::pid`]) and **forks a child per TCP
//! connection**: SERVER spans of TCP queries carry that short-lived child's pid, which the
//! query log records ([`Dnsmasq::query_log`]).
//!
//! [`Dnsmasq::in_resolver_ns`] wraps a command so that it runs in a private mount namespace
//! whose `/etc/resolv.conf` (a bind mount of a scratch file) names this server: the host's file
//! is never touched, and `socket.getaddrinfo` in Python (glibc's stub resolver) asks dnsmasq.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::process::{Output, ProcessGuard, poll_until, wait_tcp};

pub const DOMAIN: &str = "e2e.test";
pub const WEB: &str = "web.e2e.test";
pub const WEB_V4: &str = "10.1.2.3";
pub const WEB_V6: &str = "fd00::1:2:3";
pub const V4ONLY: &str = "v4only.e2e.test";
pub const V4ONLY_V4: &str = "10.1.2.4";
pub const ALIAS: &str = "alias.e2e.test";
pub const TXT: &str = "txt.e2e.test";
pub const TXT_VALUE: &str = "e2e-txt-record";
pub const MANY: &str = "many.e2e.test";
pub const MANY_COUNT: u8 = 60;
pub const NXDOMAIN: &str = "missing.e2e.test";
/// The address tried first; the next ones (`127.77.0.2`, ...) when it is taken.
pub const DEFAULT_ADDR: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

/// Start options.
#[derive(Clone, Debug)]
pub struct DnsOptions {
    /// Listen address; `None`: the first free of `127.77.0.1..=127.77.0.50` on `port`.
    pub addr: Option<Ipv4Addr>,
    /// 53 for glibc clients ([`Dnsmasq::in_resolver_ns`]); any port works for `dig -p`.
    pub port: u16,
    /// Extra dnsmasq arguments (more records, e.g. `--host-record=x.e2e.test,10.0.0.9`).
    pub extra_args: Vec<String>,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            addr: None,
            port: 53,
            extra_args: Vec::new(),
        }
    }
}

/// A query dnsmasq logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQueryLog {
    /// The dnsmasq process that answered (a forked child for TCP).
    pub pid: u32,
    /// `A`, `AAAA`, `TXT`, ...
    pub qtype: String,
    pub name: String,
    /// The client's address.
    pub from: String,
}

/// A running dnsmasq; stopped (SIGTERM to its process group, TCP children included) on drop.
pub struct Dnsmasq {
    pub dir: PathBuf,
    pub addr: Ipv4Addr,
    pub port: u16,
    guard: ProcessGuard,
}

fn addr_free(addr: Ipv4Addr, port: u16) -> bool {
    UdpSocket::bind((addr, port)).is_ok() && TcpListener::bind((addr, port)).is_ok()
}

impl Dnsmasq {
    pub fn start(dir: &Path) -> Result<Dnsmasq> {
        Dnsmasq::start_with(dir, &DnsOptions::default())
    }

    /// Starts dnsmasq (query log `dir/dnsmasq.log`) and waits until it answers a UDP query and
    /// accepts TCP. Port 53 needs root (CAP_NET_BIND_SERVICE).
    pub fn start_with(dir: &Path, opts: &DnsOptions) -> Result<Dnsmasq> {
        std::fs::create_dir_all(dir)?;
        let port = opts.port;
        let addr = match opts.addr {
            Some(a) => a,
            None => (1..=50)
                .map(|i| Ipv4Addr::new(127, 77, 0, i))
                .find(|a| addr_free(*a, port))
                .with_context(|| {
                    format!("no free address in 127.77.0.1..=127.77.0.50 on port {port}")
                })?,
        };
        let log = dir.join("dnsmasq.log");
        let mut cmd = Command::new("dnsmasq");
        cmd.arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg("--no-poll")
            .arg("--bind-interfaces")
            .arg(format!("--listen-address={addr}"))
            .arg(format!("--port={port}"))
            .arg("--user=root")
            .arg("--pid-file=")
            .arg("--log-queries")
            .arg(format!("--log-facility={}", log.display()))
            .arg(format!("--local=/{DOMAIN}/"))
            .arg(format!("--host-record={WEB},{WEB_V4},{WEB_V6}"))
            .arg(format!("--host-record={V4ONLY},{V4ONLY_V4}"))
            .arg(format!("--cname={ALIAS},{WEB}"))
            .arg(format!("--txt-record={TXT},{TXT_VALUE}"));
        for i in 1..=MANY_COUNT {
            cmd.arg(format!("--address=/{MANY}/10.2.0.{i}"));
        }
        cmd.args(&opts.extra_args);
        let mut guard = ProcessGuard::spawn("dnsmasq", cmd, Output::File(dir.join("dnsmasq.out")))?
            .with_grace(Duration::from_secs(5));
        let server = SocketAddr::from((addr, port));
        wait_tcp("dnsmasq to accept TCP", server, &mut guard)?;
        poll_until(
            "dnsmasq to answer a UDP query",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                guard.ensure_running()?;
                Ok(udp_query_rcode(server, WEB, 1)
                    .ok()
                    .filter(|r| *r == 0)
                    .map(|_| ()))
            },
        )?;
        Ok(Dnsmasq {
            dir: dir.to_path_buf(),
            addr,
            port,
            guard,
        })
    }

    /// The main dnsmasq process (answers UDP; TCP is answered by forked children).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// `addr:port`.
    pub fn server(&self) -> SocketAddr {
        SocketAddr::from((self.addr, self.port))
    }

    /// Queries logged so far (`--log-queries`), in order.
    pub fn query_log(&self) -> Result<Vec<DnsQueryLog>> {
        let text = std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default();
        Ok(parse_query_log(&text))
    }

    /// Writes (once per option set) a resolv.conf naming this server, with `options attempts:1
    /// timeout:2` plus `options` (e.g. `use-vc` for TCP only, `edns0`), and returns its path.
    pub fn resolv_conf(&self, options: &[&str]) -> Result<PathBuf> {
        if self.port != 53 {
            bail!(
                "glibc's resolver only talks to port 53; this dnsmasq listens on {}",
                self.port
            );
        }
        let mut opts = vec!["attempts:1", "timeout:2"];
        opts.extend_from_slice(options);
        let name = format!("resolv-{}.conf", opts.join("_").replace([':', '/'], "-"));
        let path = self.dir.join(name);
        std::fs::write(
            &path,
            format!(
                "# Written by the integration harness (bind-mounted in a private mount namespace).\n\
                 nameserver {}\noptions {}\n",
                self.addr,
                opts.join(" ")
            ),
        )?;
        Ok(path)
    }

    /// `cmd` wrapped to run in a private mount namespace where `/etc/resolv.conf` is
    /// [`resolv_conf(options)`](Self::resolv_conf): `unshare --mount` (no fork) → `sh`
    /// bind-mounts the file and `exec`s the program, so the wrapped command keeps the pid
    /// the caller sees. Program, arguments, environment changes and working directory are
    /// carried over. Needs root (CAP_SYS_ADMIN).
    pub fn in_resolver_ns(&self, cmd: &Command, options: &[&str]) -> Result<Command> {
        let conf = self.resolv_conf(options)?;
        let mut w = Command::new("unshare");
        w.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
            .arg(&conf)
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => w.env(k, v),
                None => w.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            w.current_dir(d);
        }
        Ok(w)
    }

    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

impl super::Server for Dnsmasq {
    fn label(&self) -> String {
        format!("dnsmasq {}", self.server())
    }
    fn pids(&self) -> Vec<u32> {
        crate::process::group_members(self.pid())
    }
    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        format!(
            "{}\n{}",
            v[v.len().saturating_sub(lines)..].join("\n"),
            self.guard.log_tail(lines)
        )
    }
    fn stop(&mut self) {
        self.guard.stop();
    }
}

/// `dnsmasq[<pid>]: query[<type>] <name> from <addr>` lines.
fn parse_query_log(text: &str) -> Vec<DnsQueryLog> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, rest)) = line.split_once("dnsmasq[") else {
            continue;
        };
        let Some((pid, rest)) = rest.split_once("]: query[") else {
            continue;
        };
        let Some((qtype, rest)) = rest.split_once("] ") else {
            continue;
        };
        let Some((name, from)) = rest.split_once(" from ") else {
            continue;
        };
        let Ok(pid) = pid.parse() else {
            continue;
        };
        out.push(DnsQueryLog {
            pid,
            qtype: qtype.to_string(),
            name: name.to_string(),
            from: from.trim().to_string(),
        });
    }
    out
}

/// A minimal DNS query message (RFC 1035 §4.1): header with RD, one question of `qtype`, IN.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// Sends one UDP query and returns the response code (0 NOERROR, 3 NXDOMAIN, 5 REFUSED).
pub fn udp_query_rcode(server: SocketAddr, name: &str, qtype: u16) -> Result<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    sock.send_to(&build_query(id, name, qtype), server)?;
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf)?;
    let resp = buf.get(..n).unwrap_or_default();
    if resp.len() < 12 || resp[..2] != id.to_be_bytes() || resp[2] & 0x80 == 0 {
        bail!("not a response to our query: {resp:02x?}");
    }
    Ok(resp[3] & 0x0f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_wire_format() {
        let q = build_query(0x1234, "web.e2e.test", 28);
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x03web\x03e2e\x04test\x00\x00\x1c\x00\x01");
    }

    #[test]
    fn query_log_lines() {
        let log = "Nov 28 04:09:33 dnsmasq[15324]: query[A] web.e2e.test from 127.0.0.1\n\
                   Nov 28 04:09:33 dnsmasq[15324]: config web.e2e.test is 10.1.2.3\n\
                   Nov 28 04:09:33 dnsmasq[15387]: query[AAAA] missing.e2e.test from 127.0.0.1\n";
        let q = parse_query_log(log);
        assert_eq!(q.len(), 2);
        assert_eq!(
            q[1],
            DnsQueryLog {
                pid: 15387,
                qtype: "AAAA".into(),
                name: "missing.e2e.test".into(),
                from: "127.0.0.1".into()
            }
        );
    }
}
