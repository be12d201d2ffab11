//! Daemon errors whose cause is a setting of dockpub's, or a Dockerfile that
//! this daemon's builder cannot read: the message gets the fix appended, so that a
//! first build on such a machine does not end in a riddle.

use super::dockerfile::{instruction_flags, instructions, names_a_frontend, newer_frontend_syntax};

/// Errors of a daemon without its default `bridge` network (no `docker0`), which
/// every `RUN` step uses unless the build names another.
const NO_DEFAULT_BRIDGE: [&str; 2] = ["could not find bridge docker0", "network bridge not found"];

pub fn with_hint(error: String) -> String {
    if NO_DEFAULT_BRIDGE
        .iter()
        .any(|symptom| error.contains(symptom))
    {
        return format!(
            "{error} (this daemon has no default bridge network: set build_network = \"none\" \
             or \"host\" in config.toml, DOCKPUB_BUILD_NETWORK or --build-network)"
        );
    }
    error
}

/// What the daemon says when a FROM's `--platform` came out empty.
const EMPTY_PLATFORM: &str = "is an invalid component";
/// What the daemon's Dockerfile frontend says of syntax it does not know.
const UNKNOWN_SYNTAX: [&str; 3] = ["parse error", "unknown flag", "unknown instruction"];

/// The fix for a failed build's `error` that its Dockerfile explains, if any.
pub fn dockerfile_hint(error: &str, dockerfile: &str, buildkit: bool) -> Option<String> {
    if !buildkit && error.contains(EMPTY_PLATFORM) && from_platform_uses_an_arg(dockerfile) {
        return Some(
            "the legacy builder does not set BUILDPLATFORM or TARGETPLATFORM, so \
             FROM --platform=$BUILDPLATFORM names no platform: build with BuildKit \
             (leave out buildkit=false)"
                .into(),
        );
    }
    let lowered = error.to_ascii_lowercase();
    if buildkit
        && UNKNOWN_SYNTAX
            .iter()
            .any(|symptom| lowered.contains(symptom))
        && !names_a_frontend(dockerfile)
    {
        let feature = newer_frontend_syntax(dockerfile)?;
        return Some(format!(
            "the Dockerfile uses {feature}, which the Dockerfile frontend built into this \
             daemon's BuildKit does not know; a first line '# syntax=docker/dockerfile:1' \
             makes BuildKit use a newer frontend, an image the daemon must be able to pull"
        ));
    }
    None
}

fn from_platform_uses_an_arg(dockerfile: &str) -> bool {
    instructions(dockerfile).iter().any(|instruction| {
        let (name, flags) = instruction_flags(instruction);
        name == "FROM"
            && flags
                .iter()
                .any(|flag| flag.starts_with("--platform=") && flag.contains('$'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_platform_on_legacy_names_buildkit() {
        let dockerfile = "FROM --platform=$BUILDPLATFORM base\nRUN true\n";
        let error = "failed to parse platform : \"\" is an invalid component of \"\"";
        let hint = dockerfile_hint(error, dockerfile, false).unwrap();
        assert!(hint.contains("buildkit=false"), "{hint}");
        assert_eq!(dockerfile_hint(error, dockerfile, true), None);
        assert_eq!(dockerfile_hint(error, "FROM base\n", false), None);
    }

    #[test]
    fn syntax_of_a_newer_frontend_names_the_syntax_directive() {
        let dockerfile = "FROM base\nCOPY --link a /a\n";
        let error = "failed to create LLB definition: Unknown flag: link";
        let hint = dockerfile_hint(error, dockerfile, true).unwrap();
        assert!(
            hint.contains("--link") && hint.contains("# syntax="),
            "{hint}"
        );
        assert_eq!(dockerfile_hint("exit code: 1", dockerfile, true), None);
        let with_syntax = format!("# syntax=docker/dockerfile:1\n{dockerfile}");
        assert_eq!(dockerfile_hint(error, &with_syntax, true), None);
    }

    #[test]
    fn a_missing_bridge_names_build_network() {
        let hinted = with_hint("failed to create endpoint on network bridge: could not find bridge docker0: route ip+net: no such network interface".into());
        assert!(hinted.contains("build_network = \"none\""), "{hinted}");
        assert_eq!(with_hint("exit code: 1".into()), "exit code: 1");
    }
}
