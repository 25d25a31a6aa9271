//! Bounded queue, micro-batches, OTLP/gRPC client. (Being written.)
