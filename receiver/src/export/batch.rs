//! Micro-batches: spans grouped into one `ResourceSpans` per resource, one `ScopeSpans` each,
//! assembled from already encoded spans into one `ExportTraceServiceRequest`.
//!
//! Resources are grouped by `Arc` identity: the emitter keeps one `Arc<EncodedResource>` per
//! traced process, so pointer equality is resource equality and costs no hashing of attributes.
//! Two distinct `Arc`s with equal contents only cost an extra `ResourceSpans` entry.
//!
//! Each group's spans are copied into a buffer of their own (reused from batch to batch); the
//! request is written once, with exact lengths, when the batch is sent. The request size is
//! tracked as an upper bound (each span's bytes, each group's resource and scope plus the
//! longest framing), so a batch closed at `max_request_bytes` never exceeds it — except a
//! single span larger than the limit, which goes alone and lets the Collector decide.

use std::sync::Arc;

use crate::span::wire::{bytes_field, len_field_size, len_header};
use crate::span::{EncodedResource, SCHEMA_URL, SCOPE_NAME, SCOPE_VERSION};

/// Tag (1 byte) plus the longest varint length prefix (5 bytes for < 4 GiB).
const FIELD_FRAMING: usize = 6;
/// Scope name, version, schema URLs (two) and the framing of `ResourceSpans`/`ScopeSpans`/
/// `InstrumentationScope`.
const GROUP_OVERHEAD: usize =
    SCOPE_NAME.len() + SCOPE_VERSION.len() + 2 * SCHEMA_URL.len() + 6 * FIELD_FRAMING;

/// Field numbers: `ExportTraceServiceRequest.resource_spans`, `ResourceSpans.{resource,
/// scope_spans, schema_url}`, `ScopeSpans.{scope, schema_url}` (spans are already framed),
/// `InstrumentationScope.{name, version}`.
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RS_RESOURCE: u32 = 1;
const RS_SCOPE_SPANS: u32 = 2;
const RS_SCHEMA_URL: u32 = 3;
const SS_SCOPE: u32 = 1;
const SS_SCHEMA_URL: u32 = 3;
const SCOPE_F_NAME: u32 = 1;
const SCOPE_F_VERSION: u32 = 2;

/// A reused buffer keeps at most twice what its last use needed, and never less than this: after
/// a backlog's full batches, light traffic does not keep their size resident (the soak's
/// Collector restart, issue 8 R13).
pub(crate) const KEPT_FLOOR_BYTES: usize = 64 * 1024;
/// The same floor for one resource's span buffer (a batch has one per traced process).
const KEPT_GROUP_FLOOR_BYTES: usize = 4 * 1024;

/// Gives back a reused buffer's room beyond twice `used` (and beyond [`KEPT_FLOOR_BYTES`]).
pub(crate) fn shrink_after_use(buf: &mut Vec<u8>, used: usize) {
    shrink_to_use(buf, used, KEPT_FLOOR_BYTES);
}

fn shrink_to_use(buf: &mut Vec<u8>, used: usize, floor: usize) {
    let keep = used.saturating_mul(2).max(floor);
    if buf.capacity() > keep {
        buf.shrink_to(keep);
    }
}

/// One resource's spans in the batch.
#[derive(Debug)]
struct Group {
    resource: Arc<EncodedResource>,
    /// Encoded `ScopeSpans.spans` fields.
    spans: Vec<u8>,
}

/// Spans gathered for one export request.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    groups: Vec<Group>,
    /// Span buffers of earlier batches, kept for reuse.
    free: Vec<Vec<u8>>,
    /// Index in `groups` of the last span's resource (spans of one process come in runs).
    last: usize,
    spans: usize,
    /// Budget bytes to release when the batch is finished.
    queue_bytes: usize,
    /// Upper bound of the encoded request size.
    request_bytes: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.spans == 0
    }

    pub fn queue_bytes(&self) -> usize {
        self.queue_bytes
    }

    #[cfg(test)]
    pub fn request_bytes(&self) -> usize {
        self.request_bytes
    }

    fn find(&self, resource: &Arc<EncodedResource>) -> Option<usize> {
        if self
            .groups
            .get(self.last)
            .is_some_and(|g| Arc::ptr_eq(&g.resource, resource))
        {
            return Some(self.last);
        }
        self.groups
            .iter()
            .position(|g| Arc::ptr_eq(&g.resource, resource))
    }

    /// Encoded bytes a span would add to the request.
    fn cost(&self, resource: &Arc<EncodedResource>, span: &[u8]) -> usize {
        let group = match self.find(resource) {
            Some(_) => 0,
            None => resource.as_bytes().len() + GROUP_OVERHEAD,
        };
        span.len() + group
    }

    /// Whether adding a span would take a non-empty batch past `max_request_bytes`.
    pub fn would_exceed(
        &self,
        resource: &Arc<EncodedResource>,
        span: &[u8],
        max_request_bytes: usize,
    ) -> bool {
        !self.is_empty() && self.request_bytes + self.cost(resource, span) > max_request_bytes
    }

    /// Adds one encoded span (a `ScopeSpans.spans` field) of `resource`.
    pub fn push(&mut self, resource: &Arc<EncodedResource>, span: &[u8]) {
        self.request_bytes += self.cost(resource, span);
        self.spans += 1;
        self.queue_bytes += span.len();
        let i = match self.find(resource) {
            Some(i) => i,
            None => {
                self.groups.push(Group {
                    resource: resource.clone(),
                    spans: self.free.pop().unwrap_or_default(),
                });
                self.groups.len() - 1
            }
        };
        self.last = i;
        if let Some(g) = self.groups.get_mut(i) {
            g.spans.extend_from_slice(span);
        }
    }

    /// Writes the `ExportTraceServiceRequest` (one `ResourceSpans` per resource, in first-seen
    /// order) to `out` and empties the batch, keeping its buffers.
    pub fn encode_into(&mut self, out: &mut Vec<u8>) {
        let scope = len_field_size(SCOPE_F_NAME, SCOPE_NAME.len())
            + len_field_size(SCOPE_F_VERSION, SCOPE_VERSION.len());
        let scope_field = len_field_size(SS_SCOPE, scope);
        let schema_field = len_field_size(SS_SCHEMA_URL, SCHEMA_URL.len());
        out.reserve(self.request_bytes);
        // Only this batch's span buffers are kept: a backlog's batch spanning many processes
        // does not leave one buffer per process behind.
        self.free.clear();
        for g in self.groups.drain(..) {
            let resource = g.resource.as_bytes();
            let scope_spans = scope_field + g.spans.len() + schema_field;
            let resource_spans = len_field_size(RS_RESOURCE, resource.len())
                + len_field_size(RS_SCOPE_SPANS, scope_spans)
                + len_field_size(RS_SCHEMA_URL, SCHEMA_URL.len());
            len_header(out, REQUEST_RESOURCE_SPANS, resource_spans);
            bytes_field(out, RS_RESOURCE, resource);
            len_header(out, RS_SCOPE_SPANS, scope_spans);
            len_header(out, SS_SCOPE, scope);
            bytes_field(out, SCOPE_F_NAME, SCOPE_NAME.as_bytes());
            bytes_field(out, SCOPE_F_VERSION, SCOPE_VERSION.as_bytes());
            out.extend_from_slice(&g.spans);
            bytes_field(out, SS_SCHEMA_URL, SCHEMA_URL.as_bytes());
            bytes_field(out, RS_SCHEMA_URL, SCHEMA_URL.as_bytes());
            let mut spans = g.spans;
            let used = spans.len();
            spans.clear();
            shrink_to_use(&mut spans, used, KEPT_GROUP_FLOOR_BYTES);
            self.free.push(spans);
        }
        self.last = 0;
        self.spans = 0;
        self.queue_bytes = 0;
        self.request_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{kv_int, kv_str};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;

    fn prost_resource(pid: i64) -> Resource {
        Resource {
            attributes: vec![kv_str("service.name", "svc"), kv_int("process.pid", pid)],
            ..Default::default()
        }
    }

    fn resource(pid: i64) -> Arc<EncodedResource> {
        Arc::new(EncodedResource::new(&prost_resource(pid)))
    }

    /// A span as the emitter encodes it: one `ScopeSpans.spans` field.
    fn span(name: &str) -> Vec<u8> {
        let span = Span {
            name: name.to_string(),
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            attributes: vec![kv_str("db.system.name", "mysql")],
            ..Default::default()
        };
        let mut buf = Vec::new();
        prost::encoding::message::encode(crate::span::wire::SCOPE_SPANS_SPANS, &span, &mut buf);
        buf
    }

    fn request(batch: &mut Batch) -> ExportTraceServiceRequest {
        let mut out = Vec::new();
        batch.encode_into(&mut out);
        ExportTraceServiceRequest::decode(out.as_slice()).expect("valid OTLP")
    }

    #[test]
    fn groups_one_resource_spans_per_resource_in_order() {
        let (a, b) = (resource(1), resource(2));
        let mut batch = Batch::default();
        for round in 0..2 {
            for (r, n) in [(&a, "a1"), (&b, "b1"), (&a, "a2"), (&b, "b2"), (&a, "a3")] {
                batch.push(r, &span(n));
            }
            assert_eq!(batch.len(), 5);
            let req = request(&mut batch);
            assert!(batch.is_empty(), "encoding empties the batch");
            assert_eq!(req.resource_spans.len(), 2, "round {round}");
            let names = |i: usize| -> Vec<String> {
                req.resource_spans[i].scope_spans[0]
                    .spans
                    .iter()
                    .map(|s| s.name.clone())
                    .collect()
            };
            assert_eq!(names(0), ["a1", "a2", "a3"]);
            assert_eq!(names(1), ["b1", "b2"]);
            for rs in &req.resource_spans {
                assert_eq!(rs.schema_url, SCHEMA_URL);
                assert_eq!(rs.scope_spans.len(), 1);
                let scope = rs.scope_spans[0].scope.as_ref().unwrap();
                assert_eq!(
                    (scope.name.as_str(), scope.version.as_str()),
                    (SCOPE_NAME, SCOPE_VERSION)
                );
                assert_eq!(rs.scope_spans[0].schema_url, SCHEMA_URL);
                assert_eq!(rs.scope_spans[0].spans[0].span_id, vec![1; 8]);
            }
            assert_eq!(req.resource_spans[0].resource, Some(prost_resource(1)));
            assert_eq!(req.resource_spans[1].resource, Some(prost_resource(2)));
        }
    }

    #[test]
    fn request_bytes_bound_the_encoded_request() {
        let resources: Vec<_> = (0..7).map(resource).collect();
        let mut batch = Batch::default();
        for i in 0..300 {
            batch.push(&resources[i % resources.len()], &span(&"q".repeat(i % 50)));
        }
        let bound = batch.request_bytes();
        let mut out = Vec::new();
        batch.encode_into(&mut out);
        let actual = out.len();
        assert!(actual <= bound, "encoded {actual} > bound {bound}");
        assert!(
            bound - actual < bound / 5,
            "bound {bound} too loose for {actual}"
        );
    }

    #[test]
    fn would_exceed_closes_at_the_byte_limit_but_takes_one_oversized_span() {
        let r = resource(1);
        let mut batch = Batch::default();
        let big = span(&"x".repeat(1000));
        assert!(
            !batch.would_exceed(&r, &big, 10),
            "an empty batch takes any span"
        );
        batch.push(&r, &big);
        assert!(batch.would_exceed(&r, &span("small"), 10));
        let limit = 5000;
        let mut batch = Batch::default();
        let mut pushed = 0;
        let y = span(&"y".repeat(200));
        while !batch.would_exceed(&r, &y, limit) {
            batch.push(&r, &y);
            pushed += 1;
        }
        assert!(pushed > 10);
        assert_eq!(batch.queue_bytes(), pushed * y.len());
        let mut out = Vec::new();
        batch.encode_into(&mut out);
        assert!(out.len() <= limit);
    }

    #[test]
    fn reused_buffers_give_back_what_a_backlog_batch_needed() {
        let r = resource(1);
        let mut batch = Batch::default();
        // A drain after an outage: one full batch of large spans (about 1 MiB).
        let big = span(&"b".repeat(1000));
        for _ in 0..1000 {
            batch.push(&r, &big);
        }
        let mut out = Vec::new();
        batch.encode_into(&mut out);
        assert!(out.len() > 1 << 20);
        let kept = batch.free.iter().map(Vec::capacity).sum::<usize>();
        assert!(
            kept <= 2 * 1000 * big.len(),
            "{kept} bytes kept after the drain"
        );
        // Light traffic afterwards: the group buffer keeps only its floor.
        batch.push(&r, &span("small"));
        let _ = request(&mut batch);
        let kept = batch.free.iter().map(Vec::capacity).sum::<usize>();
        assert!(
            kept <= KEPT_GROUP_FLOOR_BYTES,
            "{kept} bytes kept after a one-span batch"
        );
        // A batch of many processes, then one of a single process: one buffer is kept.
        for pid in 0..50 {
            batch.push(&resource(pid), &big);
        }
        let _ = request(&mut batch);
        assert_eq!(batch.free.len(), 50);
        batch.push(&r, &span("small"));
        let _ = request(&mut batch);
        assert_eq!(
            batch.free.len(),
            1,
            "buffers beyond the last batch's groups are dropped"
        );
        // The request buffer follows the same rule.
        out.clear();
        shrink_after_use(&mut out, 300);
        assert!(out.capacity() <= KEPT_FLOOR_BYTES);
        let mut steady = Vec::with_capacity(400_000);
        shrink_after_use(&mut steady, 300_000);
        assert_eq!(steady.capacity(), 400_000, "steady use keeps its room");
    }
}
