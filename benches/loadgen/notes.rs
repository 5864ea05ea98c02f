//! The load generator's notes.

use super::*;

/// lib0 `varUint` (7 bits per byte, little end first), as y-protocols and
/// Hocuspocus write lengths and message types.
pub(crate) fn write_var_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn read_var_uint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let byte = *data.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(n);
        }
        shift += 7;
    }
}

/// lib0 `varUint8Array`: a length, then that many bytes.
pub(crate) fn read_var_bytes<'a>(data: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_var_uint(data, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let bytes = data.get(*pos..end)?;
    *pos = end;
    Some(bytes)
}

/// What a note editor receives, whatever the server.
pub(crate) enum NoteIn {
    /// A Yjs v1 update to apply: a `yjs_update` event (préau) or a sync
    /// update message (Hocuspocus).
    Update(Vec<u8>),
    /// The server's sync step 1: answer with what it lacks.
    Step1(yrs::StateVector),
    /// The server's sync step 2: what this editor lacked.
    Step2(Vec<u8>),
    /// Awareness states (cursors) of other editors.
    Awareness(yrs::sync::AwarenessUpdate),
    /// The reply to one of our messages (préau `ok`, Hocuspocus SyncStatus).
    Ack,
    Error(String),
    Other,
}

/// Hocuspocus's protocol over WebSocket: every message, both ways, is
/// `varString(documentName)` followed by a y-protocols message (types 0 sync,
/// 1 awareness, 2 auth, 3 query awareness, 4 sync reply, 8 sync status).
/// A document starts with an auth message (`2, 0, varString(token)`); the
/// server queues everything else for that document until its hooks ran and
/// it answered `2, 2, varString(scope)` (or `2, 1, reason`). Built like
/// `preau::client::Client`: a writer task, a reader task, unbounded channels.
pub(crate) struct HocusClient {
    pub(crate) outgoing: mpsc::UnboundedSender<Message>,
    pub(crate) incoming: mpsc::UnboundedReceiver<NoteIn>,
    /// `varString(documentName)`.
    pub(crate) prefix: Vec<u8>,
}

impl HocusClient {
    pub(crate) async fn connect(url: &str, document: &str) -> anyhow::Result<HocusClient> {
        // The same small buffers as préau's client.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        let mut prefix = Vec::with_capacity(document.len() + 2);
        write_var_uint(&mut prefix, document.len() as u64);
        prefix.extend_from_slice(document.as_bytes());
        // No onAuthenticate hook on the server: any token passes.
        let mut auth = prefix.clone();
        auth.extend_from_slice(&[2, 0]);
        write_var_uint(&mut auth, 7);
        auth.extend_from_slice(b"no-auth");
        ws.send(Message::binary(auth)).await?;
        loop {
            let message = ws.next().await.context("hocuspocus closed during auth")??;
            let Message::Binary(data) = message else {
                continue;
            };
            if !data.starts_with(&prefix) {
                continue;
            }
            let mut pos = prefix.len();
            match (
                read_var_uint(&data, &mut pos),
                read_var_uint(&data, &mut pos),
            ) {
                (Some(2), Some(2)) => break,
                (Some(2), Some(1)) => bail!("hocuspocus refused the document: permission denied"),
                _ => {}
            }
        }
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = outgoing_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader_out = outgoing.clone();
        let reader_prefix = prefix.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    // Messages of other documents cannot come: one per connection.
                    Message::Binary(data) if data.starts_with(&reader_prefix) => {
                        let _ = incoming_tx.send(parse_hocus(&data, reader_prefix.len()));
                    }
                    Message::Close(_) => {
                        let _ = reader_out.send(Message::Close(None));
                        break;
                    }
                    _ => {}
                }
            }
        });
        Ok(HocusClient {
            outgoing,
            incoming,
            prefix,
        })
    }

    /// Sends one y-protocols message for the document.
    pub(crate) fn send(&self, message: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(self.prefix.len() + message.len());
        frame.extend_from_slice(&self.prefix);
        frame.extend_from_slice(message);
        self.outgoing
            .send(Message::binary(frame))
            .map_err(|_| anyhow::anyhow!("hocuspocus connection closed"))
    }

    pub(crate) fn close(&self) {
        let _ = self.outgoing.send(Message::Close(None));
    }
}

/// One message from Hocuspocus, after the document name.
pub(crate) fn parse_hocus(data: &[u8], mut pos: usize) -> NoteIn {
    use yrs::updates::decoder::Decode;
    let start = pos;
    match read_var_uint(data, &mut pos) {
        // Sync, or SyncReply (a sync message that asks for no step 1 back).
        Some(0) | Some(4) => {
            let sub = read_var_uint(data, &mut pos);
            let Some(payload) = read_var_bytes(data, &mut pos) else {
                return NoteIn::Other;
            };
            match sub {
                Some(0) => match yrs::StateVector::decode_v1(payload) {
                    Ok(sv) => NoteIn::Step1(sv),
                    Err(_) => NoteIn::Error("bad state vector from hocuspocus".to_owned()),
                },
                Some(1) => NoteIn::Step2(payload.to_vec()),
                Some(2) => NoteIn::Update(payload.to_vec()),
                _ => NoteIn::Other,
            }
        }
        // Awareness: the same y-protocols message as préau relays.
        Some(1) => match preau::notes::decode_message(&data[start..]) {
            Ok(preau::notes::Incoming::Awareness(update)) => NoteIn::Awareness(update),
            _ => NoteIn::Error("bad awareness message from hocuspocus".to_owned()),
        },
        Some(8) => NoteIn::Ack,
        _ => NoteIn::Other,
    }
}

/// One editor's connection: préau (`yjs` requests, `yjs` frames and
/// `yjs_update` events) or Hocuspocus.
pub(crate) enum NoteConn {
    Preau { client: Client, room: String },
    Hocus(HocusClient),
}

impl NoteConn {
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        user: &str,
        note: &str,
    ) -> anyhow::Result<NoteConn> {
        match endpoint.target {
            Target::Preau => {
                let token = endpoint.token(user)?;
                let (mut client, _) = Client::connect(endpoint.url(0), &token).await?;
                client.join(note, None).await?;
                Ok(NoteConn::Preau {
                    client,
                    room: note.to_owned(),
                })
            }
            Target::Hocuspocus => Ok(NoteConn::Hocus(
                HocusClient::connect(endpoint.url(0), note).await?,
            )),
            other => bail!(
                "notes runs against preau or hocuspocus, not {}",
                other.name()
            ),
        }
    }

    /// Sends one y-protocols message (no request id on préau: the reply
    /// arrives as [`NoteIn::Ack`]).
    pub(crate) fn send(&self, message: Vec<u8>) -> anyhow::Result<()> {
        match self {
            NoteConn::Preau { client, room } => {
                let frame = protocol::encode_request(&Request::Yjs {
                    id: None,
                    room: room.clone(),
                    data: message,
                    more: None,
                })?;
                client.send_raw(frame)?;
                Ok(())
            }
            NoteConn::Hocus(client) => client.send(&message),
        }
    }

    pub(crate) async fn next(&mut self) -> Option<NoteIn> {
        match self {
            NoteConn::Preau { client, .. } => Some(match client.next().await? {
                ServerFrame::Event(event) => match event.body {
                    Body::YjsUpdate { data } => NoteIn::Update(data),
                    _ => NoteIn::Other,
                },
                ServerFrame::Yjs(frame) => match preau::notes::decode_message(&frame.data) {
                    Ok(preau::notes::Incoming::SyncStep1(sv)) => NoteIn::Step1(sv),
                    Ok(preau::notes::Incoming::SyncStep2(update)) => NoteIn::Step2(update),
                    Ok(preau::notes::Incoming::Update(update)) => NoteIn::Update(update),
                    Ok(preau::notes::Incoming::Awareness(update)) => NoteIn::Awareness(update),
                    Ok(_) => NoteIn::Other,
                    Err(_) => NoteIn::Error("bad yjs frame from préau".to_owned()),
                },
                ServerFrame::Ok { id: None, .. } => NoteIn::Ack,
                ServerFrame::Error(reply) => NoteIn::Error(reply.code.to_string()),
                _ => NoteIn::Other,
            }),
            NoteConn::Hocus(client) => client.incoming.recv().await,
        }
    }

    pub(crate) fn close(&self) {
        match self {
            NoteConn::Preau { client, .. } => client.close(),
            NoteConn::Hocus(client) => client.close(),
        }
    }
}

/// Characters typed, in turn.
pub(crate) const TYPED: &[&str] = &["a", "b", "c", "d", "e", " ", "f", "g", "h", "i", "j", "\n"];

/// One editor's yrs document and cursor. The cursor is a sticky index
/// bound to the character just typed, so the editor keeps typing after its
/// own text whatever the others insert before it (as a person does).
pub(crate) struct Typist {
    pub(crate) doc: yrs::Doc,
    pub(crate) text: yrs::TextRef,
    pub(crate) client_id: u64,
    pub(crate) cursor: Option<yrs::StickyIndex>,
    pub(crate) typed: usize,
    /// Clock of this editor's awareness state (each change increments it).
    pub(crate) awareness_clock: u32,
}

impl Typist {
    pub(crate) fn new(client_id: u64) -> Typist {
        let doc = yrs::Doc::with_client_id(client_id);
        let text = doc.get_or_insert_text("content");
        Typist {
            doc,
            text,
            client_id,
            cursor: None,
            typed: 0,
            awareness_clock: 0,
        }
    }

    /// The awareness message an editor sends when its cursor moves: its
    /// name, colour and cursor, as y-codemirror and y-prosemirror set them,
    /// plus the send time (`t`, ns) to measure the delivery.
    pub(crate) fn awareness(&mut self, sent_ns: u64) -> Vec<u8> {
        self.awareness_clock += 1;
        let state = json!({
            "user": {"name": format!("editor {}", self.client_id), "color": "#30bced"},
            "cursor": {"anchor": self.typed, "head": self.typed},
            "t": sent_ns,
        });
        let entry = yrs::sync::awareness::AwarenessUpdateEntry {
            clock: self.awareness_clock,
            json: Arc::from(state.to_string()),
        };
        preau::notes::encode_awareness(&yrs::sync::AwarenessUpdate {
            clients: HashMap::from([(self.client_id, entry)]),
        })
    }

    /// Types one character at the cursor: the v1 update and the clock of
    /// the new character (its id is `(client_id, clock)`).
    pub(crate) fn type_one(&mut self) -> (Vec<u8>, u32) {
        use yrs::{IndexedSequence, ReadTxn, Text, Transact};
        let mut txn = self.doc.transact_mut();
        let clock = txn.state_vector().get(&self.client_id);
        let len = self.text.len(&txn);
        let index = self
            .cursor
            .as_ref()
            .and_then(|cursor| cursor.get_offset(&txn))
            .map_or(len, |offset| offset.index.min(len));
        self.text
            .insert(&mut txn, index, TYPED[self.typed % TYPED.len()]);
        self.typed += 1;
        self.cursor = self.text.sticky_index(&txn, index + 1, yrs::Assoc::Before);
        (txn.encode_update_v1(), clock)
    }

    /// Applies an update; the id of its first new item, `(client, clock)`.
    pub(crate) fn apply(&mut self, data: &[u8]) -> Result<Option<(u64, u32)>, String> {
        use yrs::updates::decoder::Decode;
        use yrs::Transact;
        let update =
            yrs::Update::decode_v1(data).map_err(|e| format!("undecodable update: {e}"))?;
        let first = update
            .state_vector_lower()
            .iter()
            .next()
            .map(|(&client, &clock)| (client, clock));
        self.doc
            .transact_mut()
            .apply_update(update)
            .map_err(|e| format!("update does not apply: {e}"))?;
        Ok(first)
    }

    /// Sync step 2 in answer to the server's step 1.
    pub(crate) fn diff(&self, remote: &yrs::StateVector) -> Vec<u8> {
        use yrs::{ReadTxn, Transact};
        preau::notes::encode_step2(&self.doc.transact().encode_state_as_update_v1(remote))
    }

    pub(crate) fn text(&self) -> String {
        use yrs::{GetString, Transact};
        self.text.get_string(&self.doc.transact())
    }
}

/// Updates sent and not yet received by every other editor, by the id of
/// their character: (send time, editors still to receive it).
#[derive(Default)]
pub(crate) struct NoteTrack {
    pub(crate) pending: Mutex<HashMap<(u64, u32), (u64, u64)>>,
    /// Editors minus one, set before typing starts.
    pub(crate) others: AtomicU64,
    /// Updates received that no editor of this run sent (or received twice).
    pub(crate) unknown: AtomicU64,
}

impl NoteTrack {
    pub(crate) fn sent(&self, id: (u64, u32), at_ns: u64) {
        let others = self.others.load(Ordering::Relaxed);
        if others > 0 {
            self.pending.lock().insert(id, (at_ns, others));
        }
    }

    /// Another editor received `id`: one delivery (its latency), and when it
    /// was the last one, the update's propagation time.
    pub(crate) fn received(&self, id: (u64, u32), stats: &Stats) {
        let mut pending = self.pending.lock();
        let Some(entry) = pending.get_mut(&id) else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return;
        };
        stats.delivered(entry.0);
        entry.1 -= 1;
        if entry.1 == 0 {
            let sent = entry.0;
            pending.remove(&id);
            stats.propagated(sent);
        }
    }
}

pub(crate) enum EditorCmd {
    /// Close; the reply carries the editor's final text.
    Finish(oneshot::Sender<String>),
}

/// Handles one incoming message; true when it was the server's step 2
/// (the editor is in sync).
pub(crate) fn editor_handle(
    message: NoteIn,
    typist: &mut Typist,
    conn: &NoteConn,
    ctx: &Ctx,
    track: &NoteTrack,
) -> bool {
    let stats = &ctx.stats;
    match message {
        NoteIn::Update(data) => match typist.apply(&data) {
            Ok(Some((client, _))) if client == typist.client_id => {
                stats.echoes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(id)) => track.received(id, stats),
            Ok(None) => stats.error("update without new items"),
            Err(err) => stats.error(err),
        },
        NoteIn::Step2(data) => {
            if let Err(err) = typist.apply(&data) {
                stats.error(err);
            }
            return true;
        }
        NoteIn::Step1(remote) => {
            if let Err(err) = conn.send(typist.diff(&remote)) {
                stats.error(format!("step 2: {err}"));
            }
        }
        NoteIn::Awareness(update) => {
            for (client, entry) in &update.clients {
                if *client == typist.client_id {
                    continue;
                }
                // States without a send time (a removal, the states a
                // server sends on connect) are not deliveries to time.
                let sent = serde_json::from_str::<Value>(&entry.json)
                    .ok()
                    .and_then(|state| state["t"].as_u64());
                if let Some(sent) = sent {
                    stats.delivered(sent);
                    stats.awareness_delivered(sent);
                }
            }
        }
        NoteIn::Ack => {
            stats.acks.fetch_add(1, Ordering::Relaxed);
        }
        NoteIn::Error(code) => stats.error(code),
        NoteIn::Other => {
            stats.others.fetch_add(1, Ordering::Relaxed);
        }
    }
    false
}

/// Connects, syncs (step 1, the server's step 2 and step 1, our step 2).
pub(crate) async fn editor_setup(
    ctx: &Ctx,
    track: &NoteTrack,
    user: &str,
    note: &str,
    typist: &mut Typist,
) -> anyhow::Result<NoteConn> {
    let started = now_ns();
    let mut conn = NoteConn::connect(&ctx.endpoint, user, note).await?;
    let sv = {
        use yrs::{ReadTxn, Transact};
        typist.doc.transact().state_vector()
    };
    conn.send(preau::notes::encode_step1(&sv))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, conn.next())
            .await
            .context("no sync step 2 within 30 s")?
            .context("closed during sync")?;
        if editor_handle(message, typist, &conn, ctx, track) {
            break;
        }
    }
    ctx.stats
        .setup
        .lock()
        .saturating_record(((now_ns() - started) / 1000).max(1));
    Ok(conn)
}

/// One editor: connects and syncs, then types at the current rate (one
/// character, one update each), applies every update it receives, and
/// reports its text when finished.
pub(crate) async fn editor(
    ctx: Arc<Ctx>,
    track: Arc<NoteTrack>,
    client_id: u64,
    user: String,
    note: String,
    awareness: bool,
    mut commands: mpsc::UnboundedReceiver<EditorCmd>,
) {
    let mut typist = Typist::new(client_id);
    let slot = ctx.connect_slots.acquire().await;
    let setup = editor_setup(&ctx, &track, &user, &note, &mut typist).await;
    drop(slot);
    let mut conn = match setup {
        Ok(conn) => conn,
        Err(err) => {
            ctx.stats.setup_failed.fetch_add(1, Ordering::Relaxed);
            ctx.stats.error(format!("setup: {err}"));
            return;
        }
    };
    ctx.stats.connected.fetch_add(1, Ordering::Relaxed);
    let mut rate_rx = ctx.rate.clone();
    let mut rate = *rate_rx.borrow_and_update();
    let mut ticker = post_ticker(rate);
    let mut alive = true;
    loop {
        tokio::select! {
            incoming = conn.next(), if alive => match incoming {
                Some(message) => {
                    editor_handle(message, &mut typist, &conn, &ctx, &track);
                }
                None => {
                    ctx.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    if let NoteConn::Preau { client, .. } = &conn {
                        if let Some((code, reason)) = client.close_frame() {
                            ctx.stats.error(format!("closed by server: {code} {reason}"));
                        }
                    }
                    alive = false;
                }
            },
            _ = ticker.tick(), if alive && rate > 0.0 => {
                if !ctx.posting_now() {
                    continue;
                }
                let (update, clock) = typist.type_one();
                let message = preau::notes::encode_update(&update);
                let sent = now_ns();
                track.sent((client_id, clock), sent);
                if conn.send(message).is_ok() {
                    ctx.stats.posts.fetch_add(1, Ordering::Relaxed);
                    ctx.stats.window_posts.fetch_add(1, Ordering::Relaxed);
                }
                if awareness && conn.send(typist.awareness(sent)).is_ok() {
                    ctx.stats.awareness_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            changed = rate_rx.changed() => {
                if changed.is_err() {
                    rate = 0.0;
                    rate_rx = watch::channel(0.0).1;
                } else {
                    rate = *rate_rx.borrow_and_update();
                    ticker = post_ticker(rate);
                }
            }
            command = commands.recv() => {
                let text = typist.text();
                conn.close();
                if let Some(EditorCmd::Finish(reply)) = command {
                    let _ = reply.send(text);
                }
                return;
            }
        }
    }
}

/// `notes`: `--editors` in one note, each typing `--typing-rate` characters
/// per second (one Yjs update each). One window: per-delivery latency,
/// propagation (until every other editor has the update), server CPU per
/// delivered update, RSS. Then: every update reached every other editor,
/// and every editor ends with the same text.
pub(crate) async fn notes(run: &mut Run) -> anyhow::Result<Value> {
    let n = run.args.editors;
    if n < 2 {
        bail!("notes needs 2 editors or more");
    }
    let note = match run.target {
        Target::Preau => format!("3B/notes/{}-n", run.run_id),
        Target::Hocuspocus => format!("{}-note", run.run_id),
        other => bail!(
            "notes runs against preau or hocuspocus, not {}",
            other.name()
        ),
    };
    let track = Arc::new(NoteTrack::default());
    if run.target == Target::Preau {
        run.set_phase("opening the note");
        run.ctx
            .endpoint
            .open_rooms(&run.run_id, std::slice::from_ref(&note))
            .await?;
    }
    run.set_phase(format!("connecting {n} editors"));
    let started = Instant::now();
    let mut editors = Vec::new();
    for i in 0..n {
        let (tx, rx) = mpsc::unbounded_channel();
        editors.push(tx);
        // Yjs client ids are random 53-bit numbers; any distinct ones do.
        let client_id = 1_000 + i as u64;
        tokio::spawn(editor(
            run.ctx.clone(),
            track.clone(),
            client_id,
            format!("{}-e{i}", run.run_id),
            note.clone(),
            !run.args.no_awareness,
            rx,
        ));
    }
    let stats = &run.ctx.stats;
    while stats.connected.load(Ordering::Relaxed) + stats.setup_failed.load(Ordering::Relaxed)
        < n as u64
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let connected = stats.connected.load(Ordering::Relaxed);
    let failed = stats.setup_failed.load(Ordering::Relaxed);
    run.progress.println(format!(
        "   {connected} editors in sync, {failed} failed in {secs:.2} s"
    ));
    let setup = json!({
        "connections": n,
        "connected": connected,
        "failed": failed,
        "seconds": round3(secs),
        "per_second": round1(n as f64 / secs),
        "concurrency": run.args.connect_concurrency,
        "setup_latency": hist_json(&stats.setup.lock()),
    });
    if connected < 2 {
        bail!(
            "fewer than 2 editors in sync ({connected}); errors: {}",
            stats.errors_json()
        );
    }
    track.others.store(connected - 1, Ordering::Relaxed);
    run.check_schedule()?;
    let rate = run.args.typing_rate;
    run.set_phase(format!(
        "{connected} editors typing {rate} characters/s each, ~{:.0} deliveries/s to other editors",
        rate * connected as f64 * (connected - 1) as f64
    ));
    let acks_from = stats.acks.load(Ordering::Relaxed);
    run.rate_tx.send_replace(rate);
    let mut window = run.window(run.args.warmup, run.args.duration).await;
    window["rate_per_editor"] = json!(rate);
    run.progress.println(format!(
        "   {:.0} updates/s, {:.0} deliveries/s, propagation p50 {} ms p99 {} ms, per delivery p99 {} ms, server {} µs/delivery, server cpu {}%, rss {} MiB, generator cpu {}%, run-queue wait server {} ms generator {} ms",
        window["posts_per_s"].as_f64().unwrap_or(0.0),
        window["deliveries_per_s"].as_f64().unwrap_or(0.0),
        window["propagation_to_all_others"]["p50_ms"],
        window["propagation_to_all_others"]["p99_ms"],
        window["latency"]["p99_ms"],
        window["server_cpu_us_per_delivery"],
        window["server_cpu_percent"],
        window["server_rss_mib"],
        window["generator_cpu_percent"],
        window["server_runqueue_wait_ms"],
        window["generator_runqueue_wait_ms"],
    ));
    run.rate_tx.send_replace(0.0);
    run.set_phase("draining");
    run.settle(Duration::from_secs(1), Duration::from_secs(20))
        .await;
    let not_everywhere = track.pending.lock().len();
    let mut replies = Vec::new();
    for tx in editors.drain(..) {
        let (reply_tx, reply_rx) = oneshot::channel();
        if tx.send(EditorCmd::Finish(reply_tx)).is_ok() {
            replies.push(reply_rx);
        }
    }
    let mut texts = Vec::new();
    for reply in replies {
        if let Ok(Ok(text)) = tokio::time::timeout(Duration::from_secs(10), reply).await {
            texts.push(text);
        }
    }
    let distinct: std::collections::BTreeSet<&String> = texts.iter().collect();
    let typed = stats.posts.load(Ordering::Relaxed);
    let converged = distinct.len() == 1
        && texts.len() as u64 == connected
        && texts.first().is_some_and(|t| t.len() as u64 == typed);
    run.progress.println(format!(
        "   {typed} updates typed; {not_everywhere} not received by every other editor; {} distinct final texts over {} editors ({} characters)",
        distinct.len(),
        texts.len(),
        texts.first().map_or(0, |t| t.len())
    ));
    Ok(json!({
        "setup": setup,
        "editors": connected,
        "typing_rate": rate,
        "note": note,
        "steps": [window],
        "updates_sent": typed,
        "awareness": !run.args.no_awareness,
        "awareness_sent": stats.awareness_sent.load(Ordering::Relaxed),
        "replies_received": stats.acks.load(Ordering::Relaxed) - acks_from,
        "updates_not_received_by_every_other_editor": not_everywhere,
        "unknown_updates": track.unknown.load(Ordering::Relaxed),
        "own_updates_echoed": stats.echoes.load(Ordering::Relaxed),
        "final_texts_distinct": distinct.len(),
        "final_text_chars": texts.first().map(|t| t.len()),
        "converged": converged,
    }))
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
