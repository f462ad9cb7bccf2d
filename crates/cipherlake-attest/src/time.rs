//! Verification time: RFC 3339 parsing and formatting, in unix seconds.

use crate::VerifyError;

/// Parses an RFC 3339 timestamp (`2025-07-01T00:00:00Z`) into unix seconds.
pub fn parse_rfc3339(value: &str) -> Result<u64, VerifyError> {
    let parsed = chrono::DateTime::parse_from_rfc3339(value.trim()).map_err(|e| {
        VerifyError::InvalidTime {
            value: value.to_string(),
            reason: e.to_string(),
        }
    })?;
    u64::try_from(parsed.timestamp()).map_err(|_| VerifyError::InvalidTime {
        value: value.to_string(),
        reason: "before 1970".into(),
    })
}

/// Formats unix seconds as RFC 3339 (UTC) for error messages.
pub fn format_unix(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{secs} (unix seconds)"))
}

/// The current time in unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = parse_rfc3339("2025-07-01T00:00:00Z").expect("valid");
        assert_eq!(t, 1_751_328_000);
        assert_eq!(format_unix(t), "2025-07-01T00:00:00Z");
        assert!(matches!(
            parse_rfc3339("yesterday"),
            Err(VerifyError::InvalidTime { .. })
        ));
    }
}
