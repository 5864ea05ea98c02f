//! A Rust client for protocol v1, used by the tests, by `preau send` and
//! `preau listen`, and by the load generator.
//!
//! Replies are matched to requests by id; everything else (events,
//! presence, typing, id-less errors) arrives through [`Client::next`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::{
    self, ErrorReply, HelloOk, HistoryOk, JoinOk, Position, PostOk, Request, ServerFrame,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("server refused: {} ({})", .0.code, .0.message)]
    Refused(ErrorReply),
    #[error("connection closed{}", close_text(.0))]
    Closed(Option<(u16, String)>),
    #[error("bad frame from server: {0}")]
    Decode(String),
    #[error("cannot encode request: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot encode request: {0}")]
    Shape(String),
}

impl ClientError {
    /// Whether sending the same request again may succeed: the connection
    /// failed, or the server said "later" (`unavailable`, `overloaded`,
    /// `storage_error`, `rate_limited`). A post retried so must carry an
    /// idempotency key: the first may have been stored.
    pub fn is_retryable(&self) -> bool {
        use crate::protocol::ErrorCode;
        match self {
            ClientError::WebSocket(_) | ClientError::Closed(_) => true,
            ClientError::Refused(reply) => matches!(
                reply.code,
                ErrorCode::Unavailable
                    | ErrorCode::Overloaded
                    | ErrorCode::StorageError
                    | ErrorCode::RateLimited
            ),
            ClientError::Decode(_) | ClientError::Encode(_) | ClientError::Shape(_) => false,
        }
    }
}

fn close_text(close: &Option<(u16, String)>) -> String {
    match close {
        Some((code, reason)) => format!(" with {code} ({reason})"),
        None => String::new(),
    }
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Result<Bytes, ErrorReply>>>>>;

pub struct Client {
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    events: mpsc::UnboundedReceiver<ServerFrame>,
    close: Arc<Mutex<Option<(u16, String)>>>,
    next_id: u32,
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8080/ws`) and authenticates.
    pub async fn connect(url: &str, token: &str) -> Result<(Client, HelloOk), ClientError> {
        let mut client = Client::connect_unauthenticated(url).await?;
        let hello = client
            .request(Request::Hello {
                id: None,
                token: token.to_owned(),
            })
            .await?;
        Ok((client, hello))
    }

    /// Opens the WebSocket without sending `hello`.
    pub async fn connect_unauthenticated(url: &str) -> Result<Client, ClientError> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(protocol::SUBPROTOCOL),
        );
        // Small buffers: a load generator opens thousands of these.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let close: Arc<Mutex<Option<(u16, String)>>> = Arc::default();
        tokio::spawn(async move {
            while let Some(message) = outgoing_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader_pending = pending.clone();
        let reader_close = close.clone();
        let reader_outgoing = outgoing.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Binary(bytes) => {
                        let Ok(frame) = protocol::decode_server_frame(&bytes) else {
                            continue;
                        };
                        route(frame, bytes, &reader_pending, &events_tx);
                    }
                    Message::Close(frame) => {
                        *reader_close.lock() =
                            frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        // Completes the close handshake (tungstenite queued
                        // the reply; writing flushes it).
                        let _ = reader_outgoing.send(Message::Close(None));
                        break;
                    }
                    _ => {}
                }
            }
            // Dropping the senders fails every request still waiting.
            reader_pending.lock().clear();
        });
        Ok(Client {
            outgoing,
            pending,
            events,
            close,
            next_id: 1,
        })
    }

    /// Sends a request with a fresh id and waits for its reply's data.
    pub async fn request<T: DeserializeOwned>(
        &mut self,
        mut request: Request,
    ) -> Result<T, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        request.set_id(id);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        self.send_raw(protocol::encode_request(&request)?)?;
        match rx.await {
            Ok(Ok(frame)) => {
                protocol::decode_ok_data(&frame).map_err(|e| ClientError::Decode(e.to_string()))
            }
            Ok(Err(refusal)) => Err(ClientError::Refused(refusal)),
            Err(_) => Err(ClientError::Closed(self.close.lock().clone())),
        }
    }

    /// Sends a request of a room kind's own type (`request` serializes to
    /// a map with its `type`, e.g. `kinds::agenda::AgendaRequest`) with a
    /// fresh id, and waits for its reply's data.
    pub async fn request_kind<T: DeserializeOwned>(
        &mut self,
        request: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut value = protocol::named_value(request).map_err(ClientError::Shape)?;
        match &mut value {
            rmpv::Value::Map(entries) => {
                entries.retain(|(k, _)| k.as_str() != Some("id"));
                entries.push((rmpv::Value::from("id"), rmpv::Value::from(id)));
            }
            _ => return Err(ClientError::Shape("a request is a map".to_owned())),
        }
        let mut frame = Vec::new();
        rmpv::encode::write_value(&mut frame, &value)
            .map_err(|e| ClientError::Shape(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        self.send_raw(frame)?;
        match rx.await {
            Ok(Ok(frame)) => {
                protocol::decode_ok_data(&frame).map_err(|e| ClientError::Decode(e.to_string()))
            }
            Ok(Err(refusal)) => Err(ClientError::Refused(refusal)),
            Err(_) => Err(ClientError::Closed(self.close.lock().clone())),
        }
    }

    /// Sends raw bytes as one binary frame (tests use it for bad input).
    pub fn send_raw(&self, frame: impl Into<Bytes>) -> Result<(), ClientError> {
        self.outgoing
            .send(Message::Binary(frame.into()))
            .map_err(|_| ClientError::Closed(self.close.lock().clone()))
    }

    /// Sends any WebSocket message as is.
    pub fn send_message(&self, message: Message) -> Result<(), ClientError> {
        self.outgoing
            .send(message)
            .map_err(|_| ClientError::Closed(self.close.lock().clone()))
    }

    pub async fn join(
        &mut self,
        room: &str,
        since: Option<Position>,
    ) -> Result<JoinOk, ClientError> {
        self.request(Request::Join {
            id: None,
            room: room.to_owned(),
            since,
        })
        .await
    }

    pub async fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        self.request::<rmpv::Value>(Request::Leave {
            id: None,
            room: room.to_owned(),
        })
        .await
        .map(|_| ())
    }

    /// Posts and waits for the durable ack.
    pub async fn post(&mut self, room: &str, text: &str) -> Result<PostOk, ClientError> {
        self.post_keyed(room, text, None).await
    }

    /// Posts with an idempotency key: sent again with the same key (after
    /// an error or a lost connection), the post is stored once and the
    /// retry gets the first post's ack.
    pub async fn post_keyed(
        &mut self,
        room: &str,
        text: &str,
        key: Option<&str>,
    ) -> Result<PostOk, ClientError> {
        self.request(Request::Post {
            id: None,
            room: room.to_owned(),
            text: text.to_owned(),
            title: None,
            thread: None,
            reply_to: None,
            quote: None,
            key: key.map(str::to_owned),
        })
        .await
    }

    pub async fn typing(&mut self, room: &str) -> Result<(), ClientError> {
        self.request::<rmpv::Value>(Request::Typing {
            id: None,
            room: room.to_owned(),
        })
        .await
        .map(|_| ())
    }

    pub async fn history(
        &mut self,
        room: &str,
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryOk, ClientError> {
        self.request(Request::History {
            id: None,
            room: room.to_owned(),
            before,
            after,
            limit,
            thread: None,
        })
        .await
    }

    /// A moderation action; the reply is the ack of its moderation event.
    pub async fn moderate(
        &mut self,
        room: &str,
        action: crate::protocol::ModAction,
    ) -> Result<PostOk, ClientError> {
        self.request(Request::Moderate {
            id: None,
            room: room.to_owned(),
            action,
        })
        .await
    }

    /// The next event (or id-less error); `None` once the connection closed.
    pub async fn next(&mut self) -> Option<ServerFrame> {
        self.events.recv().await
    }

    /// The close frame's code and reason, once the server closed.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        self.close.lock().clone()
    }

    /// Closes the connection (normal closure).
    pub fn close(&self) {
        let _ = self.outgoing.send(Message::Close(None));
    }
}

impl Drop for Client {
    /// Dropping a client closes its connection (its tasks would otherwise
    /// keep each other alive).
    fn drop(&mut self) {
        self.close();
    }
}

fn route(
    frame: ServerFrame,
    bytes: Bytes,
    pending: &Pending,
    events: &mpsc::UnboundedSender<ServerFrame>,
) {
    let waiter = match &frame {
        ServerFrame::Ok { id: Some(id), .. } => pending.lock().remove(id),
        ServerFrame::Error(ErrorReply { id: Some(id), .. }) => pending.lock().remove(id),
        _ => None,
    };
    match (waiter, frame) {
        (Some(waiter), ServerFrame::Ok { .. }) => {
            let _ = waiter.send(Ok(bytes));
        }
        (Some(waiter), ServerFrame::Error(reply)) => {
            let _ = waiter.send(Err(reply));
        }
        (_, frame) => {
            let _ = events.send(frame);
        }
    }
}
