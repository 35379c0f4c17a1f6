//! The HTTP API of the realtime server (`spec/01-transport.md` §1.5): triggering events and
//! querying channels, each request signed (`spec/03-signing.md` §3.3).
//!
//! Checks run cheapest first: route and app, then the signature (which covers the body hash and
//! the timestamp window), then the body's JSON, then per-event limits. Nothing is delivered unless
//! every event of the request passed.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::hub::{ConnId, HttpRequest, HttpResponse, Hub};
use crate::pusher::{ChannelType, Frame, FrameData};
use crate::signing;

/// Events one `batch_events` request may carry (Pusher's limit).
pub const MAX_BATCH_EVENTS: usize = 10;
/// Channels one `events` request may name (Pusher's limit).
pub const MAX_TRIGGER_CHANNELS: usize = 100;

#[derive(Debug, Deserialize)]
struct TriggerBody {
    name: String,
    data: Value,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchBody {
    batch: Vec<TriggerBody>,
}

/// One event ready to deliver.
struct Delivery {
    name: String,
    data: String,
    channels: Vec<String>,
    except_socket: Option<String>,
}

fn decode_path_segment(s: &str) -> String {
    // Channel names never need escaping, but clients may still escape reserved characters.
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Hub {
    /// Handles one HTTP API request. `now_unix` is the wall clock in seconds, for the timestamp
    /// window of the request signature.
    pub fn http(&mut self, req: HttpRequest<'_>, now_unix: u64) -> HttpResponse {
        let parts: Vec<&str> = req.path.trim_end_matches('/').split('/').collect();
        // ["", "apps", id, rest...]
        let (Some(&""), Some(&"apps"), Some(app_id)) = (parts.first(), parts.get(1), parts.get(2))
        else {
            return HttpResponse::error(
                404,
                "http.not_found",
                format!("no route for {}", req.path),
            );
        };
        let Some(app) = self.apps().iter().position(|a| a.id == *app_id) else {
            return HttpResponse::error(
                404,
                "http.unknown_app",
                format!("app {app_id} does not exist"),
            );
        };
        let cfg = &self.apps()[app];
        let now_unix = if cfg.has_defect(super::Defect::IgnoreHttpTimestamp) {
            signing::parse_query(req.query)
                .ok()
                .and_then(|q| q.into_iter().find(|(k, _)| k == "auth_timestamp"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(now_unix)
        } else {
            now_unix
        };
        if let Err(e) = signing::verify_http_request(
            &cfg.key,
            &cfg.secret,
            req.method,
            req.path,
            req.query,
            req.body,
            now_unix,
        ) {
            return HttpResponse::error(401, e.code(), format!("authentication failed: {e}"));
        }
        let rest = &parts[3..];
        match (req.method, rest) {
            ("POST", ["events"]) => self.trigger(app, req.body, false),
            ("POST", ["batch_events"]) => self.trigger(app, req.body, true),
            ("GET", ["channels"]) => self.list_channels(app, req.query),
            ("GET", ["channels", name]) => {
                self.channel_info(app, &decode_path_segment(name), req.query)
            }
            ("GET", ["channels", name, "users"]) => {
                self.channel_users(app, &decode_path_segment(name))
            }
            _ => HttpResponse::error(
                404,
                "http.not_found",
                format!("no route for {} {}", req.method, req.path),
            ),
        }
    }

    fn trigger(&mut self, app: usize, body: &[u8], batch: bool) -> HttpResponse {
        let parsed: Result<Vec<TriggerBody>, String> = if batch {
            serde_json::from_slice::<BatchBody>(body)
                .map(|b| b.batch)
                .map_err(|e| e.to_string())
        } else {
            serde_json::from_slice::<TriggerBody>(body)
                .map(|t| vec![t])
                .map_err(|e| e.to_string())
        };
        let events = match parsed {
            Ok(e) => e,
            Err(e) => {
                return HttpResponse::error(400, "http.bad_body", format!("request body: {e}"));
            }
        };
        if batch && events.len() > MAX_BATCH_EVENTS {
            return HttpResponse::error(
                400,
                "http.batch_too_large",
                format!(
                    "{} events in one batch; at most {MAX_BATCH_EVENTS}",
                    events.len()
                ),
            );
        }
        let max_bytes = self.apps()[app].max_event_bytes;
        let mut deliveries = Vec::with_capacity(events.len());
        for (i, ev) in events.into_iter().enumerate() {
            let at = if batch {
                format!("batch[{i}]: ")
            } else {
                String::new()
            };
            let data = match ev.data {
                Value::String(s) => s,
                other => other.to_string(),
            };
            if data.len() > max_bytes {
                return HttpResponse::error(
                    413,
                    "http.data_too_large",
                    format!(
                        "{at}event data is {} bytes, over the limit of {max_bytes}",
                        data.len()
                    ),
                );
            }
            if ev.name.is_empty() || ev.name.len() > crate::limits::MAX_EVENT_NAME_LEN {
                return HttpResponse::error(
                    400,
                    "http.bad_event_name",
                    format!("{at}event name must be 1 to 200 bytes"),
                );
            }
            let channels = match (ev.channels, ev.channel) {
                (Some(list), None) => list,
                (None, Some(one)) => vec![one],
                _ => {
                    return HttpResponse::error(
                        400,
                        "http.bad_channels",
                        format!("{at}give exactly one of `channels` (array) or `channel`"),
                    );
                }
            };
            if channels.is_empty() || channels.len() > MAX_TRIGGER_CHANNELS {
                return HttpResponse::error(
                    400,
                    "http.bad_channels",
                    format!("{at}1 to {MAX_TRIGGER_CHANNELS} channels per event"),
                );
            }
            if let Some(bad) = channels
                .iter()
                .find(|c| !super::hub::is_pusher_channel_name(c))
            {
                return HttpResponse::error(
                    400,
                    "http.bad_channel_name",
                    format!("{at}invalid channel name {bad:?}"),
                );
            }
            deliveries.push(Delivery {
                name: ev.name,
                data,
                channels,
                except_socket: ev.socket_id,
            });
        }
        for d in deliveries {
            for channel in &d.channels {
                let text = Frame {
                    event: d.name.clone(),
                    channel: Some(channel.clone()),
                    data: Some(FrameData::Text(d.data.clone())),
                    user_id: None,
                }
                .to_json();
                let except: Option<ConnId> = d
                    .except_socket
                    .as_deref()
                    .and_then(|s| self.conn_by_socket(app, s));
                self.deliver(app, channel, except, &text);
            }
        }
        HttpResponse::ok(if batch {
            json!({ "batch": [] })
        } else {
            json!({})
        })
    }

    fn list_channels(&self, app: usize, query: &str) -> HttpResponse {
        let params = signing::parse_query(query).unwrap_or_default();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let prefix = get("filter_by_prefix").unwrap_or("");
        let want_users = get("info").is_some_and(|i| i.split(',').any(|f| f == "user_count"));
        if want_users && ChannelType::of(prefix) != ChannelType::Presence {
            return HttpResponse::error(
                400,
                "http.bad_info",
                "info=user_count needs filter_by_prefix=presence-",
            );
        }
        let mut channels = Map::new();
        for (name, users) in self.occupied(app) {
            if name.starts_with(prefix) {
                let info = if want_users {
                    json!({ "user_count": users })
                } else {
                    json!({})
                };
                channels.insert(name, info);
            }
        }
        HttpResponse::ok(json!({ "channels": channels }))
    }

    fn channel_info(&self, app: usize, name: &str, query: &str) -> HttpResponse {
        let params = signing::parse_query(query).unwrap_or_default();
        let info: Vec<&str> = params
            .iter()
            .find(|(n, _)| n == "info")
            .map(|(_, v)| v.split(',').collect())
            .unwrap_or_default();
        let (subscribers, users) = self.channel_counts(app, name);
        let mut body = json!({ "occupied": subscribers > 0 });
        if info.contains(&"subscription_count") {
            body["subscription_count"] = json!(subscribers);
        }
        if info.contains(&"user_count") {
            if ChannelType::of(name) != ChannelType::Presence {
                return HttpResponse::error(
                    400,
                    "http.bad_info",
                    "user_count is only available on presence channels",
                );
            }
            body["user_count"] = json!(users);
        }
        HttpResponse::ok(body)
    }

    fn channel_users(&self, app: usize, name: &str) -> HttpResponse {
        if ChannelType::of(name) != ChannelType::Presence {
            return HttpResponse::error(
                400,
                "http.not_presence",
                format!("{name} is not a presence channel"),
            );
        }
        let users: Vec<Value> = self
            .presence_ids(app, name)
            .into_iter()
            .map(|id| json!({ "id": id }))
            .collect();
        HttpResponse::ok(json!({ "users": users }))
    }
}
