//! One OTLP `Resource` per traced process (`docs/resource/*.md`, semconv v1.44.0).
//!
//! | Attribute | Source |
//! |---|---|
//! | `service.name` | the process's own `OTEL_SERVICE_NAME`; else `service.name` from `extra`; else `unknown_service:<process.executable.name>` |
//! | `process.pid` | the traced process's pid as the receiver sees it (its PID namespace: the host's for a DaemonSet, the pod's for a sidecar with a shared PID namespace) |
//! | `process.executable.name` | base name of `/proc/<pid>/exe` |
//! | `host.name` | the configured or kernel host name, when not empty |
//! | `container.id` | from `/proc/<pid>/cgroup`, when present |
//! | `telemetry.distro.name`, `telemetry.distro.version` | `ebpf-receiver` and our version; we are not an SDK, so no `telemetry.sdk.*` |
//! | everything else in `extra` | `OTEL_RESOURCE_ATTRIBUTES` of the receiver |
//!
//! `process.command_line` (and `process.command_args`) are **not** exported: command lines carry
//! secrets often enough (`mysql -pSECRET`, `--password=…`, connection URLs with credentials) that
//! a passive agent attaching them to every span of every process would leak them. Users who
//! want them can add them to the process's own resource by other means.
//!
//! Attributes derived from the process win over `extra`: one receiver observes several
//! processes, and a receiver-wide `OTEL_RESOURCE_ATTRIBUTES` must not relabel them all as one
//! service or pid. Within `extra` the last occurrence of a key wins.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::{SCOPE_NAME, SCOPE_VERSION, kv_int, kv_str};
use crate::model::ProcessMeta;

/// A resource encoded once (the `Resource` message's bytes), shared by every span of its
/// process; the exporter groups spans by the identity of its `Arc`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedResource(Vec<u8>);

impl EncodedResource {
    pub fn new(r: &Resource) -> EncodedResource {
        EncodedResource(prost::Message::encode_to_vec(r))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// [`build_resource`], encoded.
pub fn encode_resource(
    p: &ProcessMeta,
    host_name: &str,
    extra: &[(String, String)],
) -> EncodedResource {
    EncodedResource::new(&build_resource(p, host_name, extra))
}

/// Builds the resource of one traced process.
pub fn build_resource(p: &ProcessMeta, host_name: &str, extra: &[(String, String)]) -> Resource {
    let extra_value = |key: &str| {
        extra
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let service_name = match p.service_name.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => s.to_string(),
        None => match extra_value("service.name") {
            Some(s) => s.to_string(),
            None if p.executable_name.is_empty() => "unknown_service".to_string(),
            None => format!("unknown_service:{}", p.executable_name),
        },
    };
    let mut attrs: Vec<KeyValue> = Vec::with_capacity(7 + extra.len());
    attrs.push(kv_str("service.name", service_name));
    attrs.push(kv_int("process.pid", i64::from(p.pid)));
    if !p.executable_name.is_empty() {
        attrs.push(kv_str(
            "process.executable.name",
            p.executable_name.as_str(),
        ));
    }
    if !host_name.is_empty() {
        attrs.push(kv_str("host.name", host_name));
    }
    if let Some(id) = p.container_id.as_deref().filter(|s| !s.is_empty()) {
        attrs.push(kv_str("container.id", id));
    }
    attrs.push(kv_str("telemetry.distro.name", SCOPE_NAME));
    attrs.push(kv_str("telemetry.distro.version", SCOPE_VERSION));
    let ours = attrs.len();
    for (i, (k, v)) in extra.iter().enumerate() {
        if k.is_empty() || attrs[..ours].iter().any(|kv| kv.key == *k) {
            continue;
        }
        // Last occurrence wins: skip this one if the key appears again later.
        if extra[i + 1..].iter().any(|(k2, _)| k2 == k) {
            continue;
        }
        attrs.push(kv_str(k, v.as_str()));
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::attr;
    use super::*;

    fn proc_meta() -> ProcessMeta {
        ProcessMeta {
            pid: 4242,
            executable_name: "mysql".into(),
            command_line: "mysql -uroot -pSECRET shop".into(),
            service_name: None,
            container_id: Some("abc123".into()),
        }
    }

    fn extra(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_attribute_from_the_process() {
        let r = build_resource(&proc_meta(), "node-1", &[]);
        let a = &r.attributes;
        assert_eq!(
            attr(a, "service.name").as_deref(),
            Some("unknown_service:mysql")
        );
        assert_eq!(attr(a, "process.pid").as_deref(), Some("int:4242"));
        assert_eq!(attr(a, "process.executable.name").as_deref(), Some("mysql"));
        assert_eq!(attr(a, "host.name").as_deref(), Some("node-1"));
        assert_eq!(attr(a, "container.id").as_deref(), Some("abc123"));
        assert_eq!(
            attr(a, "telemetry.distro.name").as_deref(),
            Some("ebpf-receiver")
        );
        assert_eq!(
            attr(a, "telemetry.distro.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(a.len(), 7);
    }

    #[test]
    fn command_line_is_never_exported() {
        let r = build_resource(&proc_meta(), "h", &[]);
        assert_eq!(attr(&r.attributes, "process.command_line"), None);
        let all = format!("{r:?}");
        assert!(!all.contains("SECRET"));
    }

    #[test]
    fn process_service_name_wins_over_extra() {
        let p = ProcessMeta {
            service_name: Some("checkout".into()),
            ..proc_meta()
        };
        let r = build_resource(
            &p,
            "h",
            &extra(&[
                ("service.name", "sidecar"),
                ("deployment.environment.name", "prod"),
            ]),
        );
        assert_eq!(
            attr(&r.attributes, "service.name").as_deref(),
            Some("checkout")
        );
        assert_eq!(
            attr(&r.attributes, "deployment.environment.name").as_deref(),
            Some("prod")
        );
    }

    #[test]
    fn extra_service_name_is_the_fallback_and_cannot_override_process_attributes() {
        let r = build_resource(
            &proc_meta(),
            "",
            &extra(&[
                ("service.name", "first"),
                ("service.name", "orders"),
                ("process.pid", "1"),
                ("k", "a"),
                ("k", "b"),
                ("", "x"),
            ]),
        );
        let a = &r.attributes;
        assert_eq!(attr(a, "service.name").as_deref(), Some("orders"));
        assert_eq!(attr(a, "process.pid").as_deref(), Some("int:4242"));
        assert_eq!(attr(a, "k").as_deref(), Some("b"));
        assert_eq!(attr(a, "host.name"), None, "empty host name is left out");
        assert_eq!(attr(a, ""), None);
    }

    #[test]
    fn missing_executable_and_container() {
        let p = ProcessMeta {
            pid: 1,
            ..Default::default()
        };
        let r = build_resource(&p, "h", &[]);
        assert_eq!(
            attr(&r.attributes, "service.name").as_deref(),
            Some("unknown_service")
        );
        assert_eq!(attr(&r.attributes, "process.executable.name"), None);
        assert_eq!(attr(&r.attributes, "container.id"), None);
    }
}
