//! Records → spans → the export queue, with one cached OTLP resource per traced process.
//!
//! A resource is built once per process (its attributes come from `/proc` and the config) and
//! shared by every span of that process until no connection refers to the process any more.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::export::SpanSender;
use crate::model::ProcessMeta;
use crate::record::ConnRecord;
use crate::{span, telemetry};

/// See the module documentation.
pub struct Emitter {
    host_name: String,
    resource_attrs: Vec<(String, String)>,
    sender: SpanSender,
    resources: HashMap<u32, (Weak<ProcessMeta>, Arc<Resource>)>,
}

impl Emitter {
    /// `resource_attrs` (from `OTEL_RESOURCE_ATTRIBUTES`) are added to every resource.
    pub fn new(
        host_name: String,
        resource_attrs: Vec<(String, String)>,
        sender: SpanSender,
    ) -> Self {
        Emitter {
            host_name,
            resource_attrs,
            sender,
            resources: HashMap::new(),
        }
    }

    /// Turns every record into a span and queues it (a full queue is a counted drop there).
    pub fn emit(&mut self, records: &mut Vec<ConnRecord>) {
        for rec in records.drain(..) {
            let resource = self.resource(&rec.conn.process);
            telemetry::metrics()
                .protocol(rec.protocol)
                .spans_created
                .fetch_add(1, Ordering::Relaxed);
            self.sender.send(resource, span::build_span(&rec));
        }
    }

    fn resource(&mut self, process: &Arc<ProcessMeta>) -> Arc<Resource> {
        let cached = self
            .resources
            .get(&process.pid)
            .filter(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(process)))
            .map(|(_, r)| r.clone());
        cached.unwrap_or_else(|| {
            let r = Arc::new(span::build_resource(
                process,
                &self.host_name,
                &self.resource_attrs,
            ));
            self.resources
                .insert(process.pid, (Arc::downgrade(process), r.clone()));
            r
        })
    }

    /// Forgets resources of processes no connection refers to any more.
    pub fn prune(&mut self) {
        self.resources
            .retain(|_, (weak, _)| weak.strong_count() > 0);
    }
}
