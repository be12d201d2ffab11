//! What counts as a Dockerfile: UTF-8 text whose first instruction is FROM
//! (or ARG, which may come before FROM).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    #[error("the Dockerfile is empty")]
    Empty,
    #[error("the Dockerfile is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the Dockerfile contains NUL bytes: it is not a text file")]
    HasNul,
    #[error("the Dockerfile is not UTF-8 text")]
    NotUtf8,
    #[error("the Dockerfile's first instruction must be FROM (or ARG), found '{0}'")]
    NoFrom(String),
}

pub fn validate_dockerfile(bytes: Vec<u8>, limit: usize) -> Result<String, DockerfileError> {
    if bytes.len() > limit {
        return Err(DockerfileError::TooLarge { limit });
    }
    if bytes.contains(&0) {
        return Err(DockerfileError::HasNul);
    }
    let text = String::from_utf8(bytes).map_err(|_| DockerfileError::NotUtf8)?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or(DockerfileError::Empty)?;
    let instruction = first.split_whitespace().next().unwrap_or_default();
    if instruction.eq_ignore_ascii_case("FROM") || instruction.eq_ignore_ascii_case("ARG") {
        Ok(text)
    } else {
        Err(DockerfileError::NoFrom(
            instruction.chars().take(40).collect(),
        ))
    }
}

/// The images `FROM` lines name, so their registries' logins can be given to the
/// build. Names with `${...}` and earlier stages (`FROM x AS name`) are skipped:
/// only the daemon knows what they resolve to.
pub fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut images = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let mut words = words.skip_while(|w| w.starts_with("--"));
        let Some(image) = words.next() else { continue };
        let is_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(image));
        if !image.contains('$') && !is_stage && image != "scratch" {
            images.push(image.to_string());
        }
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("AS")) {
            stages.extend(words.next().map(str::to_string));
        }
    }
    images
}

/// The Dockerfile's instructions, each on one line: lines continued with the
/// escape character (`\\`, or what an `# escape=` directive names) joined, and
/// comment lines inside a continuation dropped, as the daemon's parser does.
pub fn instructions(dockerfile: &str) -> Vec<String> {
    let escape = escape_char(dockerfile);
    let mut instructions = Vec::new();
    let mut current: Option<String> = None;
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let (text, continued) = match trimmed.strip_suffix(escape) {
            Some(head) => (head.trim_end(), true),
            None => (trimmed, false),
        };
        let joined = current.get_or_insert_with(String::new);
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(text);
        if !continued {
            instructions.extend(current.take());
        }
    }
    instructions.extend(current);
    instructions
}

/// The escape character: `\\` unless a parser directive at the top says otherwise.
fn escape_char(dockerfile: &str) -> char {
    for line in dockerfile.lines() {
        let Some(directive) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = directive.split_once('=') else {
            break;
        };
        if key.trim().eq_ignore_ascii_case("escape") && value.trim() == "`" {
            return '`';
        }
    }
    '\\'
}

/// The instruction's name (upper case) and its flags (`--mount=…`), in order.
pub fn instruction_flags(instruction: &str) -> (String, Vec<&str>) {
    let mut words = instruction.split_whitespace();
    let name = words.next().unwrap_or_default().to_ascii_uppercase();
    (name, words.take_while(|w| w.starts_with("--")).collect())
}

/// Syntax the Dockerfile frontend built into this daemon's BuildKit (Docker
/// 20.10: frontend 1.2) does not know, but newer frontends do; the first found.
pub fn newer_frontend_syntax(dockerfile: &str) -> Option<&'static str> {
    instructions(dockerfile).iter().find_map(|instruction| {
        let (name, flags) = instruction_flags(instruction);
        let has_flag = |flag: &str| {
            flags.iter().any(|f| {
                f.strip_prefix("--")
                    .is_some_and(|f| f.split('=').next() == Some(flag))
            })
        };
        let rest = instruction.split_whitespace().nth(1 + flags.len());
        match name.as_str() {
            "RUN" | "COPY" | "ADD" if rest.is_some_and(|word| word.starts_with("<<")) => {
                Some("heredocs (<<EOF)")
            }
            "COPY" | "ADD" if has_flag("link") => Some("--link"),
            "COPY" if has_flag("parents") => Some("COPY --parents"),
            "ADD" if has_flag("checksum") || has_flag("keep-git-dir") => Some("ADD --checksum"),
            "RUN" if has_flag("network") => Some("RUN --network"),
            "RUN" if has_flag("security") => Some("RUN --security"),
            _ => None,
        }
    })
}

/// Whether a `# syntax=` directive asks for a frontend image of its own.
pub fn names_a_frontend(dockerfile: &str) -> bool {
    dockerfile
        .lines()
        .map_while(|line| line.trim().strip_prefix('#'))
        .filter_map(|directive| directive.split_once('='))
        .any(|(key, _)| key.trim().eq_ignore_ascii_case("syntax"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continued_lines_make_one_instruction() {
        let text =
            "FROM base\nRUN \\\n  # a comment\n  --mount=type=cache,target=/c \\\n\n  make\n";
        assert_eq!(
            instructions(text),
            ["FROM base", "RUN --mount=type=cache,target=/c make"]
        );
        let backtick = "# escape=`\nFROM base\nRUN `\n --mount=type=secret,id=a true\n";
        assert_eq!(
            instructions(backtick)[1],
            "RUN --mount=type=secret,id=a true"
        );
    }

    #[test]
    fn finds_syntax_of_newer_frontends() {
        let found = |text: &str| newer_frontend_syntax(&format!("FROM base\n{text}\n"));
        assert_eq!(found("RUN <<EOF\necho hi\nEOF"), Some("heredocs (<<EOF)"));
        assert_eq!(found("COPY --link a /a"), Some("--link"));
        assert_eq!(found("RUN --network=none true"), Some("RUN --network"));
        assert_eq!(found("RUN \\\n --network=none true"), Some("RUN --network"));
        assert_eq!(found("RUN --mount=type=cache,target=/c echo <<x"), None);
        assert_eq!(found("COPY --chown=1 a /a"), None);
        assert!(names_a_frontend(
            "# syntax=docker/dockerfile:1\nFROM base\n"
        ));
        assert!(!names_a_frontend(
            "FROM base\n# syntax=docker/dockerfile:1\n"
        ));
    }

    #[test]
    fn finds_the_base_images() {
        let text = "ARG V=1\nFROM --platform=linux/amd64 127.0.0.1:5000/base:1 AS build\n\
                    RUN make\nfrom build\nFROM alice/app:${V}\nFROM scratch\nFROM busybox\n";
        assert_eq!(base_images(text), vec!["127.0.0.1:5000/base:1", "busybox"]);
    }

    fn check(text: &[u8]) -> Result<String, DockerfileError> {
        validate_dockerfile(text.to_vec(), 1024)
    }

    #[test]
    fn accepts_dockerfiles() {
        assert!(check(b"FROM scratch\n").is_ok());
        assert!(check(b"# syntax=docker/dockerfile:1\n\n  from base\nRUN true").is_ok());
        assert!(check(b"ARG BASE=scratch\nFROM $BASE\n").is_ok());
    }

    #[test]
    fn rejects_what_is_not_one() {
        assert_eq!(check(b""), Err(DockerfileError::Empty));
        assert_eq!(
            check(b"\n  \n# only a comment\n"),
            Err(DockerfileError::Empty)
        );
        assert_eq!(check(b"FROM scratch\0"), Err(DockerfileError::HasNul));
        assert_eq!(check(b"FROM \xff\xfe"), Err(DockerfileError::NotUtf8));
        assert_eq!(
            check(b"%PDF-1.4\n1 0 obj\n"),
            Err(DockerfileError::NoFrom("%PDF-1.4".into()))
        );
        assert_eq!(
            validate_dockerfile(vec![b'#'; 2000], 1024),
            Err(DockerfileError::TooLarge { limit: 1024 })
        );
    }
}
