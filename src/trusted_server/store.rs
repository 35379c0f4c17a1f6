//! Storage of call records through sqlx: a SQLite file (WAL, synchronous=FULL) by default, or
//! PostgreSQL when given a `postgres://` URL. One code path serves both (the `Any` driver and
//! portable SQL); migrations run at connect.
//!
//! Invariant: every change the core decides (record, log lines, missed calls, events to send) is
//! written in one transaction, so a crash leaves either all of it or none.

use serde_json::{Value, json};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::channel::CallChannel;
use crate::event::{CallEvent, EndReason};
use crate::ids::{CallId, UserId};
use crate::trusted::{CallRecord, CallState, LogEntry, Outcome};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/trusted_server/migrations");

/// A pending outbox entry.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: String,
    pub channels: Vec<String>,
    pub event: String,
    pub data: String,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
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
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 8 })
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
            .map_err(db)?;
        MIGRATOR.run(&pool).await.map_err(db)?;
        Ok(Store { pool })
    }

    /// Stores a new call, its participants, and the invitation in the outbox.
    pub async fn insert_call(
        &self,
        record: &CallRecord,
        invitees: &[UserId],
        invitation: (&[String], &CallEvent),
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
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
        tx.commit().await.map_err(db)
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
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM call_log WHERE call_id = $1")
            .bind(record.call_id.as_str())
            .fetch_one(&mut *tx)
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
            .execute(&mut *tx)
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
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for event in &outcome.send {
            insert_outbox(
                &mut tx,
                at.max(record.created_at_ms),
                &[record.channel.to_string()],
                event,
            )
            .await?;
        }
        tx.commit().await.map_err(db)
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

    /// Records a webhook body; false when the same body was processed before.
    pub async fn first_delivery(&self, sha256_hex: &str, now_ms: u64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (body_sha256, received_at_ms) VALUES ($1, $2) \
             ON CONFLICT (body_sha256) DO NOTHING",
        )
        .bind(sha256_hex)
        .bind(to_i64(now_ms))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
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

    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxEntry>> {
        let rows = sqlx::query(
            "SELECT id, channels, event, data FROM outbox ORDER BY created_at_ms, id LIMIT $1",
        )
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
                })
            })
            .collect()
    }

    pub async fn outbox_done(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)
            .map(|_| ())
    }

    /// Calls the user took part in or was invited to, newest first.
    pub async fn history(&self, user: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query(
            "SELECT c.*, p.role FROM calls c JOIN call_participants p ON p.call_id = c.call_id \
             WHERE p.user_id = $1 ORDER BY c.created_at_ms DESC, c.call_id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let record = row_to_record(r)?;
                let role: String = r.try_get("role").map_err(db)?;
                let mut v = serde_json::to_value(&record).map_err(db)?;
                v["role"] = Value::String(role);
                Ok(v)
            })
            .collect()
    }

    /// The user's missed calls, newest first.
    pub async fn missed(&self, user: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query(
            "SELECT m.call_id, m.at_ms, m.reason, c.caller, c.channel FROM missed_calls m \
             JOIN calls c ON c.call_id = m.call_id WHERE m.user_id = $1 ORDER BY m.at_ms DESC, m.call_id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(json!({
                    "call_id": r.try_get::<String, _>("call_id").map_err(db)?,
                    "at_ms": r.try_get::<i64, _>("at_ms").map_err(db)?,
                    "reason": r.try_get::<String, _>("reason").map_err(db)?,
                    "caller": r.try_get::<String, _>("caller").map_err(db)?,
                    "channel": r.try_get::<String, _>("channel").map_err(db)?,
                }))
            })
            .collect()
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

async fn insert_outbox(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now_ms: u64,
    channels: &[String],
    event: &CallEvent,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, created_at_ms, channels, event, data) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(random_id())
    .bind(to_i64(now_ms))
    .bind(serde_json::to_string(channels).map_err(db)?)
    .bind(event.wire_name())
    .bind(Value::Object(event.to_data()).to_string())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
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
