//! serde helpers for durations (`30s`, `500ms`, `1d` or integer seconds) and sizes
//! (`64KiB`, `1MiB` or integer bytes).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Deserializes a duration: integer seconds, or a string number with a unit among `ms`,
/// `s`, `m`, `h`, `d`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(UnitVisitor {
        what: "a duration such as 30s, 500ms, 5m, 2h or 1d (or integer seconds)",
        parse: parse_duration,
    })
}

/// Deserializes a size in bytes: an integer, or a string number with a unit among `B`,
/// `KiB`, `MiB`, `GiB`.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    d.deserialize_any(UnitVisitor {
        what: "a size such as 64KiB or 1MiB (or integer bytes)",
        parse: parse_size,
    })
}

struct UnitVisitor<T> {
    what: &'static str,
    parse: fn(u64, &str) -> Option<T>,
}

impl<T> Visitor<'_> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.parse)(v, "")
            .ok_or_else(|| E::custom(format!("{v} is out of range for {}", self.what)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        let v = u64::try_from(v)
            .map_err(|_| E::custom(format!("{v} is negative; expected {}", self.what)))?;
        self.visit_u64(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        let v = v.trim();
        let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        let (number, unit) = v.split_at(split);
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| (self.parse)(n, unit.trim()))
            .ok_or_else(|| E::custom(format!("{v:?} is not {}", self.what)))
    }
}

fn parse_duration(n: u64, unit: &str) -> Option<Duration> {
    let millis_per = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(millis_per).map(Duration::from_millis)
}

fn parse_size(n: u64, unit: &str) -> Option<usize> {
    let per: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(per).and_then(|b| usize::try_from(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration(3, "ms"), Some(Duration::from_millis(3)));
        assert_eq!(parse_duration(2, "d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration(2, "w"), None);
        assert_eq!(parse_duration(u64::MAX, "d"), None);
        assert_eq!(parse_size(1, "MiB"), Some(1 << 20));
        assert_eq!(parse_size(1, "MB"), None);
    }
}
