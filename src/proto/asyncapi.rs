//! An AsyncAPI 3.0 description of the protocol, generated from the same types as `schemas/`:
//! the realtime server, the call and inbox channels, one message per call event (plus the sealed
//! form), and the send/receive operations of a client. Written to `spec/asyncapi.json` by
//! `domvia-calls asyncapi write`; `asyncapi check` fails on drift.
//!
//! AsyncAPI payloads are JSON Schema draft-07 supersets and resolve `$ref` against the whole
//! document, so the event schemas are embedded with their local `$defs` inlined and `$schema`
//! dropped; every keyword they use (`const`, `if`/`then`/`else`, `anyOf`, boolean schemas) exists
//! in draft-07.

use serde_json::{Map, Value, json};

use crate::event::{EventKind, Origin};
use crate::limits::PROTOCOL_VERSION;
use crate::schema;

/// Where the document lives in the repository.
pub const FILE: &str = "spec/asyncapi.json";

fn inline_refs(node: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    match node {
        Value::Object(obj) => {
            if let Some(target) = obj
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|name| defs.get(name))
                && depth < 32
            {
                return inline_refs(target, defs, depth + 1);
            }
            Value::Object(
                obj.iter()
                    .filter(|(k, _)| *k != "$defs" && *k != "$schema")
                    .map(|(k, v)| (k.clone(), inline_refs(v, defs, depth)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| inline_refs(v, defs, depth)).collect())
        }
        other => other.clone(),
    }
}

fn self_contained(schema: Value) -> Value {
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    inline_refs(&schema, &defs, 0)
}

/// `call.ice_candidate` → `callIceCandidate`.
fn message_id(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '.' || c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The document.
pub fn document() -> Value {
    let mut messages = Map::new();
    let mut call_channel_messages = Map::new();
    let mut operations = Map::new();
    for kind in EventKind::ALL {
        let id = message_id(kind.name());
        let schema = self_contained(schema::event_schema(kind));
        let summary = schema["description"].clone();
        messages.insert(
            id.clone(),
            json!({
                "name": kind.name(),
                "title": kind.name(),
                "summary": summary,
                "description": format!(
                    "Sent by clients as `{}` (a Pusher client event) and by the trusted server as `{}` through the HTTP API. `data` is this object, or a string holding it.",
                    kind.wire_name(Origin::Client),
                    kind.wire_name(Origin::Server)
                ),
                "contentType": "application/json",
                "payload": schema,
            }),
        );
        call_channel_messages.insert(
            id.clone(),
            json!({ "$ref": format!("#/components/messages/{id}") }),
        );
        let capital = format!("{}{}", &id[..1].to_uppercase(), &id[1..]);
        for (action, verb) in [("send", "send"), ("receive", "receive")] {
            operations.insert(
                format!("{verb}{capital}"),
                json!({
                    "action": action,
                    "channel": { "$ref": "#/channels/callChannel" },
                    "messages": [{ "$ref": format!("#/channels/callChannel/messages/{id}") }],
                }),
            );
        }
    }
    messages.insert(
        "sealedEvent".into(),
        json!({
            "name": "sealed",
            "title": "sealed call event",
            "summary": "A sensitive event of a strong-privacy call with its body sealed (XChaCha20-Poly1305).",
            "contentType": "application/json",
            "payload": self_contained(schema::sealed_schema()),
        }),
    );
    call_channel_messages.insert(
        "sealedEvent".into(),
        json!({ "$ref": "#/components/messages/sealedEvent" }),
    );
    for (verb, action) in [
        ("sendSealedEvent", "send"),
        ("receiveSealedEvent", "receive"),
    ] {
        operations.insert(
            verb.into(),
            json!({
                "action": action,
                "channel": { "$ref": "#/channels/callChannel" },
                "messages": [{ "$ref": "#/channels/callChannel/messages/sealedEvent" }],
            }),
        );
    }
    operations.insert(
        "receiveInvitation".into(),
        json!({
            "action": "receive",
            "channel": { "$ref": "#/channels/inboxChannel" },
            "messages": [{ "$ref": "#/channels/inboxChannel/messages/callStarted" }],
        }),
    );
    let id_param = |what: &str| json!({ "description": format!("{what}: 1 to 64 characters of [A-Za-z0-9_-=@,;].") });
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "DomVia Realtime Calls",
            "version": format!("{PROTOCOL_VERSION}.0.0"),
            "description": "Call signaling over a Pusher-compatible realtime service (Pusher protocol 7). Calls use protected per-call channels to coordinate call state and WebRTC negotiation; media travels over WebRTC. The normative text is spec/ in the domvia-calls repository.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "realtime": {
                "host": "{host}",
                "protocol": "ws",
                "pathname": "/app/{key}",
                "description": "Any Pusher-compatible server; connect with ?protocol=7. Subscriptions to call channels are signed by the app's trusted server.",
                "variables": {
                    "host": { "default": "127.0.0.1:6001", "description": "host and port of the realtime server" },
                    "key": { "default": "domvia-key", "description": "the app key" },
                },
            },
        },
        "channels": {
            "callChannel": {
                "address": "{kind}-call.{scope}.{scopeId}.{callId}",
                "title": "Call channel",
                "description": "One protected channel per call. Client events travel as client-call.*, server events as call.*.",
                "parameters": {
                    "kind": { "enum": ["private", "presence"], "description": "presence when verified sender identity and membership matter" },
                    "scope": { "description": "[a-z][a-z0-9_]{0,31}; well-known: room, trip, support, delivery." },
                    "scopeId": id_param("the scope instance"),
                    "callId": id_param("the call"),
                },
                "messages": call_channel_messages,
            },
            "inboxChannel": {
                "address": "private-call-inbox.{userId}",
                "title": "Invitation inbox",
                "description": "Each user's own private channel; the trusted server delivers call.started here.",
                "parameters": { "userId": id_param("the user") },
                "messages": { "callStarted": { "$ref": "#/components/messages/callStarted" } },
            },
        },
        "operations": operations,
        "components": { "messages": messages },
    })
}

/// The document as written to [`FILE`]: pretty JSON with a final newline.
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).expect("serializable");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_local_refs_remain_and_every_event_has_a_message() {
        let text = text();
        assert!(
            !text.contains("#/$defs/"),
            "payloads must be self-contained"
        );
        let doc = document();
        for kind in EventKind::ALL {
            let id = message_id(kind.name());
            assert_eq!(doc["components"]["messages"][&id]["name"], kind.name());
            assert!(
                doc["operations"][format!("send{}{}", &id[..1].to_uppercase(), &id[1..])]
                    .is_object()
            );
        }
        assert_eq!(message_id("call.ice_candidate"), "callIceCandidate");
    }
}
