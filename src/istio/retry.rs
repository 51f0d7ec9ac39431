//! Retry policy rules. A VirtualService `retries` block replaces Istio's default policy; it does
//! not add to it.

use std::collections::BTreeSet;

use crate::api::istio::HttpRetry;

/// Istio's default `retryOn` when a route has no `retries` block.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
pub const DEFAULT_ATTEMPTS: i32 = 2;

/// Conditions under which Envoy retries on any upstream reset, whether or not the request was
/// sent: its `wouldRetryFromReset` treats `5xx`, `gateway-error` and `reset` alike, and a
/// connect failure or refused stream is such a reset. A request may therefore run twice.
pub const REPLAYING_CONDITIONS: [&str; 3] = ["reset", "5xx", "gateway-error"];

/// Conditions that retry a request whose connection was reset (what an idle-timeout race causes).
pub const RESET_CONDITIONS: [&str; 4] = ["reset", "reset-before-request", "5xx", "gateway-error"];

/// The conditions a route retries on, or none when retries are off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryPolicy {
    /// No `retries` block: Istio's defaults.
    Default,
    /// `attempts: 0` (or unset) turns retries off.
    Disabled,
    /// An explicit policy; `retry_on: None` keeps the default conditions.
    Explicit {
        attempts: i32,
        retry_on: Option<BTreeSet<String>>,
    },
}

/// Splits `retryOn` into lower-cased conditions.
pub fn parse_retry_on(text: &str) -> BTreeSet<String> {
    text.split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect()
}

impl RetryPolicy {
    pub fn of(retries: Option<&HttpRetry>) -> Self {
        match retries {
            None => RetryPolicy::Default,
            Some(r) if r.attempts <= 0 => RetryPolicy::Disabled,
            Some(r) => RetryPolicy::Explicit {
                attempts: r.attempts,
                retry_on: r
                    .retry_on
                    .as_deref()
                    .map(parse_retry_on)
                    .filter(|conditions| !conditions.is_empty()),
            },
        }
    }

    /// The conditions in force (empty when retries are off).
    pub fn conditions(&self) -> BTreeSet<String> {
        match self {
            RetryPolicy::Default | RetryPolicy::Explicit { retry_on: None, .. } => {
                parse_retry_on(DEFAULT_RETRY_ON)
            }
            RetryPolicy::Explicit {
                retry_on: Some(conditions),
                ..
            } => conditions.clone(),
            RetryPolicy::Disabled => BTreeSet::new(),
        }
    }

    /// Retries a request whose upstream connection was reset.
    pub fn covers_reset(&self) -> bool {
        let conditions = self.conditions();
        RESET_CONDITIONS.iter().any(|c| conditions.contains(*c))
    }

    /// Retries on resets after the request may have reached the app (see [`REPLAYING_CONDITIONS`]).
    pub fn replays_on_reset(&self) -> bool {
        let conditions = self.conditions();
        REPLAYING_CONDITIONS.iter().any(|c| conditions.contains(*c))
    }

    /// Default conditions an explicit `retryOn` no longer covers. `5xx`, `gateway-error` and
    /// `reset` imply connect-failure and refused-stream, as Envoy defines them; nothing implies
    /// gRPC's `unavailable` and `cancelled`. Empty for the default and disabled policies.
    pub fn dropped_defaults(&self, grpc: bool) -> Vec<&'static str> {
        let RetryPolicy::Explicit {
            retry_on: Some(conditions),
            ..
        } = self
        else {
            return Vec::new();
        };
        let replays = REPLAYING_CONDITIONS.iter().any(|c| conditions.contains(*c));
        let mut required = vec!["connect-failure", "refused-stream"];
        if grpc {
            required.extend(["unavailable", "cancelled"]);
        }
        required
            .into_iter()
            .filter(|c| !conditions.contains(*c))
            .filter(|c| !(replays && matches!(*c, "connect-failure" | "refused-stream")))
            .collect()
    }
}

/// Methods that are safe to send twice.
pub const IDEMPOTENT_METHODS: [&str; 6] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"];

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(attempts: i32, retry_on: Option<&str>) -> HttpRetry {
        HttpRetry {
            attempts,
            per_try_timeout: None,
            retry_on: retry_on.map(String::from),
        }
    }

    #[test]
    fn default_policy_does_not_cover_resets() {
        let policy = RetryPolicy::of(None);
        assert!(!policy.covers_reset());
        assert!(policy.conditions().contains("connect-failure"));
        assert!(policy.dropped_defaults(true).is_empty());
    }

    #[test]
    fn zero_attempts_disable_retries() {
        let policy = RetryPolicy::of(Some(&retry(0, Some("reset"))));
        assert_eq!(policy, RetryPolicy::Disabled);
        assert!(!policy.covers_reset());
        assert!(policy.dropped_defaults(false).is_empty());
    }

    #[test]
    fn explicit_retry_on_replaces_defaults() {
        let policy = RetryPolicy::of(Some(&retry(3, Some("retriable-status-codes,unavailable"))));
        assert!(!policy.covers_reset());
        assert_eq!(
            policy.dropped_defaults(false),
            vec!["connect-failure", "refused-stream"]
        );
        assert_eq!(
            policy.dropped_defaults(true),
            vec!["connect-failure", "refused-stream", "cancelled"]
        );
        // reset (like 5xx and gateway-error) retries connect failures and refused streams too.
        let policy = RetryPolicy::of(Some(&retry(3, Some("reset,gateway-error"))));
        assert!(policy.covers_reset() && policy.replays_on_reset());
        assert!(policy.dropped_defaults(false).is_empty());
        let before = RetryPolicy::of(Some(&retry(3, Some("reset-before-request"))));
        assert!(before.covers_reset() && !before.replays_on_reset());
    }

    #[test]
    fn five_xx_implies_connect_failure_and_refused_stream() {
        let policy = RetryPolicy::of(Some(&retry(2, Some("5xx"))));
        assert!(policy.covers_reset());
        assert!(policy.dropped_defaults(false).is_empty());
        assert_eq!(
            policy.dropped_defaults(true),
            vec!["unavailable", "cancelled"]
        );
    }

    #[test]
    fn missing_retry_on_keeps_defaults() {
        let policy = RetryPolicy::of(Some(&retry(5, None)));
        assert!(!policy.covers_reset());
        assert!(policy.dropped_defaults(true).is_empty());
    }
}
