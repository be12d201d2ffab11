//! The ref patterns a trigger listens to, and the repository and tag templates
//! a pushed ref is turned into.

use regex::Regex;

/// The longest tag the registry takes.
const MAX_TAG_CHARS: usize = 128;
const SHORT_SHA_CHARS: usize = 7;
const VARIABLES: [&str; 4] = ["branch", "tag", "sha", "short_sha"];

/// A glob over full ref names: `*` matches within one path segment, `**`
/// across segments (`refs/tags/v*`, `refs/heads/**`).
#[derive(Debug, Clone)]
pub struct RefPattern {
    pattern: String,
    matcher: Regex,
}

impl RefPattern {
    pub fn parse(pattern: &str) -> Result<RefPattern, String> {
        if !pattern.starts_with("refs/") {
            return Err(format!(
                "'{pattern}' is not a full ref pattern: write refs/heads/{pattern} or refs/tags/{pattern}"
            ));
        }
        let body = regex::escape(pattern)
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*");
        let matcher = Regex::new(&format!("^{body}$")).map_err(|err| err.to_string())?;
        Ok(RefPattern {
            pattern: pattern.to_string(),
            matcher,
        })
    }

    pub fn matches(&self, git_ref: &str) -> bool {
        self.matcher.is_match(git_ref)
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// What a pushed ref offers the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefFacts {
    /// `main` for `refs/heads/main`.
    pub branch: Option<String>,
    /// `v1.2` for `refs/tags/v1.2`.
    pub tag: Option<String>,
    pub sha: String,
}

impl RefFacts {
    pub fn new(git_ref: &str, sha: &str) -> RefFacts {
        RefFacts {
            branch: git_ref.strip_prefix("refs/heads/").map(str::to_string),
            tag: git_ref.strip_prefix("refs/tags/").map(str::to_string),
            sha: sha.to_string(),
        }
    }

    fn value(&self, variable: &str) -> Option<String> {
        match variable {
            "branch" => self.branch.clone(),
            "tag" => self.tag.clone(),
            "sha" => Some(self.sha.clone()),
            "short_sha" => Some(self.sha.chars().take(SHORT_SHA_CHARS).collect()),
            _ => None,
        }
    }
}

/// Text with `{branch}`, `{tag}`, `{sha}` and `{short_sha}` in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// Refuses unknown variables and unbalanced braces, so a typo fails at start.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("'{text}': a '{{' is not closed"))?;
            let name = &after[..close];
            if !VARIABLES.contains(&name) {
                return Err(format!(
                    "'{text}': unknown variable {{{name}}} (known: {{branch}}, {{tag}}, {{sha}}, {{short_sha}})"
                ));
            }
            rest = &after[close + 1..];
        }
        if rest.contains('}') || text.is_empty() {
            return Err(format!("'{text}' is not a template"));
        }
        Ok(Template(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text with its variables filled in; None when it names one this ref
    /// lacks (`{tag}` on a branch push).
    pub fn render(&self, facts: &RefFacts) -> Option<String> {
        let mut out = String::new();
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}')?;
            out.push_str(&facts.value(&after[..close])?);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// Rendered as a tag: what the registry would refuse becomes `-`, so the
    /// branch `feature/x` gives `feature-x`.
    pub fn render_tag(&self, facts: &RefFacts) -> Option<String> {
        let text = self.render(facts)?;
        let mut tag: String = text
            .chars()
            .map(|c| match c.is_ascii_alphanumeric() || "_.-".contains(c) {
                true => c,
                false => '-',
            })
            .collect();
        if tag.starts_with(['.', '-']) {
            tag.insert(0, '_');
        }
        tag.truncate(MAX_TAG_CHARS);
        Some(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_globs_stay_within_a_segment_unless_doubled() {
        let tags = RefPattern::parse("refs/tags/v*").unwrap();
        assert!(tags.matches("refs/tags/v1.2"));
        assert!(!tags.matches("refs/tags/release/v1"));
        assert!(!tags.matches("refs/heads/v1"));
        let all = RefPattern::parse("refs/heads/**").unwrap();
        assert!(all.matches("refs/heads/feature/x"));
        let exact = RefPattern::parse("refs/heads/main").unwrap();
        assert!(exact.matches("refs/heads/main"));
        assert!(!exact.matches("refs/heads/main2"));
        assert!(!exact.matches("refs/heads/mainXmain"));
        assert!(RefPattern::parse("main").is_err());
        assert!(RefPattern::parse("refs/heads/a.b")
            .unwrap()
            .matches("refs/heads/a.b"));
        assert!(!RefPattern::parse("refs/heads/a.b")
            .unwrap()
            .matches("refs/heads/aXb"));
    }

    #[test]
    fn templates_fill_what_the_ref_has_and_make_valid_tags() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let branch = RefFacts::new("refs/heads/feature/x", sha);
        let tag = RefFacts::new("refs/tags/v1.2", sha);
        let t = |text: &str| Template::parse(text).unwrap();
        assert_eq!(
            t("{branch}").render_tag(&branch).as_deref(),
            Some("feature-x")
        );
        assert_eq!(t("{branch}").render_tag(&tag), None);
        assert_eq!(t("{tag}").render_tag(&tag).as_deref(), Some("v1.2"));
        assert_eq!(
            t("{branch}-{short_sha}").render_tag(&branch).as_deref(),
            Some("feature-x-0123456")
        );
        assert_eq!(t("{sha}").render_tag(&tag).as_deref(), Some(sha));
        assert_eq!(
            t("{branch}")
                .render_tag(&RefFacts::new("refs/heads/-x", sha))
                .as_deref(),
            Some("_-x")
        );
        let long = RefFacts::new(&format!("refs/heads/{}", "a".repeat(300)), sha);
        assert_eq!(t("{branch}").render_tag(&long).unwrap().len(), 128);
        assert!(Template::parse("{nope}").is_err());
        assert!(Template::parse("{branch").is_err());
        assert!(Template::parse("x}").is_err());
        assert!(Template::parse("").is_err());
    }
}
