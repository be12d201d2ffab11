//! Writing the context the daemon gets: the upload's entries minus those the
//! ignore file leaves out, plus an uploaded Dockerfile. Streams entry by entry
//! into a new temporary file beside the upload.
//!
//! Entries are written out plain, whatever form they came in (GNU, ustar, PAX,
//! sparse): a ustar header each, with a GNU long-name record only for a name that
//! does not fit its 255 bytes, and no PAX records. Both builders read that, and
//! BuildKit recognises it as an archive (see `BUILDKIT_SNIFF_BYTES`).

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

/// Which of the upload's entries go to the daemon.
pub struct Selection<'a> {
    pub ignore: &'a IgnoreRules,
    /// Sent even when the rules leave them out, as the docker CLI sends the
    /// Dockerfile and `.dockerignore` (the legacy daemon drops them when listed).
    pub always_sent: &'a [String],
}

/// Writes the new archive into the upload's folder.
pub fn write_beside(
    upload: &Path,
    limits: ContextLimits,
    selection: &Selection<'_>,
    injected: Option<Injected<'_>>,
) -> Result<TempPath, ContextError> {
    let folder = upload.parent().unwrap_or(Path::new("."));
    let temp = NamedTempFile::new_in(folder).map_err(ContextError::Io)?;
    let (file, path) = temp.into_parts();
    let mut archive = tar::Builder::new(BufWriter::with_capacity(WRITE_BUFFER, file));
    copy_entries(upload, limits, &mut archive, selection, injected.is_some())?;
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
    selection: &Selection<'_>,
    replace_dockerignore: bool,
) -> Result<(), ContextError> {
    let (mut source, exceeded) = open(upload, limits.max_bytes)?;
    let failed = read_error(&exceeded, limits.max_bytes);
    let mut first = true;
    for entry in source.entries().map_err(&failed)? {
        let mut entry = entry.map_err(&failed)?;
        let Some((kind, name)) = describe(&entry)? else {
            continue;
        };
        let left_out = name.is_empty()
            || (name == DOCKERIGNORE && replace_dockerignore)
            || (!selection.always_sent.contains(&name) && selection.ignore.excludes(&name));
        if left_out {
            continue;
        }
        let mut header = plain_header(entry.header(), kind, entry.size());
        let target = match kind {
            EntryType::Symlink | EntryType::Link => {
                Some(entry.link_name().map_err(&failed)?.unwrap_or_default())
            }
            _ => None,
        };
        if std::mem::take(&mut first) && needs_extension_record(&name, target.as_deref()) {
            append_lead(out)?;
        }
        match target {
            Some(target) => out.append_link(&mut header, &name, target),
            None => out.append_data(&mut header, &name, &mut entry),
        }
        .map_err(|err| match exceeded.get() {
            true => failed(err),
            false => ContextError::Io(err),
        })?;
    }
    Ok(())
}

/// The entry's header as ustar: its kind (a sparse file becomes a regular one, as
/// it is read whole), its real size, owner, mode and time. PAX records that hold
/// what a ustar field cannot (sub-second times, extended attributes) are dropped.
fn plain_header(source: &Header, kind: EntryType, size: u64) -> Header {
    let mut header = Header::new_ustar();
    header.set_entry_type(match kind {
        EntryType::GNUSparse => EntryType::Regular,
        other => other,
    });
    header.set_size(size);
    if let Ok(mode) = source.mode() {
        header.set_mode(mode);
    }
    if let Ok(uid) = source.uid() {
        header.set_uid(uid);
    }
    if let Ok(gid) = source.gid() {
        header.set_gid(gid);
    }
    if let Ok(mtime) = source.mtime() {
        header.set_mtime(mtime);
    }
    // A name that does not fit is left empty: the numeric ids still hold.
    if let Ok(Some(user)) = source.username() {
        let _ = header.set_username(user);
    }
    if let Ok(Some(group)) = source.groupname() {
        let _ = header.set_groupname(group);
    }
    header
}

/// Whether writing this entry starts with a GNU long-name or long-link record.
fn needs_extension_record(name: &str, link_target: Option<&Path>) -> bool {
    let mut probe = Header::new_ustar();
    probe.set_path(name).is_err()
        || link_target.is_some_and(|target| probe.set_link_name(target).is_err())
}

/// A short PAX global header, as `git archive` writes first, ahead of a first
/// entry that needs a long-name record: both builders skip it, and it is a whole
/// entry within the bytes BuildKit reads to recognise an archive.
fn append_lead(out: &mut tar::Builder<BufWriter<File>>) -> Result<(), ContextError> {
    const RECORD: &[u8] = b"19 comment=dockpub\n";
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XGlobalHeader);
    header.set_size(RECORD.len() as u64);
    header.set_mode(0o644);
    header
        .set_path("pax_global_header")
        .map_err(ContextError::Io)?;
    header.set_cksum();
    out.append(&header, RECORD).map_err(ContextError::Io)
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
