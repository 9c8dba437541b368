//! Go-style durations (`300ms`, `30s`, `5m0s`, `1h30m`), as the Go server's config accepts them.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written in Go syntax in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GoDuration(pub Duration);

/// Parses a Go duration string: a sequence of decimal numbers, each with an optional fraction and a
/// unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `1h30m`, `1.5s`. `0` alone is zero. Negative
/// durations are rejected (no KES setting accepts them).
pub fn parse(text: &str) -> Result<Duration, String> {
    let orig = text;
    let bad =
        || format!("invalid duration '{orig}': expected a value like 300ms, 30s, 5m0s or 1h30m");
    let mut s = text.trim();
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s.starts_with('-') {
        return Err(format!("invalid duration '{orig}': must not be negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0; // nanoseconds
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &rest[..n];
            s = &rest[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(s.len(), |(i, _)| i);
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration '{orig}': missing unit (ns, us, ms, s, m, h)"
                ));
            }
            _ => return Err(format!("invalid duration '{orig}': unknown unit '{unit}'")),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(bad)?;
        if !frac_part.is_empty() {
            // Only as many fraction digits as can matter at nanosecond precision: 25 digits
            // (< 10^25) times the largest scale (3.6e12 ns) stays below u128::MAX (3.4e38);
            // 30 overflowed (fuzz/regressions/small_parsers/duration-long-fraction).
            let digits = &frac_part[..frac_part.len().min(25)];
            let frac: u128 = digits.parse().map_err(|_| bad())?;
            let div = 10u128.checked_pow(digits.len() as u32).ok_or_else(bad)?;
            value = value.checked_add(frac * scale / div).ok_or_else(bad)?;
        }
        total = total.checked_add(value).ok_or_else(bad)?;
    }
    if total > u64::MAX as u128 {
        return Err(format!("invalid duration '{orig}': too large"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats a duration the way Go's `time.Duration.String` does (`5m0s`, `1.5s`, `300ms`).
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (v, unit, scale) = if nanos < 1_000 {
            return format!("{nanos}ns");
        } else if nanos < 1_000_000 {
            (nanos, "µs", 1_000u128)
        } else {
            (nanos, "ms", 1_000_000u128)
        };
        return format!("{}{unit}", frac(v, scale));
    }
    let h = nanos / 3_600_000_000_000;
    let rem = nanos % 3_600_000_000_000;
    let m = rem / 60_000_000_000;
    let s_nanos = rem % 60_000_000_000;
    let secs = frac(s_nanos, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn frac(v: u128, scale: u128) -> String {
    let int = v / scale;
    let rest = v % scale;
    if rest == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map(GoDuration).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        let cases = [
            ("0", 0u64),
            ("0s", 0),
            ("300ms", 300_000_000),
            ("30s", 30_000_000_000),
            ("5m0s", 300_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            ("+2s", 2_000_000_000),
            ("1h1m1s1ms", 3_661_001_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for text in [
            "",
            "5",
            "s",
            "-1s",
            "1x",
            "1.s.",
            "5 m",
            "1e3s",
            "99999999999999999999h",
            ".",
        ] {
            assert!(parse(text).is_err(), "{text} should be rejected");
        }
    }

    /// Found while writing the small_parsers fuzz target: 30 fraction digits of hours
    /// overflowed the u128 product (a panic in debug builds, a wrong duration in release).
    #[test]
    fn long_fractions_do_not_overflow() {
        let input = include_bytes!("../../fuzz/regressions/small_parsers/duration-long-fraction");
        let text = std::str::from_utf8(&input[1..]).unwrap();
        assert_eq!(text, "1.999999999999999999999999999999h");
        // Just under two hours; Go's float arithmetic gives 2h, we truncate to the nanosecond.
        assert_eq!(parse(text), Ok(Duration::from_nanos(7_199_999_999_999)));
        for unit in ["ns", "us", "ms", "s", "m", "h"] {
            let long = format!("1.{}{unit}", "9".repeat(60));
            assert!(parse(&long).is_ok(), "{long}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(300)), "5m0s");
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(300)), "300ms");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
