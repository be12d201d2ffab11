//! `.dockerignore`, matched as the docker CLI matches it (moby/patternmatcher):
//! each pattern is a path glob (`*`, `?`, `[...]`, `**` for any number of
//! directories, `\` to escape) that also excludes everything below a matching
//! directory; `!` re-includes; the last matching pattern decides.
//!
//! The legacy builder leaves this to the client: the daemon itself only drops the
//! Dockerfile and `.dockerignore` when they are listed, so dockpub applies the rest.

use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct IgnoreError {
    file: String,
    message: String,
}

impl IgnoreError {
    fn new(message: String) -> Self {
        IgnoreError {
            file: ".dockerignore".into(),
            message,
        }
    }

    /// The same error, about the ignore file named `file`.
    pub fn in_file(self, file: &str) -> Self {
        IgnoreError {
            file: file.to_string(),
            ..self
        }
    }
}

struct Pattern {
    regex: Regex,
    /// How many path components the pattern has, to test a file's parents.
    components: usize,
    exception: bool,
}

pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

impl IgnoreRules {
    /// Parses the file's text: one pattern a line, `#` comments, blank lines skipped.
    pub fn parse(text: &str) -> Result<IgnoreRules, IgnoreError> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(IgnoreError::new("illegal exclusion pattern: \"!\"".into()));
                }
            }
            let cleaned = clean_pattern(pattern);
            if cleaned.is_empty() {
                continue;
            }
            let regex = Regex::new(&pattern_regex(&cleaned))
                .map_err(|_| IgnoreError::new(format!("syntax error in pattern '{pattern}'")))?;
            patterns.push(Pattern {
                regex,
                components: cleaned.split('/').count(),
                exception,
            });
        }
        Ok(IgnoreRules { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative, cleaned, `/`-separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = match path.rsplit_once('/') {
            Some((parent, _)) => parent.split('/').collect(),
            None => Vec::new(),
        };
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could change the answer is tried.
            if pattern.exception != excluded {
                continue;
            }
            let mut matched = pattern.regex.is_match(path);
            if !matched && !parents.is_empty() && pattern.components <= parents.len() {
                matched = pattern
                    .regex
                    .is_match(&parents[..pattern.components].join("/"));
            }
            if matched {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

/// Go's filepath.Clean, then without a leading `/`: patterns are relative to the context.
fn clean_pattern(pattern: &str) -> String {
    if pattern.is_empty() {
        return String::new();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !pattern.starts_with('/') {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let cleaned = parts.join("/");
    if cleaned.is_empty() {
        ".".into()
    } else {
        cleaned
    }
}

/// The pattern as an anchored regex, translated as patternmatcher does.
fn pattern_regex(pattern: &str) -> String {
    let mut regex = String::from("^");
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(ch) = chars.next() {
        match ch {
            '[' if !in_class => {
                in_class = true;
                regex.push('[');
            }
            ']' if in_class => {
                in_class = false;
                regex.push(']');
            }
            '\\' => match chars.next() {
                Some(next) => regex.push_str(&regex::escape(&next.to_string())),
                None => regex.push_str(r"\\"),
            },
            _ if in_class => regex.push(ch),
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is `**`: the slash is part of "any number of directories".
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                regex.push_str(if chars.peek().is_none() {
                    ".*"
                } else {
                    "(.*/)?"
                });
            }
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            other => regex.push_str(&regex::escape(&other.to_string())),
        }
    }
    regex.push('$');
    regex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text).unwrap()
    }

    #[test]
    fn plain_names_and_directories() {
        let ignore = rules("# comment\nsecret.txt\n\n/build\n");
        assert!(ignore.excludes("secret.txt"));
        assert!(!ignore.excludes("sub/secret.txt"), "patterns are anchored");
        assert!(ignore.excludes("build"));
        assert!(
            ignore.excludes("build/out/app"),
            "below an excluded directory"
        );
        assert!(!ignore.excludes("builder"));
    }

    #[test]
    fn globs() {
        let ignore = rules("*.log\n**/*.tmp\ndocs/**\na?c\n[xy].md\n");
        assert!(ignore.excludes("x.log"));
        assert!(!ignore.excludes("sub/x.log"), "* does not cross /");
        assert!(ignore.excludes("x.tmp"));
        assert!(ignore.excludes("a/b/c.tmp"));
        assert!(ignore.excludes("docs/a/b"));
        assert!(ignore.excludes("abc"));
        assert!(!ignore.excludes("abbc"));
        assert!(ignore.excludes("x.md"));
        assert!(!ignore.excludes("z.md"));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let ignore = rules("*.md\n!README.md\n");
        assert!(ignore.excludes("CHANGES.md"));
        assert!(!ignore.excludes("README.md"));
        let ignore = rules("!keep\nkeep\n");
        assert!(ignore.excludes("keep"));
        let ignore = rules("data\n!data/keep.txt\n");
        assert!(ignore.excludes("data/drop.txt"));
        assert!(!ignore.excludes("data/keep.txt"));
    }

    #[test]
    fn dots_are_literal_and_paths_are_cleaned() {
        let ignore = rules("./a.b/../c.d\n");
        assert!(ignore.excludes("c.d"));
        assert!(!ignore.excludes("cxd"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(IgnoreRules::parse("!\n").is_err());
        assert!(IgnoreRules::parse("[a\n").is_err());
        assert!(rules("\n# only comments\n").is_empty());
    }
}
