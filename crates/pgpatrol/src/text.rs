//! Text for messages: errors print as one line, whatever a remote body, a child's stderr
//! or an error chain carried. Used by every layer, so it depends on none of them.

/// Folds every run of whitespace, newlines included, into one space.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A name a server sent, shown in a one-line message (control characters escaped).
pub use pgpatrol_core::text::printable;

/// An error and its sources on one line, without repeating a cause already in the text.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// The first 200 characters of a remote body, on one line, with HTML tags stripped (Patroni
/// answers some errors with Python's HTML error pages).
pub fn snippet(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let one = one_line(&text);
    if one.chars().count() > 200 {
        format!("{}…", one.chars().take(200).collect::<String>())
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_runs_of_spaces_fold() {
        assert_eq!(one_line("  a\n\tb   c\r\n"), "a b c");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn a_chain_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner")]
        struct Repeats(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Adds(#[source] std::io::Error);
        let io = || std::io::Error::other("inner");
        assert_eq!(error_chain(&Repeats(io())), "outer: inner");
        assert_eq!(error_chain(&Adds(io())), "outer: inner");
    }

    #[test]
    fn snippets_strip_html_and_stop_at_200_characters() {
        let html = "<html><body><h1>Error response</h1>\n<p>Error code: 400</p></body></html>";
        assert_eq!(snippet(html), "Error response Error code: 400");
        // Multi-byte characters are counted, never cut in half.
        let long = "é".repeat(300);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), 201);
        assert!(s.ends_with('…'));
    }
}
