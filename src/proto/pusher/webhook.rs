//! Pusher webhooks as types both ends share: the reference realtime server builds and serializes
//! them, the reference trusted server parses them after verifying the signature over the raw
//! bytes. A member renamed on one side fails to compile or to parse instead of reading as absent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One delivery: `{"time_ms": ..., "events": [...]}`, signed as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    pub time_ms: u64,
    pub events: Vec<WebhookEvent>,
}

/// What happened; names as Pusher's webhooks spell them. A receiver ignores kinds it does not
/// know (other servers send more, e.g. `subscription_count`), so unknown names read as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    #[serde(other)]
    Other,
}

/// One event of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub name: WebhookKind,
    pub channel: String,
    /// Client events: the event's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Client events: the event data, as the JSON text the client sent (Pusher's form) or as a
    /// JSON object (some servers send that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Client events: the sender's socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    /// Member events, and client events on presence channels: the user the realtime server
    /// verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl WebhookEvent {
    fn about(name: WebhookKind, channel: &str) -> WebhookEvent {
        WebhookEvent {
            name,
            channel: channel.to_owned(),
            event: None,
            data: None,
            socket_id: None,
            user_id: None,
        }
    }

    pub fn channel_occupied(channel: &str) -> WebhookEvent {
        WebhookEvent::about(WebhookKind::ChannelOccupied, channel)
    }

    pub fn channel_vacated(channel: &str) -> WebhookEvent {
        WebhookEvent::about(WebhookKind::ChannelVacated, channel)
    }

    pub fn member_added(channel: &str, user_id: &str) -> WebhookEvent {
        WebhookEvent {
            user_id: Some(user_id.to_owned()),
            ..WebhookEvent::about(WebhookKind::MemberAdded, channel)
        }
    }

    pub fn member_removed(channel: &str, user_id: &str) -> WebhookEvent {
        WebhookEvent {
            user_id: Some(user_id.to_owned()),
            ..WebhookEvent::about(WebhookKind::MemberRemoved, channel)
        }
    }

    /// A client event as relayed: its data as the JSON text the client sent.
    pub fn client_event(
        channel: &str,
        event: &str,
        data_text: String,
        socket_id: &str,
        user_id: Option<String>,
    ) -> WebhookEvent {
        WebhookEvent {
            event: Some(event.to_owned()),
            data: Some(Value::String(data_text)),
            socket_id: Some(socket_id.to_owned()),
            user_id,
            ..WebhookEvent::about(WebhookKind::ClientEvent, channel)
        }
    }

    /// The client event's data as a JSON object, from either form.
    pub fn data_object(&self) -> Option<Map<String, Value>> {
        match self.data.as_ref()? {
            Value::String(text) => serde_json::from_str(text).ok(),
            Value::Object(o) => Some(o.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_pushers() {
        let e =
            WebhookEvent::client_event("private-x", "client-a", "{\"n\":1}".into(), "1.2", None);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"name": "client_event", "channel": "private-x", "event": "client-a",
                "data": "{\"n\":1}", "socket_id": "1.2"})
        );
        let unknown: WebhookEvent =
            serde_json::from_str(r#"{"name": "subscription_count", "channel": "c"}"#).unwrap();
        assert_eq!(unknown.name, WebhookKind::Other);
    }
}
