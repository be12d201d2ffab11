//! How much one build may carry: the count of each repeated field (tags,
//! labels, build args, secrets, cache sources, ssh ids), the length of each key and
//! value, and the stored options as a whole. Every build row and every list
//! page is then bounded, whoever submits: the v1 form, the seed API, a retry
//! (an old row is checked again) or a trigger (its lists are checked when the
//! config is loaded). Only the tag count is a setting (`max_tags_per_build`);
//! the rest are constants, documented in the README's "Limits".

use crate::domain::BuildOptions;

/// `max_tags_per_build` when the config says nothing.
pub const DEFAULT_MAX_TAGS: usize = 32;
/// The largest `max_tags_per_build` the config accepts: every tag is pushed.
pub const MAX_TAGS_SETTING: usize = 256;
pub const MAX_LABELS: usize = 64;
pub const MAX_BUILD_ARGS: usize = 64;
/// Request secrets per build (the server's `[secrets]` are not counted).
pub const MAX_SECRETS: usize = 16;
pub const MAX_CACHE_SOURCES: usize = 8;
/// `[ssh.ID]` keys one build may ask for.
pub const MAX_SSH_IDS: usize = 8;
/// Platforms per build: each is a build of its own, and one entry of its index.
pub const MAX_PLATFORMS: usize = 4;
/// A label's or build argument's key.
pub const MAX_KEY_BYTES: usize = 256;
/// A label's or build argument's value.
pub const MAX_VALUE_BYTES: usize = 4096;
/// The options a build row stores (labels, build args, cache sources… as
/// JSON): what one build adds to a list page.
pub const MAX_STORED_OPTIONS_BYTES: usize = 64 * 1024;

/// Parts a form may have besides the repeated fields: every single field of
/// the v1 form, with room to spare.
const SINGLE_FIELD_PARTS: usize = 64;

/// Parts a build form may have at most: every repeated field at its limit and
/// the single ones. A form is refused as soon as it sends more, before the rest
/// is read (the seed API and a retry take fewer fields, and the same cap).
pub fn max_form_parts(max_tags: usize) -> usize {
    max_tags
        + MAX_LABELS
        + MAX_BUILD_ARGS
        + MAX_SECRETS
        + MAX_CACHE_SOURCES
        + MAX_SSH_IDS
        + SINGLE_FIELD_PARTS
}

/// A field past one of the limits above; the message names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{field}': {message}")]
pub struct LimitError {
    pub field: &'static str,
    pub message: String,
}

/// More than `limit` values of `field`.
pub fn check_count(
    field: &'static str,
    count: usize,
    limit: usize,
    name: &str,
) -> Result<(), LimitError> {
    if count <= limit {
        return Ok(());
    }
    Err(LimitError {
        field,
        message: format!("{count} values sent; a build takes at most {limit} ({name})"),
    })
}

/// A `KEY=VALUE` field's key and value, each within its limit.
pub fn check_key_value(field: &'static str, key: &str, value: &str) -> Result<(), LimitError> {
    let too_long = |part: &str, length: usize, limit: usize| LimitError {
        field,
        message: format!("a {part} of {length} bytes; at most {limit} bytes each"),
    };
    if key.len() > MAX_KEY_BYTES {
        return Err(too_long("key", key.len(), MAX_KEY_BYTES));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(too_long("value", value.len(), MAX_VALUE_BYTES));
    }
    Ok(())
}

/// The options as the build row stores them.
pub fn check_stored_options(options: &BuildOptions) -> Result<(), LimitError> {
    let stored = serde_json::to_vec(options)
        .expect("options always serialize")
        .len();
    if stored <= MAX_STORED_OPTIONS_BYTES {
        return Ok(());
    }
    Err(LimitError {
        field: "options",
        message: format!(
            "the build's options (labels, build args, cache sources…) come to {stored} bytes \
             stored; at most {MAX_STORED_OPTIONS_BYTES}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_lengths_name_their_limit() {
        assert!(check_count("label", MAX_LABELS, MAX_LABELS, "labels").is_ok());
        let err = check_count("label", MAX_LABELS + 1, MAX_LABELS, "labels").unwrap_err();
        assert_eq!(err.field, "label");
        assert!(
            err.message.contains(&format!("at most {MAX_LABELS}")),
            "{err}"
        );
        assert!(check_key_value("label", &"k".repeat(MAX_KEY_BYTES), "v").is_ok());
        assert!(check_key_value("label", &"k".repeat(MAX_KEY_BYTES + 1), "v").is_err());
        assert!(check_key_value("build_arg", "K", &"v".repeat(MAX_VALUE_BYTES + 1)).is_err());
    }

    #[test]
    fn the_stored_options_are_bounded_as_a_whole() {
        let mut options = BuildOptions::default();
        for n in 0..MAX_LABELS {
            options
                .labels
                .insert(format!("label{n}"), "v".repeat(MAX_VALUE_BYTES));
        }
        let err = check_stored_options(&options).unwrap_err();
        assert!(err.message.contains("at most 65536"), "{err}");
        options.labels.clear();
        assert!(check_stored_options(&options).is_ok());
    }
}
