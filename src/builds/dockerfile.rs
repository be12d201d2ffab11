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

#[cfg(test)]
mod tests {
    use super::*;

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
