//! Posting (with idempotency keys, and the refusals a post can get) and
//! typing indicators.

use super::*;

impl Session {
    pub(super) async fn post(
        &mut self,
        id: Option<u32>,
        room: &str,
        text: String,
        extra: NewPost,
        key: Option<String>,
    ) -> Result<Option<Bytes>, Refusal> {
        let room = self.joined(room)?.room.clone();
        if !self.allowed_in(&room, Action::Post) {
            return Err(forbidden(room.name(), Action::Post));
        }
        self.check_text(&text)?;
        if key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
        {
            return Err(Refusal::new(
                ErrorCode::InvalidField,
                format!("key must be 1 to {MAX_KEY_LEN} bytes"),
            ));
        }
        let user = self.user()?.clone();
        let thread = self.handler(room.name())?.check_post(self, &room, &extra)?;
        let checked = self
            .check_moderation(&room, &user.id, true, thread)
            .and_then(|()| self.take_post_token(&user.id));
        if let Err(refusal) = checked {
            // A retry of a post that went through (slow mode or the rate
            // limit would now refuse it, or a mute came since): its ack,
            // not a refusal.
            if let Some(key) = key.as_deref() {
                if self
                    .hub
                    .ack_known(&room, &user, key, &self.out, id)
                    .await
                    .map_err(Refusal::from)?
                {
                    return Ok(None);
                }
            }
            return Err(refusal);
        }
        let posted_text = text.clone();
        let body = Body::Message {
            text,
            title: extra.title,
            thread: extra.thread,
            reply_to: extra.reply_to,
            quote: extra.quote,
        };
        self.send_post_keyed(id, &room, &user, body, key.as_deref())
            .await?;
        room.record_post(&user.id);
        self.handler(room.name())?.posted(
            self,
            &kind::Posted {
                room: &room,
                text: &posted_text,
                thread,
                key: key.as_deref(),
            },
        );
        // The ack is sent by the store's writer once the message is durable.
        Ok(None)
    }

    /// `invalid_field` for an empty text, `message_too_long` past the limit.
    pub(crate) fn check_text(&self, text: &str) -> Result<(), Refusal> {
        let max = self.hub.config.max_message_len;
        if text.trim().is_empty() {
            return Err(Refusal::new(ErrorCode::InvalidField, "text is empty"));
        }
        if text.len() > max {
            return Err(Refusal::new(
                ErrorCode::MessageTooLong,
                format!("text is {} bytes, the limit is {max}", text.len()),
            ));
        }
        Ok(())
    }

    /// Takes a token from the user's post bucket, or `rate_limited`.
    pub(crate) fn take_post_token(&self, user: &str) -> Result<(), Refusal> {
        self.hub.rate_limit(user).map_err(|wait| {
            let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            Refusal {
                code: ErrorCode::RateLimited,
                message: format!("too many messages, retry in {ms} ms"),
                retry_after_ms: Some(ms),
            }
        })
    }

    /// Posts `body` as the user's event, acked to this connection once
    /// durable; a bus failure says when to retry.
    pub(crate) async fn send_post(
        &self,
        id: Option<u32>,
        room: &Arc<Room>,
        user: &UserInfo,
        body: Body,
    ) -> Result<(), Refusal> {
        self.send_post_keyed(id, room, user, body, None).await
    }

    /// [`Session::send_post`] with the client's idempotency key.
    pub(crate) async fn send_post_keyed(
        &self,
        id: Option<u32>,
        room: &Arc<Room>,
        user: &UserInfo,
        body: Body,
        key: Option<&str>,
    ) -> Result<(), Refusal> {
        let posted = self
            .hub
            .post_keyed(room, user, Some((&self.out, id)), body, key)
            .await;
        if let Err(err) = posted {
            return Err(self.post_refusal(err));
        }
        Ok(())
    }

    /// The refusal of a post that was not ordered.
    pub(crate) fn post_refusal(&self, err: HubError) -> Refusal {
        let retry_after_ms = self
            .hub
            .sequencer()
            .retry_after(&err)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
        Refusal {
            retry_after_ms,
            ..Refusal::from(err)
        }
    }

    pub(super) fn typing(&mut self, room: &str) -> Result<(), Refusal> {
        let user = self.user()?.clone();
        let conn = self.conn();
        let joined_room = self.joined(room)?.room.clone();
        let name = joined_room.name().as_str().to_owned();
        if !self.allowed_in(&joined_room, Action::Post) {
            return Err(forbidden(joined_room.name(), Action::Post));
        }
        self.check_moderation(&joined_room, &user.id, false, None)?;
        let joined = self.joined(room)?;
        let now = Instant::now();
        if joined
            .last_typing
            .is_some_and(|last| now.duration_since(last) < TYPING_INTERVAL)
        {
            return Ok(());
        }
        joined.last_typing = Some(now);
        let frame = protocol::typing(&Typing { room: name, user });
        joined.room.broadcast(&frame, conn);
        Ok(())
    }
}
