//! Parsing of the human units in the settings: durations (`50ms`) and rates (`100/s`).

use std::time::Duration;

/// Duration units and their length in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Longest number accepted, so the arithmetic below cannot overflow.
const MAX_DIGITS: usize = 20;

/// Parses a duration: a non-negative number (decimals allowed) and a unit `ns`, `us`, `ms`,
/// `s`, `m`, `h` or `d` (`50ms`, `1.5s`). The result must be a whole number of nanoseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "\"{s}\" is not a duration; expected a number and a unit (ns, us, ms, s, m, h, d) like 50ms or 2s"
        ));
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = !int.is_empty()
        && int.len() + frac.len() <= MAX_DIGITS
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        && !(number.contains('.') && frac.is_empty());
    if !well_formed {
        return Err(format!(
            "\"{s}\" is not a number and a unit like 50ms or 2s"
        ));
    }
    let digits: u128 = format!("{int}{frac}")
        .parse()
        .map_err(|_| format!("\"{s}\" is not a number"))?;
    // At most MAX_DIGITS digits: the scale and the product fit in u128.
    let scale = 10u128.pow(frac.len() as u32);
    let scaled = digits * unit_nanos;
    if !scaled.is_multiple_of(scale) {
        return Err(format!("\"{s}\" is finer than one nanosecond"));
    }
    let nanos = u64::try_from(scaled / scale).map_err(|_| format!("\"{s}\" is too large"))?;
    Ok(Duration::from_nanos(nanos))
}

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
    fn durations() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        for bad in [
            "",
            "10",
            "ms",
            "1.ms",
            ".5s",
            "1.2.3s",
            "5 fortnights",
            "-1s",
            "0.5ns",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration("99999999999999999999d").is_err());
    }

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
