//! The `build_logs` table: lines written in batches by the writer, read back in
//! pages by line number so a reader holds one page, whatever the log's size.

use std::sync::Arc;

use rusqlite::{params, OptionalExtension};

use super::{immediate, Seen, Store, StoreError};
use crate::domain::LogLine;

/// A page ends after this many lines, or sooner once it holds the reader's
/// bytes ([`PAGE_BYTES`] unless it asks for less).
const PAGE_LINES: usize = 1000;
/// The bytes of a page of a plain read.
pub const PAGE_BYTES: usize = 64 * 1024;

/// Which part of a log a reader wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogRange {
    /// Only lines after line `since` (lines count from 1).
    pub since: Option<i64>,
    /// Only the last `tail` lines (of those after `since`).
    pub tail: Option<i64>,
}

/// Appends one line (its number, its text) to a page, in the reader's format.
pub type RenderLine = fn(&mut String, i64, &str);

/// One page of lines, as the reader's [`RenderLine`] wrote them.
pub struct LogPage {
    /// The rendered lines.
    pub text: String,
    /// The number of the page's last line: the next page starts after it.
    pub last_seq: i64,
    /// Whether the page stopped at its size limit, so more lines may follow now.
    pub full: bool,
}

/// What a build's log holds so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogTotals {
    /// The number of the last line, 0 when there is none.
    pub last_seq: i64,
    /// The lines stored.
    pub lines: u64,
    /// The lines' bytes (UTF-8), without line ends.
    pub bytes: u64,
}

impl Store {
    /// Stores log lines whose sequence numbers the caller assigned, in one transaction.
    pub async fn append_logs(&self, id: i64, lines: Arc<Vec<LogLine>>) -> Result<(), StoreError> {
        self.write_seen(Seen::Elsewhere, move |conn, _| {
            let tx = immediate(conn)?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO build_logs (build_id, seq, line) VALUES (?1, ?2, ?3)",
                )?;
                for line in lines.iter() {
                    insert.execute(params![id, line.seq, line.line])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The build's last line number, and how many lines and bytes it stored.
    pub async fn log_totals(&self, id: i64) -> Result<LogTotals, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(seq), 0), COUNT(*), COALESCE(SUM(LENGTH(CAST(line AS BLOB))), 0)
                 FROM build_logs WHERE build_id = ?1",
                [id],
                |row| {
                    Ok(LogTotals {
                        last_seq: row.get(0)?,
                        lines: row.get::<_, i64>(1)? as u64,
                        bytes: row.get::<_, i64>(2)? as u64,
                    })
                },
            )?)
        })
        .await
    }

    /// The line number after which `range` starts: `since`, or later when the
    /// last `tail` lines start later.
    pub async fn log_start(&self, id: i64, range: LogRange) -> Result<i64, StoreError> {
        let since = range.since.unwrap_or(0);
        let Some(tail) = range.tail else {
            return Ok(since);
        };
        self.read(move |conn| {
            // The line just before the last `tail` ones: a walk of `tail` index
            // entries from the end, not of the whole log.
            let before_tail: Option<i64> = conn
                .query_row(
                    "SELECT seq FROM build_logs WHERE build_id = ?1
                     ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                    params![id, tail],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(since.max(before_tail.unwrap_or(0)))
        })
        .await
    }

    /// The next page of lines after line `after`, written by `render` straight
    /// from the rows (no line is held on its own) on the blocking pool; None when
    /// there is no line after it (yet). The page ends once its lines hold
    /// `page_bytes` (or a line more: a longer line comes whole).
    pub async fn read_log_page(
        &self,
        id: i64,
        after: i64,
        render: RenderLine,
        page_bytes: usize,
    ) -> Result<Option<LogPage>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, line FROM build_logs WHERE build_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let mut rows = statement.query(params![id, after, PAGE_LINES as i64])?;
            let mut text = String::new();
            let (mut count, mut last_seq, mut bytes) = (0, after, 0);
            while let Some(row) = rows.next()? {
                last_seq = row.get(0)?;
                let line = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                bytes += line.len();
                count += 1;
                render(&mut text, last_seq, line);
                if bytes >= page_bytes {
                    break;
                }
            }
            if count == 0 {
                return Ok(None);
            }
            Ok(Some(LogPage {
                text,
                last_seq,
                full: count == PAGE_LINES || bytes >= page_bytes,
            }))
        })
        .await
    }
}
