//! Subscribing, unsubscribing and signing in: signatures checked, presence members and the
//! per-user connection cap kept, member and occupancy webhooks emitted.

use super::*;

impl Hub {
    pub(super) fn subscription_error(
        &mut self,
        conn: ConnId,
        channel: &str,
        kind: &str,
        status: u16,
        message: &str,
    ) {
        let answers_with_pusher_error = self
            .conns
            .get(&conn)
            .is_some_and(|c| self.apps[c.app].has_defect(Defect::SubscriptionErrorAsPusherError));
        if answers_with_pusher_error {
            let data = json!({ "code": PusherCode::UNAUTHORIZED.0, "message": message });
            return self.send(conn, event_frame(ProtocolEvent::Error.name(), None, &data));
        }
        let data = json!({ "type": kind, "error": message, "status": status });
        self.send(
            conn,
            event_frame(
                ProtocolEvent::SubscriptionError.name(),
                Some(channel),
                &data,
            ),
        );
    }

    pub(super) fn subscribe(&mut self, conn: ConnId, frame: &Frame) {
        let Some(data) = self.data_object(conn, frame) else {
            return;
        };
        let Some(channel) = data
            .get("channel")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return self.send(
                conn,
                error_frame(
                    None,
                    "subscribe.missing_channel",
                    "pusher:subscribe needs a string `channel`",
                ),
            );
        };
        if !is_pusher_channel_name(&channel) {
            let message = format!(
                "channel name {channel:?} is invalid: 1 to {MAX_CHANNEL_NAME_LEN} characters of [A-Za-z0-9_-=@,.;]"
            );
            return self.subscription_error(conn, &channel, "InvalidChannel", 400, &message);
        }
        let c = &self.conns[&conn];
        let app = c.app;
        if c.subscriptions.contains_key(&channel) {
            // Already subscribed: confirm again, without member events.
            return self.subscribed(conn, app, &channel);
        }
        let most = self.apps[app].max_subscriptions_per_connection;
        if c.subscriptions.len() >= most {
            let message =
                format!("this connection is subscribed to {most} channels, the most it may be");
            return self.subscription_error(conn, &channel, "LimitReached", 403, &message);
        }
        let auth = data.get("auth").and_then(Value::as_str);
        let channel_data = data.get("channel_data").and_then(Value::as_str);
        let mut member = None;
        if is_protected(&channel) {
            let cfg = &self.apps[app];
            let verified = match auth {
                None => Err(format!("subscribing to {channel} needs `auth`")),
                Some(auth) => {
                    let data =
                        channel_data.filter(|_| ChannelType::of(&channel) == ChannelType::Presence);
                    let verify = |socket: &SocketId| {
                        signing::verify_channel(&cfg.key, &cfg.secret, socket, &channel, data, auth)
                    };
                    let mut verified = verify(&c.socket_id);
                    if verified.is_err()
                        && cfg.has_defect(Defect::AcceptOtherSocketSignature)
                        && let Some(ok) = self
                            .conns
                            .values()
                            .map(|o| verify(&o.socket_id))
                            .find(Result::is_ok)
                    {
                        verified = ok;
                    }
                    if verified.is_err() && cfg.has_defect(Defect::SkipSignatureCheck) {
                        verified = Ok(data.and_then(|d| signing::parse_channel_data(d).ok()));
                    }
                    verified
                        .map_err(|e| format!("invalid signature for {channel} [{}]: {e}", e.code()))
                }
            };
            match verified {
                Ok(m) => member = m,
                Err(message) => {
                    return self.subscription_error(conn, &channel, "AuthError", 401, &message);
                }
            }
        }
        if let Some(m) = &member {
            // Pusher's limits on presence data; checked before the member is stored or announced.
            let info_len = m.user_info.as_ref().map_or(0, |i| i.to_string().len());
            if m.user_id.len() > MAX_PRESENCE_USER_ID_LEN || info_len > MAX_PRESENCE_USER_INFO_BYTES
            {
                let message = format!(
                    "presence channel_data too large: user_id at most {MAX_PRESENCE_USER_ID_LEN} bytes, user_info at most {MAX_PRESENCE_USER_INFO_BYTES} bytes (got {} and {info_len})",
                    m.user_id.len()
                );
                return self.subscription_error(
                    conn,
                    &channel,
                    "InvalidChannelData",
                    400,
                    &message,
                );
            }
            let cfg = &self.apps[app];
            let present = self.channels.get(&(app, channel.clone()));
            let count = present.map_or(0, |ch| ch.members.len());
            let known = present.is_some_and(|ch| ch.members.contains_key(&m.user_id));
            if !known && count >= cfg.max_presence_members {
                let message = format!(
                    "presence channel {channel} already has the maximum of {} members",
                    cfg.max_presence_members
                );
                return self.subscription_error(conn, &channel, "LimitReached", 403, &message);
            }
        }
        // Verified identity counts towards its user's connection cap before it is stored.
        let verified_user = match &member {
            Some(m) => Some(m.user_id.clone()),
            None => inbox_owner(&channel),
        };
        if let Some(user) = verified_user
            && let Err(message) = self.claim_user(conn, &user)
        {
            return self.subscription_error(conn, &channel, "LimitReached", 403, &message);
        }
        let key = (app, channel.clone());
        let newly_occupied = !self.channels.contains_key(&key);
        let ch = self.channels.entry(key).or_default();
        ch.subscribers.insert(conn);
        let mut added = None;
        if let Some(m) = &member {
            if self.apps[app].has_defect(Defect::MemberEventsPerConnection) {
                added = Some(m.user_id.clone());
            }
            let entry = ch.members.entry(m.user_id.clone()).or_insert_with(|| {
                added = Some(m.user_id.clone());
                Member {
                    info: m.user_info.clone().unwrap_or(Value::Null),
                    connections: 0,
                }
            });
            entry.connections += 1;
        }
        self.conns
            .get_mut(&conn)
            .expect("checked above")
            .subscriptions
            .insert(channel.clone(), member.as_ref().map(|m| m.user_id.clone()));
        if newly_occupied {
            self.webhook(app, WebhookEvent::channel_occupied(&channel));
        }
        self.subscribed(conn, app, &channel);
        if let (Some(user_id), Some(m)) = (added, member) {
            let data = json!({ "user_id": user_id, "user_info": m.user_info });
            let text = event_frame(ProtocolEvent::MemberAdded.name(), Some(&channel), &data);
            self.broadcast(app, &channel, Some(conn), &text);
            self.webhook(app, WebhookEvent::member_added(&channel, &user_id));
        }
    }

    pub(super) fn subscribed(&mut self, conn: ConnId, app: usize, channel: &str) {
        let data = match self.channels.get(&(app, channel.to_owned())) {
            Some(ch) if ChannelType::of(channel) == ChannelType::Presence => {
                let ids: Vec<&String> = ch.members.keys().collect();
                let hash: Map<String, Value> = ch
                    .members
                    .iter()
                    .map(|(id, m)| (id.clone(), m.info.clone()))
                    .collect();
                json!({ "presence": { "ids": ids, "hash": hash, "count": ch.members.len() } })
            }
            _ => json!({}),
        };
        self.send(
            conn,
            event_frame(
                ProtocolEvent::SubscriptionSucceeded.name(),
                Some(channel),
                &data,
            ),
        );
    }

    pub(super) fn unsubscribe_frame(&mut self, conn: ConnId, frame: &Frame) {
        let Some(data) = self.data_object(conn, frame) else {
            return;
        };
        match data.get("channel").and_then(Value::as_str) {
            Some(channel) => self.unsubscribe(conn, channel),
            None => self.send(
                conn,
                error_frame(
                    None,
                    "unsubscribe.missing_channel",
                    "pusher:unsubscribe needs a string `channel`",
                ),
            ),
        }
    }

    pub(super) fn unsubscribe(&mut self, conn: ConnId, channel: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let app = c.app;
        if self.apps[app].has_defect(Defect::DeliverAfterUnsubscribe) {
            return;
        }
        let Some(user) = c.subscriptions.remove(channel) else {
            return;
        };
        let key = (app, channel.to_owned());
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.subscribers.remove(&conn);
        let mut removed = None;
        if let Some(user_id) = user
            && let Some(m) = ch.members.get_mut(&user_id)
        {
            m.connections -= 1;
            if m.connections == 0 {
                ch.members.remove(&user_id);
                removed = Some(user_id);
            }
        }
        let vacated = ch.subscribers.is_empty();
        if vacated {
            self.channels.remove(&key);
        }
        if let Some(user_id) = removed {
            let text = event_frame(
                ProtocolEvent::MemberRemoved.name(),
                Some(channel),
                &json!({ "user_id": user_id }),
            );
            self.broadcast(app, channel, None, &text);
            self.webhook(app, WebhookEvent::member_removed(channel, &user_id));
        }
        if vacated {
            self.webhook(app, WebhookEvent::channel_vacated(channel));
        }
    }

    pub(super) fn signin(&mut self, conn: ConnId, frame: &Frame) {
        let Some(data) = self.data_object(conn, frame) else {
            return;
        };
        let c = &self.conns[&conn];
        let cfg = &self.apps[c.app];
        let (Some(auth), Some(user_data)) = (
            data.get("auth").and_then(Value::as_str),
            data.get("user_data").and_then(Value::as_str),
        ) else {
            return self.send(
                conn,
                error_frame(
                    Some(PusherCode::UNAUTHORIZED),
                    "signin.malformed",
                    "pusher:signin needs string `auth` and `user_data`",
                ),
            );
        };
        match signing::verify_user(&cfg.key, &cfg.secret, &c.socket_id, user_data, auth) {
            Ok(user) => {
                if let Err(message) = self.claim_user(conn, &user) {
                    return self.send(
                        conn,
                        error_frame(
                            Some(PusherCode::OVER_CAPACITY),
                            "signin.too_many_connections",
                            &format!("sign-in refused: {message}"),
                        ),
                    );
                }
                let text = event_frame(
                    ProtocolEvent::SigninSuccess.name(),
                    None,
                    &json!({ "user_data": user_data }),
                );
                self.send(conn, text);
            }
            Err(e) => self.send(
                conn,
                error_frame(
                    Some(PusherCode::UNAUTHORIZED),
                    e.code(),
                    &format!("sign-in refused: {e}"),
                ),
            ),
        }
    }
}
