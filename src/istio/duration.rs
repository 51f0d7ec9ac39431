//! Go-style durations (`90s`, `1h30m`, `0.5s`), as Kubernetes and Istio write them.

use std::time::Duration;

/// Parses a non-negative Go-style duration; `None` when it is not one.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let parsed: kube::core::Duration = text.trim().parse().ok()?;
    if parsed.is_negative() {
        return None;
    }
    Some(parsed.into())
}

/// Formats a duration the way a person would write it in YAML: `59s`, `1m30s`, `1h`.
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 || duration.subsec_nanos() != 0 {
        return format!("{}ms", duration.as_millis());
    }
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("-5s"), None);
    }

    #[test]
    fn formats_like_a_person() {
        assert_eq!(format_duration(Duration::from_secs(59)), "59s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(4500)), "4500ms");
    }
}
