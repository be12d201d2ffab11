//! Fetching one ref and packing it as a context archive, and looking a ref up.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::command::Git;
use super::counted::{check_entries, copy_counted, too_large};
use super::urls::check_ref;
use super::{invalid, CheckedGit, ContextUpload, Fetched, GitError, GitPolicy, GitSource};
use crate::builds::context::{Capped, ContextLimits};

/// What the fetch folder may hold beyond twice `max_context_bytes` (git's
/// objects and the checked-out files): its bookkeeping and its output.
const DISK_SLACK_BYTES: u64 = 16 * 1024 * 1024;

/// Fetches the request's ref into a folder under `staging` (removed at the
/// end) and packs its `git_subdir` as a tar archive there, counted as an upload
/// is while it is written: nothing past `limits` reaches the disk. Blocking.
pub fn fetch(
    request: CheckedGit,
    policy: &GitPolicy,
    staging: &Path,
    limits: ContextLimits,
) -> Result<Fetched, GitError> {
    let work = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(staging)
        .map_err(GitError::Io)?;
    let mut git = Git::new(&request, policy, work.path())?;
    git.limit_disk(
        limits
            .max_bytes
            .saturating_mul(2)
            .saturating_add(DISK_SLACK_BYTES),
    );
    let wanted = request.git_ref.as_deref().unwrap_or("HEAD");
    let commit = git.fetch_commit(wanted)?;
    let tree = match request.subdir.as_str() {
        "" => commit.clone(),
        subdir => {
            let spec = format!("{commit}:{subdir}");
            if git.output(&["cat-file", "-t", &spec]).ok().as_deref() != Some("tree") {
                return Err(invalid(
                    "git_subdir",
                    format!("'{subdir}' is not a folder at commit {commit}"),
                ));
            }
            spec
        }
    };
    let archive = tempfile::NamedTempFile::new_in(staging)
        .map_err(GitError::Io)?
        .into_temp_path();
    if request.submodules {
        // Each tree is sized from its listing before its checkout writes it.
        git.check_out_with_submodules(&commit, limits)?;
        pack_folder(&git.repo.join(&request.subdir), &archive, limits)?;
    } else {
        let file = File::create(&archive).map_err(GitError::Io)?;
        git.stream(&["archive", "--format=tar", &tree], |tar| {
            copy_counted(tar, file, limits)
        })?;
    }
    Ok(Fetched {
        archive: ContextUpload { file: archive },
        source: GitSource {
            git: request.url,
            git_ref: request.pushed_ref.unwrap_or_else(|| wanted.to_string()),
            commit,
            trigger: request.trigger,
        },
    })
}

/// A branch or tag of the remote, by its short or full name, with the commit it
/// names (a tag peeled to its commit). Blocking.
pub fn remote_ref(
    request: CheckedGit,
    policy: &GitPolicy,
    staging: &Path,
    name: &str,
) -> Result<(String, String), GitError> {
    check_ref(name)?;
    let work = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(staging)
        .map_err(GitError::Io)?;
    let git = Git::new(&request, policy, work.path())?;
    let candidates: Vec<String> = match name.starts_with("refs/") {
        true => vec![name.to_string()],
        false => vec![format!("refs/heads/{name}"), format!("refs/tags/{name}")],
    };
    let mut args = vec!["ls-remote".to_string(), "origin".to_string()];
    for candidate in &candidates {
        args.push(candidate.clone());
        args.push(format!("{candidate}^{{}}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listed = git.output(&args).map_err(|err| match err {
        GitError::Fetch { url, reason, .. } => GitError::Fetch {
            url,
            git_ref: name.to_string(),
            reason,
        },
        other => other,
    })?;
    let commit_of = |wanted: &str| {
        let peeled = format!("{wanted}^{{}}");
        let line = |r: &str| {
            listed.lines().find_map(|line| {
                let (sha, listed_ref) = line.split_once('\t')?;
                (listed_ref == r).then(|| sha.to_string())
            })
        };
        line(&peeled).or_else(|| line(wanted))
    };
    candidates
        .iter()
        .find_map(|candidate| commit_of(candidate).map(|sha| (candidate.clone(), sha)))
        .ok_or_else(|| GitError::Fetch {
            url: request.url.clone(),
            git_ref: name.to_string(),
            reason: "no such branch or tag in the repository".into(),
        })
}

/// What `git ls-remote` lists for the refs `names` (every ref when empty): each
/// ref with its object id, and each annotated tag once more, peeled to its
/// commit, as `REF^{}`. Blocking.
pub fn list_remote_refs(
    request: CheckedGit,
    policy: &GitPolicy,
    staging: &Path,
    names: &[String],
) -> Result<Vec<(String, String)>, GitError> {
    names.iter().try_for_each(|name| check_ref(name))?;
    let work = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(staging)
        .map_err(GitError::Io)?;
    let git = Git::new(&request, policy, work.path())?;
    let mut args = vec!["ls-remote".to_string(), "origin".to_string()];
    for name in names {
        args.push(name.clone());
        args.push(format!("{name}^{{}}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listed = git.output(&args)?;
    Ok(listed
        .lines()
        .filter_map(|line| {
            let (sha, listed_ref) = line.split_once('\t')?;
            Some((listed_ref.to_string(), sha.to_ascii_lowercase()))
        })
        .collect())
}

/// Packs a checked-out folder as a tar archive, without git's own files
/// (`.git` folders, and the `.git` files submodules have); links stay links.
/// The archive is held to the context limits while it is written.
fn pack_folder(folder: &Path, archive: &Path, limits: ContextLimits) -> Result<(), GitError> {
    let file = File::create(archive).map_err(GitError::Io)?;
    let (capped, exceeded) = Capped::new(BufWriter::new(file), limits.max_bytes);
    let failed = |err: std::io::Error| match exceeded.get() {
        true => too_large(limits),
        false => GitError::Io(err),
    };
    let mut builder = tar::Builder::new(capped);
    builder.follow_symlinks(false);
    let mut entries = 0u64;
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let listed = std::fs::read_dir(folder.join(&relative)).map_err(GitError::Io)?;
        for entry in listed {
            let entry = entry.map_err(GitError::Io)?;
            if entry.file_name() == ".git" {
                continue;
            }
            entries += 1;
            check_entries(entries, limits)?;
            let name = relative.join(entry.file_name());
            builder
                .append_path_with_name(entry.path(), &name)
                .map_err(failed)?;
            if entry.file_type().map_err(GitError::Io)?.is_dir() {
                pending.push(name);
            }
        }
    }
    builder
        .into_inner()
        .and_then(|capped| capped.into_inner().flush())
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::context::ContextError;

    fn limits(max_bytes: u64, max_entries: u64) -> ContextLimits {
        ContextLimits {
            max_bytes,
            max_entries,
        }
    }

    #[test]
    fn a_packed_folder_stops_at_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("repo");
        std::fs::create_dir_all(folder.join(".git")).unwrap();
        std::fs::write(folder.join(".git/config"), "x").unwrap();
        std::fs::write(folder.join("big"), vec![0u8; 100_000]).unwrap();
        let archive = dir.path().join("out.tar");
        assert!(pack_folder(&folder, &archive, limits(1_000_000, 10)).is_ok());
        assert!(matches!(
            pack_folder(&folder, &archive, limits(50_000, 10)),
            Err(GitError::Context(ContextError::TooLarge { .. }))
        ));
        assert!(std::fs::metadata(&archive).unwrap().len() <= 50_000);
        std::fs::write(folder.join("small"), "x").unwrap();
        assert!(matches!(
            pack_folder(&folder, &archive, limits(1_000_000, 1)),
            Err(GitError::Context(ContextError::TooManyEntries { .. }))
        ));
    }
}
