//! Limits on what an archive holds once decompressed: a small gzip can expand a
//! thousandfold, so the upload's own size says little about the disk and the
//! daemon's work behind it.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

/// How large a context may be, counted on the decompressed tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextLimits {
    /// Bytes of the tar stream, headers included.
    pub max_bytes: u64,
    /// Entries of the archive (files, folders, links).
    pub max_entries: u64,
}

/// A reader that fails once more than `left` bytes went through it, and remembers
/// that it did, so the failure can be told apart from a broken archive even when
/// the tar reader wraps the error.
pub struct Bounded<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
    /// Bytes that went through so far.
    read: Rc<Cell<u64>>,
}

impl<R: Read> Bounded<R> {
    pub fn new(inner: R, limit: u64) -> (Self, Rc<Cell<bool>>) {
        let (reader, exceeded, _) = Bounded::counting(inner, limit);
        (reader, exceeded)
    }

    /// [`Bounded::new`], also telling how many bytes went through it.
    pub fn counting(inner: R, limit: u64) -> (Self, Rc<Cell<bool>>, Rc<Cell<u64>>) {
        let exceeded = Rc::new(Cell::new(false));
        let read = Rc::new(Cell::new(0));
        let reader = Bounded {
            inner,
            left: limit,
            exceeded: exceeded.clone(),
            read: read.clone(),
        };
        (reader, exceeded, read)
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit is enough to know it is exceeded.
        let window = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..window])?;
        match self.left.checked_sub(read as u64) {
            Some(left) => {
                self.left = left;
                self.read.set(self.read.get() + read as u64);
                Ok(read)
            }
            None => {
                self.exceeded.set(true);
                Err(io::Error::other(
                    "the decompressed context exceeds its limit",
                ))
            }
        }
    }
}

/// A writer that fails once more than `left` bytes were written to it, and
/// remembers that it did: the same limit as [`Bounded`], for archives dockpub
/// writes itself (a repository's checked-out folder).
pub struct Capped<W> {
    inner: W,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<W: Write> Capped<W> {
    pub fn new(inner: W, limit: u64) -> (Self, Rc<Cell<bool>>) {
        let exceeded = Rc::new(Cell::new(false));
        let writer = Capped {
            inner,
            left: limit,
            exceeded: exceeded.clone(),
        };
        (writer, exceeded)
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(left) = self.left.checked_sub(buf.len() as u64) else {
            self.exceeded.set(true);
            return Err(io::Error::other("the context exceeds its limit"));
        };
        let written = self.inner.write(buf)?;
        self.left = left + (buf.len() - written) as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_fails_past_it() {
        let (mut exact, exceeded) = Bounded::new(&[7u8; 10][..], 10);
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 10);
        assert!(!exceeded.get());

        let (mut over, exceeded) = Bounded::new(&[7u8; 11][..], 10);
        assert!(over.read_to_end(&mut Vec::new()).is_err());
        assert!(exceeded.get());
    }

    #[test]
    fn writes_up_to_the_limit_and_fails_past_it() {
        let (mut exact, exceeded) = Capped::new(Vec::new(), 10);
        exact.write_all(&[7u8; 10]).unwrap();
        assert_eq!(exact.into_inner().len(), 10);
        assert!(!exceeded.get());

        let (mut over, exceeded) = Capped::new(Vec::new(), 10);
        over.write_all(&[7u8; 6]).unwrap();
        assert!(over.write_all(&[7u8; 5]).is_err());
        assert!(exceeded.get());
        assert_eq!(
            over.into_inner().len(),
            6,
            "nothing past the limit is written"
        );
    }
}
