//! PostgreSQL clients: `psql`, `pgbench`, and `clients/pg_client.py` (psycopg 3).

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{ClientRun, PlanRun, RunningClient, python, run, run_ok, run_plan, spawn_plan};
use crate::process::run_capture;
use crate::servers::postgres::Postgres;

/// Runs `psql -At -c SQL` over TCP as the test user (SCRAM, SSLRequest refused with `N`).
/// Several statements in `sql` go in one simple Query message. A failing statement makes psql
/// exit 3 (`ON_ERROR_STOP`): check `status`.
pub fn psql(dir: &Path, name: &str, pg: &Postgres, sql: &str) -> Result<ClientRun> {
    let mut c = pg.psql();
    c.arg("-At").arg("-c").arg(sql);
    run(dir, name, c)
}

/// Runs a psql script (`-f`, one simple Query per statement, on one connection; meta-commands
/// such as `\bind` work) over TCP as the test user.
pub fn psql_script(dir: &Path, name: &str, pg: &Postgres, script: &str) -> Result<ClientRun> {
    let path = dir.join(format!("{name}.sql"));
    std::fs::write(&path, script)?;
    let mut c = pg.psql();
    c.arg("-At").arg("-f").arg(&path);
    run(dir, name, c)
}

/// `pgbench -M` query mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryMode {
    /// One simple Query per statement.
    Simple,
    /// Unnamed Parse/Bind/Execute per statement.
    Extended,
    /// Named prepared statements: Parse once per connection, then Bind/Execute.
    Prepared,
}

impl QueryMode {
    fn arg(self) -> &'static str {
        match self {
            QueryMode::Simple => "simple",
            QueryMode::Extended => "extended",
            QueryMode::Prepared => "prepared",
        }
    }
}

/// `pgbench` options.
#[derive(Clone, Debug)]
pub struct PgbenchOptions {
    pub mode: QueryMode,
    /// Builtin script (`select-only`, `simple-update`, `tpcb-like`), ignored with `script`.
    pub builtin: String,
    /// A custom script (`-f`), e.g. `"SELECT abalance FROM pgbench_accounts WHERE aid = 1;\n"`.
    pub script: Option<String>,
    /// Transactions per client (`-t`).
    pub transactions: u32,
    /// Client connections (`-c`), served by as many backends.
    pub clients: u32,
}

impl Default for PgbenchOptions {
    fn default() -> Self {
        PgbenchOptions {
            mode: QueryMode::Simple,
            builtin: "select-only".into(),
            script: None,
            transactions: 100,
            clients: 1,
        }
    }
}

/// A finished pgbench run.
#[derive(Clone, Debug)]
pub struct PgbenchRun {
    pub run: ClientRun,
    /// "number of transactions actually processed".
    pub processed: u64,
    /// "number of failed transactions" (0 when not printed).
    pub failed: u64,
    /// "tps = ... (without initial connection time)".
    pub tps: f64,
}

/// `pgbench -i -s <scale> -q` (creates `pgbench_accounts` etc. in the test database over TCP as
/// the test user). Generates traffic: run it before starting the receiver.
pub fn pgbench_init(pg: &Postgres, scale: u32) -> Result<()> {
    let mut c = pgbench_cmd(pg);
    c.args(["-i", "-q", "-s"]).arg(scale.to_string());
    run_capture(c).context("pgbench -i")?;
    Ok(())
}

fn pgbench_cmd(pg: &Postgres) -> Command {
    let mut c = pg.client_command("pgbench");
    c.args(["-h", "127.0.0.1", "-p"])
        .arg(pg.port.to_string())
        .args(["-U", crate::servers::postgres::USER])
        .env("PGPASSWORD", crate::servers::postgres::PASSWORD)
        .arg(crate::servers::postgres::DATABASE);
    c
}

/// Runs pgbench (one process, `clients` connections; needs [`pgbench_init`] for the builtin
/// scripts) and parses its summary; fails when pgbench exits non-zero.
pub fn pgbench(dir: &Path, name: &str, pg: &Postgres, opts: &PgbenchOptions) -> Result<PgbenchRun> {
    let mut c = pgbench_cmd(pg);
    c.arg("-n")
        .arg("-M")
        .arg(opts.mode.arg())
        .arg("-t")
        .arg(opts.transactions.to_string())
        .arg("-c")
        .arg(opts.clients.to_string());
    match &opts.script {
        Some(s) => {
            let path = dir.join(format!("{name}.pgbench.sql"));
            std::fs::write(&path, s)?;
            c.arg("-f").arg(path);
        }
        None => {
            c.arg("-b").arg(&opts.builtin);
        }
    }
    let r = run_ok(dir, name, c)?;
    let num_after = |prefix: &str| -> Option<f64> {
        r.stdout.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .and_then(|rest| rest.split(['/', ' ', '(']).find(|w| !w.is_empty()))
                .and_then(|w| w.trim().parse().ok())
        })
    };
    Ok(PgbenchRun {
        processed: num_after("number of transactions actually processed:")
            .with_context(|| format!("pgbench summary:\n{}", r.stdout))? as u64,
        failed: num_after("number of failed transactions:").unwrap_or(0.0) as u64,
        tps: num_after("tps =").unwrap_or(0.0),
        run: r,
    })
}

/// One step of a psycopg plan (`clients/pg_client.py`). Placeholders are psycopg's `%s`.
#[derive(Clone, Debug)]
pub enum PgStep {
    /// `cursor.execute(sql, params, prepare=..)`. No params: simple Query protocol; params:
    /// extended protocol (unnamed statement); `prepare: Some(true)`: named server-side prepared
    /// statement (Parse once, then Bind/Execute); `Some(false)`: never prepared.
    Sql {
        sql: String,
        params: Option<Vec<Value>>,
        prepare: Option<bool>,
        /// `psycopg.ClientCursor`: values interpolated client-side, sent as a simple Query.
        client_side: bool,
    },
    /// Pipeline mode: the inner `Sql` steps are all sent before one Sync.
    Pipeline(Vec<PgStep>),
    /// `executemany` with one parameter row per execution.
    ExecuteMany {
        sql: String,
        rows: Vec<Vec<Value>>,
    },
    Sleep {
        ms: u64,
    },
    /// `count` executions of `sql` with `(i % modulo + 1,)`: one `load` record.
    Load {
        sql: String,
        count: u64,
        modulo: u64,
        prepare: Option<bool>,
    },
}

impl PgStep {
    /// Simple Query protocol.
    pub fn simple(sql: &str) -> PgStep {
        PgStep::Sql {
            sql: sql.into(),
            params: None,
            prepare: None,
            client_side: false,
        }
    }
    /// Extended protocol, unnamed statement, never prepared. psycopg only uses the extended
    /// protocol when there is at least one parameter (or in a [`PgStep::Pipeline`]): with an
    /// empty `params` outside a pipeline this is a simple Query.
    pub fn extended(sql: &str, params: Vec<Value>) -> PgStep {
        PgStep::Sql {
            sql: sql.into(),
            params: Some(params),
            prepare: Some(false),
            client_side: false,
        }
    }
    /// Server-side prepared statement (`prepare=True`).
    pub fn prepared(sql: &str, params: Vec<Value>) -> PgStep {
        PgStep::Sql {
            sql: sql.into(),
            params: Some(params),
            prepare: Some(true),
            client_side: false,
        }
    }
    /// Client-side interpolation (`ClientCursor`): literals travel in a simple Query.
    pub fn client_side(sql: &str, params: Vec<Value>) -> PgStep {
        PgStep::Sql {
            sql: sql.into(),
            params: Some(params),
            prepare: None,
            client_side: true,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            PgStep::Sql {
                sql,
                params,
                prepare,
                client_side,
            } => {
                let mut v = json!({ "sql": sql, "client_side": client_side });
                if let Some(p) = params {
                    v["params"] = json!(p);
                }
                if let Some(p) = prepare {
                    v["prepare"] = json!(p);
                }
                v
            }
            PgStep::Pipeline(steps) => {
                json!({ "pipeline": steps.iter().map(PgStep::to_json).collect::<Vec<_>>() })
            }
            PgStep::ExecuteMany { sql, rows } => json!({ "executemany": sql, "params_seq": rows }),
            PgStep::Sleep { ms } => json!({ "sleep_ms": ms }),
            PgStep::Load {
                sql,
                count,
                modulo,
                prepare,
            } => {
                json!({ "load": { "sql": sql, "count": count, "modulo": modulo, "prepare": prepare } })
            }
        }
    }
}

fn psycopg_cmd(dsn: &str) -> Command {
    let mut c = python("pg_client.py");
    c.arg("--dsn").arg(dsn);
    c
}

fn plan(steps: &[PgStep]) -> Value {
    json!({ "steps": steps.iter().map(PgStep::to_json).collect::<Vec<_>>() })
}

/// Runs the psycopg client as the test user over TCP (`pg.dsn()`). Records: `query` (sql, ok,
/// sqlstate, error, rows, status, times), `executemany`, `load`; `connected` has `backend_pid`
/// (the SERVER spans' pid) and `local_port`.
pub fn psycopg(dir: &Path, name: &str, pg: &Postgres, steps: &[PgStep]) -> Result<PlanRun> {
    psycopg_dsn(dir, name, &pg.dsn(), steps)
}

/// As [`psycopg`] with any libpq connection string (another user, `sslmode=disable`, ...).
pub fn psycopg_dsn(dir: &Path, name: &str, dsn: &str, steps: &[PgStep]) -> Result<PlanRun> {
    run_plan(dir, name, psycopg_cmd(dsn), &plan(steps))
}

/// As [`psycopg`], held after connecting until [`RunningClient::go`].
pub fn psycopg_held(
    dir: &Path,
    name: &str,
    pg: &Postgres,
    steps: &[PgStep],
) -> Result<RunningClient> {
    spawn_plan(dir, name, psycopg_cmd(&pg.dsn()), &plan(steps), true)
}

/// As [`psycopg_held`], running `before` right after connecting, before the hold: what the
/// connection did before the receiver started (e.g. preparing a statement). Their records
/// carry `"before": true`.
pub fn psycopg_held_after(
    dir: &Path,
    name: &str,
    pg: &Postgres,
    before: &[PgStep],
    steps: &[PgStep],
) -> Result<RunningClient> {
    let mut plan = plan(steps);
    plan["before"] = json!(before.iter().map(PgStep::to_json).collect::<Vec<_>>());
    spawn_plan(dir, name, psycopg_cmd(&pg.dsn()), &plan, true)
}

/// The `backend_pid` of a psycopg run's `connected` record.
pub fn backend_pid(run: &PlanRun) -> Result<u32> {
    run.connected
        .as_ref()
        .and_then(|c| c.u64("backend_pid"))
        .map(|p| p as u32)
        .context("the psycopg client printed no backend_pid")
}
