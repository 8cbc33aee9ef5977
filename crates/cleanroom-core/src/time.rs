//! RFC 3339 timestamps without a date library: formatting now and any
//! instant, and reading one back (a test file's `freeze_clock`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 time (`2025-01-01T00:00:00Z`,
/// fractions and offsets allowed), or why it is not one.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time such as \"2025-01-01T00:00:00Z\"");
    let t = s.trim().as_bytes();
    // YYYY-MM-DDTHH:MM:SS, then .fraction, then Z or +HH:MM / -HH:MM.
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = t.get(from..from + len)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, c: &[u8]| t.get(i).is_some_and(|b| c.contains(b));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return Err(bad());
    }
    let field = |from, len| num(from, len).ok_or_else(bad);
    let (year, month, day) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (hour, min, sec) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let digits = t[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        i += digits;
    }
    let offset = match t.get(i) {
        Some(b'Z' | b'z') if t.len() == i + 1 => 0,
        Some(sign @ (b'+' | b'-')) if t.len() == i + 6 && at(i + 3, b":") => {
            let (h, m) = (field(i + 1, 2)?, field(i + 4, 2)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let o = h * 3600 + m * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(bad()),
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || min > 59
        || sec > 60
    {
        return Err(bad());
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hour * 3600 + min * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(super::parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            super::parse_rfc3339("2025-01-01T00:00:00Z"),
            Ok(1_735_689_600)
        );
        assert_eq!(
            super::parse_rfc3339("2025-01-01T02:00:00+02:00"),
            Ok(1_735_689_600)
        );
        assert_eq!(super::rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            super::parse_rfc3339("2000-02-29T00:00:00.5Z"),
            Ok(951_782_400)
        );
        for bad in [
            "2025-02-30T00:00:00Z",
            "2025-01-01",
            "yesterday",
            "2025-13-01T00:00:00Z",
        ] {
            assert!(super::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
