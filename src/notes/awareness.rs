//! Awareness (cursors, names): ephemeral, never stored, bound to the
//! authenticated user.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::AwarenessUpdate;

use super::{encode_awareness, NoteError};

/// Yjs client ids with a present state one connection may have at once (a
/// tab has one; a few more leave room for editors that create a document
/// per pane). A removed state (`null`) frees its place.
pub const MAX_AWARENESS_CLIENTS: usize = 4;

/// Client ids one connection may own in all, present or removed: an
/// editor that drops its document after a refusal takes a new client id
/// (see `protocol/` "Notes"), and its old id stays owned (nobody else may
/// speak for it) until the connection closes.
pub const MAX_AWARENESS_IDS: usize = 32;

/// Bytes of JSON kept from the client's own `user` fields besides the
/// identity (`user.color`, `user.colorLight` of editor plugins); fields
/// past this are dropped.
pub const MAX_USER_EXTRA_BYTES: usize = 512;

/// The identity fields of `user`, always the server's.
const IDENTITY: [&str; 3] = ["id", "name", "role"];

/// How y-protocols writes a removed state (`JSON.stringify(null)`).
const NULL_STATE: &str = "null";

/// Which Yjs client ids one connection owns, and their last clocks (to
/// remove them when it closes). A client id belongs to the first connection
/// that announces a state for it, until that connection closes.
#[derive(Debug, Default, Clone)]
pub struct AwarenessGuard {
    /// Owned ids: at most [`MAX_AWARENESS_IDS`], at most
    /// [`MAX_AWARENESS_CLIENTS`] of them present.
    owned: Vec<Owned>,
}

#[derive(Debug, Clone, Copy)]
struct Owned {
    id: u64,
    /// Highest clock seen.
    clock: u32,
    /// Whether its last state is present (not a removal).
    present: bool,
}

/// An awareness update accepted by [`AwarenessGuard::bind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The update to apply and relay: every state's `user` set to the
    /// sender. May be empty (nothing to relay).
    pub update: AwarenessUpdate,
    /// Client ids this update made the connection own: the caller records
    /// them so that other connections' `owned_elsewhere` sees them.
    pub claimed: Vec<u64>,
}

impl AwarenessGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds a client's awareness update to its user. In each state's
    /// `user` object, `id`, `name` and `role` become the sender's
    /// (`user`, its `UserInfo`); the client's other `user` fields are kept
    /// up to [`MAX_USER_EXTRA_BYTES`] (editor plugins read `user.color`).
    /// A state that is not a JSON object becomes `{"user": user}`.
    /// Removals (`null`) of the connection's own ids are kept; removals of
    /// ids nobody owns are dropped (stock y-websocket clients send them for
    /// peers they timed out, and the owner's connection already removes
    /// those). Entries of ids another connection owns are dropped:
    /// y-protocols providers re-broadcast the states they receive. Refuses
    /// the whole update if the connection would then have more than
    /// [`MAX_AWARENESS_CLIENTS`] present states or own more than
    /// [`MAX_AWARENESS_IDS`] ids; nothing is claimed then.
    pub fn bind(
        &mut self,
        update: &AwarenessUpdate,
        user: &Value,
        owned_elsewhere: impl Fn(u64) -> bool,
    ) -> Result<Bound, NoteError> {
        let mut claimed = Vec::new();
        let mut clients = HashMap::with_capacity(update.clients.len());
        for (&client_id, entry) in &update.clients {
            let removal = entry.json.as_ref() == NULL_STATE;
            if !self.owns(client_id) {
                // Another connection's state: y-protocols providers
                // re-broadcast the states they receive, so this is an echo
                // (or an impersonation attempt): dropped, never relayed.
                if owned_elsewhere(client_id) {
                    continue;
                }
                if removal {
                    continue;
                }
                // Keys of a map: each id is claimed once.
                claimed.push(client_id);
            }
            let json = if removal {
                entry.json.clone()
            } else {
                Arc::from(with_user(&entry.json, user)?)
            };
            clients.insert(
                client_id,
                AwarenessUpdateEntry {
                    clock: entry.clock,
                    json,
                },
            );
        }
        // Present states once this update is applied: an owned id's state
        // is what this update says of it, else what it was.
        let present = self
            .owned
            .iter()
            .filter(|o| match clients.get(&o.id) {
                Some(entry) => entry.json.as_ref() != NULL_STATE,
                None => o.present,
            })
            .count()
            + claimed.len();
        if present > MAX_AWARENESS_CLIENTS || self.owned.len() + claimed.len() > MAX_AWARENESS_IDS {
            return Err(NoteError::TooManyClients {
                max: MAX_AWARENESS_CLIENTS,
            });
        }
        // Nothing failed: commit the claims and clocks.
        self.owned.extend(claimed.iter().map(|&id| Owned {
            id,
            clock: 0,
            present: true,
        }));
        for owned in &mut self.owned {
            if let Some(entry) = clients.get(&owned.id) {
                owned.clock = owned.clock.max(entry.clock);
                owned.present = entry.json.as_ref() != NULL_STATE;
            }
        }
        Ok(Bound {
            update: AwarenessUpdate { clients },
            claimed,
        })
    }

    /// Whether this connection owns `client_id`.
    pub fn owns(&self, client_id: u64) -> bool {
        self.owned.iter().any(|o| o.id == client_id)
    }

    /// The client ids this connection owns (to release when it closes).
    pub fn owned(&self) -> impl Iterator<Item = u64> + '_ {
        self.owned.iter().map(|o| o.id)
    }

    /// The update removing this connection's states for everyone when it
    /// closes: each owned id with state `null` and its clock + 1, which
    /// y-protocols peers apply (a newer clock). `None` if it owns none.
    pub fn removal(&self) -> Option<AwarenessUpdate> {
        if self.owned.is_empty() {
            return None;
        }
        let clients = self
            .owned
            .iter()
            .map(|o| {
                let entry = AwarenessUpdateEntry {
                    clock: o.clock.saturating_add(1),
                    json: Arc::from(NULL_STATE),
                };
                (o.id, entry)
            })
            .collect();
        Some(AwarenessUpdate { clients })
    }
}

/// The state JSON with the identity in `user` forced to the authenticated
/// user's.
fn with_user(json: &str, user: &Value) -> Result<String, NoteError> {
    let state = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(mut map)) => {
            let merged = merge_user(map.remove("user"), user);
            map.insert("user".to_owned(), merged);
            Value::Object(map)
        }
        Ok(_) => serde_json::json!({ "user": user }),
        Err(_) => return Err(NoteError::InvalidMessage),
    };
    serde_json::to_string(&state).map_err(|_| NoteError::InvalidMessage)
}

/// `identity` (an object with `id`, `name`, `role`), plus the client's
/// other `user` fields in key order while their JSON stays within
/// [`MAX_USER_EXTRA_BYTES`]: a colour is a few bytes, an avatar image
/// would make every cursor move heavy for everyone.
fn merge_user(claimed: Option<Value>, identity: &Value) -> Value {
    let mut merged = match identity {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let Some(Value::Object(fields)) = claimed else {
        return Value::Object(merged);
    };
    let mut budget = MAX_USER_EXTRA_BYTES;
    for (key, value) in fields {
        if IDENTITY.contains(&key.as_str()) {
            continue;
        }
        // Key, quotes, colon and comma around the value.
        let cost = key.len() + 4 + value.to_string().len();
        if cost <= budget {
            budget -= cost;
            merged.insert(key, value);
        }
    }
    Value::Object(merged)
}

/// A room's awareness states, to answer query awareness: client id ->
/// (clock, state JSON, `None` once removed). Applies updates with the
/// y-protocols rule so it agrees with what clients hold.
#[derive(Debug, Default, Clone)]
pub struct AwarenessStates {
    states: HashMap<u64, (u32, Option<Arc<str>>)>,
}

impl AwarenessStates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a (bound) update; returns whether any state changed, so the
    /// caller may skip relaying pure echoes. As in y-protocols: a newer
    /// clock wins; a removal with the same clock removes a present state.
    /// Removals of unknown ids leave no trace (the map only grows with ids
    /// some connection owns, and [`AwarenessStates::remove`] drops those).
    pub fn apply(&mut self, update: &AwarenessUpdate) -> bool {
        let mut changed = false;
        for (&client_id, entry) in &update.clients {
            let state = (entry.json.as_ref() != NULL_STATE).then(|| entry.json.clone());
            let (clock, present) = match self.states.get(&client_id) {
                Some((clock, state)) => (*clock, state.is_some()),
                None if state.is_none() => continue,
                None => (0, false),
            };
            if clock < entry.clock || (clock == entry.clock && state.is_none() && present) {
                self.states.insert(client_id, (entry.clock, state));
                changed = true;
            }
        }
        changed
    }

    /// The awareness message (`1, varbytes(update)`) holding every present
    /// state: the answer to query awareness, and what a joining member needs.
    pub fn encode_all(&self) -> Vec<u8> {
        let clients = self
            .states
            .iter()
            .filter_map(|(&id, (clock, state))| {
                let json = state.clone()?;
                Some((
                    id,
                    AwarenessUpdateEntry {
                        clock: *clock,
                        json,
                    },
                ))
            })
            .collect();
        encode_awareness(&AwarenessUpdate { clients })
    }

    /// Forgets client ids entirely (a closed connection's, after its
    /// [`AwarenessGuard::removal`] was applied and relayed).
    pub fn remove(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            self.states.remove(&id);
        }
    }

    /// Number of known client ids (present or removed).
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}
