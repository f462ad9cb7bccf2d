//! Row counts on the command line: `1000000`, `1_000_000`, `10M`, `1.5B`.

/// Parses a count with an optional K/M/B suffix.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let cleaned: String = s.trim().chars().filter(|c| *c != '_').collect();
    let (number, scale) = match cleaned.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&cleaned[..cleaned.len() - 1], 1e3),
        Some('M') => (&cleaned[..cleaned.len() - 1], 1e6),
        Some('B') | Some('G') => (&cleaned[..cleaned.len() - 1], 1e9),
        _ => (cleaned.as_str(), 1.0),
    };
    if scale == 1.0 {
        return number
            .parse()
            .map_err(|_| format!("'{s}' is not a count (e.g. 1000000, 10M, 1.5B)"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a count (e.g. 1000000, 10M, 1.5B)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("'{s}' is not a count"));
    }
    Ok((value * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn counts() {
        assert_eq!(parse_count("1_000"), Ok(1_000));
        assert_eq!(parse_count("10M"), Ok(10_000_000));
        assert_eq!(parse_count("1.5B"), Ok(1_500_000_000));
        assert_eq!(parse_count("2k"), Ok(2_000));
        assert!(parse_count("ten").is_err());
        assert!(parse_count("-1M").is_err());
    }
}
