//! Errors whose own message says little ("error sending request", a TLS
//! failure) and whose sources say why: shown as one line, each cause once.

/// `err: cause: cause…`, leaving out a cause whose text is already there.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}
