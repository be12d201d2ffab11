//! The `deliveries` table: webhook deliveries and their attempts.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{immediate, Seen, Store, StoreError};
use crate::domain::{AttemptRecord, Delivery, NewDelivery, Timestamp};

const DELIVERY_COLUMNS: &str =
    "id, delivery_id, build_id, event, url, secret_env, body, state, attempts, \
     last_status, last_error, next_attempt_at, created_at, finished_at, redelivery_of";

impl Store {
    /// Stores new deliveries, due at once; returns their ids.
    pub async fn insert_deliveries(&self, new: Vec<NewDelivery>) -> Result<Vec<i64>, StoreError> {
        self.write_seen(Seen::Elsewhere, move |conn, _| {
            let tx = immediate(conn)?;
            let mut ids = Vec::with_capacity(new.len());
            for delivery in &new {
                let created_at = delivery.created_at.to_rfc3339();
                tx.execute(
                    "INSERT INTO deliveries (delivery_id, build_id, event, url, secret_env, body, state,
                                             next_attempt_at, created_at, redelivery_of)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?8)",
                    params![
                        delivery.delivery_id,
                        delivery.build_id,
                        delivery.event.as_str(),
                        delivery.url,
                        delivery.secret_env,
                        delivery.body,
                        created_at,
                        delivery.redelivery_of,
                    ],
                )?;
                ids.push(tx.last_insert_rowid());
            }
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    /// Takes up to `limit` pending deliveries due at `now` for an attempt: counts
    /// the attempt and makes them due again only at `lease_end`, so no other pass
    /// takes them meanwhile and a crash mid-attempt still retries them.
    pub async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_end: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.write_seen(Seen::Elsewhere, move |conn, _| {
            let sql = format!(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2
                 WHERE id IN (SELECT id FROM deliveries
                              WHERE state = 'pending' AND next_attempt_at <= ?1
                              ORDER BY next_attempt_at, id LIMIT ?3)
                 RETURNING {DELIVERY_COLUMNS}"
            );
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(
                params![now.to_rfc3339(), lease_end.to_rfc3339(), limit as i64],
                delivery_from_row,
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// Stores how an attempt went. A delivery that has ended and whose build was
    /// deleted meanwhile goes with it.
    pub async fn record_attempt(&self, id: i64, record: AttemptRecord) -> Result<(), StoreError> {
        self.write_seen(Seen::Elsewhere, move |conn, _| {
            let tx = immediate(conn)?;
            let finished_at = record
                .next_attempt_at
                .is_none()
                .then(|| Timestamp::now().to_rfc3339());
            tx.execute(
                "UPDATE deliveries SET state = ?2, last_status = ?3, last_error = ?4,
                                       next_attempt_at = ?5, finished_at = ?6
                 WHERE id = ?1",
                params![
                    id,
                    record.state.as_str(),
                    record.last_status,
                    record.last_error,
                    record.next_attempt_at.map(Timestamp::to_rfc3339),
                    finished_at,
                ],
            )?;
            tx.execute(
                "DELETE FROM deliveries WHERE id = ?1 AND state != 'pending'
                   AND NOT EXISTS (SELECT 1 FROM builds WHERE builds.id = deliveries.build_id)",
                [id],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// When the earliest pending delivery is due, if any is.
    pub async fn next_delivery_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(move |conn| {
            let due: Option<String> = conn.query_row(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'",
                [],
                |row| row.get(0),
            )?;
            match due {
                None => Ok(None),
                Some(text) => Timestamp::parse(&text)
                    .map(Some)
                    .ok_or_else(|| StoreError::Corrupt(format!("bad next_attempt_at '{text}'"))),
            }
        })
        .await
    }

    /// A build's deliveries, oldest first.
    pub async fn list_deliveries(&self, build_id: i64) -> Result<Vec<Delivery>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE build_id = ?1 ORDER BY id"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map([build_id], delivery_from_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// Webhook delivery `id`, or None when there is no such delivery.
    pub async fn get_delivery(&self, id: i64) -> Result<Option<Delivery>, StoreError> {
        self.read(move |conn| select_delivery(conn, id)).await
    }
}

fn select_delivery(conn: &Connection, id: i64) -> Result<Option<Delivery>, StoreError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], delivery_from_row)
        .optional()?
        .transpose()
}

/// Reads one row; the outer error is SQLite's, the inner one a row that does not parse.
fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Delivery, StoreError>> {
    let id: i64 = row.get(0)?;
    let event: String = row.get(3)?;
    let state: String = row.get(7)?;
    let times: [Option<String>; 3] = [row.get(11)?, row.get(12)?, row.get(13)?];
    let parsed = (|| {
        let corrupt = |what: &str| StoreError::Corrupt(format!("delivery {id}: {what}"));
        let time = |text: &Option<String>| match text {
            None => Ok(None),
            Some(text) => Timestamp::parse(text)
                .map(Some)
                .ok_or_else(|| corrupt("bad timestamp")),
        };
        Ok(Delivery {
            id,
            delivery_id: row.get(1)?,
            build_id: row.get(2)?,
            event: event.parse().map_err(|_| corrupt("bad event"))?,
            url: row.get(4)?,
            secret_env: row.get(5)?,
            body: row.get(6)?,
            state: state.parse().map_err(|_| corrupt("bad state"))?,
            attempts: row.get(8)?,
            last_status: row.get(9)?,
            last_error: row.get(10)?,
            next_attempt_at: time(&times[0])?,
            created_at: time(&times[1])?.ok_or_else(|| corrupt("no created_at"))?,
            finished_at: time(&times[2])?,
            redelivery_of: row.get(14)?,
        })
    })();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryState, WebhookEvent};

    fn new_delivery(build_id: i64) -> NewDelivery {
        NewDelivery {
            delivery_id: NewDelivery::new_id(),
            build_id,
            event: WebhookEvent::Succeeded,
            url: "http://127.0.0.1:9/hook".into(),
            secret_env: "HOOK_SECRET".into(),
            body: "{}".into(),
            created_at: Timestamp::now(),
            redelivery_of: None,
        }
    }

    fn at(seconds_from_now: i64) -> Timestamp {
        Timestamp(chrono::Utc::now() + chrono::Duration::seconds(seconds_from_now))
    }

    #[tokio::test]
    async fn a_claimed_delivery_is_not_claimed_again_until_its_lease_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids = store
            .insert_deliveries(vec![new_delivery(1), new_delivery(1)])
            .await
            .unwrap();
        let claimed = store.claim_due_deliveries(at(0), at(15), 1).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, ids[0]);
        assert_eq!(claimed[0].attempts, 1);
        let rest = store.claim_due_deliveries(at(0), at(15), 5).await.unwrap();
        assert_eq!(rest.iter().map(|d| d.id).collect::<Vec<_>>(), vec![ids[1]]);
        assert!(store
            .claim_due_deliveries(at(1), at(15), 5)
            .await
            .unwrap()
            .is_empty());
        // A crash mid-attempt: once the lease is over, it is due again.
        let again = store.claim_due_deliveries(at(16), at(30), 5).await.unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|d| d.attempts == 2));
    }

    #[tokio::test]
    async fn an_ended_delivery_is_kept_while_its_build_is_and_goes_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // No build 7 exists: as if it was deleted while its delivery was pending.
        let id = store
            .insert_deliveries(vec![new_delivery(7)])
            .await
            .unwrap()[0];
        let retry = AttemptRecord {
            state: DeliveryState::Pending,
            last_status: Some(500),
            last_error: None,
            next_attempt_at: Some(at(2)),
        };
        store.record_attempt(id, retry).await.unwrap();
        let pending = store.get_delivery(id).await.unwrap().unwrap();
        assert_eq!(pending.last_status, Some(500));
        assert_eq!(
            store.next_delivery_due().await.unwrap(),
            pending.next_attempt_at
        );
        let failed = AttemptRecord {
            state: DeliveryState::Failed,
            last_status: None,
            last_error: Some("no answer".into()),
            next_attempt_at: None,
        };
        store.record_attempt(id, failed).await.unwrap();
        assert!(store.get_delivery(id).await.unwrap().is_none());
        assert_eq!(store.next_delivery_due().await.unwrap(), None);
    }
}
