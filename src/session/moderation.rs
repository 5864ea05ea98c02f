//! Moderation requests: `moderate`, `report`, `room_view`.

use std::sync::Arc;

use bytes::Bytes;

use super::{forbidden, Refusal, Session, AUDIT_SCAN, KNOWN_USER_SCAN, RATE_SCAN, RATE_WINDOW_MS};
use crate::hub::HubError;
use crate::moderation::{MAX_MUTE_SECS, MAX_REASON_LEN, MAX_SLOW_MODE_SECS};
use crate::protocol::valid_class;
use crate::protocol::{self, Body, ErrorCode, Event, ModAction, ServerFrame, UserInfo};
use crate::room::policy::{self, Action};
use crate::room::{Room, RoomName};

/// What a moderation event says of the message it redacts.
struct Target {
    from: Option<UserInfo>,
    ts: Option<u64>,
    thread: Option<u64>,
}

impl Session {
    /// Whether the user may take `action` in `room`: moderators may do
    /// anything; an author may redact (delete) their own message, which
    /// [`Session::moderate`] checks once it has read it; only the class's
    /// own moderators change a forum's settings. `Ok(moderator)`.
    fn check_moderator(
        &self,
        name: &RoomName,
        room: &Room,
        action: &ModAction,
    ) -> Result<bool, Refusal> {
        let moderator = self.is_moderator(room);
        if let ModAction::Configure { .. } = action {
            // `configure` sets the grants of kinds that have them.
            if !name.kind().has_grants() {
                return Err(Refusal::new(
                    ErrorCode::InvalidField,
                    format!("{} rooms have no settings to configure", name.kind().name()),
                ));
            }
            let home = self
                .auth
                .as_ref()
                .is_some_and(|a| policy::home_moderator(&a.claims, name));
            if !home {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!("only the moderators of {} configure {name}", name.class()),
                ));
            }
            return Ok(true);
        }
        let own_redaction =
            matches!(action, ModAction::Redact { .. }) && self.allowed_in(room, Action::Post);
        if !moderator && !own_redaction {
            return Err(forbidden(name, Action::Moderate));
        }
        Ok(moderator)
    }
    /// A moderation action: checks, then appends to the class's audit log,
    /// then posts the action as an event of the room (acked like a post).
    pub(crate) async fn moderate(
        &mut self,
        id: Option<u32>,
        room: &str,
        action: ModAction,
    ) -> Result<Option<Bytes>, Refusal> {
        // Checked in the documented order: room name, permission, bounds,
        // then the target.
        let (name, room) = self.open_or_create(room, Action::Read).await?;
        let refused = self
            .check_moderator(&name, &room, &action)
            .and_then(|moderator| validate_action(&action).map(|()| moderator));
        if refused.is_err() {
            self.release_unjoined(&room);
        }
        let moderator = refused?;
        let user = self.user()?.clone();
        let now = (self.hub.clock)();
        let mut until = None;
        let mut target_from = None;
        let mut target_ts = None;
        let mut target_thread = None;
        match &action {
            ModAction::Redact { offset, .. } => {
                // Reserve first, then read: a redaction committed before the
                // reservation has already written its tombstone.
                if !room.reserve_redaction(*offset) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("message {offset} is already being redacted"),
                    ));
                }
                let target = match self.read_message(&room, *offset).await {
                    Ok(target) if moderator || target.from.id == user.id => target,
                    Ok(_) => {
                        room.release_redaction(*offset);
                        return Err(Refusal::new(
                            ErrorCode::Forbidden,
                            "only moderators may redact others' messages",
                        ));
                    }
                    Err(refusal) => {
                        room.release_redaction(*offset);
                        return Err(refusal);
                    }
                };
                target_ts = Some(target.ts);
                target_thread = match &target.body {
                    Body::Message {
                        thread: Some(thread),
                        ..
                    } => Some(*thread),
                    Body::Message { title: Some(_), .. } => Some(target.offset),
                    _ => None,
                };
                target_from = Some(target.from);
            }
            ModAction::Mute {
                user: target,
                seconds,
                ..
            } => {
                self.known_user(&room, target).await?;
                until = Some(now.saturating_add(seconds.saturating_mul(1000)));
            }
            ModAction::Kick { user: target, .. } | ModAction::Ban { user: target, .. } => {
                self.known_user(&room, target).await?;
            }
            ModAction::Unmute { user: target } => {
                if room.moderation().muted_until(target, now).is_none() {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("{target} is not muted here"),
                    ));
                }
            }
            ModAction::Unban { user: target } => {
                if !room.is_banned(target) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("{target} is not banned here"),
                    ));
                }
            }
            ModAction::Pin { offset } => {
                self.read_message(&room, *offset).await?;
            }
            ModAction::Unpin { offset } => {
                if !room.moderation().pinned.contains(offset) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("message {offset} is not pinned"),
                    ));
                }
            }
            ModAction::Resolve { report, .. } => {
                let audit = self.hub.room(&self.audit_log(&name)?).await?;
                let open = self.open_reports(&audit, &name).await?;
                if !open.iter().any(|r| r.offset == *report) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("no open report {report} for {name}"),
                    ));
                }
            }
            ModAction::ReadOnly {
                thread: Some(_), ..
            } => {
                self.handler(&name)?.check_action(self, &room, &action)?;
            }
            ModAction::SlowMode { .. } | ModAction::ReadOnly { thread: None, .. } => {}
            ModAction::Configure { .. } => {}
            ModAction::Validate { .. } => {
                self.handler(&name)?.check_action(self, &room, &action)?;
            }
        }
        let redacting = match &action {
            ModAction::Redact { offset, .. } => Some(*offset),
            _ => None,
        };
        let taken = action.clone();
        let posted = self
            .post_action(
                id,
                (&name, &room),
                &user,
                action,
                until,
                Target {
                    from: target_from,
                    ts: target_ts,
                    thread: target_thread,
                },
            )
            .await;
        if let (Err(_), Some(offset)) = (&posted, redacting) {
            room.release_redaction(offset);
        }
        if posted.is_ok() {
            self.handler(&name)?.moderated(self, &room, &taken);
        }
        posted.map(|()| None)
    }

    /// Appends the audit entry (durable before the action takes effect),
    /// then posts the action as an event of the room.
    async fn post_action(
        &self,
        id: Option<u32>,
        (name, room): (&RoomName, &Arc<Room>),
        user: &UserInfo,
        action: ModAction,
        until: Option<u64>,
        target: Target,
    ) -> Result<(), Refusal> {
        let audit = self.hub.room(&self.audit_log(name)?).await?;
        // A resolution concerns the audit log only: it is the action.
        let audit_only = matches!(action, ModAction::Resolve { .. });
        self.hub
            .post(
                &audit,
                user,
                audit_only.then_some((&self.out, id)),
                Body::Audit {
                    room: name.to_string(),
                    action: action.clone(),
                    until,
                },
            )
            .await?;
        if audit_only {
            return Ok(());
        }
        tracing::info!(room = %name, action = action.name(), target = ?action.target_user(), "moderation");
        self.hub
            .post(
                room,
                user,
                Some((&self.out, id)),
                Body::Moderation {
                    action,
                    until,
                    target_from: target.from,
                    target_ts: target.ts,
                    target_thread: target.thread,
                },
            )
            .await?;
        Ok(())
    }

    /// Reports a message to the room's moderators: an entry in the class's
    /// audit log, which moderators follow live. Any reader of the room may.
    pub(super) async fn report(
        &mut self,
        id: Option<u32>,
        room: &str,
        offset: u64,
        reason: Option<String>,
    ) -> Result<Option<Bytes>, Refusal> {
        if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_LEN) {
            return Err(Refusal::new(
                ErrorCode::InvalidField,
                format!("reason is longer than {MAX_REASON_LEN} bytes"),
            ));
        }
        let parsed = self.parse_room(room)?;
        if !self.handler(&parsed)?.reportable() {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("{} rooms cannot be reported", parsed.kind().name()),
            ));
        }
        let (name, room) = self.open(room, Action::Read).await?;
        // Who may not read the room may not report in it either.
        self.refuse_banned(&room)?;
        let user = self.user()?.clone();
        self.read_message(&room, offset).await?;
        let audit = self.hub.room(&self.audit_log(&name)?).await?;
        self.hub
            .post(
                &audit,
                &user,
                Some((&self.out, id)),
                Body::Report {
                    room: name.to_string(),
                    offset,
                    reason,
                },
            )
            .await?;
        tracing::info!(room = %name, offset, "message reported");
        Ok(None)
    }

    /// Reports of `room` in the audit log not resolved yet, oldest first
    /// (among the log's last [`AUDIT_SCAN`] entries).
    pub(crate) async fn open_reports(
        &self,
        audit: &Room,
        room: &RoomName,
    ) -> Result<Vec<Event>, Refusal> {
        let store = self.hub.store.clone();
        let key = audit.name().as_str().to_owned();
        let head = audit.bounds().1;
        let (frames, _) =
            tokio::task::spawn_blocking(move || store.read_before(&key, head + 1, AUDIT_SCAN))
                .await
                .map_err(HubError::from)?
                .map_err(HubError::from)?;
        let mut reports = Vec::new();
        let mut resolved = std::collections::HashSet::new();
        for frame in &frames {
            let Ok(ServerFrame::Event(event)) = protocol::decode_server_frame(frame) else {
                continue;
            };
            match &event.body {
                Body::Report { room: r, .. } if r == room.as_str() => reports.push(event),
                Body::Audit {
                    room: r,
                    action: ModAction::Resolve { report, .. },
                    ..
                } if r == room.as_str() => {
                    resolved.insert(*report);
                }
                _ => {}
            }
        }
        reports.retain(|r| !resolved.contains(&r.offset));
        Ok(reports)
    }

    /// What a moderator's console shows of a room.
    pub(super) async fn room_view(
        &mut self,
        id: Option<u32>,
        room: &str,
    ) -> Result<Option<Bytes>, Refusal> {
        let (name, room) = self.open(room, Action::Read).await?;
        if !self.is_moderator(&room) {
            self.release_unjoined(&room);
            return Err(forbidden(&name, Action::Moderate));
        }
        let audit = self.hub.room(&self.audit_log(&name)?).await?;
        let open_reports = self.open_reports(&audit, &name).await?;
        let now = (self.hub.clock)();
        let moderation = room.moderation();
        let store = self.hub.store.clone();
        let key = name.as_str().to_owned();
        let head = room.bounds().1;
        let (recent, _) =
            tokio::task::spawn_blocking(move || store.read_before(&key, head + 1, RATE_SCAN))
                .await
                .map_err(HubError::from)?
                .map_err(HubError::from)?;
        let since = now.saturating_sub(RATE_WINDOW_MS);
        let recent_messages = recent
            .iter()
            .filter_map(|f| match protocol::decode_server_frame(f) {
                Ok(ServerFrame::Event(e)) if matches!(e.body, Body::Message { .. }) => Some(e.ts),
                _ => None,
            })
            .filter(|ts| *ts >= since)
            .count() as u64;
        let members = room
            .present_users()
            .into_iter()
            .map(|user| protocol::MemberState {
                muted_until: moderation.muted_until(&user.id, now),
                banned: moderation.banned.contains(&user.id),
                user,
            })
            .collect();
        let view = protocol::RoomView {
            room: name.to_string(),
            members,
            muted: moderation
                .muted
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(user, until)| (user.clone(), *until))
                .collect(),
            banned: moderation.banned.iter().cloned().collect(),
            slow_mode: moderation.slow_mode_secs,
            read_only: moderation.read_only,
            pinned: moderation.pinned.iter().copied().collect(),
            recent_messages,
            open_reports: open_reports.into_iter().map(protocol::EventFrame).collect(),
        };
        if !self.rooms.contains_key(name.as_str()) {
            self.hub.release(&room);
        }
        Ok(Some(protocol::ok(id, &view)))
    }

    /// The stored message at `offset`, or `unknown_target`.
    pub(crate) async fn read_message(&self, room: &Room, offset: u64) -> Result<Event, Refusal> {
        let store = self.hub.store.clone();
        let key = room.name().as_str().to_owned();
        let raw = tokio::task::spawn_blocking(move || store.raw_event(&key, offset))
            .await
            .map_err(HubError::from)?
            .map_err(HubError::from)?;
        let unknown = || {
            Refusal::new(
                ErrorCode::UnknownTarget,
                format!("no message at offset {offset}"),
            )
        };
        let frame = raw.ok_or_else(unknown)?;
        match protocol::decode_server_frame(&frame) {
            Ok(ServerFrame::Event(event)) if matches!(event.body, Body::Message { .. }) => {
                Ok(event)
            }
            // A kind's own event, where the kind deletes by redaction (a
            // diary entry).
            Ok(ServerFrame::Event(event))
                if matches!(event.body, Body::Kind(_)) && room.name().kind().redactable() =>
            {
                Ok(event)
            }
            _ => Err(unknown()),
        }
    }

    /// `unknown_target` unless the room knows `user`: present now, muted or
    /// banned here, or the author of one of its last messages.
    async fn known_user(&self, room: &Room, user: &str) -> Result<(), Refusal> {
        if room.knows_user(user) {
            return Ok(());
        }
        let store = self.hub.store.clone();
        let key = room.name().as_str().to_owned();
        let head = room.bounds().1;
        let recent =
            tokio::task::spawn_blocking(move || store.read_before(&key, head + 1, KNOWN_USER_SCAN))
                .await
                .map_err(HubError::from)?
                .map_err(HubError::from)?;
        let authored = recent.0.iter().any(|frame| {
            matches!(protocol::decode_server_frame(frame), Ok(ServerFrame::Event(e)) if e.from.id == user)
        });
        if authored {
            Ok(())
        } else {
            Err(Refusal::new(
                ErrorCode::UnknownTarget,
                format!("no user {user:?} in this room"),
            ))
        }
    }
}

/// Bounds of moderation requests, each an `invalid_field` refusal.
fn validate_action(action: &ModAction) -> Result<(), Refusal> {
    let invalid = |message: String| Err(Refusal::new(ErrorCode::InvalidField, message));
    if action.reason().is_some_and(|r| r.len() > MAX_REASON_LEN) {
        return invalid(format!("reason is longer than {MAX_REASON_LEN} bytes"));
    }
    if action
        .target_user()
        .is_some_and(|u| u.is_empty() || u.len() > 128)
    {
        return invalid("user must be 1 to 128 bytes".to_owned());
    }
    match action {
        ModAction::Mute { seconds, .. } if *seconds == 0 || *seconds > MAX_MUTE_SECS => {
            invalid(format!("seconds must be between 1 and {MAX_MUTE_SECS}"))
        }
        ModAction::SlowMode { seconds } if *seconds > MAX_SLOW_MODE_SECS => invalid(format!(
            "seconds must be between 0 and {MAX_SLOW_MODE_SECS}"
        )),
        ModAction::Redact { offset: 0, .. }
        | ModAction::Pin { offset: 0 }
        | ModAction::Unpin { offset: 0 } => invalid("offset must be at least 1".to_owned()),
        ModAction::Validate { label, .. } if label.trim().is_empty() || label.len() > 200 => {
            invalid("label must be 1 to 200 bytes".to_owned())
        }
        ModAction::Configure {
            classes,
            moderators,
            ..
        } => {
            if classes.len() > MAX_GRANTS || moderators.len() > MAX_GRANTS {
                return invalid(format!(
                    "at most {MAX_GRANTS} classes and {MAX_GRANTS} moderators"
                ));
            }
            if let Some(bad) = classes.iter().find(|c| !valid_class(c)) {
                return invalid(format!("bad class {bad:?}: 1 to 32 of A-Z a-z 0-9 - _"));
            }
            if moderators.iter().any(|m| m.is_empty() || m.len() > 128) {
                return invalid("moderators must be user ids of 1 to 128 bytes".to_owned());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The most classes, and the most moderators, one forum grants.
const MAX_GRANTS: usize = 32;
