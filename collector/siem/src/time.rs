//! RFC 3339 timestamps (UTC, milliseconds) without a date library.

/// `2026-11-22T15:36:10.123Z` for Unix milliseconds; `None` outside years 1970–9999
/// (RFC 5424 then asks for the NILVALUE).
pub fn rfc3339_millis(ms: i64) -> Option<String> {
    if !(0..253_402_300_800_000).contains(&ms) {
        return None;
    }
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    ))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(
            rfc3339_millis(0).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        // 2024-02-29T23:59:59.999Z (leap day)
        assert_eq!(
            rfc3339_millis(1_709_251_199_999).as_deref(),
            Some("2024-02-29T23:59:59.999Z")
        );
        assert_eq!(
            rfc3339_millis(1_763_825_770_123).as_deref(),
            Some("2025-11-22T15:36:10.123Z")
        );
        assert_eq!(
            rfc3339_millis(253_402_300_799_999).as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        assert_eq!(rfc3339_millis(-1), None);
        assert_eq!(rfc3339_millis(253_402_300_800_000), None);
    }
}
