//! Numbered SQL migrations, applied in order at start; the schema version lives
//! in SQLite's own `user_version`.

use rusqlite::Connection;

use super::StoreError;

/// Every migration, in order. Migration N (1-based) moves `user_version` from N-1 to N.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_builds.sql"),
    include_str!("migrations/002_retry_of.sql"),
    include_str!("migrations/003_contexts.sql"),
    include_str!("migrations/004_deliveries.sql"),
    include_str!("migrations/005_builders.sql"),
    include_str!("migrations/006_tag_moved_by.sql"),
    include_str!("migrations/007_submitted_by.sql"),
    include_str!("migrations/008_git_source.sql"),
    include_str!("migrations/009_trigger_deliveries.sql"),
    include_str!("migrations/010_tags_pushed.sql"),
    include_str!("migrations/011_platforms.sql"),
    include_str!("migrations/012_provenance.sql"),
];

pub fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64)?;
        tx.commit()?;
        log::info!("store: applied migration {version}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_all_migrations_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            apply(&mut conn),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }
}
