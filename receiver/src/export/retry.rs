//! Which failures are retried, and how long to wait (OTLP spec, `docs/specification.md`
//! § "Failures"; OTLP v1.10.0).
//!
//! Retryable: `CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS`, and
//! `RESOURCE_EXHAUSTED` only when the status carries `google.rpc.RetryInfo` (the server says the
//! condition will pass). Everything else is permanent: the batch is dropped and counted.
//! The delay is exponential with jitter, and never shorter than a `RetryInfo.retry_delay` the
//! server sent ("the client SHOULD wait at least that long, then continue exponential
//! back-off").
//!
//! One addition the spec leaves to the transport: a request that got **no gRPC answer** (the
//! connection reset, closed or broke mid-request, as when the Collector is SIGKILLed) is
//! retried like `UNAVAILABLE`, which is what grpc-go and grpc-java report for it. tonic reports
//! it as `UNKNOWN` (or `INTERNAL` for some HTTP/2 errors) carrying the local transport error as
//! its source; a status the server sent never has a source, so a Collector's own `UNKNOWN` or
//! `INTERNAL` stays permanent.

use std::error::Error as _;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// What to do after a failed export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Send again, after at least the server's hint if it gave one.
    After(Option<Duration>),
    /// Drop the batch.
    Never,
}

/// Classifies a failed export per the OTLP specification.
pub(crate) fn classify(status: &Status) -> Retry {
    let hint = || status.get_details_retry_info().and_then(|r| r.retry_delay);
    match status.code() {
        Code::Unknown | Code::Internal if no_answer(status) => Retry::After(None),
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Retry::After(hint()),
        Code::ResourceExhausted => match status.get_details_retry_info() {
            Some(info) => Retry::After(info.retry_delay),
            None => Retry::Never,
        },
        _ => Retry::Never,
    }
}

/// Whether `status` was made here from a transport error (no gRPC answer came back) rather
/// than sent by the server.
fn no_answer(status: &Status) -> bool {
    status.source().is_some()
}

/// Exponential back-off with "equal jitter": attempt `n` waits a uniformly random time in
/// `[b/2, b]` where `b = min(initial · 2ⁿ, max)`. Half of the delay is guaranteed (so a fleet
/// of receivers does not retry in lock step against a Collector that just restarted), half is
/// spread.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The ceiling `b` of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay, taking the server's hint into account.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = ceiling.saturating_sub(half);
        // 53 random bits → a fraction in [0, 1].
        let frac = (crate::span::random_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let jittered = half + spread.mul_f64(frac);
        match hint {
            Some(h) => jittered.max(h),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn with_retry_info(code: Code, d: Duration) -> Status {
        Status::with_error_details(code, "slow down", ErrorDetails::with_retry_info(Some(d)))
    }

    #[test]
    fn classification_follows_the_otlp_spec() {
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert_eq!(
                classify(&Status::new(code, "x")),
                Retry::After(None),
                "{code:?}"
            );
        }
        for code in [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ] {
            assert_eq!(classify(&Status::new(code, "x")), Retry::Never, "{code:?}");
        }
    }

    #[test]
    fn a_request_without_an_answer_is_retried_but_a_servers_unknown_is_not() {
        // What tonic builds when the connection breaks mid-request: UNKNOWN with the local
        // error as its source (here an error no mapping recognises, like hyper's "connection
        // closed before message completed").
        let broken = Status::from_error(Box::new(std::io::Error::other(
            "connection closed before message completed",
        )));
        assert_eq!(broken.code(), Code::Unknown);
        assert_eq!(classify(&broken), Retry::After(None));
        // The same codes sent by a server (decoded from `grpc-status`: no source) are permanent.
        let sent = Status::from_header_map(&{
            let mut h = tonic::metadata::MetadataMap::new().into_headers();
            h.insert("grpc-status", "2".parse().unwrap());
            h
        })
        .unwrap();
        assert_eq!(sent.code(), Code::Unknown);
        assert_eq!(classify(&sent), Retry::Never);
        assert_eq!(classify(&Status::internal("x")), Retry::Never);
    }

    #[test]
    fn retry_info_makes_resource_exhausted_retryable_and_carries_the_delay() {
        let d = Duration::from_millis(1500);
        assert_eq!(
            classify(&with_retry_info(Code::ResourceExhausted, d)),
            Retry::After(Some(d))
        );
        assert_eq!(
            classify(&with_retry_info(Code::Unavailable, d)),
            Retry::After(Some(d))
        );
        assert_eq!(
            classify(&with_retry_info(Code::InvalidArgument, d)),
            Retry::Never
        );
    }

    #[test]
    fn backoff_stays_within_bounds_and_doubles_to_the_cap() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for _ in 0..200 {
            let mut b = Backoff::new(initial, max);
            let mut ceiling = initial;
            for _ in 0..12 {
                assert_eq!(b.ceiling(), ceiling);
                let d = b.next_delay(None);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "{d:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
                ceiling = (ceiling * 2).min(max);
            }
        }
    }

    #[test]
    fn backoff_jitters() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.insert(
                Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay(None),
            );
        }
        assert!(seen.len() > 40, "delays barely vary: {seen:?}");
    }

    #[test]
    fn hint_is_a_floor_and_backoff_continues() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        let d = b.next_delay(Some(Duration::from_millis(1)));
        assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
    }

    #[test]
    fn huge_attempt_counts_saturate() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay(None) <= Duration::from_secs(30));
        }
    }
}
