//! ebpf-receiver: kernel probes see the requests and responses that processes exchange over
//! sockets; a connection tracker turns them into records and then OpenTelemetry spans, which
//! leave the process only as OTLP/gRPC.
//!
//! Read from [`app`] downwards: [`capture`] runs `bpf` (kernel events) → `tracker`
//! (connections, byte streams) → `protocol` (framing and request/response stitching) →
//! `record` → [`emit`] → `span` → `export`. [`model`] is the vocabulary every stage shares,
//! including the one protocol declaration; `telemetry` holds every self-metric; `config` the
//! YAML configuration.

pub mod app;
pub mod bpf;
pub mod capture;
pub mod config;
pub mod emit;
pub mod export;
pub mod model;
pub mod protocol;
pub mod record;
pub mod recording;
pub mod residency;
pub mod span;
pub mod telemetry;
pub mod tracker;
