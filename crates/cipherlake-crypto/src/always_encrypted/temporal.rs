//! Calendar arithmetic and text for SQL Server's date and time types (proleptic Gregorian,
//! years 0001–9999), without external dependencies.

use std::fmt;

/// 100-nanosecond ticks in one second.
pub(crate) const TICKS_PER_SECOND: u64 = 10_000_000;
/// 100-nanosecond ticks in one day.
pub(crate) const TICKS_PER_DAY: u64 = 86_400 * TICKS_PER_SECOND;
/// Days from 0001-01-01 to 9999-12-31.
pub(crate) const MAX_DAYS: u32 = 3_652_058;
/// Days from 0001-01-01 to 1900-01-01 (the `datetime` epoch).
pub(crate) const DAYS_TO_1900: u32 = 693_595;

/// A calendar date stored as days since 0001-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    days: u32,
}

/// Why a piece of date/time text was rejected. Never contains the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadText(pub &'static str);

impl Date {
    /// The date `days` days after 0001-01-01, if it is not after 9999-12-31.
    pub fn from_days(days: u32) -> Option<Date> {
        (days <= MAX_DAYS).then_some(Date { days })
    }

    /// Days since 0001-01-01.
    pub fn days(self) -> u32 {
        self.days
    }

    /// The date for a year, month and day, if it exists in 0001–9999.
    pub fn from_ymd(year: u32, month: u32, day: u32) -> Option<Date> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        // Days-from-civil with March-based years (H. Hinnant's algorithm), shifted to 0001-01-01.
        let y = i64::from(if month <= 2 { year - 1 } else { year });
        let m = month as i64;
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days_since_0000_03_01 = era * 146_097 + doe;
        // 0000-03-01 is 306 days before 0001-01-01.
        let days = days_since_0000_03_01 - 306;
        u32::try_from(days).ok().and_then(Date::from_days)
    }

    /// (year, month, day) of this date.
    pub fn ymd(self) -> (u32, u32, u32) {
        let z = self.days as i64 + 306;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year as u32, month as u32, day as u32)
    }

    /// Parses `YYYY-MM-DD`.
    pub(crate) fn parse(s: &str) -> Result<Date, BadText> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(BadText("expected a date as YYYY-MM-DD"));
        }
        let year = digits(&s[0..4])?;
        let month = digits(&s[5..7])?;
        let day = digits(&s[8..10])?;
        Date::from_ymd(year, month, day).ok_or(BadText("no such date in 0001-01-01..9999-12-31"))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(s: &str) -> Result<u32, BadText> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(BadText("expected digits"));
    }
    s.parse().map_err(|_| BadText("number too large"))
}

/// Parses `HH:MM[:SS[.fffffff]]` into 100 ns ticks since midnight (at most 7 fraction digits).
pub(crate) fn parse_time_of_day(s: &str) -> Result<u64, BadText> {
    let (hms, frac) = match s.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (s, None),
    };
    let mut parts = hms.split(':');
    let (Some(h), Some(m)) = (parts.next(), parts.next()) else {
        return Err(BadText("expected a time as HH:MM:SS[.fffffff]"));
    };
    let sec = parts.next();
    if parts.next().is_some() || h.len() > 2 || m.len() != 2 || sec.is_some_and(|s| s.len() != 2) {
        return Err(BadText("expected a time as HH:MM:SS[.fffffff]"));
    }
    if frac.is_some() && sec.is_none() {
        return Err(BadText("fractional seconds need seconds"));
    }
    let (h, m, sec) = (
        digits(h)?,
        digits(m)?,
        sec.map(digits).transpose()?.unwrap_or(0),
    );
    if h > 23 || m > 59 || sec > 59 {
        return Err(BadText("time of day out of range"));
    }
    let mut ticks = (u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(sec)) * TICKS_PER_SECOND;
    if let Some(frac) = frac {
        if frac.is_empty() || frac.len() > 7 {
            return Err(BadText("1 to 7 fractional second digits allowed"));
        }
        let value = u64::from(digits(frac)?);
        ticks += value * 10u64.pow(7 - frac.len() as u32);
    }
    Ok(ticks)
}

/// Truncates 100 ns ticks to `scale` fractional digits (0–7), as SQL Server's serializers do.
pub(crate) fn truncate_to_scale(ticks: u64, scale: u8) -> u64 {
    let unit = 10u64.pow(7 - u32::from(scale.min(7)));
    ticks / unit * unit
}

/// Writes `HH:MM:SS` followed by `scale` fractional digits.
pub(crate) fn write_time_of_day(f: &mut fmt::Formatter<'_>, ticks: u64, scale: u8) -> fmt::Result {
    let secs = ticks / TICKS_PER_SECOND;
    write!(
        f,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )?;
    if scale > 0 {
        let frac = ticks % TICKS_PER_SECOND / 10u64.pow(7 - u32::from(scale.min(7)));
        write!(f, ".{frac:0width$}", width = usize::from(scale.min(7)))?;
    }
    Ok(())
}

/// Splits `date[ T]time` (time optional) into a date and ticks since midnight.
pub(crate) fn parse_date_time(s: &str) -> Result<(Date, u64), BadText> {
    let s = s.trim();
    if s.len() <= 10 {
        return Ok((Date::parse(s)?, 0));
    }
    let Some((date, rest)) = s.split_at_checked(10) else {
        return Err(BadText("expected a date as YYYY-MM-DD"));
    };
    let sep = rest.as_bytes()[0];
    if sep != b' ' && sep != b'T' {
        return Err(BadText("expected a space or T between date and time"));
    }
    Ok((
        Date::parse(date)?,
        parse_time_of_day(rest[1..].trim_start())?,
    ))
}

/// Parses a UTC offset `+HH:MM`, `-HH:MM` or `Z` into minutes (−14:00..=+14:00).
pub(crate) fn parse_offset(s: &str) -> Result<i16, BadText> {
    if s == "Z" || s == "z" {
        return Ok(0);
    }
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' || (b[0] != b'+' && b[0] != b'-') {
        return Err(BadText("expected a UTC offset as +HH:MM or -HH:MM"));
    }
    let minutes = (digits(&s[1..3])? * 60 + digits(&s[4..6])?) as i16;
    if minutes > 14 * 60 || digits(&s[4..6])? > 59 {
        return Err(BadText("UTC offset out of range -14:00..+14:00"));
    }
    Ok(if b[0] == b'-' { -minutes } else { minutes })
}

/// Writes a UTC offset as `+HH:MM`.
pub(crate) fn write_offset(f: &mut fmt::Formatter<'_>, minutes: i16) -> fmt::Result {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    write!(f, "{sign}{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_day_numbers() {
        assert_eq!(Date::from_ymd(1, 1, 1).unwrap().days(), 0);
        assert_eq!(Date::from_ymd(1900, 1, 1).unwrap().days(), DAYS_TO_1900);
        assert_eq!(Date::from_ymd(9999, 12, 31).unwrap().days(), MAX_DAYS);
        assert_eq!(Date::from_ymd(1970, 1, 1).unwrap().days(), 719_162);
        assert!(Date::from_ymd(2023, 2, 29).is_none());
        assert!(Date::from_ymd(2024, 2, 29).is_some());
    }

    #[test]
    fn every_day_round_trips() {
        for days in (0..=MAX_DAYS).step_by(97).chain([MAX_DAYS]) {
            let d = Date::from_days(days).unwrap();
            let (y, m, dd) = d.ymd();
            assert_eq!(Date::from_ymd(y, m, dd), Some(d));
            assert_eq!(Date::parse(&d.to_string()), Ok(d));
        }
    }

    #[test]
    fn times_and_offsets() {
        assert_eq!(
            parse_time_of_day("23:59:59.9999999").unwrap(),
            TICKS_PER_DAY - 1
        );
        assert_eq!(parse_time_of_day("1:02").unwrap(), 3720 * TICKS_PER_SECOND);
        assert!(parse_time_of_day("24:00:00").is_err());
        assert!(parse_time_of_day("12:00:00.12345678").is_err());
        assert_eq!(truncate_to_scale(1_234_567, 3), 1_230_000);
        assert!(parse_date_time("2024-01-0é 10:00").is_err());
        assert_eq!(parse_offset("-05:30").unwrap(), -330);
        assert_eq!(parse_offset("Z").unwrap(), 0);
        assert!(parse_offset("+15:00").is_err());
    }
}
