//! The statement: an in-toto Statement v1 whose subjects are the pushed image
//! manifests, with an SLSA provenance v1 predicate built from [`Observed`].

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::bases::BaseImage;
use super::{BUILD_TYPE, SLSA_PROVENANCE_V1};

/// Where the build context came from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Fetched from git: the URL as the request sent it, the ref and the commit built.
    Git {
        url: String,
        git_ref: String,
        commit: String,
    },
    /// An uploaded context archive and its sha256 digest.
    Upload { digest: String },
    /// No context: the Dockerfile alone.
    DockerfileOnly,
}

/// One pushed image manifest the statement is about.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `repository@digest` with the platform, as buildx names it.
    pub name: String,
    /// `sha256:…` of the image manifest.
    pub digest: String,
}

/// What dockpub saw of one build. Secret values never enter here: only ids.
#[derive(Debug, Clone)]
pub struct Observed {
    /// dockpub's builder id: its URL or name.
    pub dockpub_id: String,
    /// The builder (daemon) that ran it, and whether BuildKit did.
    pub builder: String,
    pub buildkit: bool,
    pub build_id: i64,
    pub submitted_by: Option<String>,
    pub source: Source,
    /// The Dockerfile's path in the context (None: sent alone) and its sha256 digest.
    pub dockerfile_path: Option<String>,
    pub dockerfile_digest: String,
    pub build_args: BTreeMap<String, String>,
    /// The ids of the build's secrets; never their values.
    pub secret_ids: Vec<String>,
    pub target: Option<String>,
    pub platforms: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub bases: Vec<BaseImage>,
    /// RFC 3339.
    pub started_on: Option<String>,
    pub finished_on: String,
}

/// The statement, as JSON.
pub fn statement(observed: &Observed, subjects: &[Subject]) -> Value {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "digest": { "sha256": s.digest.trim_start_matches("sha256:") },
            })
        })
        .collect();
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subject,
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external_parameters(observed),
                "internalParameters": { "buildkit": observed.buildkit },
                "resolvedDependencies": resolved_dependencies(observed),
            },
            "runDetails": run_details(observed),
        },
    })
}

fn external_parameters(observed: &Observed) -> Value {
    let source = match &observed.source {
        Source::Git {
            url,
            git_ref,
            commit,
        } => json!({ "git": url, "ref": git_ref, "commit": commit }),
        Source::Upload { digest } => json!({ "upload": { "digest": digest } }),
        Source::DockerfileOnly => json!({ "dockerfileOnly": true }),
    };
    json!({
        "source": source,
        "dockerfile": {
            "path": observed.dockerfile_path,
            "digest": { "sha256": observed.dockerfile_digest.trim_start_matches("sha256:") },
        },
        "buildArgs": observed.build_args,
        "secrets": observed.secret_ids,
        "target": observed.target,
        "platforms": observed.platforms,
        "labels": observed.labels,
    })
}

fn resolved_dependencies(observed: &Observed) -> Vec<Value> {
    let mut dependencies = Vec::new();
    match &observed.source {
        Source::Git { url, commit, .. } => dependencies.push(json!({
            "uri": format!("git+{url}"),
            "digest": { "gitCommit": commit },
        })),
        Source::Upload { digest } => dependencies.push(json!({
            "uri": "dockpub:upload/context.tar",
            "digest": { "sha256": digest.trim_start_matches("sha256:") },
        })),
        Source::DockerfileOnly => {}
    }
    dependencies.push(json!({
        "uri": format!(
            "dockpub:dockerfile/{}",
            observed.dockerfile_path.as_deref().unwrap_or("Dockerfile")
        ),
        "digest": { "sha256": observed.dockerfile_digest.trim_start_matches("sha256:") },
    }));
    dependencies.extend(observed.bases.iter().map(BaseImage::dependency));
    dependencies
}

fn run_details(observed: &Observed) -> Value {
    let mut builder = json!({
        "id": observed.dockpub_id,
        "version": { "dockpub": env!("CARGO_PKG_VERSION") },
        "builderDependencies": [{ "uri": format!("dockpub:builder/{}", observed.builder) }],
    });
    if let Some(token) = &observed.submitted_by {
        builder["submittedBy"] = json!(token);
    }
    json!({
        "builder": builder,
        "metadata": {
            "invocationId": observed.build_id.to_string(),
            "startedOn": observed.started_on,
            "finishedOn": observed.finished_on,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(source: Source) -> Observed {
        Observed {
            dockpub_id: "http://dockpub.example".into(),
            builder: "local".into(),
            buildkit: true,
            build_id: 7,
            submitted_by: Some("ci".into()),
            source,
            dockerfile_path: Some("Dockerfile".into()),
            dockerfile_digest: format!("sha256:{}", "d".repeat(64)),
            build_args: BTreeMap::from([("VERSION".into(), "1.2".into())]),
            secret_ids: vec!["npm".into()],
            target: Some("app".into()),
            platforms: vec!["linux/amd64".into()],
            labels: BTreeMap::new(),
            bases: vec![
                BaseImage {
                    name: "127.0.0.1:5000/base:1".into(),
                    digest: Some(format!("sha256:{}", "b".repeat(64))),
                },
                BaseImage {
                    name: "local/base".into(),
                    digest: None,
                },
            ],
            started_on: Some("2026-01-01T00:00:00Z".into()),
            finished_on: "2026-01-01T00:01:00Z".into(),
        }
    }

    #[test]
    fn a_git_build_names_its_commit_and_its_subjects() {
        let source = Source::Git {
            url: "https://git.example/app.git".into(),
            git_ref: "main".into(),
            commit: "c".repeat(40),
        };
        let subject = Subject {
            name: "pkg:docker/reg/app@sha256:aa?platform=linux%2Famd64".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
        };
        let statement = statement(&observed(source), &[subject]);
        assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(statement["subject"][0]["digest"]["sha256"], "a".repeat(64));
        let definition = &statement["predicate"]["buildDefinition"];
        assert_eq!(
            definition["resolvedDependencies"][0]["digest"]["gitCommit"],
            "c".repeat(40)
        );
        assert_eq!(definition["externalParameters"]["secrets"][0], "npm");
        assert_eq!(
            statement["predicate"]["runDetails"]["metadata"]["invocationId"],
            "7"
        );
    }

    #[test]
    fn an_unresolved_base_is_listed_without_a_digest_and_says_so() {
        let statement = statement(
            &observed(Source::Upload {
                digest: format!("sha256:{}", "e".repeat(64)),
            }),
            &[],
        );
        let dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(dependencies[0]["digest"]["sha256"], "e".repeat(64));
        let resolved = &dependencies[2];
        assert_eq!(resolved["digest"]["sha256"], "b".repeat(64));
        let unresolved = &dependencies[3];
        assert!(unresolved.get("digest").is_none(), "{unresolved}");
        assert!(unresolved["annotations"]["note"]
            .as_str()
            .unwrap()
            .contains("not observed"));
    }
}
