//! The rate of a limit (`100/s`): GCRA wants a per-request emission interval, so the shared
//! [`crate::units`] parsers are wrapped in a [`Rate`] with the limits GCRA needs.

use std::time::Duration;

pub use crate::units::parse_duration;

/// A request rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period (at least 1).
    pub count: u32,
    /// The period (at least 1 ms, at most a year).
    pub period: Duration,
}

impl Rate {
    /// The GCRA emission interval: the time one request "costs" (at least 1 ns).
    pub fn emission_interval(&self) -> Duration {
        (self.period / self.count).max(Duration::from_nanos(1))
    }
}

/// Parses a rate `count/period`: the period is a unit (`100/s`, `5/m`, `1000/h`, `10/d`) or a
/// duration (`3/30s`).
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let expected = "expected count/period like 100/s, 5/m, 1000/h, 10/d or 3/30s";
    let Some((count, period)) = s.trim().split_once('/') else {
        return Err(format!("\"{s}\" is not a rate; {expected}"));
    };
    let count: u32 = match count.trim().parse() {
        Ok(n) if n > 0 => n,
        _ => {
            return Err(format!(
                "\"{s}\": the count must be a whole number from 1 to {}; {expected}",
                u32::MAX
            ))
        }
    };
    let period = period.trim();
    let starts_with_digit = period.bytes().next().is_some_and(|b| b.is_ascii_digit());
    let period = if starts_with_digit {
        parse_duration(period)
    } else {
        parse_duration(&format!("1{period}"))
    }
    .map_err(|_| format!("\"{s}\": unknown period \"{period}\"; {expected}"))?;
    if period < Duration::from_millis(1) || period > Duration::from_secs(366 * 86_400) {
        return Err(format!(
            "\"{s}\": the period must be from 1ms to 366d; {expected}"
        ));
    }
    Ok(Rate { count, period })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let r = parse_rate("100/s").unwrap();
        assert_eq!((r.count, r.period), (100, Duration::from_secs(1)));
        assert_eq!(r.emission_interval(), Duration::from_millis(10));
        assert_eq!(parse_rate("5/m").unwrap().period, Duration::from_secs(60));
        assert_eq!(
            parse_rate("1000/h").unwrap().period,
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse_rate("10/d").unwrap().period,
            Duration::from_secs(86_400)
        );
        assert_eq!(parse_rate("3/30s").unwrap().period, Duration::from_secs(30));
        for bad in [
            "10/fortnight",
            "0/s",
            "-1/s",
            "x/s",
            "100",
            "100/",
            "10/0s",
            "1/400d",
        ] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("expected count/period"), "{bad:?}: {e}");
        }
    }
}
