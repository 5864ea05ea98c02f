//! A user's notification feed (`_/inbox/<key>`, one room per user, which
//! only they read): what is new for them across rooms — a direct message,
//! an announcement, homework, a reply — with unread counts, and their
//! quiet hours.
//!
//! Why a room per user: the feed then has what every room has for free —
//! durable history, recovery after a reconnect, the same order on every
//! node, replication across nodes — and a notification is an event posted
//! to it by the server ([`notify`]), with an idempotency key derived from
//! what it notifies, so it is stored once.
//!
//! **Quiet hours.** A notification that arrives during the recipient's
//! quiet hours (theirs, or the school's default for their role,
//! `quiet_hours_*`) carries `hold_until`: it is never in the room's stream
//! (nothing is pushed, live or on recovery), only in the `feed` reply,
//! until the quiet hours end; then the feed's state posts one
//! `feed_release` ([`KindState::take_due`]), which is pushed, and clients
//! read the feed again. An urgent staff announcement goes through (its
//! notification says `urgent`, and the announcement's class audit log
//! records it).

mod requests;
pub mod state;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::auth::Claims;
use crate::hub::{Hub, HubError};
use crate::protocol::{Body, Bucket, ErrorCode, Event, ForumSettings, KindBody, Role, UserInfo};
use crate::quiet::QuietHours;
use crate::room::policy::Action;
use crate::room::{KindState, LoadContext, Room, RoomKind, RoomName, Viewer};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Refusal, Session};
use crate::store::StoreError;

pub use requests::{FeedOk, QuietOk, Request as FeedRequest};
pub use state::{Conversation, Feed, Item, JoinedFields, NotifyFields};

pub const NAME: &str = "inbox";
/// Event kinds.
pub const NOTIFY: &str = "notify";
pub const SEEN: &str = "feed_seen";
pub const QUIET: &str = "quiet_hours";
pub const RELEASE: &str = "feed_release";
pub const JOINED: &str = "dm_joined";
pub const SENT: &str = "announce_sent";

/// Who posts notifications and releases.
pub fn system() -> UserInfo {
    UserInfo {
        id: "preau".to_owned(),
        name: "préau".to_owned(),
        role: Role::Staff,
    }
}

/// The key of `user`'s inbox in its room name: 32 hex digits of a SHA-256
/// of their id (ids may hold any character; room names may not).
fn key_of(user: &str) -> String {
    hex::encode(&Sha256::digest(user.as_bytes())[..16])
}

/// The inbox room of `user`.
pub fn inbox_of(user: &str) -> String {
    format!("{}/{NAME}/{}", crate::directory::NO_CLASS, key_of(user))
}

/// The school's quiet hours for `role` (`quiet_hours_*`).
pub fn default_quiet(config: &crate::config::Config, role: Role) -> QuietHours {
    let setting = match role {
        Role::Teacher => &config.quiet_hours_teacher,
        Role::Student => &config.quiet_hours_student,
        Role::Parent => &config.quiet_hours_parent,
        Role::Staff => &config.quiet_hours_staff,
    };
    QuietHours::parse(setting).unwrap_or_else(|_| QuietHours::none())
}

/// The school's time zone (`timezone`, checked at start).
pub fn timezone(config: &crate::config::Config) -> chrono_tz::Tz {
    config.timezone.parse().unwrap_or(chrono_tz::Europe::Paris)
}

/// Until when what reaches `room`'s owner now is held (`None`: pushed).
fn hold(hub: &Hub, room: &Room, role: Role, now: u64) -> Option<u64> {
    let hours = room
        .with_state(|feed: &mut Feed, _| feed.quiet().cloned())
        .flatten()
        .unwrap_or_else(|| default_quiet(&hub.config, role));
    crate::quiet::hold_until(&hours, now, timezone(&hub.config))
}

/// A notification for one recipient.
pub struct Recipient<'a> {
    pub id: &'a str,
    pub role: Role,
}

/// `user`'s feed room, loaded (created at its first event).
async fn feed_room(hub: &Arc<Hub>, user: &str) -> Result<Option<Arc<Room>>, HubError> {
    match hub.kinds.parse(&inbox_of(user)) {
        Ok(name) => Ok(Some(hub.room(&name).await?)),
        Err(_) => Ok(None),
    }
}

/// Posts an event of `kind` to `feed` as the server, stored once per `key`.
async fn post_to(
    hub: &Arc<Hub>,
    feed: &Arc<Room>,
    kind: &str,
    fields: &impl serde::Serialize,
    key: &str,
) -> Result<(), HubError> {
    let body = KindBody::new(kind, fields).map_err(|e| {
        HubError::Store(StoreError::Corrupt {
            room: feed.name().to_string(),
            message: e,
        })
    })?;
    hub.post_keyed(feed, &system(), None, Body::Kind(body), Some(key))
        .await
}

/// What `read` finds in `user`'s feed, if it exists (reading never
/// creates it; a feed nobody holds is released after).
async fn read_feed<R: Default>(
    hub: &Arc<Hub>,
    user: &str,
    read: impl FnOnce(&Feed) -> R,
) -> Result<R, HubError> {
    let Ok(name) = hub.kinds.parse(&inbox_of(user)) else {
        return Ok(R::default());
    };
    if !hub.room_exists(&name).await? {
        return Ok(R::default());
    }
    let room = hub.room(&name).await?;
    let found = room
        .with_state(|feed: &mut Feed, _| read(feed))
        .unwrap_or_default();
    if room.member_count() == 0 {
        hub.release(&room);
    }
    Ok(found)
}

/// Posts `fields` to `to`'s feed (held through their quiet hours unless
/// `urgent`), stored once per `key`; returns until when it is held.
pub async fn notify(
    hub: &Arc<Hub>,
    to: &Recipient<'_>,
    mut fields: NotifyFields,
    key: &str,
) -> Result<Option<u64>, HubError> {
    let Some(room) = feed_room(hub, to.id).await? else {
        return Ok(None);
    };
    let held = if fields.urgent {
        None
    } else {
        hold(hub, &room, to.role, (hub.clock)())
    };
    fields.hold_until = held;
    post_to(hub, &room, NOTIFY, &fields, key).await?;
    Ok(held)
}

/// Notifications posted at once by one fan-out (each loads the
/// recipient's feed: a store read when it is not loaded).
const FAN_OUT: usize = 64;

/// Posts `fields` to every recipient's feed, [`FAN_OUT`] at a time, in
/// the background (the caller answers its client meanwhile); logs how long
/// it took and what failed.
pub fn notify_many(
    hub: Arc<Hub>,
    recipients: Vec<(String, Role)>,
    fields: NotifyFields,
    key: String,
) {
    use futures_util::StreamExt;
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let total = recipients.len();
        let room = fields.room.clone();
        let notices: Vec<_> = recipients
            .into_iter()
            .map(|(id, role)| {
                let (hub, key, fields) = (hub.clone(), key.clone(), fields.clone());
                Box::pin(async move {
                    let recipient = Recipient { id: &id, role };
                    notify(&hub, &recipient, fields, &key).await.is_err()
                })
            })
            .collect();
        let failed = futures_util::stream::iter(notices)
            .buffer_unordered(FAN_OUT)
            .filter(|failed| std::future::ready(*failed))
            .count()
            .await;
        if failed > 0 {
            tracing::warn!(room = %room, failed, "notifications not posted");
        }
        tracing::info!(room = %room, recipients = total, ms = started.elapsed().as_millis() as u64, "notified");
    });
}

/// Tells `user` they are in conversation `room` with `members` (their
/// list of conversations reads it), once per `key`.
pub async fn joined(
    hub: &Arc<Hub>,
    user: &str,
    fields: &JoinedFields,
    key: &str,
) -> Result<(), HubError> {
    match feed_room(hub, user).await? {
        Some(feed) => post_to(hub, &feed, JOINED, fields, key).await,
        None => Ok(()),
    }
}

/// Records in `user`'s feed that they sent announcement `room` (their
/// list of sent announcements reads it), once per `offset`.
pub async fn sent_by(
    hub: &Arc<Hub>,
    user: &str,
    room: &str,
    title: &str,
    recipients: u32,
    offset: u64,
) -> Result<(), HubError> {
    let Some(feed) = feed_room(hub, user).await? else {
        return Ok(());
    };
    let fields = state::SentFields {
        room: room.to_owned(),
        title: title.to_owned(),
        recipients,
    };
    let key = format!("sent-{}-{offset}", room.rsplit('/').next().unwrap_or(""));
    post_to(hub, &feed, SENT, &fields, &key).await
}

/// The announcements `user` sent: (room, title, ts, recipients), latest
/// first.
pub async fn sent(hub: &Arc<Hub>, user: &str) -> Result<Vec<(String, String, u64, u32)>, HubError> {
    read_feed(hub, user, Feed::sent).await
}

/// The conversations in `user`'s feed.
pub async fn conversations(hub: &Arc<Hub>, user: &str) -> Result<Vec<Conversation>, HubError> {
    read_feed(hub, user, Feed::conversations).await
}

/// Until when `user` (of `role`) is quiet now, if they are: what the
/// sender of a message is told.
pub async fn quiet_until(hub: &Arc<Hub>, user: &str, role: Role) -> Result<Option<u64>, HubError> {
    let Ok(name) = hub.kinds.parse(&inbox_of(user)) else {
        return Ok(None);
    };
    let now = (hub.clock)();
    if !hub.room_exists(&name).await? {
        return Ok(crate::quiet::hold_until(
            &default_quiet(&hub.config, role),
            now,
            timezone(&hub.config),
        ));
    }
    let room = hub.room(&name).await?;
    Ok(hold(hub, &room, role, now))
}

pub struct Inbox;

impl RoomKind for Inbox {
    fn name(&self) -> &'static str {
        NAME
    }

    fn valid_name(&self, name: &str) -> bool {
        name.len() == 32
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }

    fn sample_name(&self) -> &'static str {
        "00000000000000000000000000000000"
    }

    fn classless(&self) -> bool {
        true
    }

    /// Its owner reads it; nobody else does anything (the server posts
    /// notifications; the owner's read marks and quiet hours go through
    /// `feed_read` and `quiet_hours`).
    fn allowed(
        &self,
        user: &Claims,
        room: &RoomName,
        _grants: Option<&ForumSettings>,
        action: Action,
    ) -> bool {
        action == Action::Read && room.as_str() == inbox_of(&user.sub)
    }

    /// Its owner's first look creates it.
    fn may_create(&self, user: &Claims, room: &RoomName) -> bool {
        room.as_str() == inbox_of(&user.sub)
    }

    fn events(&self) -> &'static [&'static str] {
        &[NOTIFY, SEEN, QUIET, RELEASE, JOINED, SENT]
    }

    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let events = super::common::stored_events(cx, room, last)?;
        Ok(Box::new(Feed::rebuild(&events)))
    }

    /// Erasing a user empties their feed, and takes the notifications
    /// that name them (`by`) out of everyone else's.
    fn erases_other(&self, room: &str, event: &Event, user: &str) -> bool {
        if room == inbox_of(user) {
            return true;
        }
        match &event.body {
            Body::Kind(body) if body.kind == NOTIFY => body
                .decode::<NotifyFields>()
                .is_ok_and(|f| f.by.is_some_and(|by| by.id == user)),
            Body::Kind(body) if body.kind == JOINED => body
                .decode::<JoinedFields>()
                .is_ok_and(|f| f.members.iter().any(|m| m.id == user)),
            _ => false,
        }
    }

    fn schedules(&self) -> bool {
        true
    }

    fn filters(&self) -> bool {
        true
    }

    /// A notification held by quiet hours is never in the stream: the
    /// `feed_release` that ends them is.
    fn shown(&self, event: &Event, _viewer: &Viewer<'_>) -> bool {
        match &event.body {
            Body::Kind(body) if body.kind == NOTIFY => body
                .decode::<NotifyFields>()
                .map_or(true, |f| f.hold_until.is_none()),
            _ => true,
        }
    }
}

impl KindHandler for Inbox {
    fn requests(&self) -> &'static [&'static str] {
        requests::TYPES
    }

    /// Marks and settings are posts: their handler takes from the post
    /// bucket.
    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request.type_name() {
            "feed_read" | "quiet_hours" => Bucket::InHandler,
            _ => Bucket::Requests,
        }
    }

    fn returned_by(&self, request: &str) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match request {
            "feed" => &[RateLimited, StorageError, Unavailable],
            "feed_read" | "quiet_hours" => &[RateLimited, Overloaded, StorageError, Unavailable],
            _ => &[],
        }
    }

    fn handle<'a>(
        &'static self,
        session: &'a mut Session,
        request: KindRequest,
    ) -> BoxFuture<'a, Handled> {
        Box::pin(requests::handle(session, request))
    }

    fn check_post(
        &self,
        _session: &Session,
        _room: &Room,
        _post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        Err(Refusal::new(
            ErrorCode::Forbidden,
            "a feed takes no posts: the server writes to it",
        ))
    }

    fn reportable(&self) -> bool {
        false
    }
}
