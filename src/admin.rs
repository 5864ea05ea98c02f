//! The `/admin/` HTTP endpoints, for a school's IT team answering a
//! data-protection request (see `privacy.rs`):
//!
//! - `GET /admin/users/{id}/export`: everything this node stores that the
//!   user wrote or that concerns them, as JSON ([`privacy::Export`]).
//! - `POST /admin/users/{id}/erase`: erases it ([`privacy::Erasure`]).
//! - `PUT /admin/directory`: a sync of the school directory from the ENT
//!   (`directory.rs`), applied whole or refused whole; `GET
//!   /admin/directory`: the directory as stored. Both are specified in
//!   `protocol/directory.openapi.yaml`.
//!
//! Only with `admin_key` set (404 otherwise), and only with
//! `Authorization: Bearer <admin_key>` (401 otherwise). A key, not a user's
//! token: no ENT role (staff included) may read every pupil's messages.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

use crate::hub::Hub;
use crate::privacy;

/// A user id is what tokens carry in `sub`: 1 to this many bytes.
const MAX_USER_ID: usize = 128;

/// The routes, for any router state the hub can be taken from (the
/// gateway's), so this module does not depend on the gateway.
pub fn routes<S>() -> Router<S>
where
    Arc<Hub>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/admin/users/{id}/export", get(export))
        .route("/admin/users/{id}/erase", post(erase))
        .route(
            "/admin/directory",
            get(directory)
                .put(sync_directory)
                .layer(DefaultBodyLimit::max(MAX_SYNC_BYTES)),
        )
}

/// Largest directory sync body: a whole region's largest school (about
/// 10,000 people) is under 3 MB of JSON.
pub const MAX_SYNC_BYTES: usize = 32 * 1024 * 1024;

async fn directory(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if let Some(refused) = key_refusal(&hub, &headers) {
        return refused;
    }
    let index = hub.directory.current();
    Json(serde_json::json!({
        "version": index.version(),
        "people": index.people(),
        "classes": index.classes(),
    }))
    .into_response()
}

async fn sync_directory(State(hub): State<Arc<Hub>>, request: Request) -> Response {
    // The key first: nobody without it makes the server read a body.
    if let Some(refused) = key_refusal(&hub, request.headers()) {
        return refused;
    }
    let body: Bytes = match axum::body::to_bytes(request.into_body(), MAX_SYNC_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body could not be read whole (at most {MAX_SYNC_BYTES} bytes): {err}"),
            )
        }
    };
    let sync: crate::directory::Sync = match serde_json::from_slice(&body) {
        Ok(sync) => sync,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("not a directory sync: {err}"),
            )
        }
    };
    use crate::directory::DirectoryError;
    match hub.sync_directory(sync).await {
        Ok(applied) => Json(applied).into_response(),
        Err(DirectoryError::Invalid(problems)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "error": "invalid_sync",
                "message": "nothing was applied: the sync has problems",
                "problems": problems,
            })),
        )
            .into_response(),
        Err(conflict @ DirectoryError::Conflict { current, .. }) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": "version_conflict",
                "message": format!("nothing was applied: {conflict}"),
                "current": current,
            })),
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "directory sync failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                format!("nothing was applied: {err}"),
            )
        }
    }
}

/// A JSON error body: `{error, message}`.
fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message })),
    )
        .into_response()
}

async fn export(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    match refusal(&hub, &headers, &user) {
        Some(refused) => refused,
        None => answer("export", privacy::export(&hub, &user).await),
    }
}

async fn erase(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    match refusal(&hub, &headers, &user) {
        Some(refused) => refused,
        None => answer("erasure", privacy::erase(&hub, &user).await),
    }
}

/// The response that refuses the request, unless its key and user id
/// are right.
fn refusal(hub: &Hub, headers: &HeaderMap, user: &str) -> Option<Response> {
    if let Some(refused) = key_refusal(hub, headers) {
        return Some(refused);
    }
    if user.is_empty() || user.len() > MAX_USER_ID {
        return Some(
            (
                StatusCode::BAD_REQUEST,
                format!("user id: 1 to {MAX_USER_ID} bytes\n"),
            )
                .into_response(),
        );
    }
    None
}

/// The response that refuses the request, unless it carries the admin key.
fn key_refusal(hub: &Hub, headers: &HeaderMap) -> Option<Response> {
    let Some(key) = hub.config.admin_key.as_deref() else {
        return Some(StatusCode::NOT_FOUND.into_response());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time: the key guards every pupil's messages.
    if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
        let mut refused = (
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <admin_key>\n",
        )
            .into_response();
        refused
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Some(refused);
    }
    None
}

/// 200 with the result as JSON, or 500 with the error.
fn answer<T: serde::Serialize>(what: &str, result: Result<T, privacy::PrivacyError>) -> Response {
    match result {
        Ok(result) => Json(result).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "{what} failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": format!("{what} failed: {err}") })),
            )
                .into_response()
        }
    }
}
