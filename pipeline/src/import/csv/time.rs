//! The time formats of `recpipe import csv --time-format`: Unix seconds or milliseconds, RFC
//! 3339 with any offset, or a strftime pattern read as UTC.

use crate::data::events::{MAX_TIMESTAMP, MIN_TIMESTAMP};
use crate::error::{Error, Result};
use chrono::format::{parse, Item, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveTime};

/// How a time column is written.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    /// Unix seconds, integer or decimal (floored).
    Unix,
    /// Unix milliseconds, integer or decimal (floored to the second).
    UnixMs,
    /// RFC 3339 (`2024-01-01T12:00:00+02:00`), converted to UTC.
    Rfc3339,
    /// A strftime pattern read as UTC unless it parses an offset; a date alone is midnight.
    Pattern {
        /// The pattern as given.
        text: String,
        /// Its parsed items.
        items: Vec<Item<'static>>,
    },
}

impl TimeFormat {
    /// Parses `--time-format`; anything else than the names or a valid pattern is an error.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "unix" => Ok(TimeFormat::Unix),
            "unix_ms" => Ok(TimeFormat::UnixMs),
            "rfc3339" => Ok(TimeFormat::Rfc3339),
            p if p.contains('%') => {
                let items = StrftimeItems::new(p).parse_to_owned().map_err(|_| {
                    Error::Input(format!(
                        "--time-format '{p}': not a valid strftime pattern (e.g. '%Y-%m-%d %H:%M:%S')"
                    ))
                })?;
                Ok(TimeFormat::Pattern {
                    text: p.to_string(),
                    items,
                })
            }
            other => Err(Error::Input(format!(
                "--time-format '{other}': expected unix, unix_ms, rfc3339 or a strftime pattern such as '%Y-%m-%d %H:%M:%S'"
            ))),
        }
    }

    /// The name or pattern, for messages.
    pub fn name(&self) -> &str {
        match self {
            TimeFormat::Unix => "unix",
            TimeFormat::UnixMs => "unix_ms",
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::Pattern { text, .. } => text,
        }
    }

    /// `raw` as Unix seconds within 1990..2100, or what is wrong with it (`raw` is quoted by
    /// the message).
    pub fn to_unix(&self, raw: &str) -> std::result::Result<i64, String> {
        let s = raw.trim();
        let raw = super::shown(raw);
        let t = match self {
            TimeFormat::Unix => number(s, 1),
            TimeFormat::UnixMs => number(s, 1000),
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp()),
            TimeFormat::Pattern { items, .. } => pattern(s, items),
        };
        let Some(t) = t else {
            let what = match self {
                TimeFormat::Unix => "is not a number of Unix seconds",
                TimeFormat::UnixMs => "is not a number of Unix milliseconds",
                TimeFormat::Rfc3339 => "is not an RFC 3339 time such as 2024-01-31T12:00:00Z",
                TimeFormat::Pattern { .. } => "does not match the time format",
            };
            return Err(format!("'{raw}' {what} (--time-format {})", self.name()));
        };
        if t < MIN_TIMESTAMP {
            return Err(format!(
                "'{raw}' is before 1990-01-01 (timestamps must be within 1990..2100)"
            ));
        }
        if t >= MAX_TIMESTAMP {
            let hint = if *self == TimeFormat::Unix
                && (MIN_TIMESTAMP..MAX_TIMESTAMP).contains(&(t / 1000))
            {
                "; milliseconds? use --time-format unix_ms"
            } else {
                ""
            };
            return Err(format!(
                "'{raw}' is not before 2100-01-01 (timestamps must be within 1990..2100{hint})"
            ));
        }
        Ok(t)
    }
}

/// `s` as a number of `1/per_second` seconds, floored to whole seconds.
fn number(s: &str, per_second: i64) -> Option<i64> {
    if let Ok(v) = s.parse::<i64>() {
        return Some(v.div_euclid(per_second));
    }
    let v = s.parse::<f64>().ok().filter(|v| v.is_finite())?;
    // Far outside the accepted range either way; the cast saturates.
    Some((v / per_second as f64).floor() as i64)
}

/// `s` read with a strftime pattern: with an offset it is converted to UTC, without one it is
/// UTC; a date alone is midnight.
fn pattern(s: &str, items: &[Item<'static>]) -> Option<i64> {
    let mut parsed = Parsed::new();
    parse(&mut parsed, s, items.iter()).ok()?;
    if parsed.offset().is_some() {
        return parsed.to_datetime().ok().map(|d| d.timestamp());
    }
    if let Ok(dt) = parsed.to_naive_datetime_with_offset(0) {
        return Some(dt.and_utc().timestamp());
    }
    if parsed.hour_div_12().is_some() || parsed.minute().is_some() {
        return None;
    }
    let date = parsed.to_naive_date().ok()?;
    Some(date.and_time(NaiveTime::MIN).and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(format: &str, raw: &str) -> std::result::Result<i64, String> {
        TimeFormat::parse(format)
            .expect("known format")
            .to_unix(raw)
    }

    #[test]
    fn each_format() {
        // 2024-01-01T00:00:00Z
        let day = 1_704_067_200;
        assert_eq!(t("unix", "1704067200"), Ok(day));
        assert_eq!(t("unix", " 1704067200.9 "), Ok(day));
        assert_eq!(t("unix_ms", "1704067200999"), Ok(day));
        assert_eq!(t("unix_ms", "1704067200000.5"), Ok(day));
        assert_eq!(t("rfc3339", "2024-01-01T00:00:00Z"), Ok(day));
        assert_eq!(t("rfc3339", "2024-01-01T02:30:00.25+02:30"), Ok(day));
        assert_eq!(t("rfc3339", "2023-12-31T19:00:00-05:00"), Ok(day));
        assert_eq!(t("%Y-%m-%d %H:%M:%S", "2024-01-01 00:00:07"), Ok(day + 7));
        assert_eq!(t("%Y-%m-%d", "2024-01-01"), Ok(day));
        assert_eq!(t("%d/%m/%Y %H:%M", "01/01/2024 01:00"), Ok(day + 3600));
        assert_eq!(
            t("%Y-%m-%d %H:%M:%S %z", "2024-01-01 01:00:00 +0100"),
            Ok(day)
        );
    }

    #[test]
    fn bad_times_and_formats() {
        let err = t("%Y-%m-%d %H:%M:%S", "1985-01-01 00:00:00").unwrap_err();
        assert_eq!(
            err,
            "'1985-01-01 00:00:00' is before 1990-01-01 (timestamps must be within 1990..2100)"
        );
        assert!(t("unix", "1704067200000").unwrap_err().contains("unix_ms"));
        assert!(t("unix", "abc").unwrap_err().contains("not a number"));
        assert!(t("unix", "NaN").is_err());
        assert!(t("rfc3339", "2024-01-01 00:00:00").is_err());
        assert!(t("%Y-%m-%d %H:%M:%S", "2024-01-01").is_err());
        assert!(t("%Y-%m-%d %H", "2024-01-01 07").is_err());
        let err = TimeFormat::parse("foo").unwrap_err().to_string();
        assert_eq!(
            err,
            "--time-format 'foo': expected unix, unix_ms, rfc3339 or a strftime pattern such as '%Y-%m-%d %H:%M:%S'"
        );
        assert!(TimeFormat::parse("%Y-%Q").is_err());
    }
}
