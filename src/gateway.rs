//! HTTP side: the WebSocket upgrade at `/ws`, `/healthz`, the web app and
//! teacher console (static files of `web_dir`) at `/`, `/admin/` when an
//! admin key is set (`admin.rs`), and in demo mode `/dev/token`. `/metrics`
//! has its own router, served only on `metrics_listen`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::connection;
use crate::hub::Hub;
use crate::listener::ConnSlot;
use crate::metrics::Refused;
use crate::origin::OriginPolicy;
use crate::protocol::SUBPROTOCOL;

/// Read buffer per connection: small, since most connections are idle and
/// client frames are small (a post is ≈150 bytes, `hello` with its token
/// under 1 KiB; bigger frames take more reads). tungstenite keeps this much
/// capacity per connection and zeroes it before every read, so it is
/// memory on every idle pupil: 4 KiB cost 3 KiB more per connection than
/// 1 KiB (`benches/results/comparison.md`), and its default (128 KiB)
/// would cost 1.3 GB for 10,000 idle pupils.
const READ_BUFFER: usize = 1024;
/// tungstenite writes only control frames here (pongs, pings, the close
/// frame), each at once, into the connection's [`crate::wire::Wire`];
/// every other frame is written by the wire itself.
const WRITE_BUFFER: usize = 0;

#[derive(Clone)]
pub struct Gateway {
    pub hub: Arc<Hub>,
    /// The room kinds' request handlers (`src/kinds/mod.rs`).
    pub handlers: Arc<crate::session::Handlers>,
    pub admission: Arc<Admission>,
    pub origins: Arc<OriginPolicy>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Sign-in through the ENT, when configured.
    pub sso: Option<Arc<crate::oidc::Sso>>,
}

impl axum::extract::FromRef<Gateway> for Arc<Hub> {
    fn from_ref(gateway: &Gateway) -> Arc<Hub> {
        gateway.hub.clone()
    }
}

pub fn router(gateway: Gateway) -> Router {
    let config = gateway.hub.config.clone();
    let mut router = Router::new()
        .route("/ws", get(upgrade))
        .route("/healthz", get(healthz))
        .route("/cal/{file}", get(calendar_feed))
        .merge(crate::transfer::routes(gateway.hub.clone()));
    if config.admin_key.is_some() {
        router = router.merge(crate::admin::routes());
    }
    router = router.merge(crate::oidc::routes(gateway.sso.clone()));
    if config.demo {
        tracing::warn!("demo mode: GET /dev/token mints tokens for anyone; never in production");
        router = router.route("/dev/token", get(demo_token));
    }
    let router = router.with_state(gateway);
    match &config.web_dir {
        Some(dir) => router.fallback_service(
            tower_http::services::ServeDir::new(dir)
                .append_index_html_on_directories(true)
                // `npm run build` writes a `.gz` beside each file.
                .precompressed_gzip(),
        ),
        None => router,
    }
}

/// A calendar feed (`crate::calendar`): 404 for an address unknown,
/// revoked or expired, never a hint which.
async fn calendar_feed(
    State(gateway): State<Gateway>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let Some(address) = file.strip_suffix(".ics") else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    match crate::calendar::feed(&gateway.hub, address).await {
        Ok(text) => (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "text/calendar; charset=utf-8",
                ),
                (axum::http::header::CACHE_CONTROL, "private, max-age=300"),
            ],
            text,
        )
            .into_response(),
        Err(crate::calendar::CalendarError::Feed(crate::kinds::homework::FeedError::Unknown)) => {
            (StatusCode::NOT_FOUND, "unknown or revoked calendar feed\n").into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "calendar feed failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct DemoUser {
    user: String,
    name: Option<String>,
    role: String,
    /// One class, or several separated by commas (a parent's children's).
    #[serde(default)]
    class: Option<String>,
    /// A parent's children: `id:name:CLASS[+CLASS…]`, comma-separated.
    #[serde(default)]
    children: Option<String>,
}

/// Demo mode only: a token for whoever asks (`?user=ana&role=student&class=3B`;
/// a parent: `&class=3B,4A&children=ana:Ana:3B,leo:Léo:4A`), valid 8 hours,
/// so the web app can be tried without an ENT.
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
    let classes: Vec<String> = who
        .class
        .iter()
        .flat_map(|c| c.split(','))
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let children: Vec<crate::auth::Child> = who
        .children
        .iter()
        .flat_map(|c| c.split(','))
        .filter(|c| !c.is_empty())
        .map(|c| {
            let mut parts = c.splitn(3, ':');
            let id = parts.next().unwrap_or_default().to_owned();
            let name = parts.next().filter(|n| !n.is_empty()).map(str::to_owned);
            let classes = parts
                .next()
                .map(|cs| cs.split('+').map(str::to_owned).collect())
                .unwrap_or_default();
            crate::auth::Child { id, name, classes }
        })
        .collect();
    if who.user.is_empty()
        || who.user.len() > 128
        || !classes.iter().all(|c| crate::protocol::valid_class(c))
    {
        return (
            StatusCode::BAD_REQUEST,
            "user: 1 to 128 bytes; class: valid classes, comma-separated\n",
        )
            .into_response();
    }
    let now = crate::auth::now_secs();
    let claims = crate::auth::Claims {
        name: who.name.unwrap_or_else(|| who.user.clone()),
        sub: who.user,
        role,
        classes,
        children,
        exp: now + 8 * 3600,
        iat: now,
    };
    if let Err(err) = claims.validate() {
        return (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response();
    }
    match gateway.hub.keyring.mint(&claims) {
        Ok(token) => axum::Json(serde_json::json!({ "token": token })).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
    }
}

/// The WebSocket handshake, done here rather than by axum's extractor so
/// the connection task owns the raw socket (`connection.rs` drains it after
/// a 1009) and the connection's admission slot. Checks, in order: the
/// handshake headers (400), `Origin` (403), the subprotocol (400),
/// shutdown (503), free session slots (503).
async fn upgrade(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(cell): Extension<ConnSlot>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    let accept = match handshake_key(request.method(), headers) {
        Ok(key) => derive_accept_key(key.as_bytes()),
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    if let Some(origin) = refused_origin(&gateway.origins, headers) {
        gateway.admission.refused(Refused::Origin);
        tracing::info!(%peer, origin, "upgrade refused: origin not allowed");
        return (
            StatusCode::FORBIDDEN,
            format!(
                "origin {origin} may not open websockets here: only this server's own origin \
                 and those of the setting allowed_origins\n"
            ),
        )
            .into_response();
    }
    if !offers_subprotocol(headers) {
        return (
            StatusCode::BAD_REQUEST,
            format!("offer the websocket subprotocol {SUBPROTOCOL}\n"),
        )
            .into_response();
    }
    if gateway.shutdown.is_cancelled() {
        return unavailable("server shutting down\n");
    }
    // Early and cheap; `hello` checks again when it takes the slot.
    if gateway.admission.sessions_full() {
        gateway.admission.refused(Refused::SessionsFull);
        return unavailable("server full, retry later\n");
    }
    let Some(slot) = cell.take() else {
        // A second upgrade on one connection: hyper never gets here.
        return (StatusCode::BAD_REQUEST, "one upgrade per connection\n").into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let hub = gateway.hub.clone();
    let handlers = gateway.handlers.clone();
    let shutdown = gateway.shutdown.clone();
    gateway.tracker.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(%peer, error = %err, "upgrade failed");
                return;
            }
        };
        // The raw socket back from hyper (and what it read past the
        // request): frames are written to it directly (`wire.rs`).
        let parts = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
            Ok(parts) => parts,
            Err(_) => {
                tracing::error!(%peer, "upgraded connection is not a TCP socket");
                return;
            }
        };
        let conn = hub.next_conn_id();
        let (wire, io) = crate::wire::Wire::split(
            conn,
            hub.config.outbound_budget_bytes,
            hub.metrics.frames_out.clone(),
            parts.io.into_inner(),
            parts.read_buf,
        );
        let max = hub.config.max_frame_bytes;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let metrics = hub.metrics.clone();
        metrics.connections.increment(1.0);
        // The slot is freed (with the session) before the gauge says so.
        connection::serve(hub, handlers, socket, wire, shutdown, peer, slot).await;
        metrics.connections.decrement(1.0);
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    out.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    response
}

/// The RFC 6455 request checks; the `Sec-WebSocket-Key` to answer.
fn handshake_key<'a>(
    method: &Method,
    headers: &'a HeaderMap,
) -> Result<&'a HeaderValue, &'static str> {
    if method != Method::GET {
        return Err("websocket upgrades use GET\n");
    }
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    let upgrade_websocket = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !connection_upgrade || !upgrade_websocket {
        return Err("expected a websocket upgrade (Connection: upgrade, Upgrade: websocket)\n");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("Sec-WebSocket-Version must be 13\n");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("Sec-WebSocket-Key missing\n")
}

fn offers_subprotocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|p| p.trim_ascii() == SUBPROTOCOL.as_bytes())
}

/// The `Origin` of an upgrade the policy refuses, for the 403.
fn refused_origin(policy: &OriginPolicy, headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?;
    let Ok(text) = origin.to_str() else {
        return Some(String::from_utf8_lossy(origin.as_bytes()).into_owned());
    };
    // Host, and the Host a proxy in front was sent (browsers cannot set
    // X-Forwarded-Host on a WebSocket).
    let hosts: Vec<&str> = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .flat_map(|value| value.split(',').next())
        .collect();
    (!policy.allows(Some(text), &hosts)).then(|| text.to_owned())
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

/// The router of `metrics_listen`: Prometheus text at `/metrics`.
pub fn metrics_router(hub: Arc<Hub>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let hub = hub.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4"),
                    )],
                    hub.metrics.render(),
                )
            }
        }),
    )
}
