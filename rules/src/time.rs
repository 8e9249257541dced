//! Unix seconds <-> RFC 3339 (UTC), without a date-time dependency.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Format unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Unix seconds of a TOML offset date-time; `None` for local (offset-less) values or
/// values without a time (a bare date counts as 00:00 UTC).
pub(crate) fn toml_datetime_to_unix(dt: &toml::value::Datetime) -> Option<i64> {
    let date = dt.date?;
    let (h, mi, s) = match dt.time {
        Some(t) => (i64::from(t.hour), i64::from(t.minute), i64::from(t.second)),
        None => (0, 0, 0),
    };
    let offset_min = match (dt.time, dt.offset) {
        (None, _) => 0,
        (Some(_), Some(toml::value::Offset::Z)) => 0,
        (Some(_), Some(toml::value::Offset::Custom { minutes })) => i64::from(minutes),
        (Some(_), None) => return None,
    };
    let days = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60)
}

/// Parse `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` / `±HH:MM` (as TOML would).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let dt: toml::value::Datetime = s.parse().ok()?;
    toml_datetime_to_unix(&dt)
}

/// Now as unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a failed unwrap or expect is a failed test"
    )]
    use super::*;

    #[test]
    fn round_trips_known_dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(
            parse_rfc3339("2026-11-22T15:00:00+01:00"),
            parse_rfc3339("2026-11-22T14:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-22"),
            parse_rfc3339("2026-11-22T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00"),
            None,
            "local time is ambiguous"
        );
        assert_eq!(parse_rfc3339("not a date"), None);
        for s in [-86_401_i64, 1, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(s)), Some(s));
        }
    }
}
