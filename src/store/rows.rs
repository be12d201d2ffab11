//! Mapping between `builds` rows and [`Build`].

use rusqlite::Row;

use super::StoreError;
use crate::domain::{Build, Timestamp};

pub const BUILD_COLUMNS: &str = "id, status, repository, tags, push, registry_username, image_id, \
     digest, error, created_at, started_at, built_at, finished_at, retry_of, options, digests, context_dockerfile, \
     callback_url, builder, attempts, tag_moved_by, submitted_by, source, tags_pushed, platforms, provenance";

/// Reads one row; the outer error is SQLite's, the inner one a row that does not parse.
pub fn build_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Build, StoreError>> {
    let id: i64 = row.get(0)?;
    let status: String = row.get(1)?;
    let tags: String = row.get(3)?;
    let created_at: String = row.get(9)?;
    let times: [Option<String>; 3] = [row.get(10)?, row.get(11)?, row.get(12)?];
    let options: String = row.get(14)?;
    let digests: String = row.get(15)?;
    let tag_moved_by: String = row.get(20)?;
    let source: Option<String> = row.get(22)?;
    let tags_pushed: String = row.get(23)?;
    let platforms: String = row.get(24)?;
    let provenance: Option<String> = row.get(25)?;
    let parsed = (|| {
        let corrupt = |what: &str| StoreError::Corrupt(format!("build {id}: {what}"));
        let [started_at, built_at, finished_at] = times.map(|t| t.as_deref().map(Timestamp::parse));
        let time = |t: Option<Option<Timestamp>>| match t {
            None => Ok(None),
            Some(Some(t)) => Ok(Some(t)),
            Some(None) => Err(corrupt("bad timestamp")),
        };
        Ok(Build {
            id,
            status: status.parse().map_err(|_| corrupt("bad status"))?,
            repository: row.get(2)?,
            tags: serde_json::from_str(&tags).map_err(|_| corrupt("bad tags"))?,
            push: row.get(4)?,
            registry_username: row.get(5)?,
            image_id: row.get(6)?,
            digest: row.get(7)?,
            error: row.get(8)?,
            created_at: Timestamp::parse(&created_at).ok_or_else(|| corrupt("bad created_at"))?,
            started_at: time(started_at)?,
            built_at: time(built_at)?,
            finished_at: time(finished_at)?,
            retry_of: row.get(13)?,
            progress: None,
            waiting_for: None,
            silent_since: None,
            options: serde_json::from_str(&options).map_err(|_| corrupt("bad options"))?,
            digests: serde_json::from_str(&digests).map_err(|_| corrupt("bad digests"))?,
            context_dockerfile: row.get(16)?,
            callback_url: row.get(17)?,
            builder: row.get(18)?,
            attempts: row.get(19)?,
            tag_moved_by: serde_json::from_str(&tag_moved_by)
                .map_err(|_| corrupt("bad tag_moved_by"))?,
            submitted_by: row.get(21)?,
            platforms: serde_json::from_str(&platforms).map_err(|_| corrupt("bad platforms"))?,
            source: source
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|_| corrupt("bad source"))?,
            tags_pushed: serde_json::from_str(&tags_pushed)
                .map_err(|_| corrupt("bad tags_pushed"))?,
            provenance: provenance
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|_| corrupt("bad provenance"))?,
        })
    })();
    Ok(parsed)
}

/// What a build's JSON adds besides its stored text: key names, links, live progress.
const JSON_OVERHEAD_BYTES: usize = 1024;

/// An upper bound of the bytes the row takes as an API build object: its text
/// columns as JSON strings (each byte that JSON escapes counted as 6), its
/// JSON columns as stored (they are written back the way they were stored),
/// plus [`JSON_OVERHEAD_BYTES`].
pub fn json_bytes(row: &Row<'_>) -> rusqlite::Result<usize> {
    let mut bytes = JSON_OVERHEAD_BYTES;
    for column in 0..row.as_ref().column_count() {
        bytes += match row.get_ref(column)? {
            rusqlite::types::ValueRef::Text(text) => escaped_len(text),
            rusqlite::types::ValueRef::Blob(blob) => blob.len(),
            _ => 20,
        };
    }
    Ok(bytes)
}

/// At most the length of `text` as a JSON string (`\u0001` for a control byte).
fn escaped_len(text: &[u8]) -> usize {
    let escaped = text
        .iter()
        .filter(|&&b| b < 0x20 || b == b'"' || b == b'\\')
        .count();
    text.len() + 2 + escaped * 5
}

pub fn tags_to_json(tags: &[String]) -> String {
    serde_json::to_string(tags).expect("a list of strings always serializes")
}

pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("options and digests always serialize")
}
