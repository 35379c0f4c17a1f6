//! The cases: each has a stable id (`area.name`), a one-line title, the requirement ids of
//! `spec/` it checks, a level and the target features it needs. Ids never change meaning; a case
//! whose check changes gets a new id.

mod calls;
mod cluster;
mod hostile;
mod http;
mod realtime;
mod trusted;
mod webrtc;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::{Value, json};

use super::target::Feature;
use super::verdict::Level;
use super::wire::{Conn, Ctx, Step, ensure, error_data};

/// The areas of DESIGN.md's conformance kit, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    Connection,
    Authorization,
    ClientEvents,
    Presence,
    Limits,
    HttpApi,
    Webhooks,
    Envelope,
    CallFlow,
    Webrtc,
    Hostile,
    Cluster,
    Trusted,
}

impl Area {
    pub fn name(self) -> &'static str {
        match self {
            Area::Connection => "connection",
            Area::Authorization => "authorization",
            Area::ClientEvents => "client_events",
            Area::Presence => "presence",
            Area::Limits => "limits",
            Area::HttpApi => "http_api",
            Area::Webhooks => "webhooks",
            Area::Envelope => "envelope",
            Area::CallFlow => "call_flow",
            Area::Webrtc => "webrtc",
            Area::Hostile => "hostile",
            Area::Cluster => "cluster",
            Area::Trusted => "trusted",
        }
    }
}

/// What a case is, without how it runs.
#[derive(Debug, Clone, Serialize)]
pub struct CaseInfo {
    pub id: &'static str,
    pub area: Area,
    pub level: Level,
    pub title: &'static str,
    pub requirements: &'static [&'static str],
    pub needs: &'static [Feature],
}

/// A case's result: `Some(note)` for an observation worth reporting.
pub type CaseFuture = Pin<Box<dyn Future<Output = Step<Option<String>>> + Send>>;

pub struct Case {
    pub info: CaseInfo,
    pub run: fn(Ctx) -> CaseFuture,
}

macro_rules! case {
    ($id:literal, $area:ident, $level:ident, [$($req:literal),*], [$($feat:ident),*], $title:literal, $f:path) => {
        $crate::conform::cases::Case {
            info: $crate::conform::cases::CaseInfo {
                id: $id,
                area: $crate::conform::cases::Area::$area,
                level: $crate::conform::verdict::Level::$level,
                title: $title,
                requirements: &[$($req),*],
                needs: &[$($crate::conform::target::Feature::$feat),*],
            },
            run: |ctx| Box::pin($f(ctx)),
        }
    };
}
pub(crate) use case;

/// Every case, in run order.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(realtime::cases());
    cases.extend(http::cases());
    cases.extend(calls::cases());
    cases.extend(webrtc::cases());
    cases.extend(hostile::cases());
    cases.extend(cluster::cases());
    cases.extend(trusted::cases());
    cases
}

/// Requirements that are not checked over the wire, with the reason; the coverage test accepts
/// a MUST requirement that has a case or an entry here.
pub fn not_over_the_wire() -> Value {
    serde_json::from_str(include_str!("../../../conformance/not-over-the-wire.json"))
        .expect("conformance/not-over-the-wire.json is valid JSON")
}

/// Two connections subscribed to the same fresh private channel.
pub(super) async fn private_pair(ctx: &Ctx, tag: &str) -> Step<(Conn, Conn, String)> {
    let channel = ctx.unique("private-", tag);
    let mut a = Conn::connect(ctx, "a").await?;
    let mut b = Conn::connect(ctx, "b").await?;
    a.subscribe(&channel, None).await?;
    b.subscribe(&channel, None).await?;
    Ok((a, b, channel))
}

/// Checks the shape every `pusher:error` must have ([TRN-011]) and returns its data.
pub(super) fn check_error_shape(frame: &Value) -> Step<Value> {
    let data = error_data(frame).unwrap_or(Value::Null);
    ensure(
        (data["code"].is_u64() || data["code"].is_null())
            && data["message"]
                .as_str()
                .is_some_and(|m| !m.trim().is_empty()),
        "pusher:error carries data with a numeric code (or null) and a message",
        r#"{"code": <number|null>, "message": "<what went wrong>"}"#,
        frame.to_string(),
    )?;
    Ok(data)
}

/// A small client-event payload with a marker to find it again.
pub(super) fn marker(n: u64) -> Value {
    json!({ "conform": n, "text": "marker" })
}
