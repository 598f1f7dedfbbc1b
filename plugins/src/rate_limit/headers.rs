//! The IETF httpapi ratelimit-headers draft fields (draft-ietf-httpapi-ratelimit-headers-09):
//! `RateLimit-Policy: "NAME";q=QUOTA;w=WINDOW` and `RateLimit: "NAME";r=REMAINING;t=RESET`,
//! structured-field lists with integer seconds.

use std::time::Duration;

use super::units::Rate;

/// The `RateLimit-Policy` value of `rate` under `policy`: the quota per window in whole seconds.
/// A period under a second is advertised as its quota over one second.
pub fn policy(policy: &str, rate: Rate) -> String {
    let (quota, window) = if rate.period < Duration::from_secs(1) {
        let per_second = u128::from(rate.count) * 1_000_000_000 / rate.period.as_nanos().max(1);
        (u64::try_from(per_second).unwrap_or(u64::MAX), 1)
    } else {
        (u64::from(rate.count), seconds_up(rate.period))
    };
    format!("\"{policy}\";q={quota};w={window}")
}

/// The `RateLimit` value: `remaining` requests now, the full quota back in `reset`.
pub fn state(policy: &str, remaining: u64, reset: Duration) -> String {
    format!("\"{policy}\";r={remaining};t={}", seconds_up(reset))
}

/// The `Retry-After` value: whole seconds, rounded up, at least 1.
pub fn retry_after(wait: Duration) -> String {
    seconds_up(wait).max(1).to_string()
}

/// `d` in whole seconds, rounded up.
fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::super::units::parse_rate;
    use super::*;

    #[test]
    fn fields_follow_the_draft() {
        assert_eq!(
            policy("default", parse_rate("100/s").unwrap()),
            "\"default\";q=100;w=1"
        );
        assert_eq!(
            policy("api", parse_rate("5/m").unwrap()),
            "\"api\";q=5;w=60"
        );
        assert_eq!(
            policy("p", parse_rate("10/500ms").unwrap()),
            "\"p\";q=20;w=1"
        );
        assert_eq!(
            state("default", 42, Duration::from_millis(10)),
            "\"default\";r=42;t=1"
        );
        assert_eq!(
            state("default", 0, Duration::from_secs(2)),
            "\"default\";r=0;t=2"
        );
        assert_eq!(retry_after(Duration::ZERO), "1");
        assert_eq!(retry_after(Duration::from_millis(1001)), "2");
        assert_eq!(retry_after(Duration::from_secs(3)), "3");
    }
}
