//! Text from outside (providers, plugins) made safe to log and to show.

/// `text` trimmed, with control characters (newlines, carriage returns,
/// escapes, ...) and bidirectional overrides written as escapes, cut to at
/// most `max_chars` characters (an ellipsis marks the cut). A provider's
/// error message goes through this before it reaches a log line or a caller,
/// so it cannot forge log lines or hide text.
pub fn printable(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    // Most text (labels, explanations) is short printable ASCII: as is.
    if text.len() <= max_chars && text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len().min(max_chars * 2));
    for (n, c) in text.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode's bidirectional embedding, override and isolate controls, which
/// reorder how a line displays.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_length_capped() {
        assert_eq!(
            printable(" bad\nINFO forged line\r\x1b[31m ", 100),
            "bad\\nINFO forged line\\r\\u{1b}[31m"
        );
        assert_eq!(printable("abc\u{202e}def", 100), "abc\\u{202e}def");
        assert_eq!(printable("héllo wörld", 5), "héllo…");
        assert_eq!(printable("plain", 5), "plain");
        assert_eq!(printable("plainer", 5), "plain…");
        assert_eq!(printable("  tab\tin ", 100), "tab\\tin");
    }
}
