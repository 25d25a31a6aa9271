//! The receiver under test: a temporary config, start, readiness, self-metrics, SIGTERM.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::paths;
use crate::process::{Output, ProcessGuard, poll_until};

/// Environment variables that would override the test config (env wins over the file).
const OTEL_ENV: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
];

/// A running `ebpf-receiver`.
pub struct Receiver {
    pub metrics_port: u16,
    pub config_path: PathBuf,
    guard: ProcessGuard,
}

/// The config the tests use: export to `endpoint` with a short batch delay, metrics on
/// `metrics_port`, everything else default (the whole host is traced).
pub fn test_config(endpoint: &str, metrics_port: u16) -> String {
    test_config_with(endpoint, metrics_port, "")
}

/// [`test_config`] with more `exporter:` keys, one `key: value` per line (e.g.
/// `"max_queue_bytes: 262144\nmax_request_bytes: 65536"`).
pub fn test_config_with(endpoint: &str, metrics_port: u16, exporter_keys: &str) -> String {
    let keys: String = exporter_keys
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  {}\n", l.trim()))
        .collect();
    // The tests' short batch delay, unless the keys set their own.
    let delay = if keys.contains("max_batch_delay_ms:") {
        ""
    } else {
        "  max_batch_delay_ms: 50\n"
    };
    format!(
        "# Written by the integration harness.\n\
         exporter:\n  endpoint: \"{endpoint}\"\n{delay}{keys}\
         telemetry:\n  metrics_address: \"127.0.0.1:{metrics_port}\"\n  log_level: info\n"
    )
}

impl Receiver {
    /// Writes `dir/receiver.yaml` from [`test_config`], starts the receiver and waits for
    /// `/readyz` to answer 200.
    pub fn start(dir: &Path, otlp_endpoint: &str, metrics_port: u16) -> Result<Receiver> {
        Receiver::start_with_extra(dir, otlp_endpoint, metrics_port, "")
    }

    /// As [`start`](Self::start) with `extra_yaml` appended to the test config (top-level
    /// sections it does not set, e.g. `protocols:` or `targets:`).
    pub fn start_with_extra(
        dir: &Path,
        otlp_endpoint: &str,
        metrics_port: u16,
        extra_yaml: &str,
    ) -> Result<Receiver> {
        Receiver::start_with_extra_wrapped(dir, otlp_endpoint, metrics_port, extra_yaml, &[])
    }

    /// As [`start_with_extra`](Self::start_with_extra) with more `exporter:` keys (see
    /// [`test_config_with`]).
    pub fn start_with_exporter(
        dir: &Path,
        otlp_endpoint: &str,
        metrics_port: u16,
        exporter_keys: &str,
        extra_yaml: &str,
    ) -> Result<Receiver> {
        Receiver::start_full(
            dir,
            otlp_endpoint,
            metrics_port,
            exporter_keys,
            extra_yaml,
            &[],
        )
    }

    /// As [`start_with_extra`](Self::start_with_extra), run through `wrapper` (see
    /// [`start_wrapped`](Self::start_wrapped)).
    pub fn start_with_extra_wrapped(
        dir: &Path,
        otlp_endpoint: &str,
        metrics_port: u16,
        extra_yaml: &str,
        wrapper: &[String],
    ) -> Result<Receiver> {
        Receiver::start_full(dir, otlp_endpoint, metrics_port, "", extra_yaml, wrapper)
    }

    /// Writes `dir/receiver.yaml` (the test config, more `exporter:` keys, extra YAML) and
    /// starts the receiver through `wrapper` (empty: directly).
    fn start_full(
        dir: &Path,
        otlp_endpoint: &str,
        metrics_port: u16,
        exporter_keys: &str,
        extra_yaml: &str,
        wrapper: &[String],
    ) -> Result<Receiver> {
        let config_path = dir.join("receiver.yaml");
        let mut config = test_config_with(otlp_endpoint, metrics_port, exporter_keys);
        if !extra_yaml.is_empty() {
            config.push_str(extra_yaml);
            if !extra_yaml.ends_with('\n') {
                config.push('\n');
            }
        }
        std::fs::write(&config_path, config)?;
        Receiver::start_wrapped(
            &config_path,
            metrics_port,
            Output::File(dir.join("receiver.log")),
            wrapper,
        )
    }

    /// Starts the receiver with any config file.
    pub fn start_with_config(config: &Path, metrics_port: u16, output: Output) -> Result<Receiver> {
        Receiver::start_wrapped(config, metrics_port, output, &[])
    }

    /// As [`start_with_config`](Self::start_with_config), run through `wrapper` (a command
    /// that execs its arguments, e.g. `setpriv --reuid=65534 ... --`), which keeps the pid.
    pub fn start_wrapped(
        config: &Path,
        metrics_port: u16,
        output: Output,
        wrapper: &[String],
    ) -> Result<Receiver> {
        let bin = paths::receiver_bin();
        if !bin.exists() {
            bail!(
                "receiver binary `{}` not found: run `cargo xtask test` (it builds it) or set EBPF_RECEIVER_BIN",
                bin.display()
            );
        }
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("--config").arg(config);
        for var in OTEL_ENV {
            cmd.env_remove(var);
        }
        let guard =
            ProcessGuard::spawn("ebpf-receiver", cmd, output)?.with_grace(Duration::from_secs(10));
        let mut r = Receiver {
            metrics_port,
            config_path: config.to_path_buf(),
            guard,
        };
        r.wait_ready(Duration::from_secs(60))?;
        Ok(r)
    }

    /// Polls `/readyz` until it returns 200 (probes attached).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let port = self.metrics_port;
        let guard = &mut self.guard;
        poll_until(
            "the receiver's /readyz",
            timeout,
            Duration::from_millis(100),
            || {
                guard.ensure_running()?;
                match http_get(port, "/readyz") {
                    Ok((200, _)) => Ok(Some(())),
                    Ok((code, body)) => bail!("/readyz answered {code}: {}", body.trim()),
                    Err(e) => Err(e),
                }
            },
        )
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.guard.log_tail(lines)
    }

    pub fn ensure_running(&mut self) -> Result<()> {
        self.guard.ensure_running()
    }

    /// Scrapes `/metrics`.
    pub fn metrics(&self) -> Result<Metrics> {
        let (code, body) = http_get(self.metrics_port, "/metrics")?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(Metrics::parse(&body))
    }

    /// SIGKILL (no cleanup at all), and waits for the exit.
    pub fn kill(&mut self) -> Result<()> {
        self.guard.signal(libc::SIGKILL);
        self.guard.wait_timeout(Duration::from_secs(10))?;
        Ok(())
    }

    /// SIGTERM (the receiver flushes), wait; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        self.guard.stop().is_some_and(|s| s.success())
    }
}

/// A minimal HTTP/1.0 GET on loopback: `(status, body)`.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connect 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad HTTP response from {path}: {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Prometheus text samples keyed by `name{labels}` exactly as exposed (labels in exposition
/// order), e.g. `ebpf_receiver_kernel_drops_total{reason="data_ring_full"}`.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // `name{labels} value [timestamp]`; label values may contain spaces, so split
            // after the closing brace when there is one.
            let (key, rest) = match line.find('}') {
                Some(i) => (&line[..=i], &line[i + 1..]),
                None => match line.split_once(' ') {
                    Some((k, r)) => (k, r),
                    None => continue,
                },
            };
            if let Some(v) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            {
                samples.insert(key.to_string(), v);
            }
        }
        Metrics { samples }
    }

    /// The sample `key` (`name` or `name{labels}`), 0 when absent.
    pub fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }

    /// Whether the sample exists at all.
    pub fn has(&self, key: &str) -> bool {
        self.samples.contains_key(key)
    }

    /// Sum of every sample of a metric family (all label sets).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| {
                k.as_str() == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{'))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Samples whose key starts with `prefix`, for failure messages.
    pub fn family(&self, prefix: &str) -> String {
        self.samples
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The kernel-loss and span-drop counters that must read 0 in a clean run.
pub const LOSS_COUNTERS: &[&str] = &[
    "ebpf_receiver_kernel_drops_total{reason=\"data_ring_full\"}",
    "ebpf_receiver_kernel_drops_total{reason=\"control_ring_full\"}",
    "ebpf_receiver_kernel_drops_total{reason=\"conn_map_full\"}",
    "ebpf_receiver_kernel_drops_total{reason=\"args_map_full\"}",
    "ebpf_receiver_kernel_drops_total{reason=\"read_failed\"}",
    "ebpf_receiver_kernel_drops_total{reason=\"mmsg_overflow\"}",
    "ebpf_receiver_kernel_drops_total{reason=\"pids_map_full\"}",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE a counter\na_total{reason=\"data ring\"} 3\na_total{reason=\"b\"} 4\nplain 7 1700000000\n\n",
        );
        assert_eq!(m.get("a_total{reason=\"data ring\"}"), 3.0);
        assert_eq!(m.sum("a_total"), 7.0);
        assert_eq!(m.get("plain"), 7.0);
        assert_eq!(m.get("missing"), 0.0);
        assert!(!m.has("missing"));
    }

    #[test]
    fn test_config_has_the_contract_keys() {
        let c = test_config("http://127.0.0.1:4999", 9999);
        assert!(c.contains("endpoint: \"http://127.0.0.1:4999\""));
        assert!(c.contains("metrics_address: \"127.0.0.1:9999\""));
    }
}
