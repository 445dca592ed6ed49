//! Metric windows: `"15m"`, `"15 minutes"`, `"1h"`, `"24 hours"`, `"7d"`.

/// The shortest window (and the default): 15 minutes.
pub const MIN_WINDOW_SECS: u32 = 15 * 60;
/// The longest window: 7 days.
pub const MAX_WINDOW_SECS: u32 = 7 * 24 * 3600;

/// Why a window string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "invalid interval {0:?}: expected \"<number> <unit>\" or \"<number><m|h|d>\", e.g. \"15m\", \"1 hour\", \"7d\""
    )]
    Syntax(String),
    #[error("interval {0:?} is shorter than the 15 minute minimum")]
    TooShort(String),
    #[error("interval {0:?} is longer than the 7 day maximum")]
    TooLong(String),
}

/// Parses a window into seconds, enforcing the 15 minute minimum and 7 day maximum.
pub fn parse_window(text: &str) -> Result<u32, WindowError> {
    let syntax = || WindowError::Syntax(text.to_string());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(syntax)?;
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| syntax())?;
    let unit_secs: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return Err(syntax()),
    };
    let secs = number.checked_mul(unit_secs).ok_or_else(syntax)?;
    if secs < u64::from(MIN_WINDOW_SECS) {
        return Err(WindowError::TooShort(text.to_string()));
    }
    if secs > u64::from(MAX_WINDOW_SECS) {
        return Err(WindowError::TooLong(text.to_string()));
    }
    u32::try_from(secs).map_err(|_| syntax())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_window("15m"), Ok(900));
        assert_eq!(parse_window("15 minutes"), Ok(900));
        assert_eq!(parse_window("1h"), Ok(3600));
        assert_eq!(parse_window("1 hour"), Ok(3600));
        assert_eq!(parse_window("24 hours"), Ok(86_400));
        assert_eq!(parse_window("24h"), Ok(86_400));
        assert_eq!(parse_window("7 days"), Ok(604_800));
        assert_eq!(parse_window("7d"), Ok(604_800));
        assert_eq!(parse_window(" 90 Minutes "), Ok(5400));
    }

    #[test]
    fn refuses_too_short_too_long_and_garbage() {
        assert!(matches!(parse_window("5m"), Err(WindowError::TooShort(_))));
        assert!(matches!(
            parse_window("14 minutes"),
            Err(WindowError::TooShort(_))
        ));
        assert!(matches!(parse_window("8d"), Err(WindowError::TooLong(_))));
        for bad in [
            "",
            "m",
            "15",
            "15x",
            "fifteen minutes",
            "-15m",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(
                matches!(parse_window(bad), Err(WindowError::Syntax(_))),
                "{bad:?}"
            );
        }
    }
}
