//! Writing the context the daemon gets: the upload's entries minus those
//! `.dockerignore` leaves out, plus an uploaded Dockerfile. Streams entry by entry
//! into a new temporary file beside the upload.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use tar::{EntryType, Header};
use tempfile::{NamedTempFile, TempPath};

use super::dockerignore::IgnoreRules;
use super::{describe, open, read_error, ContextError, ContextLimits, DOCKERIGNORE};

const WRITE_BUFFER: usize = 64 * 1024;

/// A Dockerfile added to the context under `name`.
pub struct Injected<'a> {
    pub name: &'a str,
    pub dockerfile: &'a str,
    /// The context's own `.dockerignore`, which gets `name` appended.
    pub dockerignore: Option<&'a [u8]>,
}

/// Writes the new archive into the upload's folder; `keep` (the Dockerfile) is
/// never left out, as the docker CLI sends it even when it is ignored.
pub fn write_beside(
    upload: &Path,
    limits: ContextLimits,
    ignore: &IgnoreRules,
    keep: &str,
    injected: Option<Injected<'_>>,
) -> Result<TempPath, ContextError> {
    let folder = upload.parent().unwrap_or(Path::new("."));
    let temp = NamedTempFile::new_in(folder).map_err(ContextError::Io)?;
    let (file, path) = temp.into_parts();
    let mut archive = tar::Builder::new(BufWriter::with_capacity(WRITE_BUFFER, file));
    copy_entries(
        upload,
        limits,
        &mut archive,
        ignore,
        keep,
        injected.is_some(),
    )?;
    if let Some(injected) = injected {
        append_injected(&mut archive, &injected)?;
    }
    let writer = archive.into_inner().map_err(ContextError::Io)?;
    let file = writer
        .into_inner()
        .map_err(|err| ContextError::Io(err.into_error()))?;
    file.sync_all().map_err(ContextError::Io)?;
    Ok(path)
}

fn copy_entries(
    upload: &Path,
    limits: ContextLimits,
    out: &mut tar::Builder<BufWriter<File>>,
    ignore: &IgnoreRules,
    keep: &str,
    replace_dockerignore: bool,
) -> Result<(), ContextError> {
    let (mut source, exceeded) = open(upload, limits.max_bytes)?;
    let failed = read_error(&exceeded, limits.max_bytes);
    for entry in source.entries().map_err(&failed)? {
        let mut entry = entry.map_err(&failed)?;
        let Some((kind, name)) = describe(&entry)? else {
            continue;
        };
        let is_dockerignore = name == DOCKERIGNORE;
        let left_out = name.is_empty()
            || (is_dockerignore && replace_dockerignore)
            || (!is_dockerignore && name != keep && ignore.excludes(&name));
        if left_out {
            continue;
        }
        let mut header = entry.header().clone();
        match kind {
            EntryType::Symlink | EntryType::Link => {
                let target = entry.link_name().map_err(&failed)?.unwrap_or_default();
                out.append_link(&mut header, &name, target)
            }
            _ => out.append_data(&mut header, &name, &mut entry),
        }
        .map_err(|err| match exceeded.get() {
            true => failed(err),
            false => ContextError::Io(err),
        })?;
    }
    Ok(())
}

fn append_injected(
    out: &mut tar::Builder<BufWriter<File>>,
    injected: &Injected<'_>,
) -> Result<(), ContextError> {
    let mut dockerignore = match injected.dockerignore {
        Some(own) => {
            let mut text = own.to_vec();
            text.push(b'\n');
            text
        }
        // Listing itself makes the daemon drop a .dockerignore the user never sent.
        None => format!("{DOCKERIGNORE}\n").into_bytes(),
    };
    dockerignore.extend_from_slice(format!("{}\n", injected.name).as_bytes());
    append_file(out, DOCKERIGNORE, &dockerignore)?;
    append_file(out, injected.name, injected.dockerfile.as_bytes())
}

fn append_file(
    out: &mut tar::Builder<BufWriter<File>>,
    name: &str,
    content: &[u8],
) -> Result<(), ContextError> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    out.append_data(&mut header, name, content)
        .map_err(ContextError::Io)
}
