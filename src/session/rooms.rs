//! Opening rooms (and who may create them), joining with recovery,
//! leaving, and history pages.

use super::*;

impl Session {
    /// Checks `action` in `room` and loads the room, which must exist:
    /// anyone allowed there but not allowed to create it gets
    /// `unknown_room`, and nothing is loaded or created (see
    /// [`Session::open_or_create`]). A forum's grants live in the room, so
    /// a forum is loaded before the check.
    pub(crate) async fn open(
        &self,
        room: &str,
        action: Action,
    ) -> Result<(RoomName, Arc<Room>), Refusal> {
        self.open_as(room, action, false).await
    }

    /// [`Session::open`] that creates the room if it does not exist yet and
    /// the user moderates its class (a teacher of the class, staff): rooms
    /// exist once such a user joins them or acts in them (`join`,
    /// `moderate`), never by a pupil naming them nor by a read.
    pub(crate) async fn open_or_create(
        &self,
        room: &str,
        action: Action,
    ) -> Result<(RoomName, Arc<Room>), Refusal> {
        self.open_as(room, action, true).await
    }

    pub(super) async fn open_as(
        &self,
        room: &str,
        action: Action,
        create: bool,
    ) -> Result<(RoomName, Arc<Room>), Refusal> {
        let name = self.parse_room(room)?;
        let claims = &self.authenticated()?.claims;
        let home = policy::allowed(claims, &name, None, action);
        let may_create = create && name.kind().may_create(claims, &name);
        if !name.kind().has_grants() && !home {
            return Err(forbidden(&name, action));
        }
        if !may_create && !self.hub.room_exists(&name).await? {
            // Only those who may see the room learn that it does not exist.
            return Err(if home {
                Refusal::new(
                    ErrorCode::UnknownRoom,
                    format!("no room {name}: a teacher of the class opens it first"),
                )
            } else {
                forbidden(&name, action)
            });
        }
        let room = self.hub.room(&name).await?;
        if home || self.allowed_in(&room, action) {
            return Ok((name, room));
        }
        self.release_unjoined(&room);
        Err(forbidden(&name, action))
    }

    pub(super) async fn join(
        &mut self,
        id: Option<u32>,
        room: &str,
        since: Option<Position>,
    ) -> Result<Option<Bytes>, Refusal> {
        let (name, opened) = self.open_or_create(room, Action::Read).await?;
        // Entries of rooms a moderator removed this connection from go.
        let conn = self.conn();
        self.rooms.retain(|_, joined| joined.room.is_member(conn));
        if self.rooms.contains_key(name.as_str()) {
            return Err(Refusal::new(
                ErrorCode::AlreadyJoined,
                format!("already joined {name}"),
            ));
        }
        if self.rooms.len() >= self.hub.config.max_rooms_per_connection {
            return Err(Refusal::new(
                ErrorCode::TooManyRooms,
                format!(
                    "a connection may join at most {} rooms",
                    self.hub.config.max_rooms_per_connection
                ),
            ));
        }
        let user = self.user()?.clone();
        let member_state = self.handler(&name)?.member_state();
        // The room may be unloaded between lookup and join; then look again.
        let mut opened = Some(opened);
        let (room, joined, recovering) = loop {
            let room = match opened.take() {
                Some(room) => room,
                None => self.hub.room(&name).await?,
            };
            if room.is_banned(&user.id) && !self.is_moderator(&room) {
                return Err(Refusal::new(
                    ErrorCode::Banned,
                    format!("you are banned from {name}"),
                ));
            }
            let recovering = since.as_ref().is_some_and(|p| p.epoch == room.epoch());
            let early_reply = |joined: &crate::room::Joined| {
                if recovering {
                    return None;
                }
                let recovery = since.as_ref().map(|_| Recovery {
                    recovered: false,
                    reason: Some(RecoveryFailure::EpochMismatch),
                });
                Some(join_reply(id, &room, joined, recovery, &[]))
            };
            if let Some(joined) = room.join(
                &user,
                self.children(),
                self.home_moderator(&room),
                &self.out,
                recovering,
                early_reply,
            ) {
                break (room, joined, recovering);
            }
        };
        self.rooms.insert(
            name.as_str().to_owned(),
            Joined {
                room: room.clone(),
                last_typing: None,
                kind: member_state,
            },
        );
        if joined.first_here {
            self.hub.announce_presence(&name, &user, true);
        }
        tracing::info!(room = %name, head = joined.head, recovering, "joined");
        let Some(since) = since.filter(|_| recovering) else {
            return Ok(None);
        };
        let max = self.hub.config.recovery_max as u64;
        let failure = if since.offset > joined.head {
            Some(RecoveryFailure::OffsetAhead)
        } else if since.offset < joined.floor {
            Some(RecoveryFailure::OutOfRetention)
        } else if joined.head - since.offset > max {
            Some(RecoveryFailure::TooFarBehind)
        } else {
            None
        };
        let failed = |reason| {
            join_reply(
                id,
                &room,
                &joined,
                Some(Recovery {
                    recovered: false,
                    reason: Some(reason),
                }),
                &[],
            )
        };
        let reply = match failure {
            Some(reason) => failed(reason),
            None => {
                let store = self.hub.store.clone();
                let key = name.as_str().to_owned();
                let head = joined.head;
                let read = tokio::task::spawn_blocking(move || {
                    store.read_after(&key, since.offset, head, usize::MAX)
                })
                .await
                .map_err(HubError::from)
                .and_then(|r| r.map_err(HubError::from));
                let max_bytes = self.hub.config.recovery_max_bytes;
                match read {
                    // Retention may have deleted the start of the range
                    // after this join read its floor: never claim a
                    // recovery that skips events.
                    Ok((events, _))
                        if events.first().and_then(|e| protocol::event_offset(e))
                            != (since.offset < head).then_some(since.offset + 1) =>
                    {
                        failed(RecoveryFailure::OutOfRetention)
                    }
                    Ok((events, _)) if events.iter().map(Bytes::len).sum::<usize>() > max_bytes => {
                        failed(RecoveryFailure::TooFarBehind)
                    }
                    Ok((mut events, _)) => {
                        events.retain(|e| !self.withheld(&room, e));
                        join_reply(
                            id,
                            &room,
                            &joined,
                            Some(Recovery {
                                recovered: true,
                                reason: None,
                            }),
                            &events,
                        )
                    }
                    Err(err) => {
                        self.leave(name.as_str())?;
                        return Err(err.into());
                    }
                }
            }
        };
        if !room.finish_join(self.conn(), reply) {
            self.rooms.remove(name.as_str());
            return Err(Refusal::new(
                ErrorCode::NotJoined,
                format!("removed from {name} by a moderator while joining"),
            ));
        }
        Ok(None)
    }

    pub(super) fn leave(&mut self, room: &str) -> Result<(), Refusal> {
        let joined = self
            .rooms
            .remove(room)
            .ok_or_else(|| Refusal::new(ErrorCode::NotJoined, format!("not in {room}")))?;
        if let (Some(state), Ok(kind)) = (joined.kind, self.handler(joined.room.name())) {
            kind.left(self, &joined.room, state);
        }
        let left = joined.room.leave(self.conn());
        if let Some(user) = &left.last_here {
            self.hub.announce_presence(joined.room.name(), user, false);
        }
        if left.empty {
            self.hub.release(&joined.room);
        }
        tracing::info!(room = %room, "left");
        Ok(())
    }

    pub(super) async fn history(
        &mut self,
        id: Option<u32>,
        room: &str,
        page: Page,
        thread: Option<u64>,
    ) -> Result<Option<Bytes>, Refusal> {
        let Page {
            before,
            after,
            limit,
        } = page;
        let page_max = self.hub.config.history_page_max;
        let limit = match limit {
            None => DEFAULT_HISTORY_PAGE.min(page_max),
            Some(0) => {
                return Err(Refusal::new(
                    ErrorCode::InvalidField,
                    "limit must be at least 1",
                ))
            }
            Some(n) => (n as usize).min(page_max),
        };
        let (name, room) = self.open(room, Action::Read).await?;
        self.refuse_banned(&room)?;
        if let Some(thread) = thread {
            let page = Page {
                before,
                after,
                limit: Some(limit as u32),
            };
            let kind = self.handler(&name)?;
            let reply = kind.thread_history(self, id, &room, thread, page).await;
            self.release_unjoined(&room);
            return reply;
        }
        let (floor, head) = room.bounds();
        let store = self.hub.store.clone();
        let key = name.as_str().to_owned();
        let read = tokio::task::spawn_blocking(move || match after {
            Some(after) => {
                let through = before.map_or(head, |b| b.saturating_sub(1).min(head));
                store.read_after(&key, after, through, limit)
            }
            None => store.read_before(&key, before.map_or(head + 1, |b| b.min(head + 1)), limit),
        })
        .await;
        self.release_unjoined(&room);
        let (mut events, more) = read.map_err(HubError::from)?.map_err(HubError::from)?;
        events.retain(|e| !self.withheld(&room, e));
        Ok(Some(protocol::ok_with_events(
            id,
            &protocol::HistoryHead {
                room: name.as_str(),
                epoch: room.epoch(),
                head,
                first: floor + 1,
                more,
            },
            &events,
        )))
    }

    /// The rooms of one kind in a class that exist and the user may read
    /// through the class (inter-class grants are not listed).
    pub(super) async fn list_rooms(
        &mut self,
        id: Option<u32>,
        class: &str,
        kind: &str,
    ) -> Result<Option<Bytes>, Refusal> {
        let sample = self.hub.kinds.get(kind).map_or("_", |k| k.sample_name());
        let probe = self.parse_room(&format!("{class}/{kind}/{sample}"))?;
        let claims = &self.authenticated()?.claims;
        if !policy::allowed(claims, &probe, None, Action::Read) {
            return Err(forbidden(&probe, Action::Read));
        }
        let store = self.hub.store.clone();
        let prefix = format!("{class}/{kind}/");
        let mut rooms = tokio::task::spawn_blocking(move || store.rooms_with_prefix(&prefix))
            .await
            .map_err(HubError::from)?
            .map_err(HubError::from)?;
        // Rooms opened on another node and not stored here yet.
        let elsewhere = self.hub.sequencer().rooms_elsewhere(class, kind).await?;
        if !elsewhere.is_empty() {
            rooms.extend(elsewhere);
            rooms.sort();
            rooms.dedup();
        }
        Ok(Some(protocol::ok(id, &protocol::RoomsOk { rooms })))
    }
}

fn join_reply(
    id: Option<u32>,
    room: &Room,
    joined: &crate::room::Joined,
    recovery: Option<Recovery>,
    events: &[Bytes],
) -> Bytes {
    protocol::ok_with_events(
        id,
        &protocol::JoinHead {
            room: room.name().as_str(),
            epoch: room.epoch(),
            head: joined.head,
            first: joined.floor + 1,
            members: &joined.members,
            member_count: joined.member_count,
            pinned: &joined.pinned,
            read_only: joined.read_only,
            recovery,
        },
        events,
    )
}

/// A history page request: `before`/`after` bounds and a size.
pub struct Page {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub limit: Option<u32>,
}
