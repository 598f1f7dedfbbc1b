//! What happened to one attempt against a target, as reported by the proxy.

/// The result of one attempt against a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered with this status.
    Status(u16),
    /// The TCP/TLS connection to the target could not be established.
    ConnectError,
    /// The per-try timeout fired before the response headers arrived.
    Timeout,
    /// The connection was reset or closed before the response headers arrived.
    Reset,
}

impl Outcome {
    /// A gateway-level failure: a 5xx status, or no response at all. This is what outlier
    /// ejection counts; anything else resets its counter.
    pub fn is_failure(&self) -> bool {
        match self {
            Outcome::Status(status) => *status >= 500,
            Outcome::ConnectError | Outcome::Timeout | Outcome::Reset => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_5xx_and_transport_errors() {
        assert!(!Outcome::Status(200).is_failure());
        assert!(!Outcome::Status(404).is_failure());
        assert!(!Outcome::Status(499).is_failure());
        assert!(Outcome::Status(500).is_failure());
        assert!(Outcome::Status(503).is_failure());
        assert!(Outcome::ConnectError.is_failure());
        assert!(Outcome::Timeout.is_failure());
        assert!(Outcome::Reset.is_failure());
    }
}
