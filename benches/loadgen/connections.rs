//! The load generator's connections.

use super::*;

/// What a connection receives, whatever the server.
pub(crate) enum Incoming {
    Event {
        offset: u64,
        text: String,
    },
    /// The ack of a post sent without waiting.
    Ack,
    Error(String),
    Other,
}

pub(crate) struct JoinInfo {
    pub(crate) epoch: String,
    pub(crate) head: u64,
    pub(crate) recovered: Option<bool>,
    pub(crate) replay: Vec<(u64, String)>,
}

/// Rooms one staff user opens in [`Endpoint::open_rooms`]: a join and a
/// leave each, within préau's default request burst (200).
pub(crate) const OPENER_ROOMS: usize = 50;

/// Sends `request` (a join or a leave), and sends it again while préau
/// answers `rate_limited`, after the `retry_after_ms` it gives.
pub(crate) async fn request_until_not_rate_limited(
    client: &mut Client,
    request: Request,
) -> anyhow::Result<()> {
    loop {
        match client.request::<rmpv::Value>(request.clone()).await {
            Err(ClientError::Refused(reply)) if reply.code == protocol::ErrorCode::RateLimited => {
                let wait = reply.retry_after_ms.unwrap_or(100).max(1);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            other => {
                other?;
                return Ok(());
            }
        }
    }
}

/// One client connection: préau's own client (préau and the bare peer) or
/// the Socket.IO client below.
pub(crate) enum Conn {
    Preau(Client),
    Sio(SioClient),
}

pub(crate) struct Endpoint {
    pub(crate) target: Target,
    /// One URL per node (one unless `cluster`).
    pub(crate) urls: Vec<String>,
    pub(crate) keyring: Option<Keyring>,
}

impl Endpoint {
    /// A pupil's token: every member of every scenario is a pupil of 3B.
    pub(crate) fn token(&self, user: &str) -> anyhow::Result<String> {
        self.mint(user, Role::Student, &["3B"])
    }

    pub(crate) fn mint(&self, user: &str, role: Role, classes: &[&str]) -> anyhow::Result<String> {
        let Some(keyring) = &self.keyring else {
            return Ok("no-auth".to_owned());
        };
        let now = preau::auth::now_secs();
        Ok(keyring.mint(&Claims {
            sub: user.to_owned(),
            name: user.to_owned(),
            role,
            classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            children: vec![],
            exp: now + 4 * 3600,
            iat: now,
        })?)
    }

    /// Opens `rooms` on préau before any member joins them: a room exists
    /// once a teacher of its class or staff joins it, and a pupil's join of
    /// a room nobody opened is refused (`unknown_room`). Staff users join
    /// and leave [`OPENER_ROOMS`] rooms each, all at once: each user's
    /// requests have their own bucket (`request_rate_per_sec`,
    /// `request_burst`), and a `rate_limited` join or leave waits and is
    /// sent again. On a cluster the rooms are opened on the first node
    /// (Redis makes them known to the others). Other targets have no such
    /// rule: nothing to do.
    pub(crate) async fn open_rooms(&self, run_id: &str, rooms: &[String]) -> anyhow::Result<()> {
        if self.target != Target::Preau {
            return Ok(());
        }
        let openers = rooms
            .chunks(OPENER_ROOMS)
            .enumerate()
            .map(|(k, chunk)| async move {
                let token = self.mint(&format!("{run_id}-opener{k}"), Role::Staff, &[])?;
                let (mut client, _) = Client::connect(self.url(0), &token)
                    .await
                    .context("opener connects")?;
                for room in chunk {
                    let join = Request::Join {
                        id: None,
                        room: room.clone(),
                        since: None,
                    };
                    request_until_not_rate_limited(&mut client, join)
                        .await
                        .with_context(|| format!("opening {room}"))?;
                    let leave = Request::Leave {
                        id: None,
                        room: room.clone(),
                    };
                    request_until_not_rate_limited(&mut client, leave)
                        .await
                        .with_context(|| format!("leaving {room} after opening it"))?;
                }
                client.close();
                anyhow::Ok(())
            });
        futures_util::future::try_join_all(openers).await?;
        Ok(())
    }

    /// The URL of `node` (members are spread over the nodes by index).
    pub(crate) fn url(&self, node: usize) -> &str {
        &self.urls[node % self.urls.len().max(1)]
    }

    pub(crate) async fn connect(&self, user: &str, node: usize) -> anyhow::Result<Conn> {
        let url = self.url(node);
        match self.target {
            Target::Preau | Target::Bare => {
                let token = self.token(user)?;
                let (client, _) = Client::connect(url, &token).await?;
                Ok(Conn::Preau(client))
            }
            Target::SocketIo => Ok(Conn::Sio(SioClient::connect(url).await?)),
            Target::Hocuspocus => bail!("the hocuspocus target only runs the notes scenario"),
        }
    }
}

impl Conn {
    pub(crate) async fn join(
        &mut self,
        room: &str,
        since: Option<(String, u64)>,
    ) -> anyhow::Result<JoinInfo> {
        match self {
            Conn::Preau(client) => {
                let since = since.map(|(epoch, offset)| Position { epoch, offset });
                let joined = client.join(room, since).await?;
                Ok(JoinInfo {
                    epoch: joined.epoch,
                    head: joined.head,
                    recovered: joined.recovery.map(|r| r.recovered),
                    replay: joined
                        .events
                        .into_iter()
                        .map(|e| {
                            let text = match e.body {
                                Body::Message { text, .. } => text,
                                _ => String::new(),
                            };
                            (e.offset, text)
                        })
                        .collect(),
                })
            }
            Conn::Sio(client) => client.join(room).await,
        }
    }

    /// Posts without waiting for the ack (it arrives as [`Incoming::Ack`]).
    pub(crate) fn post(&mut self, room: &str, text: String) -> anyhow::Result<()> {
        match self {
            Conn::Preau(client) => {
                let frame = protocol::encode_request(&Request::Post {
                    id: None,
                    room: room.to_owned(),
                    text,
                    title: None,
                    thread: None,
                    reply_to: None,
                    quote: None,
                    key: None,
                })?;
                client.send_raw(frame)?;
                Ok(())
            }
            Conn::Sio(client) => client.post(room, &text),
        }
    }

    /// Posts and waits for the ack; the offset given (préau only).
    pub(crate) async fn post_acked(&mut self, room: &str, text: &str) -> Result<u64, String> {
        match self {
            Conn::Preau(client) => match client.post(room, text).await {
                Ok(ack) => Ok(ack.offset),
                Err(ClientError::Refused(reply)) => Err(reply.code.to_string()),
                Err(err) => Err(err.to_string()),
            },
            Conn::Sio(_) => Err("post_acked needs préau".to_owned()),
        }
    }

    pub(crate) async fn next(&mut self) -> Option<Incoming> {
        match self {
            Conn::Preau(client) => Some(match client.next().await? {
                ServerFrame::Event(event) => {
                    let text = match event.body {
                        Body::Message { text, .. } => text,
                        _ => String::new(),
                    };
                    Incoming::Event {
                        offset: event.offset,
                        text,
                    }
                }
                ServerFrame::Ok { id: None, .. } => Incoming::Ack,
                ServerFrame::Error(reply) => Incoming::Error(reply.code.to_string()),
                _ => Incoming::Other,
            }),
            Conn::Sio(client) => client.events.recv().await,
        }
    }

    pub(crate) fn close(&self) {
        match self {
            Conn::Preau(client) => client.close(),
            Conn::Sio(client) => client.close(),
        }
    }
}
