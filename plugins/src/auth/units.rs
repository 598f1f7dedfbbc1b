//! Human units in auth settings: durations (`30s`, `5m`) and sizes (`8KiB`), in the style of
//! the rest of the config.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses a duration: a number and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`); decimals
/// are fine (`1.5s`). A bare number is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("\"{s}\" has no unit; expected a duration like 30s or 5m"))?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("\"{s}\" is not a duration; expected a number and a unit, like 30s")
    })?;
    let seconds = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "unknown unit \"{unit}\" in \"{s}\"; expected one of ns, us, ms, s, m, h, d"
            ))
        }
    };
    Duration::try_from_secs_f64(number * seconds).map_err(|_| format!("\"{s}\" is out of range"))
}

/// Parses a size: a bare integer (bytes) or an integer with `B`, `KB`/`MB`/`GB` (×1000) or
/// `KiB`/`MiB`/`GiB` (×1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("\"{s}\" is not a size; expected bytes like 8KiB or 8192"))?;
    let factor: usize = match unit {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit \"{unit}\" in \"{s}\"; expected one of B, KB, MB, GB, KiB, MiB, GiB"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("\"{s}\" is out of range"))
}

/// Serde `deserialize_with` for a duration string.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Serde `deserialize_with` for a size: a string with a unit or a bare integer.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(usize),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8KiB"), Ok(8192));
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("8kb").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
