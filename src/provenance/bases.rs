//! The base images a build used, as BuildKit reported resolving them: its step
//! `[1/3] FROM registry/name:tag@sha256:…` names the digest it pulled. The
//! legacy builder reports no digest; a base seen only in the Dockerfile is
//! listed without one, saying it was not observed.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{json, Value};

/// One `FROM` image, with the digest BuildKit resolved it to when seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// As BuildKit names it (`docker.io/library/alpine:3`), or as the
    /// Dockerfile writes it when BuildKit did not report it.
    pub name: String,
    /// `sha256:…`; None when dockpub did not observe one.
    pub digest: Option<String>,
}

impl BaseImage {
    /// Its `resolvedDependencies` entry.
    pub fn dependency(&self) -> Value {
        match &self.digest {
            Some(digest) => json!({
                "uri": format!("pkg:docker/{}", self.name),
                "digest": { "sha256": digest.trim_start_matches("sha256:") },
            }),
            None => json!({
                "uri": format!("pkg:docker/{}", self.name),
                "annotations": {
                    "note": "digest not observed: the builder did not report which image it resolved"
                },
            }),
        }
    }
}

/// The base image a BuildKit step's name says it resolved, if it is a `FROM` step.
pub fn observed_base(step_name: &str) -> Option<BaseImage> {
    static FROM: OnceLock<Regex> = OnceLock::new();
    let from = FROM.get_or_init(|| {
        Regex::new(r"^(?:\[[^\]]*\] )?FROM (\S+)@(sha256:[0-9a-f]{64})")
            .expect("the FROM pattern is valid")
    });
    let captures = from.captures(step_name.trim())?;
    Some(BaseImage {
        name: captures[1].to_string(),
        digest: Some(captures[2].to_string()),
    })
}

/// The images the Dockerfile's `FROM` lines name (not `scratch`, not an
/// earlier stage), with the observed ones' digests; each listed once.
pub fn bases_of(dockerfile: &str, observed: &[BaseImage]) -> Vec<BaseImage> {
    let mut bases: Vec<BaseImage> = Vec::new();
    for seen in observed {
        if !bases.contains(seen) {
            bases.push(seen.clone());
        }
    }
    let mut stages: Vec<String> = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        let image = words.iter().skip(1).find(|w| !w.starts_with("--"));
        if let Some(image) = image {
            let lower = image.to_ascii_lowercase();
            // Only an earlier stage can be built from: stages holds those so far.
            let known = lower == "scratch"
                || stages.contains(&lower)
                || bases.iter().any(|b| names_the_same(&b.name, image));
            if !known {
                bases.push(BaseImage {
                    name: image.to_string(),
                    digest: None,
                });
            }
        }
        if let Some(stage) = words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("AS"))
            .and_then(|at| words.get(at + 1))
        {
            stages.push(stage.to_ascii_lowercase());
        }
    }
    bases
}

/// `alpine` and `docker.io/library/alpine:latest` name one image.
fn names_the_same(resolved: &str, written: &str) -> bool {
    let with_tag = |name: &str| {
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.contains(':') {
            name.to_string()
        } else {
            format!("{name}:latest")
        }
    };
    let resolved = with_tag(resolved);
    let written = with_tag(written);
    resolved == written
        || resolved == format!("docker.io/library/{written}")
        || resolved == format!("docker.io/{written}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buildkit_from_step_names_the_digest_it_resolved() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let step = format!("[build 1/3] FROM 127.0.0.1:5000/base/busybox:latest@{digest}");
        let base = observed_base(&step).unwrap();
        assert_eq!(base.name, "127.0.0.1:5000/base/busybox:latest");
        assert_eq!(base.digest.as_deref(), Some(digest.as_str()));
        assert!(observed_base("[internal] load metadata for alpine:3").is_none());
        assert!(observed_base("[2/3] RUN echo FROM x@sha256:1").is_none());
    }

    #[test]
    fn bases_not_observed_come_from_the_dockerfile_without_a_digest() {
        let seen = BaseImage {
            name: "docker.io/library/alpine:latest".into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
        };
        let dockerfile = "FROM alpine AS build\nRUN x\nFROM --platform=linux/amd64 local/base:1\n\
                          FROM build\nFROM scratch\n";
        let bases = bases_of(dockerfile, std::slice::from_ref(&seen));
        assert_eq!(
            bases,
            vec![
                seen,
                BaseImage {
                    name: "local/base:1".into(),
                    digest: None
                }
            ]
        );
    }
}
