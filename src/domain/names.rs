//! The names enums go by. Each enum spells its names once, as
//! `#[strum(serialize_all = …)]` beside the same `#[serde(rename_all = …)]`
//! (utoipa reads the serde one for the API's schema); [`assert_serde_agrees`]
//! keeps the two the same.

/// The rule [`is_plain_name`] checks, as messages state it.
pub const PLAIN_NAME_RULE: &str = "1 to 64 letters, digits, '.', '_' or '-'";

/// Whether `name` is a plain name: a token's, a trigger's, a build secret's
/// id. 1 to 64 ASCII letters, digits, `.`, `_` or `-`, so it is safe as a URL
/// path segment, a query value, a header and a log word.
pub fn is_plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `a, b, c`: the names of `all`, for a message that lists what is accepted.
pub fn one_of<T: Copy + Into<&'static str>>(all: &[T]) -> String {
    let names: Vec<&'static str> = all.iter().map(|&value| value.into()).collect();
    names.join(", ")
}

/// Every value's name as strum writes it is the one serde writes.
#[cfg(test)]
pub fn assert_serde_agrees<T>(all: &[T])
where
    T: Copy + Into<&'static str> + serde::Serialize + std::fmt::Debug,
{
    for &value in all {
        let serde_name = serde_json::to_value(value).expect("a unit variant serializes");
        let name: &'static str = value.into();
        assert_eq!(serde_name, name, "{value:?}");
    }
}
