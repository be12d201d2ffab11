//! SSH mounts: the `[ssh.ID]` keys a request asks for (`ssh`, ids as buildx's
//! `--ssh`), and the Dockerfile's `RUN --mount=type=ssh` steps, which may use
//! only those. Keys stay in memory (`ssh_agent`); a build stores its ids only.

use super::dockerfile::{instruction_flags, instructions};
use super::limits::{self, MAX_SSH_IDS};
use super::options::{OptionError, OptionsError};
use crate::domain::{is_plain_name, BuildOptions, PLAIN_NAME_RULE};
use crate::ssh_agent::{AgentKey, DEFAULT_ID};

fn invalid(message: String) -> OptionError {
    OptionError {
        field: "ssh",
        message,
    }
}

/// The request's `ssh` ids: each an `[ssh.ID]` of the server's (`is_known`), once.
pub fn request_ssh(
    ids: Vec<String>,
    is_known: impl Fn(&str) -> bool,
) -> Result<Vec<String>, OptionsError> {
    limits::check_count("ssh", ids.len(), MAX_SSH_IDS, "ssh ids")?;
    for (n, id) in ids.iter().enumerate() {
        if !is_plain_name(id) {
            return Err(invalid(format!(
                "'{id}' is not an id ({PLAIN_NAME_RULE}); send the id of an [ssh.ID] key of \
                 the server, not a path or ID=PATH"
            ))
            .into());
        }
        if ids[..n].contains(id) {
            return Err(invalid(format!("'{id}' is given more than once")).into());
        }
        if !is_known(id) {
            return Err(invalid(format!(
                "no SSH key '{id}' is configured on this server ([ssh.{id}] in its config)"
            ))
            .into());
        }
    }
    Ok(ids)
}

/// One `RUN --mount=type=ssh`: the id it asks for, and whether the step fails
/// without it (BuildKit skips a mount with `required=false`).
#[derive(Debug, PartialEq, Eq)]
struct SshMount {
    id: String,
    required: bool,
}

/// The Dockerfile's SSH mounts, in order. An id made of build args (`$ID`) is
/// the daemon's to resolve, so it is left out.
fn ssh_mounts(dockerfile: &str) -> Vec<SshMount> {
    let mut mounts = Vec::new();
    for instruction in instructions(dockerfile) {
        let (name, flags) = instruction_flags(&instruction);
        if name != "RUN" {
            continue;
        }
        for flag in flags {
            let Some(spec) = flag.strip_prefix("--mount=") else {
                continue;
            };
            let fields: Vec<(&str, &str)> = spec
                .split(',')
                .map(|field| field.split_once('=').unwrap_or((field, "true")))
                .collect();
            let value = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            if value("type") != Some("ssh") {
                continue;
            }
            let id = value("id")
                .filter(|id| !id.is_empty())
                .unwrap_or(DEFAULT_ID);
            if !id.contains('$') {
                mounts.push(SshMount {
                    id: id.to_string(),
                    required: value("required") != Some("false"),
                });
            }
        }
    }
    mounts
}

/// Whether the Dockerfile mounts an SSH agent at all: only then does a build
/// go the way that can serve one.
pub fn mounts_ssh(dockerfile: &str) -> bool {
    dockerfile.contains("type=ssh")
}

/// A build with `ssh` needs BuildKit's gRPC API (no legacy builder, no `host`
/// network), and each required SSH mount of its Dockerfile an id it asked for.
pub fn check_build(options: &BuildOptions, dockerfile: &str) -> Result<(), OptionError> {
    if !options.ssh.is_empty() && !options.buildkit {
        return Err(invalid(
            "SSH mounts need BuildKit; submit them without buildkit=false".into(),
        ));
    }
    if !options.ssh.is_empty() && options.network.as_deref() == Some("host") {
        return Err(OptionError {
            field: "network",
            message: "'host' cannot be used with ssh: BuildKit's gRPC API, which serves the \
                      agent, refuses host networking"
                .into(),
        });
    }
    check_mounts(options, dockerfile)
}

/// Every required SSH mount of the Dockerfile uses an id the request asked for.
fn check_mounts(options: &BuildOptions, dockerfile: &str) -> Result<(), OptionError> {
    let missing = ssh_mounts(dockerfile)
        .into_iter()
        .find(|mount| mount.required && !options.ssh.contains(&mount.id));
    match missing {
        Some(SshMount { id, .. }) => Err(invalid(format!(
            "the Dockerfile mounts the SSH key '{id}' (RUN --mount=type=ssh{}), which this \
             build was not given: send ssh={id}",
            if id == DEFAULT_ID {
                String::new()
            } else {
                format!(",id={id}")
            }
        ))),
        None => Ok(()),
    }
}

/// The keys of the build's ids among the server's; the first id the server no
/// longer has (its config changed since the build was queued), if any.
pub fn keys_for(ids: &[String], server: &[AgentKey]) -> Result<Vec<AgentKey>, String> {
    ids.iter()
        .map(|id| {
            server
                .iter()
                .find(|key| &key.id == id)
                .cloned()
                .ok_or_else(|| id.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_known_plain_names_given_once() {
        let known = |id: &str| ["default", "github"].contains(&id);
        assert_eq!(
            request_ssh(vec!["default".into(), "github".into()], known).unwrap(),
            ["default", "github"]
        );
        for bad in [
            vec!["default=/root/.ssh/id_ed25519".to_string()],
            vec!["github".into(), "github".into()],
            vec!["gitlab".into()],
        ] {
            assert_eq!(request_ssh(bad, known).unwrap_err().field(), "ssh");
        }
        let many = (0..=MAX_SSH_IDS).map(|n| format!("k{n}")).collect();
        assert!(matches!(
            request_ssh(many, |_| true),
            Err(OptionsError::OverLimit(_))
        ));
    }

    #[test]
    fn mounts_are_found_with_their_ids() {
        let dockerfile = "FROM x\nRUN --mount=type=ssh ssh -T git@host\n\
            RUN --mount=type=cache,target=/c \\\n  --mount=type=ssh,id=github,required=false true\n\
            RUN --mount=type=ssh,id=$KEY true\nRUN echo type=ssh\n";
        assert_eq!(
            ssh_mounts(dockerfile),
            [
                SshMount {
                    id: "default".into(),
                    required: true
                },
                SshMount {
                    id: "github".into(),
                    required: false
                }
            ]
        );
    }

    #[test]
    fn a_required_mount_needs_its_id_granted() {
        let granted = BuildOptions {
            ssh: vec!["default".into()],
            ..BuildOptions::default()
        };
        let dockerfile = "FROM x\nRUN --mount=type=ssh,id=deploy true\n";
        let err = check_mounts(&granted, dockerfile).unwrap_err();
        assert!(err.message.contains("'deploy'"), "{err}");
        assert!(check_mounts(&granted, "FROM x\nRUN --mount=type=ssh true\n").is_ok());
        let optional = "FROM x\nRUN --mount=type=ssh,id=deploy,required=false true\n";
        assert!(check_mounts(&granted, optional).is_ok());
    }

    #[test]
    fn a_build_gets_the_keys_of_its_ids() {
        let server = [];
        assert_eq!(keys_for(&["gone".into()], &server).unwrap_err(), "gone");
        assert!(keys_for(&[], &server).unwrap().is_empty());
    }
}
