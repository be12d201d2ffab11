//! A build's log is the build's own output, and its error, repository and tags
//! come from whoever submitted it: on a terminal their escape sequences could
//! retitle the window, clear the screen or fake dockpub's own lines. Every
//! string from the server, on either stream, goes through here, and they are
//! shown as text instead, as `cat -v` would.

use std::borrow::Cow;
use std::io::IsTerminal;

/// `text` made safe for the terminal when standard output is one; unchanged
/// when it goes to a file or a pipe, where the bytes are what a reader wants.
pub fn for_stdout(text: &str) -> Cow<'_, str> {
    if std::io::stdout().is_terminal() {
        escape_controls(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// The same for standard error.
pub fn for_stderr(text: &str) -> Cow<'_, str> {
    if std::io::stderr().is_terminal() {
        escape_controls(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// A JSON document with DEL and the C1 controls as `\u00NN` escapes too
/// (serde_json escapes only those below 0x20), on whatever stream: still the
/// same JSON to any parser, and nothing in it a terminal obeys.
pub fn json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if !text.chars().any(is_unsafe) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            escaped.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// C0 and C1 control characters (and DEL) other than newline and tab, as `\xNN`
/// or `\u{NN}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !is_unsafe(c) => escaped.push(c),
            c if (c as u32) < 0x80 => escaped.push_str(&format!("\\x{:02x}", c as u32)),
            c => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(escaped)
}

fn is_unsafe(c: char) -> bool {
    c != '\n' && c != '\t' && (c.is_ascii_control() || ('\u{80}'..='\u{9f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert_eq!(
            escape_controls("\u{1b}]0;title\u{7}a\u{1b}[2Jb\r\n\tc\u{9b}d"),
            "\\x1b]0;title\\x07a\\x1b[2Jb\\x0d\n\tc\\u{9b}d"
        );
        assert!(matches!(
            escape_controls("plain ünïcode\n"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn json_escapes_every_control_and_stays_the_same_value() {
        let value = serde_json::json!({"error": "\u{1b}]0;t\u{7}\u{9b}2J\u{7f}é"});
        let text = json(&value);
        assert!(!text.chars().any(is_unsafe), "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }
}
