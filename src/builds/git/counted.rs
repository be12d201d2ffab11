//! A repository's tree counted as an upload is, while it is written: the tar
//! stream of `git archive` as it is copied, and a `git ls-tree` listing before
//! a checkout writes the files. Nothing past the context limits reaches the disk.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};

use super::GitError;
use crate::builds::context::{is_metadata, Bounded, ContextError, ContextLimits};

const TAR_BLOCK: u64 = 512;
/// The two zero blocks that end a tar archive.
const TAR_END_BYTES: u64 = 2 * TAR_BLOCK;
/// A tar header's name field: longer names take a record of their own.
const TAR_NAME_BYTES: u64 = 100;

/// Copies the tar stream `git archive` writes to `out`, counting its bytes and
/// entries as an upload's are counted, and stops at the first limit passed.
pub(super) fn copy_counted(
    tar: impl Read,
    out: File,
    limits: ContextLimits,
) -> Result<(), GitError> {
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

/// The tar bytes and entries of the trees checked out so far, held to the limits.
pub(super) struct Tally {
    limits: ContextLimits,
    bytes: u64,
    entries: u64,
}

impl Tally {
    pub(super) fn new(limits: ContextLimits) -> Tally {
        Tally {
            limits,
            bytes: TAR_END_BYTES,
            entries: 0,
        }
    }

    /// Adds a `git ls-tree -r -t -l -z` listing, and stops at the first limit passed.
    pub(super) fn add_listing(&mut self, listing: impl Read) -> Result<(), GitError> {
        for record in BufReader::new(listing).split(0) {
            let record = record.map_err(GitError::Io)?;
            // `<mode> <type> <object> <size>\t<path>`; the size is `-` for
            // folders and submodules.
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
            self.entries += 1;
            check_entries(self.entries, self.limits)?;
            self.bytes = self
                .bytes
                .saturating_add(tar_bytes(size))
                .saturating_add(long_name_bytes(name));
            if self.bytes > self.limits.max_bytes {
                return Err(too_large(self.limits));
            }
        }
        Ok(())
    }
}

pub(super) fn check_entries(entries: u64, limits: ContextLimits) -> Result<(), GitError> {
    match entries > limits.max_entries {
        true => Err(GitError::Context(ContextError::TooManyEntries {
            limit: limits.max_entries,
        })),
        false => Ok(()),
    }
}

pub(super) fn too_large(limits: ContextLimits) -> GitError {
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
    match name > TAR_NAME_BYTES {
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
    fn tree_listings_are_tallied_as_their_tar_would_be_and_add_up() {
        let listing = "100644 blob 0f0f 1000\tzeros-1\0\
                       040000 tree 0e0e       -\tdir\0\
                       100644 blob 0f0f 1000\tdir/zeros-2\0";
        // Three headers, two files of two blocks each, the end blocks.
        let exact = 3 * 512 + 2 * 1024 + 1024;
        assert!(Tally::new(limits(exact, 3))
            .add_listing(listing.as_bytes())
            .is_ok());
        assert!(matches!(
            Tally::new(limits(exact - 1, 3)).add_listing(listing.as_bytes()),
            Err(GitError::Context(ContextError::TooLarge { .. }))
        ));
        assert!(matches!(
            Tally::new(limits(exact, 2)).add_listing(listing.as_bytes()),
            Err(GitError::Context(ContextError::TooManyEntries { .. }))
        ));
        // A second tree (a submodule's) counts on top of the first.
        let mut both = Tally::new(limits(exact + 1536, 4));
        both.add_listing(listing.as_bytes()).unwrap();
        let one_more = "100644 blob 0f0f 1000\tzeros-3\0";
        assert!(both.add_listing(one_more.as_bytes()).is_ok());
        assert!(both.add_listing(one_more.as_bytes()).is_err());
    }
}
