//! Every README example in a code block tagged ` ```sh test` runs against a real
//! server, the real daemon and the test registry; an example that fails fails here.
//! The README's "The README's examples are tests" says how they are run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Server, TestEnv};

/// Fewer tagged blocks than this means tags were lost, not that all is well.
const AT_LEAST_BLOCKS: usize = 6;

/// Each `curl` fails on an error status, unless the example already asks for `-f`.
const PRELUDE: &str = r#"curl() {
  local fail=--fail-with-body arg
  for arg in "$@"; do
    case "$arg" in --fail|--fail-with-body|-[!-]*f*) fail= ;; esac
  done
  command curl $fail -sS "$@"
}
"#;

struct Example {
    /// The README line of the opening fence, for the failure message.
    line: usize,
    script: String,
}

/// The ` ```sh test` blocks, in README order.
fn tagged_examples(readme: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut open: Option<Example> = None;
    for (index, line) in readme.lines().enumerate() {
        match open.as_mut() {
            None if line.trim() == "```sh test" => {
                open = Some(Example {
                    line: index + 1,
                    script: String::new(),
                })
            }
            None => {}
            Some(_) if line.trim_start().starts_with("```") => examples.extend(open.take()),
            Some(example) => {
                example.script.push_str(line);
                example.script.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a ```sh test block is never closed");
    examples
}

/// The README's documented substitutions, and only those.
fn substituted(script: &str, server: &str, env: &TestEnv) -> String {
    script
        .replace("localhost:8080", server)
        .replace("127.0.0.1:8080", server)
        .replace("127.0.0.1:5000", &env.registry)
        .replace("FROM busybox", &format!("FROM {}", env.base_image))
}

fn path_with_dockpub() -> String {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_dockpub"));
    let dir = binary.parent().expect("the binary's folder");
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn run(example: &Example, script: &str, scratch: &Path, server: &Server) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c"])
        .arg(format!("{PRELUDE}{script}"))
        .current_dir(scratch)
        .env("PATH", path_with_dockpub())
        .env("DOCKPUB_URL", &server.base)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the README example at line {} failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}\n--- server log\n{}",
        example.line,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

#[test]
fn every_tagged_readme_example_runs() {
    let env = TestEnv::get();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let examples = tagged_examples(&readme);
    assert!(
        examples.len() >= AT_LEAST_BLOCKS,
        "only {} ```sh test blocks in the README",
        examples.len()
    );
    let server = Server::start();
    let address = server.base.trim_start_matches("http://").to_string();
    let scratch = tempfile::tempdir().expect("scratch folder");
    for example in &examples {
        let script = substituted(&example.script, &address, &env);
        run(example, &script, scratch.path(), &server);
    }
}

/// The ids of a README text that follow `marker` up to the next `,`, space, `\` or `=`.
fn ids_after<'a>(readme: &'a str, marker: &str) -> Vec<&'a str> {
    readme
        .split(marker)
        .skip(1)
        .map(|rest| {
            let end = rest
                .find([',', ' ', '\\', '=', '\n', '`'])
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Every secret the README's requests and commands send has an id that a
/// Dockerfile example of the README mounts: an example that sent one id and
/// mounted another would build "successfully" with an empty secret.
#[test]
fn the_readme_secret_examples_send_the_ids_they_mount() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let mounted = ids_after(&readme, "type=secret,id=");
    assert!(mounted.len() >= 2, "{mounted:?}");
    let sent: Vec<&str> = [
        ids_after(&readme, "--secret id="),
        ids_after(&readme, "-F secret="),
        ids_after(&readme, ";filename="),
    ]
    .concat()
    .into_iter()
    // `-F secret=@FILE` names its id with `;filename=` (counted above).
    .filter(|id| !id.starts_with('@') && !id.is_empty())
    .collect();
    assert!(sent.len() >= 4, "{sent:?}");
    for id in sent {
        assert!(
            mounted.contains(&id),
            "the README sends secret '{id}' that no example mounts ({mounted:?})"
        );
    }
}

/// Every `module::test` (or `module::sub::test`) the limits table names is a
/// test of that module, so the table cannot promise what no test holds.
#[test]
fn every_test_the_limits_table_names_exists() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme.find("## Limits against hostile input").unwrap();
    let end = start + readme[start..].find("\n## ").unwrap();
    let table = &readme[start..end];
    let named = regex::Regex::new(r"`((?:[a-z_]+::)+)([a-z_0-9]+)`").unwrap();
    let mut checked = 0;
    for found in named.captures_iter(table) {
        let (module, test) = (found[1].trim_end_matches("::"), &found[2]);
        if test == "tests" {
            // A unit test module of the crate (`builds::context::tests`), not a test.
            continue;
        }
        let source = match module.strip_suffix("::tests") {
            // A unit test of the crate: `ssh_agent::protocol::tests::its_name`.
            Some(unit) => source_of("src", unit),
            None => source_of("tests/it", module),
        };
        assert!(
            source.contains(&format!("fn {test}()")),
            "the limits table names {module}::{test}, which its file lacks"
        );
        checked += 1;
    }
    assert!(
        checked >= 30,
        "only {checked} tests named: is the table still there?"
    );
}

/// A module's source under `root`: `platforms::progress` at
/// `tests/it/platforms/progress.rs` or `tests/it/platforms/progress/mod.rs`.
fn source_of(root: &str, module: &str) -> String {
    let path = module.replace("::", "/");
    [format!("{root}/{path}.rs"), format!("{root}/{path}/mod.rs")]
        .iter()
        .find_map(|file| std::fs::read_to_string(file).ok())
        .unwrap_or_else(|| panic!("the limits table names a module {root}/{path} lacks"))
}
