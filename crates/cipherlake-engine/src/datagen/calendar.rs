//! When trips start: a year of pickups whose density follows the hour of day, weekday versus
//! weekend, and the season, so time filters and `extract(hour …)` see realistic selectivity.

/// 2024-01-01T00:00:00Z in seconds since the Unix epoch (a Monday).
pub const YEAR_START: i64 = 1_704_067_200;
/// Hours in 2024 (a leap year).
pub const HOURS: usize = 366 * 24;

/// Relative trips per hour on weekdays (TLC yellow-cab pattern: trough at 4-5 am, peak at 6 pm).
const WEEKDAY: [f64; 24] = [
    0.45, 0.30, 0.20, 0.13, 0.10, 0.12, 0.28, 0.50, 0.65, 0.70, 0.72, 0.76, 0.80, 0.82, 0.88, 0.90,
    0.88, 0.98, 1.00, 0.92, 0.82, 0.80, 0.75, 0.60,
];
/// Relative trips per hour on Saturdays and Sundays (busier nights, quiet mornings).
const WEEKEND: [f64; 24] = [
    0.75, 0.65, 0.50, 0.35, 0.20, 0.12, 0.12, 0.18, 0.25, 0.38, 0.52, 0.62, 0.70, 0.74, 0.76, 0.76,
    0.75, 0.76, 0.78, 0.76, 0.72, 0.72, 0.74, 0.75,
];
/// Relative volume by month (summer and January dips).
const MONTH: [f64; 12] = [
    0.93, 0.97, 1.07, 1.03, 1.06, 1.02, 0.92, 0.90, 0.97, 1.07, 1.00, 1.00,
];
/// Days per month in 2024.
const MONTH_DAYS: [usize; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// Cumulative pickup density over the hours of 2024, for inverse-CDF sampling.
pub struct Calendar {
    /// `cumulative[h]` is the share of the year's trips before hour `h`; `cumulative[HOURS] == 1`.
    cumulative: Vec<f64>,
}

/// Hour of day (0-23) of a timestamp in seconds.
pub fn hour_of_day(seconds: i64) -> u32 {
    (seconds.rem_euclid(86_400) / 3_600) as u32
}

/// Whether a timestamp in seconds falls on a Monday-Friday (1970-01-01 was a Thursday).
pub fn is_weekday(seconds: i64) -> bool {
    let weekday = (seconds.div_euclid(86_400) + 3).rem_euclid(7); // 0 = Monday
    weekday < 5
}

impl Calendar {
    /// Builds the density table for 2024.
    pub fn new() -> Self {
        let mut cumulative = Vec::with_capacity(HOURS + 1);
        cumulative.push(0.0);
        let mut total = 0.0;
        let mut day = 0usize;
        for (month, days) in MONTH_DAYS.iter().enumerate() {
            for _ in 0..*days {
                let weekend = day % 7 >= 5; // 2024-01-01 is a Monday
                let curve = if weekend { &WEEKEND } else { &WEEKDAY };
                for weight in curve {
                    total += weight * MONTH[month];
                    cumulative.push(total);
                }
                day += 1;
            }
        }
        for c in &mut cumulative {
            *c /= total;
        }
        Self { cumulative }
    }

    /// Pickup second for quantile `u` in [0, 1), searching forward from `hint` (an hour index
    /// returned by the previous call, so a batch of increasing quantiles walks the table once).
    pub fn pickup_at(&self, u: f64, hint: &mut usize) -> i64 {
        let c = &self.cumulative;
        let mut h = (*hint).min(HOURS - 1);
        if c[h] > u {
            h = c
                .partition_point(|x| *x <= u)
                .saturating_sub(1)
                .min(HOURS - 1);
        }
        while h + 1 < HOURS && c[h + 1] <= u {
            h += 1;
        }
        *hint = h;
        let width = c[h + 1] - c[h];
        let within = if width > 0.0 {
            ((u - c[h]) / width).clamp(0.0, 0.999_999)
        } else {
            0.0
        };
        YEAR_START + h as i64 * 3_600 + (within * 3_600.0) as i64
    }
}

impl Default for Calendar {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_span_the_year_in_order() {
        let cal = Calendar::new();
        let mut hint = 0;
        let first = cal.pickup_at(0.0, &mut hint);
        let mid = cal.pickup_at(0.5, &mut hint);
        let last = cal.pickup_at(0.999_999_9, &mut hint);
        assert_eq!(first, YEAR_START);
        assert!(first < mid && mid < last);
        assert!(last < YEAR_START + HOURS as i64 * 3_600);
        // Backwards quantile after a forward walk still resolves correctly.
        assert!(cal.pickup_at(0.1, &mut hint) < mid);
    }

    #[test]
    fn weekday_and_hour() {
        assert!(is_weekday(YEAR_START)); // Monday
        assert!(!is_weekday(YEAR_START + 5 * 86_400)); // Saturday
        assert_eq!(hour_of_day(YEAR_START + 18 * 3_600 + 59), 18);
    }
}
