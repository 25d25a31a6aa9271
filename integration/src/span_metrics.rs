//! The span-metrics series the shipped sidecar pipeline makes of the receiver's spans
//! (issue 8, R9).
//!
//! [`start_collector`] runs the stock Collector with the `connectors:` section of
//! `otel-collector-config/sidecar.yaml` copied as it is (the `span_metrics` connector with the
//! dimensions we ship), fed by the OTLP receiver on a test port, its metrics written by the file
//! exporter to `dir/span_metrics.jsonl`. Only the flush interval is shortened (15 s → 1 s; it
//! changes when series are written, not which). No trace file is written: at 100k requests per
//! protocol it would be hundreds of MB, and the connector sees every span anyway (the `calls`
//! counter of a series is the number of spans with that name, kind, status and dimensions).
//!
//! [`read_calls`] reads the cumulative `traces.span.metrics.calls` points back: one
//! [`Series`] per resource and attribute set, with its latest count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::collector::Collector;
use crate::paths;
use crate::process::Output;

/// Where the metrics go, in the Collector's directory.
pub const METRICS_FILE: &str = "span_metrics.jsonl";

/// The `connectors:` section of the shipped `sidecar.yaml` (a top-level key up to the next
/// one), with the flush interval shortened to 1 s.
pub fn sidecar_connectors() -> Result<String> {
    let path = paths::collector_config_dir().join("sidecar.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let top_level = !line.starts_with([' ', '#']) && !line.trim().is_empty();
        if top_level {
            inside = line.trim_end() == "connectors:";
        }
        if inside && !line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !out.contains("span_metrics:") {
        bail!(
            "no `connectors: span_metrics:` section in `{}`",
            path.display()
        );
    }
    let flush = out
        .lines()
        .find(|l| l.trim_start().starts_with("metrics_flush_interval:"))
        .map(str::to_string);
    if let Some(f) = flush {
        let indent = &f[..f.len() - f.trim_start().len()];
        out = out.replace(&f, &format!("{indent}metrics_flush_interval: 1s"));
    }
    Ok(out)
}

/// The Collector config: OTLP/gRPC on `port` → the sidecar's `span_metrics` connector → the
/// file exporter (`metrics_file`).
pub fn collector_config(port: u16, metrics_file: &Path) -> Result<String> {
    Ok(format!(
        "# Written by the integration harness: the sidecar's span-metrics connector, as shipped.\n\
         receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\n\
         {connectors}\
         exporters:\n  file/metrics:\n    path: {file}\n    format: json\n    flush_interval: 200ms\n\
         service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n\
         \x20   traces:\n      receivers: [otlp]\n      exporters: [span_metrics]\n\
         \x20   metrics:\n      receivers: [span_metrics]\n      exporters: [file/metrics]\n",
        connectors = sidecar_connectors()?,
        file = metrics_file.display(),
    ))
}

/// Starts that Collector in `dir` (config `dir/otelcol-spanmetrics.yaml`, log
/// `dir/otelcol.log`, metrics `dir/`[`METRICS_FILE`]). Its span reader reads nothing.
pub fn start_collector(dir: &Path, port: u16) -> Result<Collector> {
    let config = dir.join("otelcol-spanmetrics.yaml");
    std::fs::write(&config, collector_config(port, &metrics_path(dir))?)?;
    Collector::start_with_config(&config, port, Output::File(dir.join("otelcol.log")))
}

/// `dir/`[`METRICS_FILE`].
pub fn metrics_path(dir: &Path) -> PathBuf {
    dir.join(METRICS_FILE)
}

/// One `calls` series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Series {
    /// The resource it was grouped under (every attribute the receiver sent).
    pub resource: BTreeMap<String, String>,
    /// `span.name`, `span.kind`, `status.code`, `service.name` and the configured dimensions.
    pub attributes: BTreeMap<String, String>,
    /// The latest cumulative count: spans seen.
    pub calls: u64,
}

impl Series {
    pub fn span_name(&self) -> &str {
        self.attributes.get("span.name").map_or("", String::as_str)
    }

    /// The series key without the resource, but with the service: what a dashboard grouped
    /// by service sees.
    pub fn key_by_service(&self) -> String {
        let service = self
            .resource
            .get("service.name")
            .or_else(|| self.attributes.get("service.name"))
            .map_or("", String::as_str);
        format!("{service} {:?}", self.attributes)
    }
}

fn value_text(v: &Value) -> String {
    if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
        return s.to_string();
    }
    if let Some(i) = v.get("intValue") {
        return i.as_str().map_or_else(|| i.to_string(), str::to_string);
    }
    v.to_string()
}

fn attrs(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            Some((
                kv.get("key")?.as_str()?.to_string(),
                kv.get("value").map(value_text).unwrap_or_default(),
            ))
        })
        .collect()
}

fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// Every `calls` series in the file exporter's output so far, with its latest count.
pub fn read_calls(path: &Path) -> Result<Vec<Series>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    parse_calls(&text)
}

/// [`read_calls`] of JSON lines (a last line still being written is skipped).
pub fn parse_calls(text: &str) -> Result<Vec<Series>> {
    let mut latest: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for rm in array(&doc, "resourceMetrics") {
            let resource = attrs(rm.get("resource").and_then(|r| r.get("attributes")));
            for sm in array(rm, "scopeMetrics") {
                for m in array(sm, "metrics") {
                    let name = m.get("name").and_then(Value::as_str).unwrap_or("");
                    if !(name == "calls" || name.ends_with(".calls")) {
                        continue;
                    }
                    let Some(sum) = m.get("sum") else { continue };
                    for p in array(sum, "dataPoints") {
                        let attributes = attrs(p.get("attributes"));
                        let calls = match p.get("asInt") {
                            Some(Value::String(s)) => s.parse().unwrap_or(0),
                            Some(n) => n.as_u64().unwrap_or(0),
                            None => 0,
                        };
                        let key = format!("{resource:?} {attributes:?}");
                        let e = latest.entry(key).or_insert_with(|| Series {
                            resource: resource.clone(),
                            attributes,
                            calls: 0,
                        });
                        // Cumulative: the latest point is the largest.
                        e.calls = e.calls.max(calls);
                    }
                }
            }
        }
    }
    Ok(latest.into_values().collect())
}

/// Figures of a set of series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cardinality {
    /// Distinct `span.name` values.
    pub span_names: BTreeSet<String>,
    /// Series as the connector keys them (resource included: one set per traced process).
    pub series: usize,
    /// Series keyed by service, span name, kind, status and dimensions (no per-process part).
    pub series_by_service: usize,
    /// Distinct resources (traced processes).
    pub resources: usize,
    /// Spans counted (sum of `calls`).
    pub spans: u64,
}

pub fn cardinality(series: &[Series]) -> Cardinality {
    Cardinality {
        span_names: series.iter().map(|s| s.span_name().to_string()).collect(),
        series: series.len(),
        series_by_service: series
            .iter()
            .map(Series::key_by_service)
            .collect::<BTreeSet<_>>()
            .len(),
        resources: series
            .iter()
            .map(|s| format!("{:?}", s.resource))
            .collect::<BTreeSet<_>>()
            .len(),
        spans: series.iter().map(|s| s.calls).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_connector_is_copied_with_a_short_flush() {
        let c = sidecar_connectors().expect("sidecar.yaml");
        assert!(c.starts_with("connectors:\n"), "{c}");
        assert!(c.contains("span_metrics:") && c.contains("- name: http.request.method"));
        assert!(c.contains("metrics_flush_interval: 1s"), "{c}");
        assert!(
            !c.contains("exporters:") && !c.contains("processors:"),
            "{c}"
        );
    }

    #[test]
    fn cumulative_points_keep_the_latest_count() {
        let line = |n: u64, pid: u64| {
            format!(
                r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}},{{"key":"process.pid","value":{{"intValue":"{pid}"}}}}]}},"scopeMetrics":[{{"metrics":[{{"name":"traces.span.metrics.calls","sum":{{"dataPoints":[{{"attributes":[{{"key":"span.name","value":{{"stringValue":"GET"}}}},{{"key":"span.kind","value":{{"stringValue":"SPAN_KIND_SERVER"}}}}],"asInt":"{n}"}}]}}}},{{"name":"traces.span.metrics.duration","histogram":{{}}}}]}}]}}]}}"#
            )
        };
        let text = format!("{}\n{}\n{}\n{{\"trunc", line(3, 1), line(7, 1), line(2, 2));
        let s = parse_calls(&text).expect("parse");
        assert_eq!(s.len(), 2);
        let c = cardinality(&s);
        assert_eq!(c.spans, 9);
        assert_eq!(c.series, 2);
        assert_eq!(c.series_by_service, 1);
        assert_eq!(c.resources, 2);
        assert_eq!(
            c.span_names.into_iter().collect::<Vec<_>>(),
            vec!["GET".to_string()]
        );
    }
}
