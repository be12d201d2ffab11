//! Fetching one ref and packing it as a context archive, and looking a ref up.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::command::Git;
use super::urls::check_ref;
use super::{invalid, CheckedGit, ContextUpload, Fetched, GitError, GitPolicy, GitSource};
use crate::builds::context::{is_metadata, Bounded, Capped, ContextError, ContextLimits};

/// What the fetch folder may hold beyond twice `max_context_bytes` (git's
/// objects and the checked-out files): its bookkeeping and its output.
const DISK_SLACK_BYTES: u64 = 16 * 1024 * 1024;
const TAR_BLOCK: u64 = 512;
/// The two zero blocks that end a tar archive.
const TAR_END_BYTES: u64 = 2 * TAR_BLOCK;

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
        // The checkout writes the whole commit: its size is known before.
        git.stream(&["ls-tree", "-r", "-t", "-l", "-z", &commit], |listing| {
            tally_tree(listing, limits)
        })?;
        git.check_out_with_submodules(&commit)?;
        pack_folder(&git.repo.join(&request.subdir), &archive, limits)?;
    } else {
        let file = File::create(&archive).map_err(GitError::Io)?;
        git.stream(&["archive", "--format=tar", &tree], |tar| {
            copy_counted(tar, file, limits)
        })?;
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

/// Copies the tar stream `git archive` writes to `out`, counting its bytes and
/// entries as an upload's are counted, and stops at the first limit passed.
fn copy_counted(tar: impl Read, out: File, limits: ContextLimits) -> Result<(), GitError> {
    let (bounded, exceeded) = Bounded::new(tar, limits.max_bytes);
    let mut archive = tar::Archive::new(Tee {
        inner: bounded,
        out: BufWriter::new(out),
    });
    let failed = |err: std::io::Error| match exceeded.get() {
        true => too_large(limits),
        false => GitError::Io(err),
    };
    let mut entries = 0u64;
    for entry in archive.entries().map_err(failed)?.raw(true) {
        let entry = entry.map_err(failed)?;
        if !is_metadata(entry.header().entry_type()) {
            entries += 1;
            check_entries(entries, limits)?;
        }
    }
    // The end-of-archive blocks, and whatever git writes after them.
    let mut tee = archive.into_inner();
    std::io::copy(&mut tee, &mut std::io::sink()).map_err(failed)?;
    tee.out.flush().map_err(GitError::Io)
}

/// Adds up the tar bytes and entries of a `git ls-tree -r -t -l -z` listing,
/// and stops at the first limit passed.
fn tally_tree(listing: impl Read, limits: ContextLimits) -> Result<(), GitError> {
    let mut bytes = TAR_END_BYTES;
    let mut entries = 0u64;
    for record in BufReader::new(listing).split(0) {
        let record = record.map_err(GitError::Io)?;
        // `<mode> <type> <object> <size>\t<path>`; size is `-` for folders and submodules.
        let tab = record
            .iter()
            .position(|&b| b == b'\t')
            .unwrap_or(record.len());
        let size = String::from_utf8_lossy(&record[..tab])
            .rsplit(' ')
            .next()
            .and_then(|size| size.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let name = record.len().saturating_sub(tab + 1) as u64;
        entries += 1;
        check_entries(entries, limits)?;
        bytes = bytes
            .saturating_add(tar_bytes(size))
            .saturating_add(long_name_bytes(name));
        if bytes > limits.max_bytes {
            return Err(too_large(limits));
        }
    }
    Ok(())
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

fn check_entries(entries: u64, limits: ContextLimits) -> Result<(), GitError> {
    match entries > limits.max_entries {
        true => Err(GitError::Context(ContextError::TooManyEntries {
            limit: limits.max_entries,
        })),
        false => Ok(()),
    }
}

fn too_large(limits: ContextLimits) -> GitError {
    GitError::Context(ContextError::TooLarge {
        limit: limits.max_bytes,
    })
}

/// A file's share of a tar stream: its header and its data in whole blocks.
fn tar_bytes(size: u64) -> u64 {
    TAR_BLOCK + size.div_ceil(TAR_BLOCK) * TAR_BLOCK
}

/// The extra header record a name too long for the tar header takes.
fn long_name_bytes(name: u64) -> u64 {
    match name > 100 {
        true => tar_bytes(name + 1),
        false => 0,
    }
}

/// A reader that writes what is read through it to `out`.
struct Tee<R> {
    inner: R,
    out: BufWriter<File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.out.write_all(&buf[..read])?;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bytes: u64, max_entries: u64) -> ContextLimits {
        ContextLimits {
            max_bytes,
            max_entries,
        }
    }

    fn tar_with(files: &[(&str, usize)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(*size as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, &vec![0u8; *size][..])
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn copied(tar: &[u8], limits: ContextLimits) -> (Result<(), GitError>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        let result = copy_counted(tar, File::create(&path).unwrap(), limits);
        (result, std::fs::metadata(&path).unwrap().len())
    }

    #[test]
    fn a_tar_stream_is_copied_whole_within_the_limits() {
        let tar = tar_with(&[("a", 10), ("b", 600)]);
        let (result, written) = copied(&tar, limits(tar.len() as u64, 2));
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(written, tar.len() as u64);
    }

    #[test]
    fn a_tar_stream_stops_at_the_limits_and_writes_no_more() {
        let tar = tar_with(&[("a", 100_000), ("b", 100_000)]);
        let (result, written) = copied(&tar, limits(50_000, 10));
        assert!(matches!(
            result,
            Err(GitError::Context(ContextError::TooLarge { limit: 50_000 }))
        ));
        assert!(written <= 50_000, "{written}");
        let (result, _) = copied(&tar, limits(1_000_000, 1));
        assert!(matches!(
            result,
            Err(GitError::Context(ContextError::TooManyEntries { limit: 1 }))
        ));
    }

    #[test]
    fn a_tree_listing_is_tallied_as_its_tar_would_be() {
        let listing = "100644 blob 0f0f 1000\tzeros-1\0\
                       040000 tree 0e0e       -\tdir\0\
                       100644 blob 0f0f 1000\tdir/zeros-2\0";
        // Three headers, two files of two blocks each, the end blocks.
        let exact = 3 * 512 + 2 * 1024 + 1024;
        assert!(tally_tree(listing.as_bytes(), limits(exact, 3)).is_ok());
        assert!(matches!(
            tally_tree(listing.as_bytes(), limits(exact - 1, 3)),
            Err(GitError::Context(ContextError::TooLarge { .. }))
        ));
        assert!(matches!(
            tally_tree(listing.as_bytes(), limits(exact, 2)),
            Err(GitError::Context(ContextError::TooManyEntries { .. }))
        ));
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
