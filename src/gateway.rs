//! HTTP side: the WebSocket upgrade at `/ws`, `/healthz` and `/metrics`,
//! the web app and teacher console (static files of `web_dir`) at `/`,
//! `/admin/` when an admin key is set (`admin.rs`), and in demo mode
//! `/dev/token`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection;
use crate::hub::Hub;
use crate::protocol::SUBPROTOCOL;

/// Read buffer per connection: small, since most connections are idle and
/// client frames are small. tungstenite's default (128 KiB) would cost
/// 1.3 GB for 10,000 idle pupils.
const READ_BUFFER: usize = 4 * 1024;
/// Write buffer target: frames are written eagerly and flushed per batch,
/// so the buffer holds about one frame. Its maximum stays unbounded: a
/// recovery reply can be larger than `max_frame_bytes`, and what is queued
/// for a connection is bounded by its outbound budget instead.
const WRITE_BUFFER: usize = 0;

#[derive(Clone)]
pub struct Gateway {
    pub hub: Arc<Hub>,
    pub slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

pub fn router(gateway: Gateway) -> Router {
    let config = gateway.hub.config.clone();
    let mut router = Router::new()
        .route("/ws", get(upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    if config.admin_key.is_some() {
        router = router.merge(crate::admin::routes());
    }
    if config.demo {
        tracing::warn!("demo mode: GET /dev/token mints tokens for anyone; never in production");
        router = router.route("/dev/token", get(demo_token));
    }
    let router = router.with_state(gateway);
    match &config.web_dir {
        Some(dir) => router.fallback_service(
            tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true),
        ),
        None => router,
    }
}

#[derive(serde::Deserialize)]
struct DemoUser {
    user: String,
    name: Option<String>,
    role: String,
    #[serde(default)]
    class: Option<String>,
}

/// Demo mode only: a token for whoever asks (`?user=ana&role=student&class=3B`),
/// valid 8 hours, so the web app can be tried without an ENT.
async fn demo_token(
    State(gateway): State<Gateway>,
    axum::extract::Query(who): axum::extract::Query<DemoUser>,
) -> Response {
    let Ok(role) = who.role.parse::<crate::protocol::Role>() else {
        return (
            StatusCode::BAD_REQUEST,
            "role: student, teacher, parent or staff\n",
        )
            .into_response();
    };
    let classes: Vec<String> = who.class.into_iter().collect();
    if who.user.is_empty()
        || who.user.len() > 128
        || !classes.iter().all(|c| crate::room::name::valid_class(c))
    {
        return (
            StatusCode::BAD_REQUEST,
            "user: 1 to 128 bytes; class: a valid class\n",
        )
            .into_response();
    }
    let now = crate::auth::now_secs();
    let claims = crate::auth::Claims {
        name: who.name.unwrap_or_else(|| who.user.clone()),
        sub: who.user,
        role,
        classes,
        children: Vec::new(),
        exp: now + 8 * 3600,
        iat: now,
    };
    match gateway.hub.keyring.mint(&claims) {
        Ok(token) => axum::Json(serde_json::json!({ "token": token })).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
    }
}

async fn upgrade(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    if !ws
        .requested_protocols()
        .any(|p| p.as_bytes() == SUBPROTOCOL.as_bytes())
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("offer the websocket subprotocol {SUBPROTOCOL}\n"),
        )
            .into_response();
    }
    if gateway.shutdown.is_cancelled() {
        return unavailable("server shutting down\n");
    }
    let Ok(slot) = gateway.slots.clone().try_acquire_owned() else {
        gateway.hub.metrics.connections_refused.increment(1);
        return unavailable("server full, retry later\n");
    };
    let max = gateway.hub.config.max_frame_bytes;
    let hub = gateway.hub.clone();
    let shutdown = gateway.shutdown.clone();
    let tracker = gateway.tracker.clone();
    ws.protocols([SUBPROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                let metrics = hub.metrics.clone();
                metrics.connections.increment(1.0);
                connection::serve(hub, socket, shutdown, peer).await;
                // Free the slot before the gauge says so.
                drop(slot);
                metrics.connections.decrement(1.0);
            })
        })
}

/// 503 with `Retry-After: 5`: clients back off, then try (another node).
fn unavailable(message: &'static str) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

async fn healthz(State(gateway): State<Gateway>) -> Response {
    if gateway.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if !gateway.hub.store.healthy() {
        // Posts get `storage_error` until a write succeeds again (the store
        // reopens itself): a load balancer should send users elsewhere.
        (StatusCode::SERVICE_UNAVAILABLE, "storage failing\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics(State(gateway): State<Gateway>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        gateway.hub.metrics.render(),
    )
        .into_response()
}
