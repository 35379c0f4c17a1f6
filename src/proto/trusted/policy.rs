//! Channel authorization (`spec/07-trusted-server.md` §7.1): who may subscribe to which call or
//! inbox channel, and the signed answer for those who may.

use serde::Serialize;
use serde_json::json;

use crate::channel::{ChannelKind, ChannelName, ChannelNameError};
use crate::envelope::ChannelKey;
use crate::event::Privacy;
use crate::ids::SocketId;
use crate::signing::{self, Secret};
use crate::trusted::{CallRecord, CallState, Directory, User};

/// The realtime app whose subscriptions the trusted server signs.
#[derive(Debug, Clone)]
pub struct SigningApp {
    pub key: String,
    pub secret: Secret,
}

/// What `POST /realtime/auth` returns on success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthResponse {
    pub auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
    /// The strong-privacy channel key, for members of strong-privacy calls only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
}

/// Why a subscription is refused. Every refusal is HTTP 403 with the code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    #[error("sign in first: missing or unknown bearer token")]
    NotSignedIn,
    #[error("socket_id {0:?} is not digits.digits")]
    BadSocketId(String),
    #[error("{name} is not a call or inbox channel: {reason}")]
    MalformedChannel {
        name: String,
        reason: ChannelNameError,
    },
    #[error("{channel} is another user's inbox")]
    NotYourInbox { channel: String },
    #[error("you are not a member of {scope}.{scope_id}")]
    NotAMember { scope: String, scope_id: String },
    #[error("no call {call_id} exists")]
    UnknownCall { call_id: String },
    #[error("call {call_id} uses channel {expected}, not {requested}")]
    WrongChannel {
        call_id: String,
        expected: String,
        requested: String,
    },
    #[error("call {call_id} has ended")]
    CallEnded { call_id: String },
}

impl Denial {
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NotSignedIn => "auth.not_signed_in",
            Denial::BadSocketId(_) => "auth.bad_socket_id",
            Denial::MalformedChannel { .. } => "auth.malformed_channel",
            Denial::NotYourInbox { .. } => "auth.not_your_inbox",
            Denial::NotAMember { .. } => "auth.not_a_member",
            Denial::UnknownCall { .. } => "auth.unknown_call",
            Denial::WrongChannel { .. } => "auth.wrong_channel",
            Denial::CallEnded { .. } => "auth.call_ended",
        }
    }
}

/// Decides a subscription request. `call` is the stored call whose id the channel names, if any.
pub fn authorize(
    app: &SigningApp,
    dir: &Directory,
    master_key: &[u8],
    user: Option<&User>,
    socket_id: &str,
    channel_name: &str,
    call: Option<&CallRecord>,
) -> Result<AuthResponse, Denial> {
    let user = user.ok_or(Denial::NotSignedIn)?;
    let socket =
        SocketId::parse(socket_id).map_err(|_| Denial::BadSocketId(socket_id.to_owned()))?;
    let channel = ChannelName::parse(channel_name).map_err(|reason| Denial::MalformedChannel {
        name: channel_name.to_owned(),
        reason,
    })?;
    let call_channel = match &channel {
        ChannelName::Inbox(inbox) => {
            if inbox.user_id() != &user.id {
                return Err(Denial::NotYourInbox {
                    channel: channel_name.to_owned(),
                });
            }
            let auth = signing::sign_channel(&app.key, &app.secret, &socket, channel_name, None);
            return Ok(AuthResponse {
                auth,
                channel_data: None,
                shared_secret: None,
            });
        }
        ChannelName::Call(c) => c,
    };
    if !dir.is_member(&user.id, call_channel.scope(), call_channel.scope_id()) {
        return Err(Denial::NotAMember {
            scope: call_channel.scope().to_string(),
            scope_id: call_channel.scope_id().to_string(),
        });
    }
    let call_id = call_channel.call_id().to_string();
    // A call of another scope is reported as unknown: its existence is none of this user's business.
    let call = call
        .filter(|c| {
            c.channel.scope() == call_channel.scope()
                && c.channel.scope_id() == call_channel.scope_id()
        })
        .ok_or_else(|| Denial::UnknownCall {
            call_id: call_id.clone(),
        })?;
    // Not invited: the same answer as for a call that does not exist ([SRV-005]), so a scope
    // member cannot probe which calls the others are having.
    if !call.may_join(dir, &user.id) {
        return Err(Denial::UnknownCall { call_id });
    }
    if &call.channel != call_channel {
        return Err(Denial::WrongChannel {
            call_id,
            expected: call.channel.to_string(),
            requested: channel_name.to_owned(),
        });
    }
    if call.state == CallState::Ended {
        return Err(Denial::CallEnded { call_id });
    }
    let channel_data = (call_channel.kind() == ChannelKind::Presence).then(|| {
        json!({ "user_id": user.id.as_str(), "user_info": { "name": user.name } }).to_string()
    });
    let auth = signing::sign_channel(
        &app.key,
        &app.secret,
        &socket,
        channel_name,
        channel_data.as_deref(),
    );
    let shared_secret = (call.privacy == Privacy::Strong)
        .then(|| ChannelKey::derive(master_key, call_channel).shared_secret());
    Ok(AuthResponse {
        auth,
        channel_data,
        shared_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CallId, UserId};
    use crate::trusted::{CallRequest, plan_call};
    use serde_json::json;

    fn app() -> SigningApp {
        SigningApp {
            key: "k".into(),
            secret: Secret::new("s"),
        }
    }

    fn call(privacy: &str, kind: &str) -> CallRecord {
        let req: CallRequest = serde_json::from_value(json!({
            "scope": "room", "scope_id": "chat-room-42", "callees": ["bob"],
            "privacy": privacy, "kind": kind
        }))
        .unwrap();
        let dir = Directory::demo();
        plan_call(
            &dir,
            &UserId::parse("alice").unwrap(),
            req,
            CallId::parse("call-1").unwrap(),
            0,
        )
        .unwrap()
        .record
    }

    fn ask(
        user: Option<&str>,
        channel: &str,
        call: Option<&CallRecord>,
    ) -> Result<AuthResponse, Denial> {
        let dir = Directory::demo();
        let user = user.and_then(|u| dir.user_by_token(&format!("{u}-token")).cloned());
        authorize(&app(), &dir, b"master", user.as_ref(), "1.2", channel, call)
    }

    const CH: &str = "presence-call.room.chat-room-42.call-1";

    #[test]
    fn members_of_the_call_get_a_signed_answer() {
        let c = call("standard", "presence");
        let ok = ask(Some("bob"), CH, Some(&c)).unwrap();
        let data = ok.channel_data.clone().unwrap();
        assert!(data.contains("\"user_id\":\"bob\""));
        signing::verify_channel(
            "k",
            &Secret::new("s"),
            &SocketId::parse("1.2").unwrap(),
            CH,
            Some(&data),
            &ok.auth,
        )
        .unwrap();
        assert!(ok.shared_secret.is_none());
        assert!(ask(Some("alice"), CH, Some(&c)).is_ok());
    }

    #[test]
    fn strong_privacy_members_get_the_channel_key() {
        let c = call("strong", "private");
        let ch = "private-call.room.chat-room-42.call-1";
        let ok = ask(Some("bob"), ch, Some(&c)).unwrap();
        let expected = ChannelKey::derive(b"master", &c.channel).shared_secret();
        assert_eq!(ok.shared_secret, Some(expected));
        assert!(ok.channel_data.is_none());
    }

    #[test]
    fn every_refusal_has_its_code() {
        let c = call("standard", "presence");
        let mut ended = c.clone();
        ended.state = CallState::Ended;
        let cases: Vec<(Option<&str>, &str, Option<&CallRecord>, &str)> = vec![
            (None, CH, Some(&c), "auth.not_signed_in"),
            (
                Some("bob"),
                "presence-call.room.chat-room-42",
                Some(&c),
                "auth.malformed_channel",
            ),
            (
                Some("bob"),
                "private-chat-room",
                None,
                "auth.malformed_channel",
            ),
            (
                Some("bob"),
                "private-call-inbox.alice",
                None,
                "auth.not_your_inbox",
            ),
            (Some("dave"), CH, Some(&c), "auth.not_a_member"),
            (
                Some("bob"),
                "presence-call.trip.trip-7.call-1",
                Some(&c),
                "auth.not_a_member",
            ),
            (Some("bob"), CH, None, "auth.unknown_call"),
            (
                Some("bob"),
                "private-call.room.chat-room-42.call-1",
                Some(&c),
                "auth.wrong_channel",
            ),
            (Some("carol"), CH, Some(&c), "auth.unknown_call"),
            (Some("bob"), CH, Some(&ended), "auth.call_ended"),
        ];
        for (user, channel, record, code) in cases {
            assert_eq!(
                ask(user, channel, record).unwrap_err().code(),
                code,
                "{user:?} {channel}"
            );
        }
        let dir = Directory::demo();
        let bob = dir.user_by_token("bob-token").cloned();
        let err = authorize(&app(), &dir, b"m", bob.as_ref(), "abc", CH, Some(&c)).unwrap_err();
        assert_eq!(err.code(), "auth.bad_socket_id");
    }

    #[test]
    fn an_uninvited_member_cannot_tell_a_real_call_from_a_made_up_one() {
        let real = crate::trusted::plan_call(
            &Directory::demo(),
            &UserId::parse("alice").unwrap(),
            serde_json::from_value(serde_json::json!({"scope": "room", "scope_id": "chat-room-42", "callees": ["bob"]})).unwrap(),
            crate::ids::CallId::parse("call-1").unwrap(),
            0,
        )
        .unwrap()
        .record;
        let for_real = ask(Some("carol"), CH, Some(&real)).unwrap_err();
        let made_up = ask(Some("carol"), CH, None).unwrap_err();
        assert_eq!(for_real, made_up, "same code and same message");
    }

    #[test]
    fn own_inbox_is_signed_without_channel_data() {
        let ok = ask(Some("bob"), "private-call-inbox.bob", None).unwrap();
        assert!(ok.channel_data.is_none() && ok.shared_secret.is_none());
    }
}
