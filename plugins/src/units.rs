//! Human units used in config values: durations (`250ms`, `1.5s`), sizes (`64KiB`), rates
//! (`100/s`) and percentages (`20%`).
//!
//! Every parser is overflow-safe: a value that does not fit is refused with a message, never
//! wrapped or saturated. The gateway's config and every plugin's settings use these parsers, so
//! a unit means the same everywhere; [`duration`] and [`size`] are the serde adapters for plugin
//! settings.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Longest numeric part accepted by the parsers (keeps all arithmetic small and bounded).
const MAX_NUMBER_LEN: usize = 24;

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Duration units, largest first (the order [`format_duration`] tries them in).
const DURATION_UNITS: [(&str, u128); 7] = [
    ("d", 86_400 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", NANOS_PER_MILLI),
    ("us", NANOS_PER_MICRO),
    ("ns", 1),
];

/// Size units: decimal (`KB` = 1000) and binary (`KiB` = 1024).
const SIZE_UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Splits `12.5ms` into (`12.5`, `ms`): the longest leading run of digits and dots, then the rest.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim_start())
}

/// A non-negative decimal number as (integer part, fractional digits).
fn parse_decimal(number: &str) -> Result<(u128, &str), String> {
    if number.len() > MAX_NUMBER_LEN {
        return Err("number is too long".to_owned());
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(format!("\"{number}\" is not a number"));
    }
    let int = int
        .parse::<u128>()
        .map_err(|_| format!("\"{number}\" is not a number"))?;
    Ok((int, frac))
}

/// Parses a duration: a non-negative number (decimals allowed) followed by a unit
/// `ns`, `us`, `ms`, `s`, `m`, `h` or `d`. Bare numbers are refused because their unit would be a
/// guess. The result must be a whole number of nanoseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = split_number(s);
    if number.is_empty() {
        return Err(format!(
            "\"{s}\" is not a duration; expected a number and a unit like 250ms, 2s, 1m, 1h or 1d"
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "\"{s}\" has no unit; expected a duration like 250ms, 2s, 1m, 1h or 1d"
        ));
    }
    let Some(&(_, unit_nanos)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "\"{s}\" has an unknown unit \"{unit}\"; expected one of ns, us, ms, s, m, h, d"
        ));
    };
    let (int, frac) = parse_decimal(number)?;
    let too_large = || format!("\"{s}\" is too large");
    let mut nanos = int.checked_mul(unit_nanos).ok_or_else(too_large)?;
    if !frac.is_empty() {
        // MAX_NUMBER_LEN bounds the digits, so 10^len fits in u128.
        let scale = 10u128.pow(u32::try_from(frac.len()).map_err(|_| too_large())?);
        let digits = frac
            .parse::<u128>()
            .map_err(|_| format!("\"{s}\" is not a number"))?;
        let scaled = digits.checked_mul(unit_nanos).ok_or_else(too_large)?;
        if !scaled.is_multiple_of(scale) {
            return Err(format!("\"{s}\" is finer than one nanosecond"));
        }
        nanos = nanos.checked_add(scaled / scale).ok_or_else(too_large)?;
    }
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    // The remainder is below 10^9 and always fits.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, sub))
}

/// Formats a duration in the largest unit that represents it exactly (`1500ms`, `2s`, `1h`).
/// The output parses back to the same value with [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in DURATION_UNITS {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

/// Parses a size in bytes: an integer with an optional unit `B`, `KB`/`MB`/`GB`/`TB` (powers of
/// 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024). A bare integer is a number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit) = split_number(s);
    if number.is_empty() {
        return Err(format!(
            "\"{s}\" is not a size; expected a number of bytes or a number and a unit like 64KiB"
        ));
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, m)| m)
            .ok_or_else(|| {
                format!(
                    "\"{s}\" has an unknown unit \"{unit}\"; expected one of B, KB, MB, GB, TB, \
                     KiB, MiB, GiB, TiB"
                )
            })?
    };
    if number.contains('.') {
        return Err(format!("\"{s}\" must be a whole number of units"));
    }
    let (int, _) = parse_decimal(number)?;
    int.checked_mul(u128::from(multiplier))
        .and_then(|bytes| u64::try_from(bytes).ok())
        .ok_or_else(|| format!("\"{s}\" is too large"))
}

/// Parses a rate `count/period`: `100/s`, `5/m`, `1000/h`, `10/d`, or with a full duration as
/// the period (`10/30s`). The count and the period must be positive.
pub fn parse_rate(s: &str) -> Result<(u64, Duration), String> {
    let s = s.trim();
    let Some((count, period)) = s.split_once('/') else {
        return Err(format!(
            "\"{s}\" is not a rate; expected count/period like 100/s, 5/m or 1000/h"
        ));
    };
    let count = count.trim();
    if count.is_empty()
        || count.len() > MAX_NUMBER_LEN
        || !count.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("\"{s}\": the count must be a whole number"));
    }
    let count = count
        .parse::<u64>()
        .map_err(|_| format!("\"{s}\": the count is too large"))?;
    if count == 0 {
        return Err(format!("\"{s}\": the count must be at least 1"));
    }
    let period = period.trim();
    let period = match period {
        "s" | "m" | "h" | "d" => parse_duration(&format!("1{period}"))?,
        other => parse_duration(other)?,
    };
    if period.is_zero() {
        return Err(format!("\"{s}\": the period must be longer than zero"));
    }
    Ok((count, period))
}

/// Parses a percentage from 0 to 100, written `20%` or `20`.
pub fn parse_percent(s: &str) -> Result<u8, String> {
    let s = s.trim();
    let number = s.strip_suffix('%').unwrap_or(s).trim_end();
    if number.is_empty() || number.len() > 3 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{s}\" is not a percentage; expected a whole number from 0 to 100, like 20%"
        ));
    }
    match number.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("\"{s}\" is above 100%")),
    }
}

/// Serde `deserialize_with` for a duration written with a unit (`30s`).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Serde `deserialize_with` for a size: a bare integer (bytes) or a string with a unit (`8KiB`).
pub fn size<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let bytes = match Size::deserialize(d)? {
        Size::Bytes(n) => n,
        Size::Text(s) => parse_size(&s).map_err(serde::de::Error::custom)?,
    };
    T::try_from(bytes).map_err(|_| serde::de::Error::custom(format!("{bytes} bytes is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1m", Duration::from_secs(60)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86_400)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.25m", Duration::from_secs(15)),
            ("0s", Duration::ZERO),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            (" 3s ", Duration::from_secs(3)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn durations_refused() {
        let cases = [
            ("10", "no unit"),
            ("", "not a duration"),
            ("5x", "unknown unit"),
            ("s", "not a duration"),
            ("-1s", "not a duration"),
            ("1.s", "not a number"),
            (".5s", "not a number"),
            ("1.2.3s", "not a number"),
            ("1.0000000001s", "finer than one nanosecond"),
            ("99999999999999999999d", "too large"),
            ("1234567890123456789012345s", "too long"),
        ];
        for (text, want) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(172_800), "2d"),
            (Duration::from_nanos(1_001), "1001ns"),
            (Duration::from_micros(3), "3us"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want);
            assert_eq!(parse_duration(want), Ok(d), "round trip of {want}");
        }
    }

    #[test]
    fn sizes_parse() {
        let cases = [
            ("64KiB", 65_536),
            ("10MiB", 10 * 1024 * 1024),
            ("1GiB", 1 << 30),
            ("512B", 512),
            ("1KB", 1000),
            ("2 MB", 2_000_000),
            ("4096", 4096),
            ("0", 0),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn sizes_refused() {
        let cases = [
            ("1.5KiB", "whole number"),
            ("10kib", "unknown unit"),
            ("KiB", "not a size"),
            ("-1", "not a size"),
            ("20000000TiB", "too large"),
            ("18446744073709551616", "too large"),
        ];
        for (text, want) in cases {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn rates_parse() {
        let cases = [
            ("100/s", (100, Duration::from_secs(1))),
            ("5/m", (5, Duration::from_secs(60))),
            ("1000/h", (1000, Duration::from_secs(3600))),
            ("10/d", (10, Duration::from_secs(86_400))),
            ("3/30s", (3, Duration::from_secs(30))),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rate(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rates_refused() {
        let cases = [
            ("100", "not a rate"),
            ("0/s", "at least 1"),
            ("x/s", "whole number"),
            ("1.5/s", "whole number"),
            ("5/0s", "longer than zero"),
            ("5/x", "not a duration"),
            ("99999999999999999999/s", "too large"),
        ];
        for (text, want) in cases {
            let err = parse_rate(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn percents() {
        assert_eq!(parse_percent("20%"), Ok(20));
        assert_eq!(parse_percent("20"), Ok(20));
        assert_eq!(parse_percent("0%"), Ok(0));
        assert_eq!(parse_percent("100"), Ok(100));
        for bad in ["101%", "255", "1000", "-1", "%", "2.5%", "twenty"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }
}
