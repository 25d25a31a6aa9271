//! The benchmark's workloads: a real server on loopback and a real load generator, in two modes.
//!
//! | workload | server | closed loop (maximum throughput) | open loop (fixed rate) |
//! |---|---|---|---|
//! | `nginx` | nginx, one process, 1 KiB static file, keep-alive | `wrk -t1 -c16` | `loadgen --proto http`, 16 connections |
//! | `redis` | redis-server | `redis-benchmark -t set,get -c 50 -r 10000` | `loadgen --proto redis`, 16 connections |
//! | `redis-p16` | redis-server | the same with `-P 16` | — (pipelining has no per-request schedule) |
//! | `mysql-point-select` | mariadbd | `sysbench oltp_point_select --threads=8` (one query per event) | `--rate` |
//! | `mysql-read-write` | mariadbd | `sysbench oltp_read_write --threads=4` (18 queries per event) | `--rate` |
//! | `pgbench` | postgres (a backend per connection) | `pgbench -S -c 8 -j 2` | `-R` with a per-transaction log |
//! | `mixed` | redis-server + `iperf3 -s` | redis as `redis`, plus `iperf3 -c … -b <bulk>` bulk TCP on loopback during the run (iperf3's CPU is reported apart) | the same with `loadgen` |
//!
//! A "request" is what one span stands for: an HTTP request, a Redis command, an SQL statement
//! (sysbench's queries, BEGIN/COMMIT included; pgbench's transactions are one statement). The
//! open-loop latency is per operation of the tool: an HTTP request or command for `loadgen`, a
//! sysbench event, a pgbench transaction; every tool measures it from the scheduled start
//! (loadgen and pgbench by design, sysbench's `--rate` queue time included).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::hist::Histogram;
use crate::paths;
use crate::process::{Output, ProcessGuard, free_port, wait_tcp};
use crate::servers::mariadb::MariaDb;
use crate::servers::nginx::{self, Nginx};
use crate::servers::postgres::{self as pgs, Postgres};
use crate::servers::redis::Redis;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    Nginx,
    Redis,
    RedisP16,
    MysqlPointSelect,
    MysqlReadWrite,
    Pgbench,
    Mixed,
}

impl Workload {
    pub const ALL: &'static [Workload] = &[
        Workload::Nginx,
        Workload::Redis,
        Workload::RedisP16,
        Workload::MysqlPointSelect,
        Workload::MysqlReadWrite,
        Workload::Pgbench,
        Workload::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Nginx => "nginx",
            Workload::Redis => "redis",
            Workload::RedisP16 => "redis-p16",
            Workload::MysqlPointSelect => "mysql-point-select",
            Workload::MysqlReadWrite => "mysql-read-write",
            Workload::Pgbench => "pgbench",
            Workload::Mixed => "mixed",
        }
    }

    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.iter().copied().find(|w| w.name() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Workload::Nginx => {
                "nginx (1 process) + wrk -t1 -c16, GET 1 KiB static file, keep-alive"
            }
            Workload::Redis => "redis-server + redis-benchmark -t set,get -c 50, no pipelining",
            Workload::RedisP16 => "redis-server + redis-benchmark -t set,get -c 50 -P 16",
            Workload::MysqlPointSelect => {
                "mariadbd + sysbench oltp_point_select --threads=8 (1 query per event)"
            }
            Workload::MysqlReadWrite => {
                "mariadbd + sysbench oltp_read_write --threads=4 (18 queries per event)"
            }
            Workload::Pgbench => "postgres + pgbench -S -c 8 -j 2 (simple protocol)",
            Workload::Mixed => {
                "redis (as `redis`) + iperf3 bulk TCP on loopback (no supported protocol)"
            }
        }
    }

    /// Whether an open-loop (fixed-rate) mode exists.
    pub fn has_open_loop(self) -> bool {
        self != Workload::RedisP16
    }

    /// The protocol tshark is told to decode on the server port (`-d tcp.port==P,<this>`),
    /// its display filter and the fields it prints.
    pub fn tshark_decode(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Workload::Nginx => (
                "http",
                "http",
                &[
                    "http.request.method",
                    "http.request.uri",
                    "http.response.code",
                ],
            ),
            Workload::Redis | Workload::RedisP16 | Workload::Mixed => {
                ("resp", "resp", &["resp.bulk_string.value", "resp.string"])
            }
            Workload::MysqlPointSelect | Workload::MysqlReadWrite => (
                "mysql",
                "mysql",
                &["mysql.command", "mysql.query", "mysql.exec_flags"],
            ),
            Workload::Pgbench => ("pgsql", "pgsql", &["pgsql.type", "pgsql.query"]),
        }
    }
}

/// The servers, started on first use and kept for the whole benchmark.
#[derive(Default)]
pub struct Servers {
    pub dir: PathBuf,
    nginx: Option<Nginx>,
    redis: Option<Redis>,
    mariadb: Option<MariaDb>,
    postgres: Option<Postgres>,
    iperf: Option<(ProcessGuard, u16)>,
}

/// The server side of one workload: where to connect and which processes serve.
#[derive(Clone, Debug)]
pub struct Target {
    pub port: u16,
    /// Roots of the serving process trees (CPU is summed over them and their descendants).
    pub pids: Vec<u32>,
    /// The iperf3 server port of the mixed workload.
    pub bulk_port: Option<u16>,
    /// The iperf3 server (its CPU is reported apart from the workload's server).
    pub bulk_pids: Vec<u32>,
    /// The server forks a process per connection (PostgreSQL): a pid list cannot name them.
    pub forks_per_connection: bool,
}

impl Servers {
    pub fn new(dir: &Path) -> Servers {
        Servers {
            dir: dir.to_path_buf(),
            ..Servers::default()
        }
    }

    /// Starts (once) and prepares the server(s) of `w`.
    pub fn target(&mut self, w: Workload) -> Result<Target> {
        match w {
            Workload::Nginx => {
                if self.nginx.is_none() {
                    self.nginx = Some(Nginx::start(&self.dir.join("nginx"))?);
                }
                let n = self.nginx.as_ref().context("nginx")?;
                // The Python upstream is not part of this workload (static files only).
                Ok(Target {
                    port: n.port,
                    pids: vec![n.pid()],
                    bulk_port: None,
                    bulk_pids: Vec::new(),
                    forks_per_connection: false,
                })
            }
            Workload::Redis | Workload::RedisP16 | Workload::Mixed => {
                if self.redis.is_none() {
                    self.redis = Some(Redis::start(&self.dir.join("redis"))?);
                }
                let r = self.redis.as_ref().context("redis")?;
                let mut t = Target {
                    port: r.port,
                    pids: vec![r.pid()],
                    bulk_port: None,
                    bulk_pids: Vec::new(),
                    forks_per_connection: false,
                };
                if w == Workload::Mixed {
                    if self.iperf.is_none() {
                        let port = free_port()?;
                        let mut c = Command::new("iperf3");
                        c.args(["-s", "-B", "127.0.0.1", "-p"])
                            .arg(port.to_string());
                        let mut g = ProcessGuard::spawn(
                            "iperf3 -s",
                            c,
                            Output::File(self.dir.join("iperf3-server.log")),
                        )?;
                        wait_tcp(
                            "iperf3 -s to listen",
                            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                            &mut g,
                        )?;
                        self.iperf = Some((g, port));
                    }
                    let (g, port) = self.iperf.as_ref().context("iperf3")?;
                    t.bulk_pids.push(g.pid());
                    t.bulk_port = Some(*port);
                }
                Ok(t)
            }
            Workload::MysqlPointSelect | Workload::MysqlReadWrite => {
                if self.mariadb.is_none() {
                    let dir = self.dir.join("mariadb");
                    std::fs::create_dir_all(&dir)?;
                    let db =
                        MariaDb::start(&dir, free_port()?, Output::File(dir.join("mariadbd.log")))?;
                    db.root_sql("CREATE DATABASE IF NOT EXISTS sbtest")?;
                    let mut c = sysbench(&db, "oltp_read_write");
                    c.arg("prepare");
                    crate::process::run_capture(c).context("sysbench prepare")?;
                    self.mariadb = Some(db);
                }
                let db = self.mariadb.as_ref().context("mariadb")?;
                Ok(Target {
                    port: db.port,
                    pids: vec![db.pid()],
                    bulk_port: None,
                    bulk_pids: Vec::new(),
                    forks_per_connection: false,
                })
            }
            Workload::Pgbench => {
                if self.postgres.is_none() {
                    let pg = Postgres::start(&self.dir.join("pg"))?;
                    crate::clients::postgres::pgbench_init(&pg, 1)?;
                    self.postgres = Some(pg);
                }
                let pg = self.postgres.as_ref().context("postgres")?;
                Ok(Target {
                    port: pg.port,
                    pids: vec![pg.pid()],
                    bulk_port: None,
                    bulk_pids: Vec::new(),
                    forks_per_connection: true,
                })
            }
        }
    }

    /// The closed-loop load command. `size` is the request count for tools without a duration
    /// option (redis-benchmark: requests per test), else ignored.
    pub fn closed_command(
        &self,
        w: Workload,
        t: &Target,
        duration: Duration,
        size: u64,
    ) -> Result<Command> {
        let secs = duration.as_secs().max(1).to_string();
        Ok(match w {
            Workload::Nginx => {
                let mut c = Command::new("wrk");
                c.args(["-t1", "-c16", "-d"])
                    .arg(format!("{secs}s"))
                    .arg("-s")
                    .arg(paths::clients_dir().join("wrk_report.lua"))
                    .arg(format!("http://127.0.0.1:{}{}", t.port, nginx::SMALL.path));
                c
            }
            Workload::Redis | Workload::RedisP16 | Workload::Mixed => {
                let r = self.redis.as_ref().context("redis")?;
                let mut c = r.benchmark();
                c.args(["-t", "set,get", "-c", "50", "-r", "10000", "--csv", "-n"])
                    .arg(size.max(1000).to_string());
                if w == Workload::RedisP16 {
                    c.args(["-P", "16"]);
                }
                c
            }
            Workload::MysqlPointSelect | Workload::MysqlReadWrite => {
                let db = self.mariadb.as_ref().context("mariadb")?;
                let mut c = if w == Workload::MysqlPointSelect {
                    let mut c = sysbench(db, "oltp_point_select");
                    c.args(["--threads=8", "--point-selects=1"]);
                    c
                } else {
                    let mut c = sysbench(db, "oltp_read_write");
                    c.arg("--threads=4");
                    c
                };
                c.arg(format!("--time={secs}")).arg("run");
                c
            }
            Workload::Pgbench => {
                let pg = self.postgres.as_ref().context("postgres")?;
                let mut c = pgbench(pg);
                c.args(["-n", "-S", "-M", "simple", "-c", "8", "-j", "2", "-T"])
                    .arg(&secs);
                c
            }
        })
    }

    /// The open-loop command at `rate` requests (operations) per second; `log_prefix` is where
    /// pgbench writes its per-transaction log.
    pub fn open_command(
        &self,
        w: Workload,
        t: &Target,
        duration: Duration,
        rate: f64,
        log_prefix: &Path,
    ) -> Result<Command> {
        let secs = duration.as_secs().max(1).to_string();
        Ok(match w {
            Workload::Nginx | Workload::Redis | Workload::Mixed => {
                let mut c = Command::new(loadgen_bin());
                c.args([
                    "--proto",
                    if w == Workload::Nginx {
                        "http"
                    } else {
                        "redis"
                    },
                ])
                .arg("--addr")
                .arg(format!("127.0.0.1:{}", t.port))
                .arg("--rate")
                .arg(format!("{rate:.0}"))
                .args(["--connections", "16", "--duration-s", &secs])
                .args(["--path", nginx::SMALL.path]);
                c
            }
            Workload::RedisP16 => bail!("redis-p16 has no open-loop mode"),
            Workload::MysqlPointSelect | Workload::MysqlReadWrite => {
                let mut c = self.closed_command(w, t, duration, 0)?;
                // `run` must stay last.
                let args: Vec<_> = c.get_args().map(|a| a.to_os_string()).collect();
                let mut n = Command::new(c.get_program());
                n.args(&args[..args.len() - 1])
                    .arg(format!("--rate={}", rate.round().max(1.0)))
                    .arg("--histogram=on")
                    .arg("run");
                c = n;
                c
            }
            Workload::Pgbench => {
                let pg = self.postgres.as_ref().context("postgres")?;
                let mut c = pgbench(pg);
                c.args(["-n", "-S", "-M", "simple", "-c", "8", "-j", "2", "-T"])
                    .arg(&secs)
                    .arg("-R")
                    .arg(format!("{}", rate.round().max(1.0)))
                    .arg("-l")
                    .arg(format!("--log-prefix={}", log_prefix.display()));
                c
            }
        })
    }
}

fn sysbench(db: &MariaDb, test: &str) -> Command {
    let mut c = Command::new("sysbench");
    c.arg(test)
        .arg("--db-driver=mysql")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={}", db.port))
        .arg(format!("--mysql-user={}", crate::servers::mariadb::USER))
        .arg(format!(
            "--mysql-password={}",
            crate::servers::mariadb::PASSWORD
        ))
        .arg("--mysql-db=sbtest")
        .arg("--tables=1")
        .arg("--table-size=10000")
        .arg("--report-interval=0");
    c
}

fn pgbench(pg: &Postgres) -> Command {
    let mut c = pg.client_command("pgbench");
    c.args(["-h", "127.0.0.1", "-p"])
        .arg(pg.port.to_string())
        .args(["-U", pgs::USER])
        .env("PGPASSWORD", pgs::PASSWORD)
        .arg(pgs::DATABASE);
    c
}

/// The `loadgen` binary: `BENCH_LOADGEN_BIN` (xtask sets it), else next to the running binary.
pub fn loadgen_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BENCH_LOADGEN_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("loadgen")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| paths::target_dir().join("release/loadgen"))
}

/// What a load generator reported.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Requests (spans expected on the server side).
    pub requests: u64,
    /// Operations in the tool's unit (sysbench events, pgbench transactions).
    pub ops: u64,
    pub errors: u64,
    /// Measured by the tool when it says, else the wall time of the process.
    pub duration_s: f64,
    /// Open loop: latency quantiles in µs (p50, p99, p99.9, mean).
    pub latency_us: Option<[f64; 4]>,
    /// Open loop (loadgen): requests sent more than 1 ms after their scheduled time.
    pub late_sends: Option<u64>,
}

/// Parses the output of the load generator of `w` in `open` or closed mode.
pub fn parse_outcome(
    w: Workload,
    open: bool,
    stdout: &str,
    wall_s: f64,
    log_prefix: &Path,
    per_test: u64,
) -> Result<Outcome> {
    if open && matches!(w, Workload::Nginx | Workload::Redis | Workload::Mixed) {
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .context("loadgen printed no summary")?;
        let s: super::loadgen::Summary = serde_json::from_str(line)?;
        return Ok(Outcome {
            requests: s.requests,
            ops: s.requests,
            errors: s.errors,
            duration_s: s.duration_s,
            latency_us: Some([s.p50_us, s.p99_us, s.p999_us, s.mean_us]),
            late_sends: Some(s.late_sends),
        });
    }
    match w {
        Workload::Nginx => {
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix("WRK_JSON "))
                .context("wrk printed no summary")?;
            let v: Value = serde_json::from_str(line)?;
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            Ok(Outcome {
                requests: n("requests"),
                ops: n("requests"),
                errors: n("status_errors")
                    + n("connect_errors")
                    + n("read_errors")
                    + n("write_errors")
                    + n("timeouts"),
                duration_s: n("duration_us") as f64 / 1e6,
                latency_us: None,
                late_sends: None,
            })
        }
        Workload::Redis | Workload::RedisP16 | Workload::Mixed => {
            // --csv: `"test","rps",...` then one line per test; `-n` requests per test; the
            // wall time of the process is what the tests took together.
            let requests = redis_requests(stdout, per_test);
            if requests == 0 {
                bail!("redis-benchmark printed no SET/GET results:\n{stdout}");
            }
            Ok(Outcome {
                requests,
                ops: requests,
                errors: 0,
                duration_s: wall_s,
                latency_us: None,
                late_sends: None,
            })
        }
        Workload::MysqlPointSelect | Workload::MysqlReadWrite => {
            let num_after = |key: &str| -> Option<f64> {
                stdout.lines().find_map(|l| {
                    l.trim()
                        .strip_prefix(key)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|v| v.parse().ok())
                })
            };
            let queries = num_after("queries:").context("sysbench: no `queries:` line")?;
            let events = num_after("transactions:").unwrap_or(0.0);
            let errors = num_after("ignored errors:").unwrap_or(0.0);
            // `total time:                          5.0012s`
            let duration = stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix("total time:"))
                .map(|v| v.trim().trim_end_matches('s'))
                .and_then(|v| v.parse().ok())
                .unwrap_or(wall_s);
            let latency_us = if open {
                Some(sysbench_histogram(stdout)?)
            } else {
                None
            };
            Ok(Outcome {
                requests: queries as u64,
                ops: events as u64,
                errors: errors as u64,
                duration_s: duration,
                latency_us,
                late_sends: None,
            })
        }
        Workload::Pgbench => {
            let processed = stdout
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("number of transactions actually processed:")
                })
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.split('/').next())
                .and_then(|v| v.parse::<u64>().ok())
                .context("pgbench: no `number of transactions actually processed` line")?;
            let failed = stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix("number of failed transactions:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let latency_us = if open {
                Some(pgbench_log_latency(log_prefix)?)
            } else {
                None
            };
            Ok(Outcome {
                requests: processed,
                ops: processed,
                errors: failed,
                duration_s: wall_s,
                latency_us,
                late_sends: None,
            })
        }
    }
}

/// redis-benchmark: requests = `-n` per test × tests that reported.
pub fn redis_requests(stdout: &str, per_test: u64) -> u64 {
    let tests = stdout
        .lines()
        .filter(|l| l.starts_with("\"SET\"") || l.starts_with("\"GET\""))
        .count() as u64;
    tests * per_test
}

/// Quantiles from sysbench's `--histogram` (`value_ms |*** count` lines).
fn sysbench_histogram(stdout: &str) -> Result<[f64; 4]> {
    let mut h = Histogram::default();
    let mut n = 0;
    for l in stdout.lines() {
        let Some((v, rest)) = l.split_once('|') else {
            continue;
        };
        let Ok(ms) = v.trim().parse::<f64>() else {
            continue;
        };
        let Some(count) = rest
            .split_whitespace()
            .last()
            .and_then(|c| c.parse::<u64>().ok())
        else {
            continue;
        };
        for _ in 0..count {
            h.record((ms * 1e6) as u64);
        }
        n += count;
    }
    if n == 0 {
        bail!("sysbench printed no latency histogram");
    }
    Ok(quantiles(&h))
}

fn quantiles(h: &Histogram) -> [f64; 4] {
    [
        h.quantile_ns(0.5) as f64 / 1e3,
        h.quantile_ns(0.99) as f64 / 1e3,
        h.quantile_ns(0.999) as f64 / 1e3,
        h.mean_ns() / 1e3,
    ]
}

/// Quantiles from pgbench's per-transaction logs `<prefix>.<pid>[.<thread>]`: the third field is
/// the latency in µs, measured from the scheduled start with `-R`.
fn pgbench_log_latency(prefix: &Path) -> Result<[f64; 4]> {
    let dir = prefix.parent().context("log prefix")?;
    let stem = prefix
        .file_name()
        .context("log prefix")?
        .to_string_lossy()
        .into_owned();
    let mut h = Histogram::default();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{stem}.")) {
            continue;
        }
        let text = std::fs::read_to_string(e.path())?;
        for l in text.lines() {
            if let Some(us) = l
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                h.record(us * 1000);
            }
        }
        // The logs are large; the figures are what is kept.
        let _ = std::fs::remove_file(e.path());
    }
    if h.count() == 0 {
        bail!(
            "pgbench wrote no transaction log under {}",
            prefix.display()
        );
    }
    Ok(quantiles(&h))
}

/// The bulk-traffic client of the mixed workload: `iperf3 -c` for `duration` at `bitrate`.
pub fn iperf_client(port: u16, duration: Duration, bitrate: &str) -> Command {
    let mut c = Command::new("iperf3");
    c.args(["-c", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-t")
        .arg(duration.as_secs().max(1).to_string())
        .args(["-b", bitrate, "-J"]);
    c
}

/// Bytes iperf3 moved (`end.sum_sent.bytes` of its JSON report).
pub fn iperf_bytes(stdout: &str) -> Option<f64> {
    let v: Value = serde_json::from_str(stdout).ok()?;
    v.pointer("/end/sum_sent/bytes").and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Some(*w));
        }
    }

    #[test]
    fn sysbench_output() {
        let out = "SQL statistics:\n    queries performed:\n        read:    1000\n        total:  1000\n    \
                   transactions:                        1000   (199.80 per sec.)\n    \
                   queries:                             1000   (199.80 per sec.)\n    \
                   ignored errors:                      0      (0.00 per sec.)\n\
                   General statistics:\n    total time:                          5.0012s\n\
                   Latency histogram (values are in milliseconds)\n       value  ------------- distribution ------------- count\n\
                   \x20         0.061 |**                                       10\n\
                   \x20         0.100 |******************                       80\n\
                   \x20         1.000 |**                                       10\n";
        let o = parse_outcome(
            Workload::MysqlPointSelect,
            true,
            out,
            6.0,
            Path::new("/x"),
            0,
        )
        .expect("parse");
        assert_eq!((o.requests, o.ops, o.errors), (1000, 1000, 0));
        assert!((o.duration_s - 5.0012).abs() < 1e-9);
        let l = o.latency_us.expect("latency");
        assert!((l[0] - 100.0).abs() < 1.0, "{l:?}");
        assert!((l[1] - 1000.0).abs() < 10.0, "{l:?}");
    }

    #[test]
    fn redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"50000.00\",\"0.5\"\n\"GET\",\"60000.00\",\"0.4\"\n";
        assert_eq!(redis_requests(out, 1000), 2000);
        assert!(parse_outcome(Workload::Redis, false, out, 1.0, Path::new("/x"), 1000).is_ok());
        assert!(parse_outcome(Workload::Redis, false, "", 1.0, Path::new("/x"), 1000).is_err());
    }

    #[test]
    fn pgbench_output() {
        let out = "transaction type: <builtin: select only>\nnumber of transactions actually processed: 12345\n\
                   number of failed transactions: 0 (0.000%)\ntps = 2469.0 (without initial connection time)\n";
        let o =
            parse_outcome(Workload::Pgbench, false, out, 5.0, Path::new("/x"), 0).expect("parse");
        assert_eq!(o.requests, 12345);
    }
}
