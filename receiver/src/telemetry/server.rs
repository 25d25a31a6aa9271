//! `/metrics`, `/healthz`, `/readyz`. (Being written.)
