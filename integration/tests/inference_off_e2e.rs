//! End-to-end: `ebpf.kernel_inference: false`, the diagnostic "traditional pipeline" the
//! benchmark compares our design with. One world (a real redis-server and a real MariaDB, the
//! stock Collector) runs the same workload twice, with the receiver in the default mode and then
//! with inference off: `redis-benchmark` (SET and GET), `mariadb` CLI queries over TCP (the
//! server reads each packet's header on its own: the header glue), and a tracked TCP connection
//! that speaks no supported protocol. Both modes must give exactly the spans the servers' own
//! counters say were sent, with nothing lost; with inference off the kernel ships more bytes per
//! request (every message of every tracked socket), user space infers the connections and
//! discards the unsupported traffic, counted.
//!
//! Root only: built with `--features e2e` by `cargo xtask test --file inference_off_e2e`.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};
use integration::check;
use integration::clients::{self, mysql as mc, redis as rc};
use integration::collector::{STATUS_ERROR, SpanView};
use integration::process::{Output, free_port, unix_now_ns};
use integration::receiver::Metrics;
use integration::servers::mariadb::{self, MariaDb};
use integration::servers::redis::Redis;
use integration::world::{Checks, World};

/// redis-benchmark `-n` per test (SET, GET).
const REDIS_REQUESTS: u32 = 500;
/// Queries, each by its own `mariadb` CLI process.
const MYSQL_QUERIES: &[&str] = &[
    "SELECT name FROM t1 WHERE id = 2",
    "SELECT COUNT(*) FROM t1",
    "SELECT name FROM t1 WHERE id = 1",
];
/// Messages of 1000 bytes written on the connection of no supported protocol.
const NOISE_MESSAGES: u32 = 64;

/// A TCP connection of no supported protocol between two threads of one process: the client
/// connects (a tracked socket), writes `NOISE_MESSAGES` messages of 1000 bytes, the server
/// reads them all and answers `done`.
const NOISE: &str = r#"
import socket, sys, threading
n = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
def serve():
    c, _ = srv.accept()
    got = 0
    while got < n * 1000:
        b = c.recv(65536)
        if not b:
            break
        got += len(b)
    c.sendall(b"done")
    c.close()
t = threading.Thread(target=serve)
t.start()
cl = socket.create_connection(srv.getsockname())
for _ in range(n):
    cl.sendall(b"\x5a" * 1000)
assert cl.recv(4) == b"done"
cl.close()
t.join()
"#;

type Servers = (Redis, MariaDb);

/// Longer than the period at which the receiver publishes the kernel's counters.
const KERNEL_STATS_PERIOD: Duration = Duration::from_millis(1500);

/// What one round cost and produced.
struct Round {
    /// Requests the servers counted (Redis commands + MySQL queries).
    requests: u64,
    /// (CLIENT, SERVER) spans per Redis command name, then MySQL (CLIENT, SERVER).
    spans: Vec<(String, usize, usize)>,
    before: Metrics,
    after: Metrics,
}

impl Round {
    fn delta(&self, key: &str) -> f64 {
        self.after.get(key) - self.before.get(key)
    }

    fn per_request(&self, key: &str) -> f64 {
        self.delta(key) / self.requests.max(1) as f64
    }
}

/// Runs the workload against the running receiver and checks its spans against the servers'
/// counters.
fn round(w: &mut World<Servers>, label: &str, checks: &mut Checks) -> Result<Round> {
    rc::cli(
        &w.dir,
        &format!("{label}-reset"),
        &w.server.0,
        &["CONFIG", "RESETSTAT"],
    )?
    .ensure_success()?;
    std::thread::sleep(KERNEL_STATS_PERIOD);
    let before = w.receiver().metrics()?;
    let since = unix_now_ns();
    let bench = rc::benchmark(
        &w.dir,
        &format!("{label}-bench"),
        &w.server.0,
        &rc::BenchOptions {
            tests: "set,get".into(),
            requests: REDIS_REQUESTS,
            clients: 2,
            pipeline: 1,
        },
    )?;
    let mut cli_pids = Vec::new();
    for sql in MYSQL_QUERIES {
        let (pid, _) = mc::run_cli(w.server.1.cli_tcp(), Some(mariadb::DATABASE), sql)?;
        cli_pids.push(pid);
    }
    let mut noise = Command::new(integration::paths::python());
    noise.arg("-c").arg(NOISE).arg(NOISE_MESSAGES.to_string());
    clients::run_ok(&w.dir, &format!("{label}-noise"), noise)?;

    let stats = rc::commandstats(&w.dir, &format!("{label}-stats"), &w.server.0)?;
    let calls = |cmd: &str| stats.iter().find(|(c, _)| c == cmd).map_or(0, |(_, n)| *n);
    // Names of the spans and how many of each the server counted.
    let truth = [
        ("SET".to_string(), calls("set")),
        ("GET".to_string(), calls("get")),
        ("CONFIG GET".to_string(), calls("config|get")),
    ];
    check!(
        checks,
        truth[0].1 == u64::from(REDIS_REQUESTS) && truth[1].1 == u64::from(REDIS_REQUESTS),
        "{label}: redis counted {truth:?} for -n {REDIS_REQUESTS}"
    );
    let bench_pid = bench.pid();
    let (redis_pid, mysql_pid) = (w.server.0.pid(), w.server.1.pid());
    let mysql_texts: Vec<String> = MYSQL_QUERIES
        .iter()
        .map(|q| q.replace(" = 2", " = ?").replace(" = 1", " = ?"))
        .collect();
    let is_mysql = |s: &SpanView| {
        s.str_attr("db.system.name") == Some("mysql")
            && s.query_text()
                .is_some_and(|t| mysql_texts.iter().any(|m| m == t))
    };
    let relevant = |s: &SpanView| {
        s.start_ns >= since
            && (((s.pid() == Some(bench_pid) && s.is_client())
                || (s.pid() == Some(redis_pid) && s.is_server()))
                && s.str_attr("db.system.name") == Some("redis")
                || ((s.pid().is_some_and(|p| cli_pids.contains(&p)) && s.is_client())
                    || (s.pid() == Some(mysql_pid) && s.is_server()))
                    && is_mysql(s))
    };
    let count = |spans: &[&SpanView]| -> Vec<(String, usize, usize)> {
        let mut rows: Vec<(String, usize, usize)> = truth
            .iter()
            .map(|(n, _)| (n.clone(), 0, 0))
            .chain([("mysql".to_string(), 0, 0)])
            .collect();
        for s in spans {
            let name = if is_mysql(s) {
                "mysql"
            } else {
                s.name.as_str()
            };
            if let Some(r) = rows.iter_mut().find(|r| r.0 == name) {
                if s.is_server() {
                    r.2 += 1;
                } else {
                    r.1 += 1;
                }
            }
        }
        rows
    };
    let want: Vec<(String, usize, usize)> = truth
        .iter()
        .map(|(n, c)| (n.clone(), *c as usize, *c as usize))
        .chain([(
            "mysql".to_string(),
            MYSQL_QUERIES.len(),
            MYSQL_QUERIES.len(),
        )])
        .collect();
    let waited = w.collector.wait_for(
        &format!("{label}: every request's CLIENT and SERVER span"),
        Duration::from_secs(60),
        relevant,
        |spans| count(spans) == want,
    );
    // Late duplicates would show up now.
    std::thread::sleep(Duration::from_millis(500));
    let all = w.collector.spans()?;
    let spans: Vec<&SpanView> = all.iter().filter(|s| relevant(s)).collect();
    let got = count(&spans);
    check!(
        checks,
        waited.is_ok() && got == want,
        "{label}: spans (name, CLIENT, SERVER) {got:?}, the servers counted {want:?}"
    );
    let errors = spans
        .iter()
        .filter(|s| s.status_code == STATUS_ERROR)
        .count();
    check!(checks, errors == 0, "{label}: {errors} spans are errors");
    // The receiver copies the kernel's counters into its metrics once a second.
    std::thread::sleep(KERNEL_STATS_PERIOD);
    w.check_no_loss(checks);
    let after = w.receiver().metrics()?;
    Ok(Round {
        requests: truth.iter().map(|(_, n)| n).sum::<u64>() + MYSQL_QUERIES.len() as u64,
        spans: got,
        before,
        after,
    })
}

const KERNEL_BYTES: &str = "ebpf_receiver_kernel_bytes_total{stream=\"data\"}";
const RING_BYTES: &str = "ebpf_receiver_ring_bytes_total{stream=\"data\"}";

fn figures(mode: &str, r: &Round) {
    println!(
        "[figures] kernel_inference={mode} requests={} kernel_bytes_per_request={:.1} ring_data_bytes_per_request={:.1} data_events_per_request={:.2}",
        r.requests,
        r.per_request(KERNEL_BYTES),
        r.per_request(RING_BYTES),
        r.per_request("ebpf_receiver_kernel_events_total{stream=\"data\"}"),
    );
}

/// Same spans in both modes, and more kernel→user bytes per request with inference off.
#[test]
fn same_spans_with_inference_off_and_more_kernel_bytes() -> Result<()> {
    let mut checks = Checks::default();
    let mut w = World::start("inference_off", |dir| {
        let redis = Redis::start(&dir.join("redis"))?;
        let mysql_dir = dir.join("mariadb");
        let mysql = MariaDb::start(
            &mysql_dir,
            free_port()?,
            Output::File(dir.join("mariadbd.log")),
        )?;
        Ok((redis, mysql))
    })?;

    w.start_receiver()?;
    let on = round(&mut w, "on", &mut checks).context("kernel inference on")?;
    check!(
        checks,
        on.delta("ebpf_receiver_kernel_inference_gave_up_total") >= 1.0,
        "inference on: the kernel never gave up on the connection of no protocol"
    );
    w.stop_receiver();

    w.start_receiver_with("ebpf:\n  kernel_inference: false\n")?;
    let off = round(&mut w, "off", &mut checks).context("kernel inference off")?;
    figures("on", &on);
    figures("off", &off);

    check!(
        checks,
        on.spans == off.spans,
        "spans differ between modes: on {:?}, off {:?}",
        on.spans,
        off.spans
    );
    check!(
        checks,
        off.per_request(KERNEL_BYTES) > on.per_request(KERNEL_BYTES),
        "kernel bytes per request: off {:.1}, on {:.1}",
        off.per_request(KERNEL_BYTES),
        on.per_request(KERNEL_BYTES)
    );
    check!(
        checks,
        off.per_request(RING_BYTES) > on.per_request(RING_BYTES),
        "ring bytes per request: off {:.1}, on {:.1}",
        off.per_request(RING_BYTES),
        on.per_request(RING_BYTES)
    );
    // With inference off the kernel infers nothing, user space does, and the traffic of no
    // protocol reaches user space, where it is discarded and counted.
    let kernel_inferred = ["redis", "mysql"].map(|p| {
        off.delta(&format!(
            "ebpf_receiver_inferences_total{{protocol=\"{p}\"}}"
        ))
    });
    let user_inferred = ["redis", "mysql"].map(|p| {
        off.delta(&format!(
            "ebpf_receiver_user_inferences_total{{protocol=\"{p}\"}}"
        ))
    });
    check!(
        checks,
        kernel_inferred == [0.0, 0.0] && user_inferred.iter().all(|n| *n >= 2.0),
        "inference off: kernel inferred {kernel_inferred:?}, user space {user_inferred:?} (redis, mysql)"
    );
    let discarded = off.delta("ebpf_receiver_user_inference_discarded_total{unit=\"bytes\"}");
    check!(
        checks,
        discarded >= f64::from(NOISE_MESSAGES * 1000),
        "inference off: {discarded} bytes discarded in user space, expected the noise's {} at least",
        NOISE_MESSAGES * 1000
    );
    check!(
        checks,
        off.delta("ebpf_receiver_user_inference_gave_up_total") >= 1.0,
        "inference off: user space never gave up on the connection of no protocol"
    );
    w.done(checks)
}
