//! The calendar feed's secret address: `/cal/<signed value>.ics`, which a
//! family pastes into a phone's calendar once. The signed value names the
//! user, what their token said of their classes and children when they
//! asked for it, and a random feed id; the feed works while that id is the
//! one the store keeps for them (`Store::feed`). Asking again gives an
//! address of the same feed (both work); asking for a new one stops the
//! old ones; revoking stops it; an erasure of the user removes it. Nothing but the user id and the random id is written to
//! disk: the address carries the rest, signed so it cannot be altered.
//!
//! What the feed holds is built by `calendar.rs` (above the kinds).

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::requests::FeedOk;
use crate::auth::{AuthError, Child, Claims};
use crate::hub::Hub;
use crate::protocol::{ErrorCode, Role};
use crate::store::StoreError;

/// How long an address works: a school year and its margins. After that
/// the family asks for a new one (the app says so).
pub const FEED_LIFETIME_SECS: u64 = 400 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("signing: {0}")]
    Sign(AuthError),
    #[error("unknown or revoked calendar feed")]
    Unknown,
}

impl FeedError {
    pub fn code(&self) -> ErrorCode {
        match self {
            FeedError::Store(_) => ErrorCode::StorageError,
            FeedError::Sign(_) => ErrorCode::Internal,
            FeedError::Unknown => ErrorCode::UnknownTarget,
        }
    }
}

/// Whose feed an address is, as signed into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedOwner {
    pub sub: String,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub children: Vec<Child>,
    /// The feed's id (16 random bytes, hex).
    pub feed: String,
    /// Seconds since the Unix epoch.
    pub exp: u64,
}

/// The address of `claims`' user's feed: the active one (signed again,
/// with the token's classes and children of now and a new expiry), or,
/// when none is active or `new` is set, a new one (the last one stops
/// working). Blocking.
pub fn address(hub: &Hub, claims: &Claims, now_ms: u64, new: bool) -> Result<FeedOk, FeedError> {
    let active = if new {
        None
    } else {
        hub.store.feed(&claims.sub)?
    };
    let feed = match active {
        Some(feed) => feed,
        None => {
            let mut id = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut id);
            hex::encode(id)
        }
    };
    let exp = now_ms / 1000 + FEED_LIFETIME_SECS;
    let owner = FeedOwner {
        sub: claims.sub.clone(),
        name: claims.name.clone(),
        role: claims.role,
        classes: claims.classes.clone(),
        children: claims.children.clone(),
        feed,
        exp,
    };
    let signed = hub.keyring.sign_value(&owner).map_err(FeedError::Sign)?;
    hub.store.set_feed(&owner.sub, &owner.feed)?;
    Ok(FeedOk {
        path: format!("/cal/{signed}.ics"),
        expires: exp * 1000,
    })
}

/// Stops `user`'s feed; false if none was active. Blocking.
pub fn revoke(hub: &Hub, user: &str) -> Result<bool, FeedError> {
    Ok(hub.store.delete_feed(user)?)
}

/// The owner of the address whose signed part is `signed`, if it still
/// works. Blocking.
pub fn open(hub: &Hub, signed: &str, now_ms: u64) -> Result<FeedOwner, FeedError> {
    let owner: FeedOwner = hub
        .keyring
        .open_value(signed, now_ms / 1000)
        .map_err(|_| FeedError::Unknown)?;
    match hub.store.feed(&owner.sub)? {
        Some(active) if active == owner.feed => Ok(owner),
        _ => Err(FeedError::Unknown),
    }
}
