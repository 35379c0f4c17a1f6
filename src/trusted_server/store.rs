//! Storage of call records through sqlx: a SQLite file (WAL, synchronous=FULL) by default, or
//! PostgreSQL when given a `postgres://` URL. One code path serves both (the `Any` driver and
//! portable SQL); migrations run at connect.
//!
//! Invariants: every change the core decides (record, log lines, missed calls, events to send) is
//! written in one transaction, so a crash leaves either all of it or none; a webhook delivery's
//! digest is written in the transaction that applies it ([`Store::begin_delivery`]), so a retry
//! after a timeout is applied exactly when the first attempt was not. With SQLite one connection
//! writes and a separate pool of readers serves history queries beside it (WAL), so reads never
//! queue in front of the writes that keep records.

use serde_json::{Value, json};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::channel::CallChannel;
use crate::event::{CallEvent, EndReason};
use crate::ids::{CallId, UserId};
use crate::trusted::outbox::split_channels;
use crate::trusted::{CallRecord, CallState, LogEntry, Outcome};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/trusted_server/migrations");

/// A pending outbox entry.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: String,
    pub channels: Vec<String>,
    pub event: String,
    pub data: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// How many of them the realtime server refused (a 4xx), rather than failed to answer.
    pub refusals: u32,
}

/// Where a page of history or missed calls starts: the `(time, call id)` of the last entry of the
/// previous page, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: u64,
    pub call_id: String,
}

impl Cursor {
    /// `{at_ms}.{call_id}`, opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at_ms, self.call_id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (at, id) = s.split_once('.')?;
        Some(Cursor {
            at_ms: at.parse().ok()?,
            call_id: CallId::parse(id).ok()?.as_str().to_owned(),
        })
    }
}

/// Counts of the outbox, for health and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxCounts {
    pub pending: u64,
    pub dead: u64,
}

#[derive(Clone)]
pub struct Store {
    /// Every write, and reads that decide writes.
    pool: AnyPool,
    /// History and missed-call queries (the same pool for PostgreSQL).
    reads: AnyPool,
}

/// One webhook delivery being applied: a transaction that already holds the delivery's digest.
/// Load records and save outcomes through it, then [`Delivery::commit`]; dropping it applies
/// nothing (and records no digest).
pub struct Delivery {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

type Result<T> = std::result::Result<T, String>;

fn db(e: impl std::fmt::Display) -> String {
    format!("database: {e}")
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn enum_from<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_value(Value::String(s.to_owned())).map_err(db)
}

fn random_id() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

impl Store {
    /// Connects (creating a SQLite file if needed) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = Self::pool(url, if sqlite { 1 } else { 8 }).await?;
        MIGRATOR.run(&pool).await.map_err(db)?;
        let reads = if sqlite {
            Self::pool(url, 4).await?
        } else {
            pool.clone()
        };
        Ok(Store { pool, reads })
    }

    async fn pool(url: &str, connections: u32) -> Result<AnyPool> {
        let sqlite = url.starts_with("sqlite:");
        AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Durable on process and power loss; WAL lets readers run beside a writer.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(db)
    }

    /// Stores a new call, its participants, and the invitation in the outbox; with
    /// `idempotency = (user, key, request digest, answer)` also the answer under that key, in
    /// the same transaction. Returns false (and stores nothing) when the key is already taken.
    pub async fn insert_call(
        &self,
        record: &CallRecord,
        invitees: &[UserId],
        invitation: (&[String], &CallEvent),
        idempotency: Option<(&str, &str, &str, &str)>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        if let Some((user, key, digest, answer)) = idempotency {
            let done = sqlx::query(
                "INSERT INTO call_requests (user_id, idempotency_key, request_sha256, response, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, idempotency_key) DO NOTHING",
            )
            .bind(user)
            .bind(key)
            .bind(digest)
            .bind(answer)
            .bind(to_i64(record.created_at_ms))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if done.rows_affected() == 0 {
                tx.rollback().await.map_err(db)?;
                return Ok(false);
            }
        }
        sqlx::query(
            "INSERT INTO calls (call_id, channel, scope, scope_id, caller, callees, media, privacy, topology, \
             ring_timeout_ms, created_at_ms, ring_deadline_ms, state, accepted_by, accepted_at_ms, ended_at_ms, \
             end_reason, server_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(record.call_id.as_str())
        .bind(record.channel.to_string())
        .bind(record.channel.scope().as_str())
        .bind(record.channel.scope_id().as_str())
        .bind(record.caller.as_str())
        .bind(serde_json::to_string(&record.callees).map_err(db)?)
        .bind(serde_json::to_string(&record.media).map_err(db)?)
        .bind(enum_text(&record.privacy))
        .bind(enum_text(&record.topology))
        .bind(to_i64(record.ring_timeout_ms))
        .bind(to_i64(record.created_at_ms))
        .bind(to_i64(record.ring_deadline_ms()))
        .bind(record.state.as_str())
        .bind(record.accepted_by.as_ref().map(|u| u.to_string()))
        .bind(record.accepted_at_ms.map(to_i64))
        .bind(record.ended_at_ms.map(to_i64))
        .bind(record.end_reason.as_ref().map(enum_text))
        .bind(to_i64(record.server_seq))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let mut people = vec![(record.caller.clone(), "caller")];
        people.extend(invitees.iter().map(|u| (u.clone(), "callee")));
        for (user, role) in people {
            sqlx::query(
                "INSERT INTO call_participants (call_id, user_id, role) VALUES ($1, $2, $3)",
            )
            .bind(record.call_id.as_str())
            .bind(user.as_str())
            .bind(role)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let (channels, event) = invitation;
        insert_outbox(&mut tx, record.created_at_ms, channels, event).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    pub async fn load_call(&self, call_id: &str) -> Result<Option<CallRecord>> {
        let row = sqlx::query("SELECT * FROM calls WHERE call_id = $1")
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| row_to_record(&r)).transpose()
    }

    /// Writes a changed record with everything the change produced.
    pub async fn save_outcome(&self, record: &CallRecord, outcome: &Outcome) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        write_outcome(&mut tx, record, outcome).await?;
        tx.commit().await.map_err(db)
    }

    /// Starts applying a webhook delivery whose body has `sha256_hex`: `None` when that delivery
    /// was applied before. The digest is part of the transaction, so it counts only once the
    /// delivery's changes are committed with it.
    pub async fn begin_delivery(&self, sha256_hex: &str, now_ms: u64) -> Result<Option<Delivery>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (body_sha256, received_at_ms) VALUES ($1, $2) \
             ON CONFLICT (body_sha256) DO NOTHING",
        )
        .bind(sha256_hex)
        .bind(to_i64(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if done.rows_affected() == 1 {
            Ok(Some(Delivery { tx }))
        } else {
            tx.rollback().await.map_err(db)?;
            Ok(None)
        }
    }

    /// Ringing calls whose deadline has passed.
    pub async fn due_calls(&self, now_ms: u64) -> Result<Vec<CallRecord>> {
        let rows = sqlx::query("SELECT * FROM calls WHERE state = $1 AND ring_deadline_ms <= $2")
            .bind(CallState::Ringing.as_str())
            .bind(to_i64(now_ms))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(row_to_record).collect()
    }

    /// Forgets processed webhook bodies received before `before_ms`. Deliveries that old are
    /// refused as stale anyway, so their digests no longer protect against anything.
    pub async fn prune_deliveries(&self, before_ms: u64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM webhook_deliveries WHERE received_at_ms < $1")
            .bind(to_i64(before_ms))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    /// Outbox entries due at `now_ms` (not dead-lettered, past their backoff), oldest first.
    pub async fn due_outbox(&self, now_ms: u64, limit: i64) -> Result<Vec<OutboxEntry>> {
        let rows = sqlx::query(
            "SELECT id, channels, event, data, attempts, refusals FROM outbox \
             WHERE dead_at_ms IS NULL AND next_attempt_at_ms <= $1 \
             ORDER BY created_at_ms, id LIMIT $2",
        )
        .bind(to_i64(now_ms))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let channels: String = r.try_get("channels").map_err(db)?;
                Ok(OutboxEntry {
                    id: r.try_get("id").map_err(db)?,
                    channels: serde_json::from_str(&channels).map_err(db)?,
                    event: r.try_get("event").map_err(db)?,
                    data: r.try_get("data").map_err(db)?,
                    attempts: r.try_get::<i64, _>("attempts").map_err(db)?.max(0) as u32,
                    refusals: r.try_get::<i64, _>("refusals").map_err(db)?.max(0) as u32,
                })
            })
            .collect()
    }

    /// When the next live outbox entry is due, if there is one.
    pub async fn next_outbox_due(&self) -> Result<Option<u64>> {
        let row =
            sqlx::query("SELECT MIN(next_attempt_at_ms) FROM outbox WHERE dead_at_ms IS NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        Ok(row
            .try_get::<Option<i64>, _>(0)
            .map_err(db)?
            .map(|v| v.max(0) as u64))
    }

    pub async fn outbox_done(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)
            .map(|_| ())
    }

    /// Records a failed attempt: try again at `retry_at_ms`, or never (dead-lettered) if `None`.
    pub async fn outbox_failed(
        &self,
        id: &str,
        (attempts, refusals): (u32, u32),
        retry_at_ms: Option<u64>,
        now_ms: u64,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = $1, refusals = $2, next_attempt_at_ms = $3, last_error = $4, \
             dead_at_ms = $5 WHERE id = $6",
        )
        .bind(i64::from(attempts))
        .bind(i64::from(refusals))
        .bind(to_i64(retry_at_ms.unwrap_or(now_ms)))
        .bind(error)
        .bind(retry_at_ms.is_none().then(|| to_i64(now_ms)))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)
        .map(|_| ())
    }

    /// Pending and dead-lettered outbox entries.
    pub async fn outbox_counts(&self) -> Result<OutboxCounts> {
        let row = sqlx::query("SELECT COUNT(*) - COUNT(dead_at_ms), COUNT(dead_at_ms) FROM outbox")
            .fetch_one(&self.reads)
            .await
            .map_err(db)?;
        Ok(OutboxCounts {
            pending: row.try_get::<i64, _>(0).map_err(db)?.max(0) as u64,
            dead: row.try_get::<i64, _>(1).map_err(db)?.max(0) as u64,
        })
    }

    /// Dead-lettered entries with their last error, oldest first.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<Value>> {
        let rows = sqlx::query(
            "SELECT id, event, channels, attempts, last_error, dead_at_ms FROM outbox \
             WHERE dead_at_ms IS NOT NULL ORDER BY dead_at_ms, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.reads)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(json!({
                    "id": r.try_get::<String, _>("id").map_err(db)?,
                    "event": r.try_get::<String, _>("event").map_err(db)?,
                    "channels": r.try_get::<String, _>("channels").map_err(db)?,
                    "attempts": r.try_get::<i64, _>("attempts").map_err(db)?,
                    "last_error": r.try_get::<Option<String>, _>("last_error").map_err(db)?,
                    "dead_at_ms": r.try_get::<Option<i64>, _>("dead_at_ms").map_err(db)?,
                }))
            })
            .collect()
    }

    /// Calls that are answered and not ended: what reconciliation checks against the realtime
    /// server.
    pub async fn active_calls(&self) -> Result<Vec<CallRecord>> {
        let rows = sqlx::query("SELECT * FROM calls WHERE state = $1")
            .bind(CallState::Active.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(row_to_record).collect()
    }

    /// One page of the calls the user took part in or was invited to, newest first, starting
    /// after `after`; the cursor of the next page when there may be one.
    pub async fn history(
        &self,
        user: &str,
        limit: u32,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Value>, Option<Cursor>)> {
        let (at, id) = after.map_or((i64::MAX, String::new()), |c| {
            (to_i64(c.at_ms), c.call_id.clone())
        });
        let rows = sqlx::query(
            "SELECT c.*, p.role FROM calls c JOIN call_participants p ON p.call_id = c.call_id \
             WHERE p.user_id = $1 AND (c.created_at_ms < $2 OR (c.created_at_ms = $2 AND c.call_id > $3)) \
             ORDER BY c.created_at_ms DESC, c.call_id LIMIT $4",
        )
        .bind(user)
        .bind(at)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await
        .map_err(db)?;
        let mut next = None;
        let page = rows
            .iter()
            .map(|r| {
                let record = row_to_record(r)?;
                let role: String = r.try_get("role").map_err(db)?;
                next = Some(Cursor {
                    at_ms: record.created_at_ms,
                    call_id: record.call_id.to_string(),
                });
                let mut v = serde_json::to_value(&record).map_err(db)?;
                v["role"] = Value::String(role);
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((page, next.filter(|_| rows.len() as u32 == limit)))
    }

    /// One page of the user's missed calls, newest first, starting after `after`.
    pub async fn missed(
        &self,
        user: &str,
        limit: u32,
        after: Option<&Cursor>,
    ) -> Result<(Vec<Value>, Option<Cursor>)> {
        let (at, id) = after.map_or((i64::MAX, String::new()), |c| {
            (to_i64(c.at_ms), c.call_id.clone())
        });
        let rows = sqlx::query(
            "SELECT m.call_id, m.at_ms, m.reason, c.caller, c.channel FROM missed_calls m \
             JOIN calls c ON c.call_id = m.call_id \
             WHERE m.user_id = $1 AND (m.at_ms < $2 OR (m.at_ms = $2 AND m.call_id > $3)) \
             ORDER BY m.at_ms DESC, m.call_id LIMIT $4",
        )
        .bind(user)
        .bind(at)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await
        .map_err(db)?;
        let mut next = None;
        let page = rows
            .iter()
            .map(|r| {
                let call_id = r.try_get::<String, _>("call_id").map_err(db)?;
                let at_ms = r.try_get::<i64, _>("at_ms").map_err(db)?;
                next = Some(Cursor {
                    at_ms: at_ms.max(0) as u64,
                    call_id: call_id.clone(),
                });
                Ok(json!({
                    "call_id": call_id,
                    "at_ms": at_ms,
                    "reason": r.try_get::<String, _>("reason").map_err(db)?,
                    "caller": r.try_get::<String, _>("caller").map_err(db)?,
                    "channel": r.try_get::<String, _>("channel").map_err(db)?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((page, next.filter(|_| rows.len() as u32 == limit)))
    }

    /// The answer stored for `(user, key)` of `POST /calls`, with the digest of the request it
    /// answered.
    pub async fn idempotent_answer(
        &self,
        user: &str,
        key: &str,
    ) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT request_sha256, response FROM call_requests WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(user)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok((
                r.try_get::<String, _>("request_sha256").map_err(db)?,
                r.try_get::<String, _>("response").map_err(db)?,
            ))
        })
        .transpose()
    }

    /// Forgets idempotency keys older than `before_ms`.
    pub async fn prune_call_requests(&self, before_ms: u64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM call_requests WHERE created_at_ms < $1")
            .bind(to_i64(before_ms))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    /// The log of one call, in order.
    pub async fn log(&self, call_id: &str) -> Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, kind, user_id, detail FROM call_log WHERE call_id = $1 ORDER BY ordinal",
        )
        .bind(call_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(LogEntry {
                    at_ms: r.try_get::<i64, _>("at_ms").map_err(db)? as u64,
                    kind: r.try_get("kind").map_err(db)?,
                    user_id: r.try_get("user_id").map_err(db)?,
                    detail: r.try_get("detail").map_err(db)?,
                })
            })
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Writes a changed record with everything the change produced, inside `tx`.
async fn write_outcome(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    record: &CallRecord,
    outcome: &Outcome,
) -> Result<()> {
    sqlx::query(
        "UPDATE calls SET state = $1, accepted_by = $2, accepted_at_ms = $3, ended_at_ms = $4, \
         end_reason = $5, server_seq = $6 WHERE call_id = $7",
    )
    .bind(record.state.as_str())
    .bind(record.accepted_by.as_ref().map(|u| u.to_string()))
    .bind(record.accepted_at_ms.map(to_i64))
    .bind(record.ended_at_ms.map(to_i64))
    .bind(record.end_reason.as_ref().map(enum_text))
    .bind(to_i64(record.server_seq))
    .bind(record.call_id.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM call_log WHERE call_id = $1")
        .bind(record.call_id.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    for (i, entry) in outcome.log.iter().enumerate() {
        sqlx::query(
            "INSERT INTO call_log (call_id, ordinal, at_ms, kind, user_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.call_id.as_str())
        .bind(count + i as i64)
        .bind(to_i64(entry.at_ms))
        .bind(entry.kind.as_str())
        .bind(entry.user_id.clone())
        .bind(entry.detail.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    let reason = record
        .end_reason
        .as_ref()
        .map(enum_text)
        .unwrap_or_default();
    let at = record.ended_at_ms.unwrap_or_default();
    for user in &outcome.missed {
        sqlx::query(
            "INSERT INTO missed_calls (call_id, user_id, at_ms, reason) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id, user_id) DO NOTHING",
        )
        .bind(record.call_id.as_str())
        .bind(user.as_str())
        .bind(to_i64(at))
        .bind(reason.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    for event in &outcome.send {
        insert_outbox(
            tx,
            at.max(record.created_at_ms),
            &[record.channel.to_string()],
            event,
        )
        .await?;
    }
    Ok(())
}

impl Delivery {
    /// The call `call_id` as this transaction sees it.
    pub async fn load_call(&mut self, call_id: &str) -> Result<Option<CallRecord>> {
        let row = sqlx::query("SELECT * FROM calls WHERE call_id = $1")
            .bind(call_id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        row.map(|r| row_to_record(&r)).transpose()
    }

    pub async fn save_outcome(&mut self, record: &CallRecord, outcome: &Outcome) -> Result<()> {
        write_outcome(&mut self.tx, record, outcome).await
    }

    /// Applies everything saved, and the digest, at once.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(db)
    }
}

/// Stores one server event for sending, split into entries of at most
/// [`crate::trusted::outbox::MAX_CHANNELS_PER_TRIGGER`] channels each, so every entry is a request the HTTP API accepts.
async fn insert_outbox(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now_ms: u64,
    channels: &[String],
    event: &CallEvent,
) -> Result<()> {
    let data = Value::Object(event.to_data()).to_string();
    for group in split_channels(channels) {
        sqlx::query(
            "INSERT INTO outbox (id, created_at_ms, channels, event, data) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(random_id())
        .bind(to_i64(now_ms))
        .bind(serde_json::to_string(&group).map_err(db)?)
        .bind(event.wire_name())
        .bind(data.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

fn row_to_record(r: &sqlx::any::AnyRow) -> Result<CallRecord> {
    let text = |c: &str| r.try_get::<String, _>(c).map_err(db);
    let opt_text = |c: &str| r.try_get::<Option<String>, _>(c).map_err(db);
    let int = |c: &str| r.try_get::<i64, _>(c).map(|v| v as u64).map_err(db);
    let opt_int = |c: &str| {
        r.try_get::<Option<i64>, _>(c)
            .map(|v| v.map(|v| v as u64))
            .map_err(db)
    };
    Ok(CallRecord {
        call_id: CallId::parse(&text("call_id")?).map_err(db)?,
        channel: CallChannel::parse(&text("channel")?).map_err(db)?,
        caller: UserId::parse(&text("caller")?).map_err(db)?,
        callees: serde_json::from_str(&text("callees")?).map_err(db)?,
        media: serde_json::from_str(&text("media")?).map_err(db)?,
        privacy: enum_from(&text("privacy")?)?,
        topology: enum_from(&text("topology")?)?,
        ring_timeout_ms: int("ring_timeout_ms")?,
        created_at_ms: int("created_at_ms")?,
        state: CallState::parse(&text("state")?).ok_or("database: unknown call state")?,
        accepted_by: opt_text("accepted_by")?
            .map(|u| UserId::parse(&u).map_err(db))
            .transpose()?,
        accepted_at_ms: opt_int("accepted_at_ms")?,
        ended_at_ms: opt_int("ended_at_ms")?,
        end_reason: opt_text("end_reason")?
            .map(|s| enum_from::<EndReason>(&s))
            .transpose()?,
        server_seq: int("server_seq")?,
    })
}
