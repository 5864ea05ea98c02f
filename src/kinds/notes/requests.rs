//! Shared-notes requests: Yjs sync and awareness (`yjs`), the validated
//! versions and exports. Validation itself is a moderation action
//! (`validate`), so it is audited and replicated like the others.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Member, NoteState, NAME};
use crate::hub::HubError;
use crate::notes::{self, Incoming, NoteDoc, NoteError, PartsError, Vetted};
use crate::outbound::ConnId;
use crate::protocol::{
    self, Body, ErrorCode, ExportFormat, NoteExport, NoteVersions, ServerFrame, UserInfo, YjsFrame,
};
use crate::room::policy::Action;
use crate::room::Room;
use crate::session::{forbidden, Refusal, Session};

impl From<NoteError> for Refusal {
    fn from(err: NoteError) -> Self {
        Refusal::new(err.code(), format!("{err}: the note is unchanged"))
    }
}

impl From<PartsError> for Refusal {
    fn from(err: PartsError) -> Self {
        let code = match err {
            PartsError::TooLarge { .. } => ErrorCode::UpdateTooLarge,
            PartsError::Busy => ErrorCode::Overloaded,
            PartsError::NotAnUpdate => ErrorCode::InvalidUpdate,
        };
        Refusal::new(code, format!("{err}: the message in parts is dropped"))
    }
}

/// How often one connection may be sent a sync step 2 outside its outbound
/// budget, per note.
const LARGE_STEP2_INTERVAL: Duration = Duration::from_secs(10);

/// How long a message cut into several events may take to become durable
/// before its sender is told `unavailable` (and resynchronises). Far above
/// a group commit (milliseconds); only a lost event in cluster mode waits
/// this long.
const PIECES_TIMEOUT: Duration = Duration::from_secs(30);

/// An admitted note update ([`NoteState::admit`](crate::room::NoteState)):
/// given back unless it was ordered ([`Admitted::ordered`]).
struct Admitted {
    room: Arc<Room>,
    ticket: u64,
    ordered: bool,
}

impl Admitted {
    fn ordered(mut self) {
        self.ordered = true;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.ordered {
            let ticket = self.ticket;
            self.room
                .with_state(|note: &mut NoteState, _| note.release(ticket));
        }
    }
}

/// One y-protocols message from a member of a note, or a part of one
/// (`more`: its data continues in the next `yjs` frame for this room).
pub(super) async fn yjs(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    data: Vec<u8>,
    more: bool,
) -> Result<Option<Bytes>, Refusal> {
    let room = s.joined_room(room)?;
    if room.name().kind().name() != NAME {
        return Err(Refusal::new(
            ErrorCode::InvalidField,
            format!("{} is not a notes room", room.name()),
        ));
    }
    let name = room.name().to_string();
    let config = &s.hub.config;
    let max_message = notes::max_message_bytes(config.note_max_bytes, config.outbound_budget_bytes);
    if more {
        // Only updates come in parts, and only from members who may
        // send them: readers cannot make the server hold anything.
        if !s.allowed_in(&room, Action::Post) {
            s.member_state::<Member>(&name)?.parts.clear();
            return Err(forbidden(room.name(), Action::Post));
        }
        // Bytes held in note messages sent in parts, node-wide.
        let budget = s.hub.shared(|config| {
            notes::PartsBudget::new(
                config
                    .note_max_bytes
                    .saturating_mul(notes::PARTS_BUDGET_NOTES),
            )
        });
        s.member_state::<Member>(&name)?
            .parts
            .push(&data, max_message, &budget)?;
        return Ok(Some(protocol::ok_empty(id)));
    }
    // The last part (or a whole message): held against the node's
    // budget until it is checked.
    let (data, _held) = s
        .member_state::<Member>(&name)?
        .parts
        .finish(data, max_message)?;
    match notes::decode_message(&data)? {
        Incoming::SyncStep1(remote) => {
            let replies = room
                .with_state(|note: &mut NoteState, _| {
                    let diff = note.doc.diff(&remote)?;
                    Ok::<_, NoteError>((
                        notes::encode_step2(&diff),
                        notes::encode_step1(&note.doc.state_vector()),
                    ))
                })
                .ok_or_else(not_loaded)??;
            send_step2(s, &name, replies.0)?;
            send_yjs(s, &name, replies.1);
            Ok(Some(protocol::ok_empty(id)))
        }
        Incoming::SyncStep2(update) | Incoming::Update(update) => {
            note_update(s, id, &room, update).await
        }
        Incoming::Awareness(update) => {
            // Cursors and names are not edits: a locked or muted
            // member still shows up, but only members who may post do.
            if !s.allowed_in(&room, Action::Post) {
                return Err(forbidden(room.name(), Action::Post));
            }
            let user = s.user()?.clone();
            let user_json = serde_json::json!({
                "id": user.id,
                "name": user.name,
                "role": user.role.as_str(),
            });
            let conn = s.conn();
            let joined = s.member_state::<Member>(&name)?;
            let guard = &mut joined.awareness;
            let message = room
                .with_state(|note: &mut NoteState, _| {
                    // A client id stays with its connection, except that
                    // the same user's new connection takes it over (a
                    // reconnect before the old one timed out).
                    let bound = guard.bind(&update, &user_json, |client| {
                        note.owners
                            .get(&client)
                            .is_some_and(|(owner, who)| *owner != conn && *who != user.id)
                    })?;
                    for client in bound.update.clients.keys() {
                        note.owners.insert(*client, (conn, user.id.clone()));
                    }
                    // Echoes and unchanged states are not relayed.
                    let changed = note.awareness.apply(&bound.update);
                    Ok::<_, NoteError>(changed.then(|| notes::encode_awareness(&bound.update)))
                })
                .ok_or_else(not_loaded)??;
            if let Some(message) = message {
                let frame = protocol::yjs(&YjsFrame {
                    room: name,
                    data: message,
                });
                room.broadcast(&frame, conn);
            }
            Ok(Some(protocol::ok_empty(id)))
        }
        Incoming::QueryAwareness => {
            let all = room
                .with_state(|note: &mut NoteState, _| note.awareness.encode_all())
                .ok_or_else(not_loaded)?;
            send_yjs(s, &name, all);
            Ok(Some(protocol::ok_empty(id)))
        }
    }
}

/// An update (or a sync step 2) from a member: checked, then ordered,
/// stored and fanned out as `yjs_update` events (acked once durable).
/// An update that adds nothing is acked at once and not stored.
///
/// The checks, in order: permission; vetting (size, bounds, decoding,
/// a trial run); nothing new (acked, even in a locked note);
/// moderation; admission against the note plus the updates accepted
/// and not yet applied (`out_of_sync` if it does not integrate
/// completely, so an update that depends on a refused one is refused
/// too); the rate limit; then ordering. An update larger than
/// `note_max_update_bytes` is cut into several events; its vetting,
/// checks and cutting run on the blocking pool (for 4.2 MB: vetting
/// 231 ms, mostly yrs decoding and the trial run; cutting 5 ms).
async fn note_update(
    s: &mut Session,
    id: Option<u32>,
    room: &Arc<Room>,
    update: Vec<u8>,
) -> Result<Option<Bytes>, Refusal> {
    if !s.allowed_in(room, Action::Post) {
        return Err(forbidden(room.name(), Action::Post));
    }
    let user = s.user()?.clone();
    let limits = notes::Limits {
        max_update_bytes: s.hub.config.note_max_update_bytes,
        max_doc_bytes: s.hub.config.note_max_bytes,
    };
    let large = update.len() > limits.max_update_bytes;
    let vetted = if large {
        tokio::task::spawn_blocking(move || Vetted::new(update, &limits))
            .await
            .map_err(HubError::from)??
    } else {
        Vetted::new(update, &limits)?
    };
    let (vetted, noop) = on_note(room, vetted, large, |note, vetted| {
        note.doc.is_noop_vetted(vetted)
    })
    .await?;
    // A step 2 that adds nothing (a reconnecting reader's) changes
    // nothing: acked even in a locked note.
    if noop {
        return Ok(Some(protocol::ok_empty(id)));
    }
    s.check_moderation(room, &user.id, false, None)?;
    let (vetted, admitted) = on_note(room, vetted, large, move |note, vetted| {
        note.admit(vetted, &limits)
    })
    .await?;
    let (ticket, plan) = admitted?;
    let admitted = Admitted {
        room: room.clone(),
        ticket,
        ordered: false,
    };
    let pieces = if large {
        let max = limits.max_update_bytes;
        tokio::task::spawn_blocking(move || notes::split_update(vetted, &plan, max))
            .await
            .map_err(HubError::from)??
    } else {
        vec![vetted.into_bytes()]
    };
    // Updates come at typing speed: they take from the request bucket,
    // not the (much smaller) post bucket. After admission, so that the
    // updates a refusal makes out of sync cost nothing.
    if let Err(wait) = s.hub.request_limit(&user.id) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        return Err(Refusal {
            code: ErrorCode::RateLimited,
            message: format!("too many updates, retry in {ms} ms"),
            retry_after_ms: Some(ms),
        });
    }
    match <[Vec<u8>; 1]>::try_from(pieces) {
        Ok([data]) => {
            s.send_post(id, room, &user, Body::YjsUpdate { data })
                .await?;
            admitted.ordered();
            Ok(None)
        }
        Err(pieces) => post_pieces(s, id, room, &user, pieces, admitted).await,
    }
}

/// Orders the events of an update cut in pieces, one at a time: each
/// is posted once the one before is durable (acked), so that members
/// receive them one commit after another instead of all in one group
/// commit, which for a note-sized update would overflow every member's
/// outbound budget (1 MiB) at once and close them all with 4004. Then
/// replies once: `ok` with the last one's `PostOk`, or the first
/// refusal (a failed write, a piece refused at commit), the pieces
/// after it not posted. The pieces' acks come back on a queue of their
/// own, so that the client gets exactly one reply.
///
/// The admission's ticket is given back at the end, whatever happened:
/// every piece posted has been applied (or refused) by then.
async fn post_pieces(
    s: &mut Session,
    id: Option<u32>,
    room: &Arc<Room>,
    user: &UserInfo,
    pieces: Vec<Vec<u8>>,
    admitted: Admitted,
) -> Result<Option<Bytes>, Refusal> {
    let (acks, mut rx) = crate::outbound::channel(s.conn(), usize::MAX);
    let mut last = rmpv::Value::Nil;
    for (i, data) in pieces.into_iter().enumerate() {
        let piece = Some(u32::try_from(i).unwrap_or(u32::MAX));
        let body = Body::YjsUpdate { data };
        if let Err(err) = s.hub.post(room, user, Some((&acks, piece)), body).await {
            return Err(s.post_refusal(err));
        }
        let frame = match tokio::time::timeout(PIECES_TIMEOUT, rx.recv()).await {
            Ok(Some(frame)) => frame,
            _ => {
                return Err(Refusal::new(
                    ErrorCode::Unavailable,
                    "the update was not stored in time; resynchronise",
                ))
            }
        };
        match protocol::decode_server_frame(&frame) {
            Ok(ServerFrame::Ok { data, .. }) => last = data,
            Ok(ServerFrame::Error(reply)) => {
                return Err(Refusal {
                    code: reply.code,
                    message: reply.message,
                    retry_after_ms: reply.retry_after_ms,
                })
            }
            _ => return Err(Refusal::new(ErrorCode::Internal, "unexpected ack")),
        }
    }
    drop(admitted);
    Ok(Some(protocol::ok(id, &last)))
}

/// The server's sync step 2. A note may be larger than a connection's
/// outbound budget (4 MiB against 1 MiB by default): measured, every
/// fresh joiner of a 1.35 MB note was closed with 4004. A step 2 larger
/// than half the budget is queued outside it (its size is bounded by
/// `note_max_bytes`), once per connection and room every
/// [`LARGE_STEP2_INTERVAL`]; a client asking more often gets it within
/// the budget (and is closed if it does not fit).
fn send_step2(s: &mut Session, room: &str, data: Vec<u8>) -> Result<(), Refusal> {
    let frame = protocol::yjs(&YjsFrame {
        room: room.to_owned(),
        data,
    });
    let half_budget = s.hub.config.outbound_budget_bytes / 2;
    let joined = s.member_state::<Member>(room)?;
    let now = tokio::time::Instant::now();
    let allowed = joined
        .large_step2_at
        .is_none_or(|at| now.duration_since(at) >= LARGE_STEP2_INTERVAL);
    if frame.len() > half_budget && allowed {
        joined.large_step2_at = Some(now);
        s.out.send_unbudgeted(frame);
    } else {
        s.out.send(frame);
    }
    Ok(())
}

fn send_yjs(s: &Session, room: &str, data: Vec<u8>) {
    s.out.send(protocol::yjs(&YjsFrame {
        room: room.to_owned(),
        data,
    }));
}

/// The note's validated versions, oldest first.
pub(super) async fn note_versions(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
) -> Result<Option<Bytes>, Refusal> {
    let (name, room) = open_note(s, room).await?;
    let store = s.hub.store.clone();
    let key = name.as_str().to_owned();
    let versions = tokio::task::spawn_blocking(move || {
        store.versions::<crate::protocol::NoteVersionInfo>(&key)
    })
    .await;
    s.release_unjoined(&room);
    let versions = versions.map_err(HubError::from)?.map_err(HubError::from)?;
    Ok(Some(protocol::ok(id, &NoteVersions { versions })))
}

/// The draft (no `version`) or a validated version, as text, Markdown
/// or one Yjs update.
pub(super) async fn note_export(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    version: Option<u32>,
    format: ExportFormat,
) -> Result<Option<Bytes>, Refusal> {
    let (name, room) = open_note(s, room).await?;
    let content = match version {
        None => {
            let now = (s.hub.clock)();
            // Encoding a large draft happens under the room's lock, once.
            room.with_state(|note: &mut NoteState, _| {
                render(&mut note.doc, format, "Brouillon", None, now)
            })
            .ok_or_else(not_loaded)
        }
        Some(version) => {
            let store = s.hub.store.clone();
            let key = name.as_str().to_owned();
            let stored = tokio::task::spawn_blocking(move || {
                let stored = store.version::<crate::protocol::NoteVersionInfo>(&key, version)?;
                Ok::<_, crate::store::StoreError>(stored.map(|stored| {
                    let info = stored.info;
                    NoteDoc::load(Some(&stored.state), std::iter::empty::<&[u8]>()).map(
                        |mut doc| {
                            render(&mut doc, format, &info.label, Some(&info.by.name), info.ts)
                        },
                    )
                }))
            })
            .await;
            match stored {
                Ok(Ok(Some(Ok(content)))) => Ok(content),
                Ok(Ok(Some(Err(err)))) => Err(Refusal::new(
                    ErrorCode::Internal,
                    format!("stored version {version} does not load: {err}"),
                )),
                Ok(Ok(None)) => Err(Refusal::new(
                    ErrorCode::UnknownTarget,
                    format!("no version {version} of {name}"),
                )),
                Ok(Err(err)) => Err(HubError::from(err).into()),
                Err(err) => Err(HubError::from(err).into()),
            }
        }
    };
    s.release_unjoined(&room);
    let content = content?;
    Ok(Some(protocol::ok(id, &NoteExport { format, content })))
}

async fn open_note(s: &Session, room: &str) -> Result<(crate::room::RoomName, Arc<Room>), Refusal> {
    let (name, room) = s.open(room, Action::Read).await?;
    if name.kind().name() != NAME {
        s.release_unjoined(&room);
        return Err(Refusal::new(
            ErrorCode::InvalidField,
            format!("{name} is not a notes room"),
        ));
    }
    s.refuse_banned(&room)?;
    Ok((name, room))
}

/// Tells the other members that this connection's awareness states
/// are gone (it left the note or closed).
pub(super) fn drop_awareness(room: &Room, conn: ConnId, guard: &notes::AwarenessGuard) {
    let Some(mut removal) = guard.removal() else {
        return;
    };
    room.with_state(|note: &mut NoteState, _| {
        // Ids a newer connection of the same user took over stay.
        removal.clients.retain(|client, _| {
            note.owners
                .get(client)
                .is_some_and(|(owner, _)| *owner == conn)
        });
        note.awareness.apply(&removal);
        let gone: Vec<u64> = removal.clients.keys().copied().collect();
        for client in &gone {
            note.owners.remove(client);
        }
        note.awareness.remove(gone);
    });
    if removal.clients.is_empty() {
        return;
    }
    let frame = protocol::yjs(&YjsFrame {
        room: room.name().to_string(),
        data: notes::encode_awareness(&removal),
    });
    room.broadcast(&frame, conn);
}

/// A note as `format`: text and Markdown as `str`, Yjs as `bin`. `by` is
/// who validated a version (`None` for the draft).
fn render(
    doc: &mut NoteDoc,
    format: ExportFormat,
    label: &str,
    by: Option<&str>,
    when: u64,
) -> rmpv::Value {
    match format {
        ExportFormat::Text => rmpv::Value::from(doc.text()),
        ExportFormat::Markdown => rmpv::Value::from(doc.markdown(label, by, when)),
        ExportFormat::Yjs => match doc.snapshot() {
            Ok(state) => rmpv::Value::Binary(state),
            Err(_) => rmpv::Value::Nil,
        },
    }
}

/// Runs `f` on the note (under the room's lock) with a vetted update:
/// inline for an update no larger than an event, on the blocking pool for
/// a larger one. Both checks that need the note are linear in the
/// update's size: for a 4.2 MB update of 397,000 blocks, the integration
/// check takes 17 ms and the no-op check a few (release build, measured
/// by `notes::integrity_tests::check_figures`; typing-size updates: 0.2
/// µs). The lock is held that long either way (a room's commits wait); the
/// async workers are not.
async fn on_note<T: Send + 'static>(
    room: &Arc<Room>,
    vetted: Vetted,
    large: bool,
    f: impl FnOnce(&mut NoteState, &Vetted) -> T + Send + 'static,
) -> Result<(Vetted, T), Refusal> {
    if !large {
        let out = room
            .with_state(|note: &mut NoteState, _| f(note, &vetted))
            .ok_or_else(not_loaded)?;
        return Ok((vetted, out));
    }
    let room = room.clone();
    let (vetted, out) = tokio::task::spawn_blocking(move || {
        let out = room.with_state(|note: &mut NoteState, _| f(note, &vetted));
        (vetted, out)
    })
    .await
    .map_err(HubError::from)?;
    Ok((vetted, out.ok_or_else(not_loaded)?))
}

fn not_loaded() -> Refusal {
    Refusal::new(ErrorCode::Internal, "the note is not loaded")
}
