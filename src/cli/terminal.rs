//! A build's log is the build's own output: on a terminal its escape sequences
//! could retitle the window, clear the screen or fake dockpub's own lines. They
//! are shown as text instead, as `cat -v` would.

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
}
