//! Client events: who may send them, on which channels, how fast and how large, and their
//! relay to the other subscribers and to the webhook.

use super::*;

impl Hub {
    pub(super) fn client_event(&mut self, conn: ConnId, frame: Frame) {
        let c = &self.conns[&conn];
        let app = c.app;
        let cfg = &self.apps[app];
        // Every client event attempt costs a token, before any other work on it.
        if c.limiter.check().is_err() && !cfg.has_defect(Defect::IgnoreRateLimit) {
            let message = format!(
                "client event {} rejected: over the limit of {} per second (burst {})",
                frame.event, cfg.client_events_per_second, cfg.client_event_burst
            );
            return self.send(
                conn,
                error_frame(
                    Some(PusherCode::CLIENT_EVENT_RATE_LIMIT),
                    "client_event.rate_limited",
                    &message,
                ),
            );
        }
        let refuse = |kind: &str, message: String| {
            error_frame(Some(PusherCode::UNAUTHORIZED), kind, &message)
        };
        if !cfg.client_events {
            let text = refuse(
                "client_event.disabled",
                format!("client events are disabled for app {}", cfg.id),
            );
            return self.send(conn, text);
        }
        let Some(channel) = frame.channel.clone() else {
            let text = refuse(
                "client_event.missing_channel",
                format!("client event {} has no channel", frame.event),
            );
            return self.send(conn, text);
        };
        if !is_protected(&channel) && !cfg.has_defect(Defect::RelayOnPublicChannels) {
            let text = refuse(
                "client_event.public_channel",
                format!(
                    "client events are only allowed on private and presence channels, not {channel}"
                ),
            );
            return self.send(conn, text);
        }
        let Some(mut user) = c.subscriptions.get(&channel).cloned() else {
            let text = refuse(
                "client_event.not_subscribed",
                format!("not subscribed to {channel}"),
            );
            return self.send(conn, text);
        };
        let Some(data) = frame.data else {
            let text = error_frame(
                None,
                "client_event.missing_data",
                &format!("client event {} has no data", frame.event),
            );
            return self.send(conn, text);
        };
        let socket_id = c.socket_id.to_string();
        let mut relayed_data = data.clone();
        if cfg.has_defect(Defect::ReserializePayload)
            && let FrameData::Json(raw) = &data
            && let Ok(v) = serde_json::from_str::<Value>(raw.get())
            && let Ok(pretty) = serde_json::to_string_pretty(&v)
            && let Ok(raw) = serde_json::value::RawValue::from_string(pretty)
        {
            relayed_data = FrameData::Json(raw);
        }
        if cfg.has_defect(Defect::DropPresenceUserId) {
            user = None;
        }
        let echo = cfg.has_defect(Defect::EchoToSender);
        let relayed = Frame {
            event: frame.event.clone(),
            channel: Some(channel.clone()),
            data: Some(relayed_data),
            user_id: user.clone(),
        };
        self.broadcast(app, &channel, (!echo).then_some(conn), &relayed.to_json());
        let data_text = match &data {
            FrameData::Text(s) => s.clone(),
            FrameData::Json(raw) => raw.get().to_owned(),
        };
        let event = WebhookEvent::client_event(&channel, &frame.event, data_text, &socket_id, user);
        self.webhook(app, event);
    }
}
