//! The `submit` flags that become build options and the registry login, each
//! turned into the form fields the API takes.

use std::io::Read;

use clap::Args;
use reqwest::multipart::Form;

use super::CliError;

/// Build options, as `docker build` names them. A flag left out sends nothing, so
/// the server's default applies.
#[derive(Debug, Default, Args)]
pub(crate) struct BuildOptionArgs {
    /// Build argument KEY=VALUE (repeatable)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub(crate) build_args: Vec<String>,
    /// Label KEY=VALUE on the image (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
    /// Stage to build in a multi-stage Dockerfile
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Platform to build for, os/arch[/variant], e.g. linux/amd64; several
    /// comma-separated (linux/amd64,linux/arm64) push one image index
    #[arg(long)]
    pub(crate) platform: Option<String>,
    /// Build every step anew
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Pull a newer base image even when one is present
    #[arg(long)]
    pub(crate) pull: bool,
    /// Network mode of RUN steps (the server's build_network or allowed_build_networks)
    #[arg(long)]
    pub(crate) network: Option<String>,
    /// The Dockerfile's path inside a directory sent as context [default: Dockerfile]
    #[arg(long, value_name = "PATH")]
    pub(crate) dockerfile: Option<String>,
    /// URL told when the build ends (its host must be in the server's allowed_callback_hosts)
    #[arg(long, value_name = "URL")]
    pub(crate) callback_url: Option<String>,
}

impl BuildOptionArgs {
    pub(crate) fn add_to(&self, mut form: Form) -> Form {
        let repeated = [("build_arg", &self.build_args), ("label", &self.labels)];
        for (field, values) in repeated {
            for value in values {
                form = form.text(field, value.clone());
            }
        }
        let single = [
            ("target", &self.target),
            ("platform", &self.platform),
            ("network", &self.network),
            ("dockerfile", &self.dockerfile),
            ("callback_url", &self.callback_url),
        ];
        form = with_texts(form, &single);
        let flags = [("no_cache", self.no_cache), ("pull", self.pull)];
        for (field, set) in flags {
            if set {
                form = form.text(field, "true");
            }
        }
        form
    }
}

/// A repository the server fetches the context from, instead of a local path.
#[derive(Debug, Default, Args)]
pub(crate) struct GitArgs {
    /// Build from this git repository (https://, ssh://, git@host:path, git://) instead of PATH
    #[arg(long, value_name = "URL", conflicts_with = "path")]
    pub(crate) git: Option<String>,
    /// Branch, tag or full commit SHA to build [default: the repository's HEAD]
    #[arg(long = "ref", value_name = "REF", requires = "git")]
    pub(crate) git_ref: Option<String>,
    /// The context folder inside the repository [default: its root]
    #[arg(long, value_name = "DIR", requires = "git")]
    pub(crate) subdir: Option<String>,
}

impl GitArgs {
    /// The form with the `git` fields (none when no repository was named).
    pub(crate) fn add_to(&self, form: Form) -> Form {
        let fields = [
            ("git", &self.git),
            ("git_ref", &self.git_ref),
            ("git_subdir", &self.subdir),
        ];
        with_texts(form, &fields)
    }
}

/// The form with a text field for each value that is set.
fn with_texts(mut form: Form, fields: &[(&'static str, &Option<String>)]) -> Form {
    for (field, value) in fields {
        if let Some(value) = value {
            form = form.text(*field, value.clone());
        }
    }
    form
}

/// A registry login for the push, as `docker login` takes it: the password only
/// from standard input, never from the command line (where `ps` shows it).
#[derive(Debug, Default, Clone, Args)]
pub struct LoginArgs {
    /// Registry username for the push (with --password-stdin)
    #[arg(short, long, requires = "password_stdin")]
    pub(crate) username: Option<String>,
    /// Read the registry password from standard input (with --username)
    #[arg(long, requires = "username")]
    pub(crate) password_stdin: bool,
}

impl LoginArgs {
    /// The form with `username` and `password`, the password read from stdin now.
    pub(crate) fn add_to(&self, form: Form) -> Result<Form, CliError> {
        let Some(username) = &self.username else {
            return Ok(form);
        };
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password)?;
        // As docker login does: the newline an `echo` or a file ends with is not part of it.
        let password = password.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            return Err(CliError::Usage(
                "--password-stdin: standard input held no password".into(),
            ));
        }
        Ok(form
            .text("username", username.clone())
            .text("password", password))
    }
}
