//! Fetching one ref and packing it as a context archive, and looking a ref up.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::command::Git;
use super::urls::check_ref;
use super::{invalid, CheckedGit, ContextUpload, Fetched, GitError, GitPolicy, GitSource};

/// Fetches the request's ref into a folder under `staging` (removed at the
/// end) and packs its `git_subdir` as a tar archive there. Blocking.
pub fn fetch(request: CheckedGit, policy: &GitPolicy, staging: &Path) -> Result<Fetched, GitError> {
    let work = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(staging)
        .map_err(GitError::Io)?;
    let git = Git::new(&request, policy, work.path())?;
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
        git.check_out_with_submodules(&commit)?;
        pack_folder(&git.repo.join(&request.subdir), &archive)?;
    } else {
        let target = archive.to_string_lossy().into_owned();
        git.output(&["archive", "--format=tar", "-o", &target, &tree])?;
    }
    let bytes = std::fs::metadata(&archive).map_err(GitError::Io)?.len();
    Ok(Fetched {
        archive: ContextUpload {
            file: archive,
            bytes,
        },
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
fn pack_folder(folder: &Path, archive: &Path) -> Result<(), GitError> {
    let file = File::create(archive).map_err(GitError::Io)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.follow_symlinks(false);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = std::fs::read_dir(folder.join(&relative)).map_err(GitError::Io)?;
        for entry in entries {
            let entry = entry.map_err(GitError::Io)?;
            if entry.file_name() == ".git" {
                continue;
            }
            let name = relative.join(entry.file_name());
            builder
                .append_path_with_name(entry.path(), &name)
                .map_err(GitError::Io)?;
            if entry.file_type().map_err(GitError::Io)?.is_dir() {
                pending.push(name);
            }
        }
    }
    builder
        .into_inner()
        .and_then(|mut writer| writer.flush())
        .map_err(GitError::Io)
}
