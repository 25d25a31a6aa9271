//! Real clients driven as processes: the `mariadb` CLI and `clients/mysql_client.py`
//! (mysql-connector-python).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::paths;
use crate::process::{Output, ProcessGuard, poll_until};
use crate::servers::mariadb::{self, MariaDb};

/// One step of a Python client plan (see `clients/mysql_client.py`).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Step {
    Sql {
        sql: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        prepared: bool,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        params: Vec<Value>,
    },
    InitDb {
        init_db: String,
    },
    Load {
        load: LoadSpec,
    },
}

impl Step {
    pub fn sql(sql: &str) -> Step {
        Step::Sql {
            sql: sql.to_string(),
            prepared: false,
            params: Vec::new(),
        }
    }
    pub fn prepared(sql: &str, params: Vec<Value>) -> Step {
        Step::Sql {
            sql: sql.to_string(),
            prepared: true,
            params,
        }
    }
    pub fn init_db(db: &str) -> Step {
        Step::InitDb {
            init_db: db.to_string(),
        }
    }
}

/// A load step: `count` queries, `{n}` in `sql` replaced by `i % modulo + 1`.
#[derive(Clone, Debug, Serialize)]
pub struct LoadSpec {
    pub sql: String,
    pub count: u64,
    pub modulo: u64,
    pub prepared: bool,
}

/// One output line of the Python client.
#[derive(Clone, Debug, Deserialize)]
pub struct StepResult {
    pub kind: String,
    #[serde(default)]
    pub step: Option<usize>,
    #[serde(default)]
    pub sql: Option<String>,
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub errno: Option<i64>,
    #[serde(default)]
    pub rows: Option<u64>,
    #[serde(default)]
    pub start_unix_ns: Option<u64>,
    #[serde(default)]
    pub duration_ns: Option<u64>,
    /// `connected` line.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The server's connection id (`CONNECTION_ID()`) the step ran on.
    #[serde(default)]
    pub connection_id: Option<u64>,
    /// `load` line.
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub errors: Option<u64>,
    #[serde(default)]
    pub elapsed_ns: Option<u64>,
    #[serde(default)]
    pub qps: Option<f64>,
}

/// How the Python client reaches the server.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    Tcp,
    Socket,
}

/// A Python client process running a plan.
pub struct PyClient {
    guard: ProcessGuard,
    stdout: PathBuf,
    pub ready_file: PathBuf,
    pub go_file: PathBuf,
}

impl PyClient {
    /// Starts `mysql_client.py` with `steps`; with `hold` it connects, creates `ready_file` and
    /// waits for `go_file` before the first step.
    pub fn spawn(
        dir: &Path,
        name: &str,
        db: &MariaDb,
        via: Via,
        steps: &[Step],
        hold: bool,
    ) -> Result<PyClient> {
        let plan_path = dir.join(format!("{name}.plan.json"));
        std::fs::write(
            &plan_path,
            serde_json::to_vec_pretty(&serde_json::json!({ "steps": steps }))?,
        )?;
        let ready_file = dir.join(format!("{name}.ready"));
        let go_file = dir.join(format!("{name}.go"));
        let mut cmd = Command::new(paths::python());
        cmd.arg(paths::clients_dir().join("mysql_client.py"))
            .arg("--user")
            .arg(mariadb::USER)
            .arg("--password")
            .arg(mariadb::PASSWORD)
            .arg("--database")
            .arg(mariadb::DATABASE)
            .arg("--plan")
            .arg(&plan_path);
        match via {
            Via::Tcp => cmd
                .arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(db.port.to_string()),
            Via::Socket => cmd.arg("--unix-socket").arg(&db.socket),
        };
        if hold {
            cmd.arg("--ready-file")
                .arg(&ready_file)
                .arg("--go-file")
                .arg(&go_file);
        }
        let stdout = dir.join(format!("{name}.out.jsonl"));
        let stderr = dir.join(format!("{name}.err"));
        let guard = ProcessGuard::spawn(
            name,
            cmd,
            Output::Split {
                stdout: stdout.clone(),
                stderr,
            },
        )?;
        Ok(PyClient {
            guard,
            stdout,
            ready_file,
            go_file,
        })
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Waits until a held client has connected (ready file exists).
    pub fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let ready = self.ready_file.clone();
        let guard = &mut self.guard;
        poll_until(
            "the Python client to connect",
            timeout,
            Duration::from_millis(20),
            || {
                guard.ensure_running()?;
                Ok(ready.exists().then_some(()))
            },
        )
    }

    /// Lets a held client run its steps.
    pub fn go(&self) -> Result<()> {
        std::fs::write(&self.go_file, b"go")?;
        Ok(())
    }

    /// Waits for the client to finish and returns its step results (not the `connected` line).
    pub fn finish(mut self, timeout: Duration) -> Result<Vec<StepResult>> {
        let status = self.guard.wait_timeout(timeout)?;
        if !status.success() {
            bail!(
                "Python client failed ({status}):\n{}",
                self.guard.log_tail(30)
            );
        }
        let text = std::fs::read_to_string(&self.stdout)?;
        let mut out = Vec::new();
        let mut connection_id = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut r: StepResult = serde_json::from_str(line)
                .with_context(|| format!("bad client output line {line:?}"))?;
            if r.kind == "connected" {
                connection_id = r.connection_id;
            } else {
                r.connection_id = connection_id;
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// Runs a plan to completion.
pub fn run_python(
    dir: &Path,
    name: &str,
    db: &MariaDb,
    via: Via,
    steps: &[Step],
) -> Result<(u32, Vec<StepResult>)> {
    let client = PyClient::spawn(dir, name, db, via, steps, false)?;
    let pid = client.pid();
    Ok((pid, client.finish(Duration::from_secs(300))?))
}

/// Runs one query with the `mariadb` CLI (batch mode) and returns the client's pid and stdout.
pub fn run_cli(mut cmd: Command, database: Option<&str>, sql: &str) -> Result<(u32, String)> {
    cmd.arg("-N").arg("-B");
    if let Some(db) = database {
        cmd.arg("-D").arg(db);
    }
    cmd.arg("-e").arg(sql);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "mariadb CLI failed for {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((pid, String::from_utf8_lossy(&out.stdout).into_owned()))
}
