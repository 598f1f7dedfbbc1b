//! What counts as a failed call.

/// How one call to an upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The upstream answered with this status.
    Status(u16),
    /// No connection could be made.
    ConnectError,
    /// The upstream did not answer in time.
    Timeout,
    /// The connection broke before a response arrived.
    Reset,
}

/// Which call results are failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Statuses that are failures (default 500, 502, 503, 504).
    pub statuses: Vec<u16>,
    /// Whether timeouts are failures (default true).
    pub timeouts: bool,
    /// Whether connect errors and broken connections are failures (default true).
    pub connect_errors: bool,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            statuses: vec![500, 502, 503, 504],
            timeouts: true,
            connect_errors: true,
        }
    }
}

impl FailurePolicy {
    /// Whether `result` is a failure.
    pub fn is_failure(&self, result: CallResult) -> bool {
        match result {
            CallResult::Status(s) => self.statuses.contains(&s),
            CallResult::Timeout => self.timeouts,
            CallResult::ConnectError | CallResult::Reset => self.connect_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy() {
        let p = FailurePolicy::default();
        for s in [500, 502, 503, 504] {
            assert!(p.is_failure(CallResult::Status(s)), "{s}");
        }
        for s in [200, 404, 429, 501] {
            assert!(!p.is_failure(CallResult::Status(s)), "{s}");
        }
        assert!(p.is_failure(CallResult::Timeout));
        assert!(p.is_failure(CallResult::ConnectError));
        assert!(p.is_failure(CallResult::Reset));
    }

    #[test]
    fn switches_turn_kinds_off() {
        let p = FailurePolicy {
            statuses: vec![429],
            timeouts: false,
            connect_errors: false,
        };
        assert!(p.is_failure(CallResult::Status(429)));
        assert!(!p.is_failure(CallResult::Status(500)));
        assert!(!p.is_failure(CallResult::Timeout));
        assert!(!p.is_failure(CallResult::ConnectError));
        assert!(!p.is_failure(CallResult::Reset));
    }
}
