//! Build contexts: an uploaded tar archive (plain or gzip, told apart by its first
//! bytes; GNU, ustar, PAX or v7 entries), checked entry by entry, with its ignore
//! file applied and an uploaded Dockerfile added, ready to be streamed to the daemon.
//! Everything here reads and writes files in a streaming way: an archive is never
//! held in memory.
//!
//! Which ignore file applies follows the builder, as the docker CLI and buildx do:
//! BuildKit takes `<Dockerfile>.dockerignore` beside the Dockerfile over the root
//! `.dockerignore`; the legacy builder only knows the root one.

mod bounds;
mod check;
mod dockerignore;
mod rewrite;

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::domain::PreparedContext;
use tempfile::TempPath;

pub use bounds::ContextLimits;
pub(crate) use bounds::{Bounded, Capped};
use check::EntryChecker;
pub use check::{clean_path, Unsafe};
pub use dockerignore::{IgnoreError, IgnoreRules};

/// Where an uploaded Dockerfile is put inside the context; the daemon reads it and
/// then drops it (it is listed in `.dockerignore`), as the docker CLI does with `-f`.
const INJECTED_DOCKERFILE: &str = ".dockpub-Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";
const MAX_DOCKERIGNORE_BYTES: u64 = 1024 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const READ_BUFFER: usize = 64 * 1024;
/// The tar reader reads a long name or a PAX record whole into memory before
/// the entry it describes: each must stay small (Go's archive/tar allows 1 MiB).
const MAX_HEADER_RECORD_BYTES: u64 = 1024 * 1024;
/// BuildKit on the daemon tells an uncompressed context from a bare Dockerfile by
/// reading the first entry's header out of the archive's first 1 KiB; one led by a
/// PAX or GNU long-name record does not fit, and is then parsed as a Dockerfile.
const BUILDKIT_SNIFF_BYTES: u64 = 1024;
const TAR_BLOCK: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("the context is not a readable tar archive (plain or gzip-compressed): {0}")]
    NotAnArchive(String),
    #[error("context entry '{entry}': {reason}")]
    UnsafeEntry { entry: String, reason: Unsafe },
    #[error("the context has no Dockerfile at '{0}': name it with the 'dockerfile' field, or send it as 'file'")]
    NoDockerfile(String),
    #[error("the context's '{0}' is not a regular file")]
    DockerfileNotAFile(String),
    #[error("the context is larger than the limit of {limit} bytes once decompressed (max_context_bytes)")]
    TooLarge { limit: u64 },
    #[error("the context has more than the limit of {limit} entries (max_context_entries)")]
    TooManyEntries { limit: u64 },
    #[error("the context has a long-name or PAX header record larger than {MAX_HEADER_RECORD_BYTES} bytes")]
    OversizedHeaderRecord,
    #[error("the context's {0} is larger than {MAX_DOCKERIGNORE_BYTES} bytes")]
    DockerignoreTooLarge(String),
    #[error(transparent)]
    Dockerignore(#[from] IgnoreError),
    /// Our own disk failed, not the upload.
    #[error("cannot write the context: {0}")]
    Io(std::io::Error),
}

/// An uploaded archive, staged in a temporary file that is removed unless kept.
#[derive(Debug)]
pub struct ContextUpload {
    pub file: TempPath,
}

/// Where the build's Dockerfile comes from.
pub enum DockerfileSource {
    /// Sent as its own field: it is added to the context.
    Uploaded(String),
    /// A path inside the context, already checked by [`clean_path`].
    InContext(String),
}

/// What [`prepare`] found: the context and, when it came from there, the Dockerfile.
pub struct Prepared {
    pub context: PreparedContext,
    pub dockerfile_in_context: Option<Vec<u8>>,
    /// The context's size as a tar, decompressed: `options.context_bytes`,
    /// one meaning whether it was uploaded (gzipped or not) or fetched from git.
    pub tar_bytes: u64,
}

/// What one pass over the archive learned.
#[derive(Default)]
struct Scan {
    dockerfile: Option<Vec<u8>>,
    dockerignore: Option<Vec<u8>>,
    /// `<Dockerfile>.dockerignore`, looked for only when BuildKit builds.
    dockerfile_ignore: Option<Vec<u8>>,
    /// Names taken that an injected Dockerfile must not use.
    taken: HashSet<String>,
    /// Whether BuildKit would take the archive, as it is, for a Dockerfile.
    unreadable_by_buildkit: bool,
    /// The archive's size as a tar, decompressed.
    tar_bytes: u64,
}

/// The builder the context is prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    Buildkit,
    Legacy,
}

/// The ignore file of a Dockerfile at `path`, as BuildKit names it.
pub fn dockerfile_ignore_name(path: &str) -> String {
    format!("{path}{DOCKERIGNORE}")
}

/// Checks every entry of the upload, then keeps it as it is or, when entries are
/// ignored, a Dockerfile is added, or BuildKit would misread it, writes a new
/// archive beside it. Blocking.
pub fn prepare(
    upload: ContextUpload,
    source: DockerfileSource,
    max_dockerfile_bytes: usize,
    limits: ContextLimits,
    builder: Builder,
) -> Result<Prepared, ContextError> {
    let wanted = match &source {
        DockerfileSource::InContext(path) => Some(path.as_str()),
        DockerfileSource::Uploaded(_) => None,
    };
    let ignore_file = wanted
        .filter(|_| builder == Builder::Buildkit)
        .map(dockerfile_ignore_name);
    let wanted_files = Wanted {
        dockerfile: wanted,
        dockerfile_limit: max_dockerfile_bytes as u64 + 1,
        dockerfile_ignore: ignore_file.as_deref(),
    };
    let scan = scan(&upload.file, &wanted_files, limits)?;
    // The Dockerfile's own ignore file replaces the root one, which is then a file
    // like any other (left out if the rules say so). The root one's rules keep it
    // in: the legacy daemon reads it to drop what it lists.
    let (ignore, always_sent) = match (&scan.dockerfile_ignore, &ignore_file) {
        (Some(own), Some(name)) => (parse_ignore(own, name)?, Vec::new()),
        _ => (
            parse_ignore(
                scan.dockerignore.as_deref().unwrap_or_default(),
                DOCKERIGNORE,
            )?,
            vec![DOCKERIGNORE.to_string()],
        ),
    };
    match source {
        DockerfileSource::InContext(path) => {
            let dockerfile = scan
                .dockerfile
                .ok_or_else(|| ContextError::NoDockerfile(path.clone()))?;
            let archive = if ignore.is_empty() && !scan.unreadable_by_buildkit {
                upload.file
            } else {
                let mut kept = always_sent;
                kept.push(path.clone());
                let selection = rewrite::Selection {
                    ignore: &ignore,
                    always_sent: &kept,
                };
                rewrite::write_beside(&upload.file, limits, &selection, None)?
            };
            Ok(Prepared {
                context: PreparedContext {
                    archive,
                    dockerfile_path: path,
                },
                dockerfile_in_context: Some(dockerfile),
                tar_bytes: scan.tar_bytes,
            })
        }
        DockerfileSource::Uploaded(dockerfile) => {
            let name = free_name(&scan.taken);
            let injected = rewrite::Injected {
                name: &name,
                dockerfile: &dockerfile,
                dockerignore: scan.dockerignore.as_deref(),
            };
            let kept = [DOCKERIGNORE.to_string(), name.clone()];
            let selection = rewrite::Selection {
                ignore: &ignore,
                always_sent: &kept,
            };
            let archive = rewrite::write_beside(&upload.file, limits, &selection, Some(injected))?;
            Ok(Prepared {
                context: PreparedContext {
                    archive,
                    dockerfile_path: name,
                },
                dockerfile_in_context: None,
                tar_bytes: scan.tar_bytes,
            })
        }
    }
}

fn parse_ignore(text: &[u8], name: &str) -> Result<IgnoreRules, ContextError> {
    IgnoreRules::parse(&String::from_utf8_lossy(text))
        .map_err(|err| ContextError::Dockerignore(err.in_file(name)))
}

fn free_name(taken: &HashSet<String>) -> String {
    (1..)
        .map(|n| match n {
            1 => INJECTED_DOCKERFILE.to_string(),
            n => format!("{INJECTED_DOCKERFILE}-{n}"),
        })
        .find(|name| !taken.contains(name))
        .expect("some name is free")
}

/// An archive opened for reading, and the flag its reader raises past the size limit.
type Opened = (tar::Archive<Box<dyn Read>>, Rc<Cell<bool>>);

/// Opens the archive for reading, decompressing it when it starts as gzip does;
/// reading fails once the tar stream passes `max_bytes`.
fn open(path: &Path, max_bytes: u64) -> Result<Opened, ContextError> {
    let (archive, exceeded, _) = open_counted(path, max_bytes)?;
    Ok((archive, exceeded))
}

/// An opened archive with the count of tar bytes read from it so far.
type Counted = (tar::Archive<Box<dyn Read>>, Rc<Cell<bool>>, Rc<Cell<u64>>);

/// [`open`], also telling how many bytes of tar have been read.
fn open_counted(path: &Path, max_bytes: u64) -> Result<Counted, ContextError> {
    let mut file = File::open(path).map_err(ContextError::Io)?;
    let mut magic = [0u8; 2];
    let read = file.read(&mut magic).map_err(ContextError::Io)?;
    file.rewind().map_err(ContextError::Io)?;
    let reader = BufReader::with_capacity(READ_BUFFER, file);
    let reader: Box<dyn Read> = if read == 2 && magic == GZIP_MAGIC {
        Box::new(MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let (bounded, exceeded, read) = Bounded::counting(reader, max_bytes);
    Ok((tar::Archive::new(Box::new(bounded)), exceeded, read))
}

fn not_an_archive(err: std::io::Error) -> ContextError {
    ContextError::NotAnArchive(err.to_string())
}

/// A read error of an opened archive: its size limit, or a broken archive.
fn read_error(
    exceeded: &Cell<bool>,
    max_bytes: u64,
) -> impl Fn(std::io::Error) -> ContextError + '_ {
    move |err| {
        if exceeded.get() {
            ContextError::TooLarge { limit: max_bytes }
        } else {
            not_an_archive(err)
        }
    }
}

/// Headers the tar reader applies to the next entry; they are not files.
pub(crate) fn is_metadata(kind: EntryType) -> bool {
    matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    )
}

/// An entry's kind and cleaned name; None for headers that only describe the next
/// entry. A name that leaves the context is refused here.
fn describe<R: Read>(
    entry: &tar::Entry<'_, R>,
) -> Result<Option<(EntryType, String)>, ContextError> {
    let kind = entry.header().entry_type();
    if is_metadata(kind) {
        return Ok(None);
    }
    let raw = entry.path().map_err(not_an_archive)?;
    let name = clean_path(&raw).map_err(|reason| ContextError::UnsafeEntry {
        entry: raw.display().to_string(),
        reason,
    })?;
    Ok(Some((kind, name)))
}

fn is_regular(kind: EntryType) -> bool {
    matches!(kind, EntryType::Regular | EntryType::Continuous)
}

/// A first pass over the raw entries, before the tar reader is let loose on
/// them: a gzip of a few kilobytes could otherwise hold a "long name" of a
/// gigabyte that the reader would allocate whole. Returns whether BuildKit would
/// misread the archive as it is (see [`BUILDKIT_SNIFF_BYTES`]).
fn check_header_records(path: &Path, limits: ContextLimits) -> Result<bool, ContextError> {
    let (mut archive, exceeded) = open(path, limits.max_bytes)?;
    let failed = read_error(&exceeded, limits.max_bytes);
    let mut first = None;
    for entry in archive.entries().map_err(&failed)?.raw(true) {
        let entry = entry.map_err(&failed)?;
        let header = entry.header();
        let kind = header.entry_type();
        let size = header.entry_size().map_err(not_an_archive)?;
        if is_metadata(kind) && size > MAX_HEADER_RECORD_BYTES {
            return Err(ContextError::OversizedHeaderRecord);
        }
        first.get_or_insert((kind, size));
    }
    Ok(!is_gzip(path)? && first.is_some_and(|(kind, size)| hides_first_header(kind, size)))
}

/// Whether an uncompressed archive whose first raw entry is of `kind`, with `size`
/// bytes of data, has no whole entry in its first [`BUILDKIT_SNIFF_BYTES`]: a PAX or
/// long-name record comes with the header of the entry it describes after it; a
/// global PAX header is an entry of its own (`git archive` starts with a short one).
fn hides_first_header(kind: EntryType, size: u64) -> bool {
    match kind {
        EntryType::XGlobalHeader => {
            TAR_BLOCK + size.div_ceil(TAR_BLOCK) * TAR_BLOCK > BUILDKIT_SNIFF_BYTES
        }
        kind => is_metadata(kind),
    }
}

fn is_gzip(path: &Path) -> Result<bool, ContextError> {
    let mut magic = [0u8; 2];
    let read = File::open(path)
        .and_then(|mut file| file.read(&mut magic))
        .map_err(ContextError::Io)?;
    Ok(read == 2 && magic == GZIP_MAGIC)
}

/// The files [`scan`] reads, by their cleaned names.
struct Wanted<'a> {
    dockerfile: Option<&'a str>,
    dockerfile_limit: u64,
    dockerfile_ignore: Option<&'a str>,
}

/// Checks every entry and reads the few it needs: the Dockerfile and the ignore files.
fn scan(path: &Path, wanted: &Wanted<'_>, limits: ContextLimits) -> Result<Scan, ContextError> {
    let unreadable_by_buildkit = check_header_records(path, limits)?;
    let (mut archive, exceeded, read) = open_counted(path, limits.max_bytes)?;
    let failed = read_error(&exceeded, limits.max_bytes);
    let mut checker = EntryChecker::default();
    let mut found = Scan {
        unreadable_by_buildkit,
        ..Scan::default()
    };
    let mut entries = 0u64;
    for entry in archive.entries().map_err(&failed)? {
        let mut entry = entry.map_err(&failed)?;
        let Some((kind, name)) = describe(&entry)? else {
            continue;
        };
        entries += 1;
        if entries > limits.max_entries {
            return Err(ContextError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let target = entry.link_name().map_err(not_an_archive)?;
        checker
            .check(&name, kind, target.as_deref())
            .map_err(|reason| ContextError::UnsafeEntry {
                entry: entry
                    .path()
                    .map_or(name.clone(), |p| p.display().to_string()),
                reason,
            })?;
        if name.starts_with(INJECTED_DOCKERFILE) {
            found.taken.insert(name.clone());
        }
        if Some(name.as_str()) == wanted.dockerfile {
            if !is_regular(kind) {
                return Err(ContextError::DockerfileNotAFile(name));
            }
            let limit = wanted.dockerfile_limit;
            found.dockerfile = Some(read_at_most(&mut entry, limit).map_err(&failed)?);
        } else if name == DOCKERIGNORE && is_regular(kind) {
            found.dockerignore = Some(read_ignore_file(&mut entry, &name).map_err(&failed)??);
        } else if Some(name.as_str()) == wanted.dockerfile_ignore && is_regular(kind) {
            found.dockerfile_ignore = Some(read_ignore_file(&mut entry, &name).map_err(&failed)??);
        }
    }
    // The rest (the end-of-archive blocks, a record's padding) counts too, so
    // that the size is the whole tar's, as a plain upload's length is.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(&failed)?;
    found.tar_bytes = read.get();
    Ok(found)
}

fn read_ignore_file(
    reader: &mut impl Read,
    name: &str,
) -> std::io::Result<Result<Vec<u8>, ContextError>> {
    let text = read_at_most(reader, MAX_DOCKERIGNORE_BYTES + 1)?;
    Ok(match text.len() as u64 > MAX_DOCKERIGNORE_BYTES {
        true => Err(ContextError::DockerignoreTooLarge(name.to_string())),
        false => Ok(text),
    })
}

fn read_at_most(reader: &mut impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
