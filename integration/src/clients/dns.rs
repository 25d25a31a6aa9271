//! DNS clients: `dig` (UDP, or TCP with `+tcp`) and `clients/resolve.py` (glibc's stub resolver
//! through `socket.getaddrinfo`, run in a mount namespace whose resolv.conf names the test
//! dnsmasq).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::{ClientRun, PlanRun, python, run, run_plan};
use crate::servers::dnsmasq::Dnsmasq;

/// `dig` options.
#[derive(Clone, Debug, Default)]
pub struct DigOptions {
    /// `+tcp`: the query over TCP (2-byte length prefix).
    pub tcp: bool,
    /// `+noedns`: no OPT record (a large answer then comes back truncated over UDP; dig then
    /// retries over TCP unless `+ignore`).
    pub noedns: bool,
    /// Extra `+options` or arguments.
    pub extra: Vec<String>,
}

/// One answer record, as dig prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigAnswer {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// A finished dig run.
#[derive(Clone, Debug)]
pub struct DigRun {
    pub run: ClientRun,
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ... (from the `->>HEADER<<-` line).
    pub status: String,
    /// The DNS message id (the span's key to match a query with its response).
    pub id: u16,
    /// Header flags, e.g. `["qr", "aa", "rd", "ra"]` (`tc` when truncated).
    pub flags: Vec<String>,
    pub answers: Vec<DigAnswer>,
    /// `;; Query time: N msec`.
    pub query_time_ms: Option<u64>,
    /// `(UDP)` or `(TCP)` from the `;; SERVER:` line.
    pub transport: String,
}

impl DigRun {
    pub fn pid(&self) -> u32 {
        self.run.pid
    }
}

/// Runs `dig @server -p port qname qtype +tries=1 +time=3 [+tcp]`.
pub fn dig(
    dir: &Path,
    name: &str,
    server: SocketAddr,
    qname: &str,
    qtype: &str,
    opts: &DigOptions,
) -> Result<DigRun> {
    let mut c = Command::new("dig");
    c.arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .arg(qname)
        .arg(qtype)
        .args(["+tries=1", "+time=3"]);
    if opts.tcp {
        c.arg("+tcp");
    }
    if opts.noedns {
        c.arg("+noedns");
    }
    c.args(&opts.extra);
    let r = run(dir, name, c)?;
    r.ensure_success()?;
    parse_dig(r)
}

fn parse_dig(run: ClientRun) -> Result<DigRun> {
    let text = run.stdout.clone();
    let header = text
        .lines()
        .find(|l| l.contains("->>HEADER<<-"))
        .with_context(|| format!("no header in dig output:\n{text}"))?;
    let field = |key: &str| -> Option<String> {
        header
            .split(", ")
            .find_map(|p| p.split_once(key).map(|(_, v)| v.trim().to_string()))
    };
    let status = field("status: ").context("dig status")?;
    let id: u16 = field("id: ")
        .and_then(|v| v.parse().ok())
        .context("dig id")?;
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .map(|l| {
            l.split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in text.lines() {
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() || line.starts_with(";;") {
                in_answer = false;
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                answers.push(DigAnswer {
                    name: f[0].trim_end_matches('.').to_string(),
                    ttl: f[1].parse().unwrap_or(0),
                    rtype: f[3].to_string(),
                    data: f[4..].join(" "),
                });
            }
        }
    }
    let query_time_ms = text
        .lines()
        .find_map(|l| l.strip_prefix(";; Query time: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    let transport = text
        .lines()
        .find(|l| l.starts_with(";; SERVER:"))
        .and_then(|l| l.rsplit_once('('))
        .map(|(_, t)| t.trim_end_matches(')').to_string())
        .unwrap_or_default();
    Ok(DigRun {
        run,
        status,
        id,
        flags,
        answers,
        query_time_ms,
        transport,
    })
}

/// Address family for [`getaddrinfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `AF_UNSPEC`: A and AAAA questions together.
    Any,
    Inet,
    Inet6,
}

/// Runs `clients/resolve.py` inside `dns`'s resolver namespace: one `resolve` record per name
/// (name, addresses, error = `EAI_NONAME` for NXDOMAIN, times). `resolv_options` go to the
/// resolv.conf `options` line (e.g. `"use-vc"` for TCP only, `"edns0"`). The pid is the Python
/// process's (the namespace wrapper `exec`s it).
pub fn getaddrinfo(
    dir: &Path,
    name: &str,
    dns: &Dnsmasq,
    names: &[&str],
    family: Family,
    resolv_options: &[&str],
) -> Result<PlanRun> {
    let fam = match family {
        Family::Any => "any",
        Family::Inet => "inet",
        Family::Inet6 => "inet6",
    };
    let cmd = dns.in_resolver_ns(&python("resolve.py"), resolv_options)?;
    let run = run_plan(dir, name, cmd, &json!({ "names": names, "family": fam }))?;
    if run.connected.is_none() {
        bail!("resolve.py printed no `connected` line: {}", run.run.stderr);
    }
    Ok(run)
}

/// Runs `clients/dns_load.py`: `count` distinct A questions `q<i>.<domain>` over one
/// unconnected UDP socket (sendto/recvfrom) to `dns`, at most `window` in flight. Its `load`
/// record carries `answered` and `errors`; the pid is the one socket's owner.
pub fn udp_load(
    dir: &Path,
    name: &str,
    dns: &Dnsmasq,
    domain: &str,
    count: u64,
    window: u32,
) -> Result<PlanRun> {
    let plan = json!({
        "server": dns.addr.to_string(),
        "port": dns.port,
        "domain": domain,
        "count": count,
        "window": window,
        "timeout_s": 5,
    });
    let run = run_plan(dir, name, python("dns_load.py"), &plan)?;
    if run.of_kind("load").len() != 1 {
        bail!("dns_load.py printed no `load` record: {}", run.run.stderr);
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dig_output() {
        let out = "\n; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.77.0.1 web.e2e.test A\n\
;; Got answer:\n\
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 29558\n\
;; flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1\n\
\n\
;; QUESTION SECTION:\n\
;web.e2e.test.\t\t\tIN\tA\n\
\n\
;; ANSWER SECTION:\n\
web.e2e.test.\t\t0\tIN\tA\t10.1.2.3\n\
\n\
;; Query time: 0 msec\n\
;; SERVER: 127.77.0.1#53(127.77.0.1) (UDP)\n";
        let status = {
            use std::os::unix::process::ExitStatusExt as _;
            std::process::ExitStatus::from_raw(0)
        };
        let run = ClientRun {
            name: "dig".into(),
            pid: 1,
            status,
            stdout: out.into(),
            stderr: String::new(),
            start_unix_ns: 0,
            end_unix_ns: 0,
        };
        let d = parse_dig(run).expect("parse");
        assert_eq!(d.status, "NOERROR");
        assert_eq!(d.id, 29558);
        assert_eq!(d.flags, ["qr", "aa", "rd", "ra"]);
        assert_eq!(
            d.answers,
            [DigAnswer {
                name: "web.e2e.test".into(),
                ttl: 0,
                rtype: "A".into(),
                data: "10.1.2.3".into()
            }]
        );
        assert_eq!(d.query_time_ms, Some(0));
        assert_eq!(d.transport, "UDP");
    }
}
