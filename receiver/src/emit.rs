//! Records → encoded spans → the export queue, with one cached OTLP resource per traced process.
//!
//! A resource is built and encoded once per process (its attributes come from `/proc` and the
//! config) and shared by every span of that process until no connection refers to the process
//! any more. Spans are encoded straight into the sender's chunk (`span::encode_span`), and the
//! chunk is handed to the exporter once per [`Emitter::emit`] call, i.e. once per drain round.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::export::SpanSender;
use crate::model::{PROTOCOL_COUNT, ProcessMeta, Protocol};
use crate::record::ConnRecord;
use crate::span::{EncodedResource, SpanBuf};
use crate::{span, telemetry};

/// See the module documentation.
pub struct Emitter {
    host_name: String,
    resource_attrs: Vec<(String, String)>,
    sender: SpanSender,
    resources: HashMap<u32, (Weak<ProcessMeta>, Arc<EncodedResource>)>,
    /// The last record's process and its resource: records of one process come in runs. The
    /// `Weak` keeps the allocation, so a pointer match is never another process's `Arc`.
    last: Option<(Weak<ProcessMeta>, Arc<EncodedResource>)>,
    scratch: SpanBuf,
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
            last: None,
            scratch: SpanBuf::default(),
        }
    }

    /// Encodes every record as a span and hands them to the export queue (a full queue is a
    /// counted drop there).
    pub fn emit(&mut self, records: &mut Vec<ConnRecord>) {
        if records.is_empty() {
            // A backlog chunk held while the exporter was behind goes out once it caught up,
            // even when no span comes any more.
            self.sender.flush();
            return;
        }
        let mut created = [0u64; PROTOCOL_COUNT];
        for rec in records.drain(..) {
            let resource = self.resource(&rec.conn.process);
            if let Some(n) = created.get_mut(rec.protocol.index()) {
                *n += 1;
            }
            let sb = &mut self.scratch;
            self.sender
                .encode(&resource, |out| span::encode_span(&rec, sb, out));
        }
        // Counted before the spans reach the exporter, so a scrape never sees a span exported
        // before it was created.
        let m = telemetry::metrics();
        for (i, n) in created.iter().enumerate() {
            if let (true, Some(p)) = (*n > 0, Protocol::ALL.get(i)) {
                m.protocol(*p)
                    .spans_created
                    .fetch_add(*n, Ordering::Relaxed);
            }
        }
        self.sender.flush();
    }

    fn resource(&mut self, process: &Arc<ProcessMeta>) -> Arc<EncodedResource> {
        if let Some((p, r)) = &self.last
            && std::ptr::eq(p.as_ptr(), Arc::as_ptr(process))
        {
            return r.clone();
        }
        let cached = self
            .resources
            .get(&process.pid)
            .filter(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(process)))
            .map(|(_, r)| r.clone());
        let r = cached.unwrap_or_else(|| {
            let r = Arc::new(span::encode_resource(
                process,
                &self.host_name,
                &self.resource_attrs,
            ));
            self.resources
                .insert(process.pid, (Arc::downgrade(process), r.clone()));
            r
        });
        self.last = Some((Arc::downgrade(process), r.clone()));
        r
    }

    /// Forgets resources of processes no connection refers to any more.
    pub fn prune(&mut self) {
        self.last = None;
        self.resources
            .retain(|_, (weak, _)| weak.strong_count() > 0);
    }
}
