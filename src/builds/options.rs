//! Build options as a request sends them, checked one by one before anything is
//! stored: each error names its field.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::context::clean_path;
use super::dockerfile::{instruction_flags, instructions};
use super::limits::{self, LimitError};
use crate::domain::BuildOptions;

/// Build argument names as Dockerfile ARG instructions can refer to them.
static ARG_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("arg regex"));
/// Label keys: Docker's recommended reverse-DNS style, with `/` allowed.
static LABEL_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?$").expect("label regex")
});
/// Stage names as `FROM image AS name` accepts them.
static STAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$").expect("stage regex"));
/// `os/arch[/variant]`, lower case as Docker writes them: linux/amd64, linux/arm/v7.
static PLATFORM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9_]+(?:/[a-z0-9_.-]+){1,2}$").expect("platform regex"));

/// The one platform rule, for requests and for `[[builders]] platforms` alike.
pub fn is_platform(text: &str) -> bool {
    PLATFORM.is_match(text)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{field}': {message}")]
pub struct OptionError {
    pub field: &'static str,
    pub message: String,
}

/// Why the options of a request are refused: a bad value, or one past a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Invalid(#[from] OptionError),
    #[error(transparent)]
    OverLimit(#[from] LimitError),
}

#[cfg(test)]
impl OptionsError {
    pub fn field(&self) -> &'static str {
        match self {
            OptionsError::Invalid(err) => err.field,
            OptionsError::OverLimit(err) => err.field,
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> OptionError {
    OptionError {
        field,
        message: message.into(),
    }
}

/// The option fields of a build request, as text.
#[derive(Debug, Default)]
pub struct OptionsRequest {
    pub dockerfile: Option<String>,
    pub build_args: Vec<String>,
    pub labels: Vec<String>,
    pub target: Option<String>,
    pub platform: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub network: Option<String>,
    /// None: the server's default builder.
    pub buildkit: Option<bool>,
    pub cache_from: Vec<String>,
    /// `[ssh.ID]` ids, checked against the server's keys at submit.
    pub ssh: Vec<String>,
}

/// Which networks a build may ask for.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Used when a build names none; None is the daemon's default.
    pub default: Option<String>,
    pub allowed: Vec<String>,
}

impl OptionsRequest {
    /// The options to store; `dockerfile` and `context_bytes` are the context's to
    /// fill. `buildkit` is the server's default builder.
    pub fn validate(
        self,
        networks: &NetworkPolicy,
        buildkit: bool,
    ) -> Result<BuildOptions, OptionsError> {
        Ok(BuildOptions {
            dockerfile: None,
            context_bytes: None,
            build_args: build_args(self.build_args)?,
            labels: key_values(LABELS, self.labels)?,
            target: matching(
                "target",
                self.target,
                &STAGE,
                "a stage name such as 'build'",
            )?,
            platform: platform_list(self.platform)?,
            no_cache: self.no_cache,
            pull: self.pull,
            network: network(self.network, networks)?,
            buildkit: self.buildkit.unwrap_or(buildkit),
            secrets: Vec::new(),
            // The ids are checked against the server's keys by the submit.
            ssh: Vec::new(),
            cache_from: cache_sources(self.cache_from)?,
        })
    }
}

/// `platform`: one `os/arch[/variant]` or a comma-separated list of them, as
/// buildx spells it; each once. Kept as written, without spaces. A trigger's
/// `platform` is checked by the same rule.
pub fn platform_list(list: Option<String>) -> Result<Option<String>, OptionsError> {
    let Some(list) = list else { return Ok(None) };
    let platforms: Vec<&str> = list.split(',').map(str::trim).collect();
    limits::check_count(
        "platform",
        platforms.len(),
        limits::MAX_PLATFORMS,
        "platforms",
    )?;
    for (n, platform) in platforms.iter().enumerate() {
        if !is_platform(platform) {
            return Err(invalid(
                "platform",
                format!("'{platform}' is not os/arch[/variant] such as 'linux/amd64'"),
            )
            .into());
        }
        if platforms[..n].contains(platform) {
            return Err(invalid("platform", format!("'{platform}' is given twice")).into());
        }
    }
    Ok(Some(platforms.join(",")))
}

/// `cache_from` images: `repository:tag`, as the `tag` and `repository` fields take them.
fn cache_sources(references: Vec<String>) -> Result<Vec<String>, OptionsError> {
    limits::check_count(
        "cache_from",
        references.len(),
        limits::MAX_CACHE_SOURCES,
        "cache sources",
    )?;
    for reference in &references {
        let (repository, tag) = match reference.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, tag),
            _ => (reference.as_str(), "latest"),
        };
        crate::domain::validate_repository(repository)
            .and_then(|()| crate::domain::validate_tag(tag))
            .map_err(|err| invalid("cache_from", format!("'{reference}': {err}")))?;
    }
    Ok(references)
}

/// A Dockerfile that only BuildKit builds cannot go to the legacy builder.
pub fn check_builder(options: &BuildOptions, dockerfile: &str) -> Result<(), OptionError> {
    if !options.secrets.is_empty() {
        if !options.buildkit {
            return Err(invalid(
                "secret",
                "secrets need BuildKit; submit them without buildkit=false",
            ));
        }
        if options.network.as_deref() == Some("host") {
            return Err(invalid(
                "network",
                "'host' cannot be used with secrets: BuildKit's gRPC API, which serves them, \
                 refuses host networking",
            ));
        }
    }
    if options.is_multi_platform() && !options.buildkit {
        return Err(invalid(
            "buildkit",
            "several platforms need BuildKit; submit them without buildkit=false",
        ));
    }
    match needs_buildkit(dockerfile) {
        Some(feature) if !options.buildkit => Err(invalid(
            "buildkit",
            format!(
                "the Dockerfile uses {feature}, which only BuildKit builds; \
                 submit it without buildkit=false"
            ),
        )),
        _ => Ok(()),
    }
}

/// What in the Dockerfile needs BuildKit (`RUN --mount=…`, also when the flag
/// comes on a continued line), when anything does.
pub fn needs_buildkit(dockerfile: &str) -> Option<&'static str> {
    instructions(dockerfile)
        .iter()
        .any(|instruction| {
            let (name, flags) = instruction_flags(instruction);
            name == "RUN" && flags.iter().any(|flag| flag.starts_with("--mount"))
        })
        .then_some("RUN --mount")
}

/// The Dockerfile's path inside a context: relative, without `..`.
pub fn dockerfile_path(path: &str) -> Result<String, OptionError> {
    match clean_path(Path::new(path)) {
        Ok(clean) if !clean.is_empty() => Ok(clean),
        Ok(_) => Err(invalid("dockerfile", "must name a file")),
        Err(reason) => Err(invalid("dockerfile", format!("'{path}': {reason}"))),
    }
}

/// A repeated `KEY=VALUE` field: its name, its key rule and how many it takes.
struct KeyValueField {
    field: &'static str,
    key_rule: &'static LazyLock<Regex>,
    limit: usize,
    plural: &'static str,
}

const LABELS: KeyValueField = KeyValueField {
    field: "label",
    key_rule: &LABEL_KEY,
    limit: limits::MAX_LABELS,
    plural: "labels",
};

const BUILD_ARGS: KeyValueField = KeyValueField {
    field: "build_arg",
    key_rule: &ARG_KEY,
    limit: limits::MAX_BUILD_ARGS,
    plural: "build args",
};

/// `build_arg` values, as a request or a trigger's `build_args` give them.
pub fn build_args(pairs: Vec<String>) -> Result<BTreeMap<String, String>, OptionsError> {
    key_values(BUILD_ARGS, pairs)
}

fn key_values(
    kind: KeyValueField,
    pairs: Vec<String>,
) -> Result<BTreeMap<String, String>, OptionsError> {
    let field = kind.field;
    limits::check_count(field, pairs.len(), kind.limit, kind.plural)?;
    let mut map = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(invalid(field, format!("'{pair}' is not KEY=VALUE")).into());
        };
        limits::check_key_value(field, key, value)?;
        if !kind.key_rule.is_match(key) {
            return Err(invalid(field, format!("'{key}' is not a valid key")).into());
        }
        if map.insert(key.to_string(), value.to_string()).is_some() {
            return Err(invalid(field, format!("'{key}' is given more than once")).into());
        }
    }
    Ok(map)
}

fn matching(
    field: &'static str,
    value: Option<String>,
    rule: &Regex,
    expected: &str,
) -> Result<Option<String>, OptionError> {
    match value {
        Some(value) if !rule.is_match(&value) => {
            Err(invalid(field, format!("'{value}' is not {expected}")))
        }
        other => Ok(other.filter(|v| !v.is_empty())),
    }
}

fn network(asked: Option<String>, policy: &NetworkPolicy) -> Result<Option<String>, OptionError> {
    let Some(asked) = asked.filter(|n| !n.is_empty()) else {
        return Ok(policy.default.clone());
    };
    if policy.allowed.contains(&asked) {
        return Ok(Some(asked));
    }
    let allowed = if policy.allowed.is_empty() {
        "none may be chosen: the server's default is used".to_string()
    } else {
        format!("allowed: {}", policy.allowed.join(", "))
    };
    Err(invalid(
        "network",
        format!("'{asked}' is not allowed ({allowed})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NetworkPolicy {
        NetworkPolicy {
            default: Some("none".into()),
            allowed: vec!["none".into(), "host".into()],
        }
    }

    #[test]
    fn valid_options_are_kept() {
        let options = OptionsRequest {
            build_args: vec!["A=1".into(), "B_2=x=y".into(), "EMPTY=".into()],
            labels: vec!["org.example/team=core".into()],
            target: Some("build-stage".into()),
            platform: Some("linux/arm/v7".into()),
            no_cache: true,
            ..OptionsRequest::default()
        }
        .validate(&policy(), true)
        .unwrap();
        assert_eq!(options.build_args["B_2"], "x=y");
        assert_eq!(options.build_args["EMPTY"], "");
        assert_eq!(options.labels["org.example/team"], "core");
        assert_eq!(options.network.as_deref(), Some("none"), "the default");
        assert!(options.no_cache && !options.pull);
    }

    #[test]
    fn bad_options_name_their_field() {
        let cases: Vec<(OptionsRequest, &str)> = vec![
            (
                OptionsRequest {
                    build_args: vec!["NOEQUALS".into()],
                    ..Default::default()
                },
                "build_arg",
            ),
            (
                OptionsRequest {
                    build_args: vec!["1A=x".into()],
                    ..Default::default()
                },
                "build_arg",
            ),
            (
                OptionsRequest {
                    build_args: vec!["A=1".into(), "A=2".into()],
                    ..Default::default()
                },
                "build_arg",
            ),
            (
                OptionsRequest {
                    labels: vec!["bad key=x".into()],
                    ..Default::default()
                },
                "label",
            ),
            (
                OptionsRequest {
                    target: Some("-x".into()),
                    ..Default::default()
                },
                "target",
            ),
            (
                OptionsRequest {
                    platform: Some("Linux/AMD64".into()),
                    ..Default::default()
                },
                "platform",
            ),
            (
                OptionsRequest {
                    network: Some("bridge".into()),
                    ..Default::default()
                },
                "network",
            ),
        ];
        for (request, field) in cases {
            let err = request.validate(&policy(), true).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn cache_sources_are_image_references() {
        let ok = vec!["127.0.0.1:5000/team/app:v1".to_string(), "team/app".into()];
        assert_eq!(cache_sources(ok.clone()), Ok(ok));
        for bad in ["Team/App:v1", "app:bad tag", ""] {
            assert_eq!(
                cache_sources(vec![bad.into()]).unwrap_err().field(),
                "cache_from"
            );
        }
    }

    #[test]
    fn run_mount_needs_buildkit() {
        let dockerfile = "FROM base\nRUN --network=none --mount=type=cache,target=/c make\n";
        assert_eq!(needs_buildkit(dockerfile), Some("RUN --mount"));
        assert_eq!(needs_buildkit("FROM base\nRUN echo --mount\n"), None);
        assert_eq!(
            needs_buildkit("FROM base\nRUN \\\n  --mount=type=cache,target=/c true\n"),
            Some("RUN --mount")
        );
        let legacy = BuildOptions::default();
        assert_eq!(
            check_builder(&legacy, dockerfile).unwrap_err().field,
            "buildkit"
        );
        let buildkit = BuildOptions {
            buildkit: true,
            ..BuildOptions::default()
        };
        assert!(check_builder(&buildkit, dockerfile).is_ok());
    }

    #[test]
    fn dockerfile_paths_stay_inside() {
        assert_eq!(
            dockerfile_path("./docker/Dockerfile.prod"),
            Ok("docker/Dockerfile.prod".into())
        );
        assert!(dockerfile_path("../Dockerfile").is_err());
        assert!(dockerfile_path("/Dockerfile").is_err());
        assert!(dockerfile_path(".").is_err());
    }

    #[test]
    fn a_platform_is_os_arch_as_a_builder_writes_it() {
        for good in ["linux/amd64", "linux/arm/v7", "windows/amd64"] {
            assert!(is_platform(good), "{good}");
        }
        for bad in [
            "linux",
            "xx",
            "linux/AMD64",
            "linux/arm64/v8/x",
            "linux//v7",
            "",
            "linux/amd64,",
            "linux/amd64,linux/amd64",
            "linux/amd64,linux/arm64,linux/arm/v7,linux/386,linux/s390x",
        ] {
            assert!(!is_platform(bad), "{bad}");
            let request = OptionsRequest {
                platform: Some(bad.into()),
                ..OptionsRequest::default()
            };
            let err = request.validate(&policy(), true).unwrap_err();
            assert_eq!(err.field(), "platform", "{bad}");
        }
    }

    #[test]
    fn several_platforms_are_a_comma_separated_list_kept_in_order() {
        let options = OptionsRequest {
            platform: Some("linux/arm64, linux/amd64".into()),
            ..OptionsRequest::default()
        }
        .validate(&policy(), true)
        .unwrap();
        assert_eq!(options.platform.as_deref(), Some("linux/arm64,linux/amd64"));
        assert_eq!(options.platforms(), ["linux/arm64", "linux/amd64"]);
        assert!(options.is_multi_platform());
        let legacy = BuildOptions {
            buildkit: false,
            ..options
        };
        let err = check_builder(&legacy, "FROM scratch\n").unwrap_err();
        assert_eq!(err.field, "buildkit");
    }
}
