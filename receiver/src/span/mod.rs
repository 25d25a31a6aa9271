//! Record → OTLP span per the OpenTelemetry semantic conventions. (Being written.)
