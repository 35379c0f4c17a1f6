//! JSON Schema (2020-12) of every call event, generated from the Rust types the parser uses.
//!
//! One file per event (`call.offer.json`, ...), `sealed.json` for the sealed form of sensitive
//! events, and `index.json` listing them with their wire names. The files under `schemas/` are
//! written by `domvia-calls schemas write` and compared by `schemas check`; they are never edited by
//! hand. Invariant: [`files`] is deterministic (same crate version, same bytes), so drift means the
//! types changed.
//!
//! The schemas describe the receiving contract: what a receiver accepts. Members not listed are
//! allowed and ignored. Rules that need context (the channel, the server-added `user_id`, earlier
//! `seq` numbers) or relate a header member to a body member (`caller` = `user_id`) cannot be
//! written in JSON Schema and are enforced by the parser alone; the vectors mark which is which.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde_json::{Value, json};

use crate::envelope::SealedWire;
use crate::event::{
    AnswerBody, EndedBody, EventKind, IceCandidateBody, MediaStateBody, NoBody, OfferBody, Origin,
    StartedBody, WireEvent,
};
use crate::limits::PROTOCOL_VERSION;

/// File name of the index.
pub const INDEX_FILE: &str = "index.json";
/// File name of the sealed-event schema.
pub const SEALED_FILE: &str = "sealed.json";

fn generate<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
}

fn describe(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Started => {
            "A call begins: sent on the call channel and, by the trusted server, to each callee's inbox."
        }
        EventKind::Ringing => "A callee device is alerting.",
        EventKind::Accepted => "This party answers the call.",
        EventKind::Offer => "An SDP offer to one party (late offer: only after call.accepted).",
        EventKind::Answer => "The SDP answer to an offer.",
        EventKind::IceCandidate => "A batch of trickled ICE candidates for one party.",
        EventKind::MediaState => "The sender's microphone, camera, screen-share and hold state.",
        EventKind::Ended => "The call, or this party's part in it, ended.",
    }
}

/// The schema of one event's clear wire form.
pub fn event_schema(kind: EventKind) -> Value {
    let schema = match kind {
        EventKind::Started => generate::<WireEvent<StartedBody>>(),
        EventKind::Ringing | EventKind::Accepted => generate::<WireEvent<NoBody>>(),
        EventKind::Offer => generate::<WireEvent<OfferBody>>(),
        EventKind::Answer => generate::<WireEvent<AnswerBody>>(),
        EventKind::IceCandidate => generate::<WireEvent<IceCandidateBody>>(),
        EventKind::MediaState => generate::<WireEvent<MediaStateBody>>(),
        EventKind::Ended => generate::<WireEvent<EndedBody>>(),
    };
    let mut value = schema.to_value();
    let obj = value.as_object_mut().expect("root schema is an object");
    obj.insert("title".into(), json!(kind.name()));
    obj.insert("description".into(), json!(describe(kind)));
    if !kind.may_address() {
        // The parser refuses `to_party_id` where the protocol says it is absent; say so here too.
        obj.entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("properties is an object")
            .insert("to_party_id".into(), json!(false));
    }
    value
}

/// The schema of a sealed sensitive event.
pub fn sealed_schema() -> Value {
    let mut value = generate::<SealedWire>().to_value();
    let obj = value.as_object_mut().expect("root schema is an object");
    obj.insert("title".into(), json!("sealed call event"));
    obj.insert(
        "description".into(),
        json!("A call.offer, call.answer, call.ice_candidate or call.media_state of a strong-privacy call, its body sealed with XChaCha20-Poly1305."),
    );
    value
}

/// File name of an event's schema.
pub fn file_name(kind: EventKind) -> String {
    format!("{}.json", kind.name())
}

/// The index: protocol version, and per event its schema file and wire names.
pub fn index() -> Value {
    let events: Vec<Value> = EventKind::ALL
        .iter()
        .map(|&k| {
            json!({
                "event": k.name(),
                "schema": file_name(k),
                "client_event": k.wire_name(Origin::Client),
                "server_event": k.wire_name(Origin::Server),
                "sealed_in_strong_privacy": k.is_sensitive(),
                // Clients send every call event as `client-call.*` and receive it; see
                // spec/11-versioning.md for what the direction means to compatibility.
                "direction": "both",
                "to_party_id": if k.is_directed() { "required" } else if k.may_address() { "optional" } else { "absent" },
            })
        })
        .collect();
    json!({
        "protocol_version": PROTOCOL_VERSION,
        "json_schema_dialect": "https://json-schema.org/draft/2020-12/schema",
        "events": events,
        "sealed_schema": SEALED_FILE,
    })
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a JSON value serializes");
    s.push('\n');
    s
}

/// Every schema file: `(file name, contents)`, index first.
pub fn files() -> Vec<(String, String)> {
    let mut out = vec![(INDEX_FILE.to_owned(), pretty(&index()))];
    for kind in EventKind::ALL {
        out.push((file_name(kind), pretty(&event_schema(kind))));
    }
    out.push((SEALED_FILE.to_owned(), pretty(&sealed_schema())));
    out
}

/// How the committed schemas differ from the generated ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// Generated but not on disk.
    Missing(String),
    /// On disk with other contents.
    Changed(String),
    /// On disk but no longer generated.
    Extra(String),
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Missing(n) => write!(f, "{n}: missing (run `domvia-calls schemas write`)"),
            Drift::Changed(n) => write!(
                f,
                "{n}: differs from the generated schema (run `domvia-calls schemas write`)"
            ),
            Drift::Extra(n) => write!(f, "{n}: not generated any more; delete it"),
        }
    }
}

/// Compares generated files with what is on disk. `existing` lists the `.json` file names present;
/// `read` returns a file's contents.
pub fn drift(existing: &[String], read: impl Fn(&str) -> Option<String>) -> Vec<Drift> {
    let generated = files();
    let mut out = Vec::new();
    for (name, contents) in &generated {
        match read(name) {
            None => out.push(Drift::Missing(name.clone())),
            Some(on_disk) if on_disk != *contents => out.push(Drift::Changed(name.clone())),
            Some(_) => {}
        }
    }
    for name in existing {
        if !generated.iter().any(|(g, _)| g == name) {
            out.push(Drift::Extra(name.clone()));
        }
    }
    out
}
