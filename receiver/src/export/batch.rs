//! Micro-batches: spans grouped into one `ResourceSpans` per resource, one `ScopeSpans` each.
//!
//! Resources are grouped by `Arc` identity: the caller keeps one `Arc<Resource>` per traced
//! process, so pointer equality is resource equality and costs no hashing of attributes. Two
//! distinct `Arc`s with equal contents only cost an extra `ResourceSpans` entry.
//!
//! The request size is tracked as an upper bound of the encoded `ExportTraceServiceRequest`
//! (each span's length plus its field tag and length prefix, each resource group's resource and
//! scope plus their framing), so a batch closed at `max_request_bytes` never exceeds it — except
//! a single span larger than the limit, which goes alone and lets the Collector decide.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

use super::queue::Item;
use crate::span::{SCHEMA_URL, SCOPE_NAME, SCOPE_VERSION};

/// Tag (1 byte) plus the longest varint length prefix (5 bytes for < 4 GiB).
const FIELD_FRAMING: usize = 6;
/// Scope name, version, schema URLs (two) and the framing of `ResourceSpans`/`ScopeSpans`/
/// `InstrumentationScope`.
const GROUP_OVERHEAD: usize =
    SCOPE_NAME.len() + SCOPE_VERSION.len() + 2 * SCHEMA_URL.len() + 6 * FIELD_FRAMING;

/// Spans gathered for one export request.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    groups: Vec<(Arc<Resource>, Vec<Span>)>,
    /// `Arc::as_ptr` of a group's resource → its index in `groups`.
    index: HashMap<usize, usize>,
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

    fn key(resource: &Arc<Resource>) -> usize {
        Arc::as_ptr(resource) as usize
    }

    /// Encoded bytes `item` would add to the request.
    fn cost(&self, item: &Item) -> usize {
        let group = if self.index.contains_key(&Self::key(&item.resource)) {
            0
        } else {
            item.resource.encoded_len() + GROUP_OVERHEAD
        };
        item.bytes + FIELD_FRAMING + group
    }

    /// Whether adding `item` would take a non-empty batch past `max_request_bytes`.
    pub fn would_exceed(&self, item: &Item, max_request_bytes: usize) -> bool {
        !self.is_empty() && self.request_bytes + self.cost(item) > max_request_bytes
    }

    pub fn push(&mut self, item: Item) {
        self.request_bytes += self.cost(&item);
        self.spans += 1;
        self.queue_bytes += item.bytes;
        let key = Self::key(&item.resource);
        match self.index.get(&key) {
            Some(&i) => {
                if let Some((_, spans)) = self.groups.get_mut(i) {
                    spans.push(item.span);
                }
            }
            None => {
                self.index.insert(key, self.groups.len());
                self.groups.push((item.resource, vec![item.span]));
            }
        }
    }

    /// The OTLP request: one `ResourceSpans` per resource, in first-seen order.
    pub fn into_request(self) -> ExportTraceServiceRequest {
        let resource_spans = self
            .groups
            .into_iter()
            .map(|(resource, spans)| ResourceSpans {
                resource: Some(Arc::unwrap_or_clone(resource)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_string(),
                        version: SCOPE_VERSION.to_string(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: SCHEMA_URL.to_string(),
                }],
                schema_url: SCHEMA_URL.to_string(),
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{kv_int, kv_str};

    fn resource(pid: i64) -> Arc<Resource> {
        Arc::new(Resource {
            attributes: vec![kv_str("service.name", "svc"), kv_int("process.pid", pid)],
            ..Default::default()
        })
    }

    fn item(resource: &Arc<Resource>, name: &str) -> Item {
        let span = Span {
            name: name.to_string(),
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            attributes: vec![kv_str("db.system.name", "mysql")],
            ..Default::default()
        };
        let bytes = span.encoded_len();
        Item {
            resource: resource.clone(),
            span,
            bytes,
        }
    }

    #[test]
    fn groups_one_resource_spans_per_resource_in_order() {
        let (a, b) = (resource(1), resource(2));
        let mut batch = Batch::default();
        for (r, n) in [(&a, "a1"), (&b, "b1"), (&a, "a2"), (&b, "b2"), (&a, "a3")] {
            batch.push(item(r, n));
        }
        assert_eq!(batch.len(), 5);
        let req = batch.into_request();
        assert_eq!(req.resource_spans.len(), 2);
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
        }
        assert_eq!(req.resource_spans[0].resource.as_ref(), Some(&*a));
        assert_eq!(req.resource_spans[1].resource.as_ref(), Some(&*b));
    }

    #[test]
    fn request_bytes_bound_the_encoded_request() {
        let resources: Vec<_> = (0..7).map(resource).collect();
        let mut batch = Batch::default();
        for i in 0..300 {
            batch.push(item(&resources[i % resources.len()], &"q".repeat(i % 50)));
        }
        let bound = batch.request_bytes();
        let actual = batch.into_request().encoded_len();
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
        let big = item(&r, &"x".repeat(1000));
        assert!(
            !batch.would_exceed(&big, 10),
            "an empty batch takes any span"
        );
        batch.push(big);
        assert!(batch.would_exceed(&item(&r, "small"), 10));
        let limit = 5000;
        let mut batch = Batch::default();
        let mut pushed = 0;
        loop {
            let it = item(&r, &"y".repeat(200));
            if batch.would_exceed(&it, limit) {
                break;
            }
            batch.push(it);
            pushed += 1;
        }
        assert!(pushed > 10);
        assert_eq!(
            batch.queue_bytes(),
            pushed * item(&r, &"y".repeat(200)).bytes
        );
        assert!(batch.into_request().encoded_len() <= limit);
    }
}
