//! The dependency direction, checked: every `crate::…` path (in `use` lines and
//! inline) of every file under src/ must point down the table below, and the
//! files inside one module must not import each other in a circle.
//!
//! Arrows point only downward; each module may import those indented below it
//! (exactly: the `LAYERS` table):
//!
//! ```text
//! cli, http        the command-line client; handlers, routing, errors as JSON
//!   config         settings (read by http and the crate root)
//!     builds       the service that composes the layers below
//!       webhooks   deliveries (also uses store)
//!       docker     everything bollard
//!         ssh_agent  the SSH agent of ssh mounts
//!       registry   the registries' own HTTP API (image indexes)
//!       provenance the signed statement of what was built, as buildx stores it
//!       store      everything SQLite
//!         domain   the shared types; imports nothing of dockpub
//! ```
//!
//! `sync`, `error_chain`, `named_locks`, `metrics` and `address_file` are leaf
//! utilities any module but `domain` may use; they use nothing but each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may import (leaves aside). A new
/// top-level module must be placed here.
const LAYERS: &[(&str, &[&str])] = &[
    // The command-line client: the context packer reuses the server's ignore rules.
    ("cli", &["builds", "provenance", "domain"]),
    (
        "http",
        &["config", "builds", "docker", "store", "webhooks", "domain"],
    ),
    (
        "config",
        &[
            "builds",
            "docker",
            "provenance",
            "webhooks",
            "ssh_agent",
            "domain",
        ],
    ),
    (
        "builds",
        &[
            "docker",
            "registry",
            "provenance",
            "store",
            "webhooks",
            "ssh_agent",
            "domain",
        ],
    ),
    ("webhooks", &["store", "domain"]),
    ("docker", &["ssh_agent", "domain"]),
    ("ssh_agent", &[]),
    ("registry", &["domain"]),
    ("provenance", &["domain"]),
    ("store", &["domain"]),
    ("domain", &[]),
];

/// Small utilities below everything but `domain`.
const LEAVES: &[&str] = &[
    "sync",
    "error_chain",
    "named_locks",
    "metrics",
    "address_file",
];

/// One reference from a file to a module: where it is, for the message.
#[derive(Debug, Clone)]
struct Reference {
    file: PathBuf,
    line: usize,
    text: String,
}

type Edges = BTreeMap<(String, String), Reference>;

#[test]
fn lower_layers_never_import_higher_ones() {
    let files = source_files();
    let mut wrong = Vec::new();
    for ((from, to), at) in top_level_edges(&files) {
        if !may_import(&from, &to) {
            wrong.push(format!(
                "  {from} -> {to}  ({}:{}: `{}`): {from} may import only {}",
                at.file.display(),
                at.line,
                at.text,
                allowed_list(&from)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering (the allowed graph is LAYERS in src/layering.rs):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_place() {
    let files = source_files();
    let unplaced: BTreeSet<String> = files
        .keys()
        .filter_map(|path| path.first().cloned())
        .filter(|module| place(module).is_none() && !LEAVES.contains(&module.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "top-level modules missing from LAYERS or LEAVES in src/layering.rs: {unplaced:?}"
    );
}

#[test]
fn no_cycles_between_top_level_modules() {
    let edges = top_level_edges(&source_files());
    if let Some(cycle) = find_cycle(&edges) {
        panic!("top-level modules import each other in a circle:\n{cycle}");
    }
}

/// Files of one module may use their parent (`mod.rs`) and each other, but not
/// in a circle: then neither can be read, changed or moved on its own.
#[test]
fn no_cycles_between_files_of_a_module() {
    let files = source_files();
    let mut cycles = Vec::new();
    let parents: BTreeSet<&String> = files
        .keys()
        .filter(|path| path.len() == 2)
        .map(|path| &path[0])
        .collect();
    for parent in parents {
        let edges = sibling_edges(&files, parent);
        if let Some(cycle) = find_cycle(&edges) {
            cycles.push(format!("in {parent}/:\n{cycle}"));
        }
    }
    assert!(
        cycles.is_empty(),
        "files of a module import each other in a circle (move what both need into \
         a third file or the parent):\n{}",
        cycles.join("\n")
    );
}

fn place(module: &str) -> Option<&'static [&'static str]> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, allowed)| *allowed)
}

fn may_import(from: &str, to: &str) -> bool {
    if LEAVES.contains(&to) {
        return from != "domain";
    }
    if LEAVES.contains(&from) {
        return false;
    }
    place(from).is_some_and(|allowed| allowed.contains(&to))
}

fn allowed_list(from: &str) -> String {
    let mut allowed: Vec<&str> = place(from).unwrap_or(&[]).to_vec();
    if from != "domain" {
        allowed.extend(LEAVES);
    }
    if allowed.is_empty() {
        "nothing of dockpub".into()
    } else {
        allowed.join(", ")
    }
}

/// Every file under src/ but the crate root and the binary (which compose
/// everything), by module path, with its text.
fn source_files() -> BTreeMap<Vec<String>, (PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    collect(&root, &root, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under {}",
        files.len(),
        root.display()
    );
    files
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<Vec<String>, (PathBuf, String)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(root, &path, files);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let module = module_path(root, &path);
        if module.is_empty() {
            continue;
        }
        let text =
            fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        files.insert(module, (path, text));
    }
}

/// `src/builds/context/mod.rs` → `[builds, context]`; the crate root, the
/// binary and this file → `[]` (not checked).
fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).expect("a file under src/");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    // This checker names modules in its own tests.
    if parts == ["lib"] || parts == ["main"] || parts == ["layering"] {
        parts.clear();
    }
    parts
}

/// The code of a line, without a trailing `//` comment.
fn code(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    match line.find(" //") {
        Some(at) if !line[..at].contains('"') => &line[..at],
        _ => line,
    }
}

/// The module names that follow `prefix` on a line: `crate::store::X` → `store`,
/// `crate::{store, docker}` → both.
fn names_after<'a>(line: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut names = Vec::new();
    for (at, _) in line.match_indices(prefix) {
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &line[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            names.extend(group.split(',').map(|item| first_name(item.trim())));
        } else {
            names.push(first_name(rest));
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

fn first_name(path: &str) -> &str {
    let end = path
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(path.len());
    &path[..end]
}

fn references(file: &Path, text: &str, prefix: &str, mut found: impl FnMut(&str, Reference)) {
    for (number, line) in text.lines().enumerate() {
        let line = code(line);
        for name in names_after(line, prefix) {
            found(
                name,
                Reference {
                    file: file.to_path_buf(),
                    line: number + 1,
                    text: line.trim().to_string(),
                },
            );
        }
    }
}

fn top_level_edges(files: &BTreeMap<Vec<String>, (PathBuf, String)>) -> Edges {
    let mut edges = Edges::new();
    for (module, (file, text)) in files {
        let from = &module[0];
        references(file, text, "crate::", |to, at| {
            if to != from && to != "self" {
                edges.entry((from.clone(), to.to_string())).or_insert(at);
            }
        });
    }
    edges
}

/// Edges between the children of `parent` (`parent/a.rs` → `parent/b.rs`,
/// files deeper down counted as their child), through `super::` or
/// `crate::parent::`. The parent itself is no node.
fn sibling_edges(files: &BTreeMap<Vec<String>, (PathBuf, String)>, parent: &str) -> Edges {
    let children: BTreeSet<&str> = files
        .keys()
        .filter(|path| path.len() >= 2 && path[0] == parent)
        .map(|path| path[1].as_str())
        .collect();
    let mut edges = Edges::new();
    for (module, (file, text)) in files {
        if module.len() < 2 || module[0] != parent {
            continue;
        }
        let from = &module[1];
        let mut add = |to: &str, at: Reference| {
            if to != from && children.contains(to) {
                edges.entry((from.clone(), to.to_string())).or_insert(at);
            }
        };
        if module.len() == 2 {
            references(file, text, "super::", &mut add);
        }
        references(file, text, &format!("crate::{parent}::"), &mut add);
    }
    edges
}

/// A circle in the graph, drawn one edge a line, or None.
fn find_cycle(edges: &Edges) -> Option<String> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let nodes: Vec<&str> = next.keys().copied().collect();
    for start in nodes {
        let mut path = vec![start];
        if let Some(cycle) = walk(&next, &mut path) {
            let lines: Vec<String> = cycle
                .windows(2)
                .map(|pair| {
                    let at = &edges[&(pair[0].to_string(), pair[1].to_string())];
                    format!(
                        "  {} -> {}  ({}:{}: `{}`)",
                        pair[0],
                        pair[1],
                        at.file.display(),
                        at.line,
                        at.text
                    )
                })
                .collect();
            return Some(lines.join("\n"));
        }
    }
    None
}

fn walk<'a>(
    next: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    let last = *path.last().expect("a non-empty path");
    for &to in next.get(last).map(Vec::as_slice).unwrap_or(&[]) {
        if to == path[0] {
            let mut cycle = path.clone();
            cycle.push(to);
            return Some(cycle);
        }
        if path.contains(&to) {
            continue;
        }
        path.push(to);
        if let Some(cycle) = walk(next, path) {
            return Some(cycle);
        }
        path.pop();
    }
    None
}

#[test]
fn the_checker_sees_what_it_must() {
    assert_eq!(
        names_after("use crate::store::{Store, StoreError};", "crate::"),
        ["store"]
    );
    assert_eq!(
        names_after(
            "    let x = crate::docker::pool(); y(crate::{sync, metrics})",
            "crate::"
        ),
        ["docker", "sync", "metrics"]
    );
    assert_eq!(
        names_after("use super::{engine, BuildError};", "super::"),
        ["engine", "BuildError"]
    );
    assert!(names_after("mycrate::store", "crate::").is_empty());
    assert_eq!(code("// crate::http"), "");
    assert_eq!(code("use crate::x; // crate::http"), "use crate::x;");
    let edges: Edges = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| {
            let at = Reference {
                file: PathBuf::from("f.rs"),
                line: 1,
                text: String::new(),
            };
            ((from.to_string(), to.to_string()), at)
        })
        .collect();
    assert!(find_cycle(&edges).is_some_and(|cycle| cycle.lines().count() == 3));
    assert!(!may_import("store", "builds"));
    assert!(!may_import("domain", "sync"));
    assert!(may_import("docker", "named_locks"));
    assert!(!may_import("sync", "builds"));
}
