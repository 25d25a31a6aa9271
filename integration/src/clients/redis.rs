//! Redis clients: `redis-cli` (one-shot, stdin, `--pipe`), `redis-benchmark`,
//! `clients/redis_client.py` (redis-py) and `clients/redis_inline.py` (a telnet-style client
//! speaking inline commands).

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{
    ClientRun, PlanRun, RunningClient, python, run, run_ok, run_plan, run_with_input, spawn_plan,
};
use crate::servers::redis::Redis;

/// Runs one command with `redis-cli` over TCP (authenticated when the server has a password:
/// `AUTH` precedes it on the wire), e.g. `&["SET", "k", "v"]`. Replies are on stdout.
pub fn cli(dir: &Path, name: &str, r: &Redis, args: &[&str]) -> Result<ClientRun> {
    let mut c = r.cli();
    c.args(args);
    run(dir, name, c)
}

/// Calls per command from the server's own `INFO commandstats` (`cmdstat_set:calls=20000,…`),
/// read over a `redis-cli` connection of its own.
pub fn commandstats(dir: &Path, name: &str, r: &Redis) -> Result<Vec<(String, u64)>> {
    let out = cli(dir, name, r, &["INFO", "commandstats"])?;
    out.ensure_success()?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let (cmd, rest) = l.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((cmd.to_string(), calls.parse().ok()?))
        })
        .collect())
}

/// Runs several commands on ONE `redis-cli` connection: one command per line of `lines` (fed on
/// stdin; each is sent after the previous reply arrived).
pub fn cli_lines(dir: &Path, name: &str, r: &Redis, lines: &[&str]) -> Result<ClientRun> {
    let mut input = lines.join("\n");
    input.push('\n');
    run_with_input(dir, name, r.cli(), input.as_bytes())
}

/// Feeds `input` to `redis-cli --pipe` (authenticated when the server has a password): the
/// bytes go to the server as they are (inline commands or RESP), followed by the `ECHO` that
/// redis-cli uses to find the end of the replies.
pub fn cli_pipe(dir: &Path, name: &str, r: &Redis, input: &[u8]) -> Result<ClientRun> {
    let mut c = r.cli();
    c.arg("--pipe");
    run_with_input(dir, name, c, input)
}

/// `redis-benchmark` options.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// `-t`, e.g. `"ping,set,get"`.
    pub tests: String,
    /// `-n` requests per test.
    pub requests: u32,
    /// `-c` connections.
    pub clients: u32,
    /// `-P`: commands written per round trip (1 = no pipelining).
    pub pipeline: u32,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            tests: "ping,set,get".into(),
            requests: 1000,
            clients: 1,
            pipeline: 1,
        }
    }
}

/// A finished redis-benchmark run: `(test, requests/s)` rows of its CSV output.
#[derive(Clone, Debug)]
pub struct BenchRun {
    pub run: ClientRun,
    pub rows: Vec<(String, f64)>,
}

impl BenchRun {
    pub fn pid(&self) -> u32 {
        self.run.pid
    }
}

/// Runs `redis-benchmark --csv` (one process, `clients` connections). With `-P 16` several
/// commands share one write and one read: pipelining. `PING_INLINE` is the inline-command form,
/// `PING_MBULK` the RESP array form.
pub fn benchmark(dir: &Path, name: &str, r: &Redis, opts: &BenchOptions) -> Result<BenchRun> {
    let mut c = r.benchmark();
    c.arg("--csv")
        .arg("-t")
        .arg(&opts.tests)
        .arg("-n")
        .arg(opts.requests.to_string())
        .arg("-c")
        .arg(opts.clients.to_string())
        .arg("-P")
        .arg(opts.pipeline.to_string());
    let run = run_ok(dir, name, c)?;
    let rows = parse_benchmark_csv(&run.stdout)
        .with_context(|| format!("redis-benchmark output:\n{}", run.stdout))?;
    Ok(BenchRun { run, rows })
}

fn parse_benchmark_csv(text: &str) -> Result<Vec<(String, f64)>> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').map(|s| s.trim_matches('"')).collect();
        if f.len() < 2 || f[0] == "test" {
            continue;
        }
        if let Ok(rps) = f[1].parse::<f64>() {
            rows.push((f[0].to_string(), rps));
        }
    }
    anyhow::ensure!(!rows.is_empty(), "no result rows");
    Ok(rows)
}

/// One step of a redis-py plan.
#[derive(Clone, Debug)]
pub enum RedisStep {
    /// One command, e.g. `["SET", "k", "v"]`.
    Cmd(Vec<String>),
    /// Commands written together before reading replies; `transaction` wraps them in
    /// MULTI/EXEC.
    Pipeline {
        cmds: Vec<Vec<String>>,
        transaction: bool,
    },
    Sleep {
        ms: u64,
    },
    /// `SUBSCRIBE channels` on the plan's connection; another client (`redis-cli PUBLISH`)
    /// publishes each `(channel, message)`; the messages are read; `PING` if asked; then
    /// `UNSUBSCRIBE` without arguments. Records: `command` for SUBSCRIBE/PING/UNSUBSCRIBE,
    /// `published` (the publisher's pid) and `messages`.
    Subscribe {
        channels: Vec<String>,
        publish: Vec<(String, String)>,
        ping: bool,
    },
    /// `count` commands, `{n}` in the arguments replaced by `i % modulo + 1`: one `load` record.
    Load {
        cmd: Vec<String>,
        count: u64,
        modulo: u64,
    },
}

impl RedisStep {
    pub fn cmd(args: &[&str]) -> RedisStep {
        RedisStep::Cmd(args.iter().map(|s| s.to_string()).collect())
    }
    pub fn pipeline(cmds: &[&[&str]]) -> RedisStep {
        RedisStep::Pipeline {
            cmds: cmds
                .iter()
                .map(|c| c.iter().map(|s| s.to_string()).collect())
                .collect(),
            transaction: false,
        }
    }
    pub fn subscribe(channels: &[&str], publish: &[(&str, &str)], ping: bool) -> RedisStep {
        RedisStep::Subscribe {
            channels: channels.iter().map(|s| s.to_string()).collect(),
            publish: publish
                .iter()
                .map(|(c, m)| (c.to_string(), m.to_string()))
                .collect(),
            ping,
        }
    }
    /// A transaction: MULTI, `cmds`, EXEC written at once (redis-py `pipeline(transaction=True)`).
    pub fn transaction(cmds: &[&[&str]]) -> RedisStep {
        match RedisStep::pipeline(cmds) {
            RedisStep::Pipeline { cmds, .. } => RedisStep::Pipeline {
                cmds,
                transaction: true,
            },
            other => other,
        }
    }
    fn to_json(&self) -> Value {
        match self {
            RedisStep::Subscribe {
                channels,
                publish,
                ping,
            } => json!({ "subscribe": { "channels": channels, "publish": publish, "ping": ping } }),
            RedisStep::Cmd(c) => json!({ "cmd": c }),
            RedisStep::Pipeline { cmds, transaction } => {
                json!({ "pipeline": cmds, "transaction": transaction })
            }
            RedisStep::Sleep { ms } => json!({ "sleep_ms": ms }),
            RedisStep::Load { cmd, count, modulo } => {
                json!({ "load": { "cmd": cmd, "count": count, "modulo": modulo } })
            }
        }
    }
}

/// How redis-py connects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisVia {
    #[default]
    Tcp,
    Socket,
}

fn redis_py_cmd(r: &Redis, via: RedisVia, resp3: bool) -> Command {
    let mut c = python("redis_client.py");
    match via {
        RedisVia::Tcp => c
            .args(["--host", "127.0.0.1", "--port"])
            .arg(r.port.to_string()),
        RedisVia::Socket => c.arg("--unix-socket").arg(&r.socket),
    };
    if let Some(pw) = &r.password {
        c.arg("--password").arg(pw);
    }
    if resp3 {
        c.args(["--resp", "3"]);
    }
    c
}

fn plan(steps: &[RedisStep]) -> Value {
    json!({ "steps": steps.iter().map(RedisStep::to_json).collect::<Vec<_>>() })
}

/// Runs redis-py (RESP2, `AUTH` on connect when the server has a password) on one connection.
/// Records: `command` (cmd, ok, reply, error, times, `pipeline`), `load`; `connected` has
/// `local_port`.
pub fn redis_py(
    dir: &Path,
    name: &str,
    r: &Redis,
    via: RedisVia,
    steps: &[RedisStep],
) -> Result<PlanRun> {
    run_plan(dir, name, redis_py_cmd(r, via, false), &plan(steps))
}

/// As [`redis_py`] speaking RESP3 (`HELLO 3 [AUTH default <pw>]` on connect).
pub fn redis_py_resp3(dir: &Path, name: &str, r: &Redis, steps: &[RedisStep]) -> Result<PlanRun> {
    run_plan(
        dir,
        name,
        redis_py_cmd(r, RedisVia::Tcp, true),
        &plan(steps),
    )
}

/// As [`redis_py`], held after connecting until [`RunningClient::go`].
pub fn redis_py_held(
    dir: &Path,
    name: &str,
    r: &Redis,
    steps: &[RedisStep],
) -> Result<RunningClient> {
    spawn_plan(
        dir,
        name,
        redis_py_cmd(r, RedisVia::Tcp, false),
        &plan(steps),
        true,
    )
}

/// One step of `clients/redis_inline.py`.
#[derive(Clone, Debug)]
pub enum InlineStep {
    /// One inline command line (`\r\n` appended), one reply.
    Line(String),
    /// Bytes written at once, then `replies` replies (pipelined inline commands).
    Raw { bytes: String, replies: u32 },
}

/// Runs the telnet-style inline client over TCP (`AUTH <password>` inline first when the
/// server has one). Records: `auth`, then `command` per step with the reply's `type` and
/// `error` prefix.
pub fn inline(dir: &Path, name: &str, r: &Redis, steps: &[InlineStep]) -> Result<PlanRun> {
    let mut c = python("redis_inline.py");
    c.args(["--host", "127.0.0.1", "--port"])
        .arg(r.port.to_string());
    if let Some(pw) = &r.password {
        c.arg("--password").arg(pw);
    }
    let steps: Vec<Value> = steps
        .iter()
        .map(|s| match s {
            InlineStep::Line(l) => json!({ "inline": l }),
            InlineStep::Raw { bytes, replies } => json!({ "raw": bytes, "replies": replies }),
        })
        .collect();
    run_plan(dir, name, c, &json!({ "steps": steps }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\"\n\
                   \"PING_INLINE\",\"45454.55\",\"0.031\",\"0.008\"\n\
                   \"SET\",\"50000.00\",\"0.029\",\"0.008\"\n";
        let rows = parse_benchmark_csv(out).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], ("SET".to_string(), 50000.0));
        assert!(parse_benchmark_csv("nothing").is_err());
    }
}
