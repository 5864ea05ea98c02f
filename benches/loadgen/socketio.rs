//! The load generator's Socket.IO client.

use super::*;

pub(crate) type SioAcks = Arc<Mutex<HashMap<u32, oneshot::Sender<Value>>>>;

/// Socket.IO 4 over its WebSocket transport (engine.io v4 framing): `0{..}`
/// open, `40` connect to `/`, `42[..]` events, `42<id>[..]`/`43<id>[..]`
/// acks, ping `2` answered with pong `3`. Built like `preau::client::Client`
/// (a writer task and a reader task, unbounded channels) so that both
/// targets cost the generator about the same.
pub(crate) struct SioClient {
    pub(crate) outgoing: mpsc::UnboundedSender<Message>,
    pub(crate) events: mpsc::UnboundedReceiver<Incoming>,
    pub(crate) acks: SioAcks,
    pub(crate) next_ack: u32,
}

#[derive(serde::Deserialize)]
pub(crate) struct SioEvent {
    pub(crate) offset: u64,
    pub(crate) text: String,
}

impl SioClient {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<SioClient> {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        let mut opened = false;
        loop {
            let message = ws
                .next()
                .await
                .context("socket.io closed during handshake")??;
            let Message::Text(text) = message else {
                continue;
            };
            let text = text.as_str();
            if !opened && text.starts_with('0') {
                opened = true;
                ws.send(Message::text("40")).await?;
            } else if text.starts_with("40") {
                break;
            } else if text.starts_with("44") {
                bail!("socket.io refused the connection: {text}");
            } else if text == "2" {
                ws.send(Message::text("3")).await?;
            }
        }
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let acks: SioAcks = Arc::default();
        tokio::spawn(async move {
            while let Some(message) = outgoing_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader_acks = acks.clone();
        let reader_out = outgoing.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => {
                        let text = text.as_str();
                        if text == "2" {
                            let _ = reader_out.send(Message::text("3"));
                        } else if let Some(body) = text.strip_prefix("42") {
                            let incoming = match serde_json::from_str::<(String, SioEvent)>(body) {
                                Ok((name, event)) if name == "event" => Incoming::Event {
                                    offset: event.offset,
                                    text: event.text,
                                },
                                _ => Incoming::Other,
                            };
                            let _ = events_tx.send(incoming);
                        } else if let Some(body) = text.strip_prefix("43") {
                            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
                            let id: u32 = body[..digits].parse().unwrap_or(0);
                            let waiter = reader_acks.lock().remove(&id);
                            match waiter {
                                Some(waiter) => {
                                    let value = serde_json::from_str(&body[digits..])
                                        .unwrap_or(Value::Null);
                                    let _ = waiter.send(value);
                                }
                                None => {
                                    let _ = events_tx.send(Incoming::Ack);
                                }
                            }
                        } else if text.starts_with("41") || text == "1" {
                            break;
                        }
                    }
                    Message::Close(_) => {
                        let _ = reader_out.send(Message::Close(None));
                        break;
                    }
                    _ => {}
                }
            }
            reader_acks.lock().clear();
        });
        Ok(SioClient {
            outgoing,
            events,
            acks,
            next_ack: 1,
        })
    }

    pub(crate) fn send(&self, text: String) -> anyhow::Result<()> {
        self.outgoing
            .send(Message::text(text))
            .map_err(|_| anyhow::anyhow!("socket.io connection closed"))
    }

    pub(crate) fn ack_id(&mut self) -> u32 {
        let id = self.next_ack;
        self.next_ack = self.next_ack.wrapping_add(1).max(1);
        id
    }

    pub(crate) async fn join(&mut self, room: &str) -> anyhow::Result<JoinInfo> {
        let id = self.ack_id();
        let (tx, rx) = oneshot::channel();
        self.acks.lock().insert(id, tx);
        self.send(format!("42{id}{}", json!(["join", room])))?;
        let reply = rx.await.context("socket.io closed before the join ack")?;
        Ok(JoinInfo {
            epoch: String::new(),
            head: reply[0]["head"].as_u64().unwrap_or(0),
            recovered: None,
            replay: Vec::new(),
        })
    }

    /// Emits `post` with an ack id (the server acks every post, as préau
    /// does); the ack arrives as [`Incoming::Ack`].
    pub(crate) fn post(&mut self, room: &str, text: &str) -> anyhow::Result<()> {
        let id = self.ack_id();
        self.send(format!("42{id}{}", json!(["post", room, text])))
    }

    pub(crate) fn close(&self) {
        let _ = self.outgoing.send(Message::Close(None));
    }
}
