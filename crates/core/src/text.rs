//! Text from a server (a DCS key, a member name, a WAL file name in `pgbackrest info`) as
//! it can be shown in a one-line message.

use std::borrow::Cow;

/// `s` with its control characters escaped (a newline inside a key shows as `\n`), the rest
/// as it is; borrowed when there is nothing to escape.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("pg0"), "pg0");
        assert!(matches!(printable("pg0"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nb\tc é"), "a\\nb\\tc é");
    }
}
