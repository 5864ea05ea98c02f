//! Files over HTTP, with the same tokens as the WebSocket
//! (`Authorization: Bearer …`): chunked, resumable uploads, downloads
//! checked against the room that attaches the file, and zips of a
//! hand-in's submissions. The bytes go through `files`; who may read
//! what is the room kind's answer (`KindState::file`, `bundle`), the same
//! rooms and rules as everything else. Specified in `protocol/README.md`,
//! "Files".
//!
//! Memory stays flat whatever the file's size: an upload holds one chunk
//! (`files.chunk_bytes`) at a time, a download or a zip streams from the
//! store (see `benches/results/files.md`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::auth::Claims;
use crate::files::{FileRef, FilesError};
use crate::hub::Hub;
use crate::protocol::Role;
use crate::room::policy::{self, Action};
use crate::room::{Room, Viewer};

/// Header of the offset an upload's chunk starts at, and of where it
/// stands after (the tus protocol's name, for familiarity).
pub const UPLOAD_OFFSET: &str = "upload-offset";

/// The routes, with the hub as their state (so this module needs nothing
/// of the gateway that merges them).
pub fn routes<S>(hub: Arc<Hub>) -> Router<S> {
    Router::new()
        .route("/files/uploads", post(create))
        .route(
            "/files/uploads/{id}",
            patch(append).get(status).head(status).delete(abort),
        )
        .route("/files/uploads/{id}/done", post(finish))
        .route("/files/bundle", get(bundle))
        .route("/files/{id}", get(download))
        // A chunk is read whole (at most `files.chunk_bytes`): axum's
        // default body limit (2 MB) would refuse the default chunk.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(hub)
}

/// A refusal: a status and the JSON `{ "error": code, "message": … }`.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
    offset: Option<u64>,
    /// Seconds, for `Retry-After`.
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refused {
        Refused {
            status,
            code,
            message: message.into(),
            offset: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.code,
                message: &self.message,
            }),
        )
            .into_response();
        if let Some(offset) = self.offset {
            response
                .headers_mut()
                .insert(UPLOAD_OFFSET, HeaderValue::from(offset));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<FilesError> for Refused {
    fn from(err: FilesError) -> Refused {
        match err {
            FilesError::NotFound => {
                Refused::new(StatusCode::NOT_FOUND, "not_found", err.to_string())
            }
            FilesError::TooMany(m) => {
                Refused::new(StatusCode::TOO_MANY_REQUESTS, "too_many_uploads", m)
            }
            FilesError::Offset { expected, .. } => Refused {
                offset: Some(expected),
                ..Refused::new(StatusCode::CONFLICT, "offset_mismatch", err.to_string())
            },
            FilesError::TooLarge(m) => Refused::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            FilesError::Type(m) => {
                Refused::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_type", m)
            }
            FilesError::Incomplete { .. } => {
                Refused::new(StatusCode::CONFLICT, "incomplete", err.to_string())
            }
            FilesError::Bad(m) => Refused::new(StatusCode::BAD_REQUEST, "bad_request", m),
            FilesError::Store(_) | FilesError::Config(_) | FilesError::Record(_) => {
                tracing::error!(error = %err, "file store failed");
                Refused::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the file store failed; retry later",
                )
            }
        }
    }
}

/// The bearer's claims, as the directory has them (the same rule as
/// `hello`).
fn bearer(hub: &Hub, headers: &HeaderMap) -> Result<Claims, Refused> {
    let unauthorized =
        |m: &str| Refused::new(StatusCode::UNAUTHORIZED, "unauthorized", m.to_owned());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("Authorization: Bearer <token> is required"))?;
    let claims = hub
        .keyring
        .verify(token.trim(), crate::auth::now_secs())
        .map_err(|e| unauthorized(&e.to_string()))?;
    if claims.sub.starts_with(crate::auth::NODE_USER_PREFIX) {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "node tokens handle no files",
        ));
    }
    let claims = hub
        .directory
        .current()
        .claims_for(&claims)
        .map_err(|e| unauthorized(&e.to_string()))?;
    // The same request bucket as the user's WebSocket requests while they
    // are connected, and one of the file routes' own (same rate) in any
    // case: a script with a token cannot hammer the store either.
    let own = hub.shared(|_| FileBuckets(dashmap::DashMap::new()));
    let checked = hub.request_limit(&claims.sub).and_then(|()| {
        let config = &hub.config;
        own.0
            .entry(claims.sub.clone())
            .or_insert_with(|| {
                crate::ratelimit::TokenBucket::new(
                    config.request_rate_per_sec,
                    config.request_burst,
                    tokio::time::Instant::now(),
                )
            })
            .take(tokio::time::Instant::now())
    });
    if let Err(wait) = checked {
        let mut refused = Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests: retry in {} ms", wait.as_millis()),
        );
        refused.retry_after = Some(wait.as_secs().max(1));
        return Err(refused);
    }
    Ok(claims)
}

/// Each user's bucket on the file routes (node-wide, `Hub::shared`).
struct FileBuckets(dashmap::DashMap<String, crate::ratelimit::TokenBucket>);

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    size: u64,
    /// The class the file is for (its quota); unset: the user's first.
    #[serde(default)]
    class: Option<String>,
}

/// Largest body of `POST /files/uploads` (a name and two numbers).
const CREATE_BODY_LIMIT: usize = 16 * 1024;

async fn create(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused> {
    // The token first, the body after: nobody unauthenticated makes the
    // server read anything.
    let claims = bearer(&hub, &headers)?;
    let body = axum::body::to_bytes(body, CREATE_BODY_LIMIT)
        .await
        .map_err(|_| Refused::new(StatusCode::BAD_REQUEST, "bad_request", "body too long"))?;
    let body: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("expected {{\"name\", \"size\", \"class\"?}}: {e}"),
        )
    })?;
    if body.name.len() > 1_000 {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name too long",
        ));
    }
    let files = &hub.files;
    let limits = files.config();
    if body.size > limits.max_file_bytes {
        return Err(FilesError::TooLarge(format!(
            "a file may hold at most {} MB (files.max_file_bytes)",
            limits.max_file_bytes / 1_000_000
        ))
        .into());
    }
    if matches!(claims.role, Role::Student | Role::Parent) {
        let used = files.used_by(&claims.sub, &claims.classes).await?;
        if used.saturating_add(body.size) > limits.max_user_bytes {
            return Err(FilesError::TooLarge(format!(
                "your space is full: {} MB used of {} MB",
                used / 1_000_000,
                limits.max_user_bytes / 1_000_000
            ))
            .into());
        }
    }
    let class = match &body.class {
        Some(class) if claims.role == Role::Staff || claims.in_class(class) => Some(class.clone()),
        Some(class) => {
            return Err(Refused::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("you are not in class {class}"),
            ))
        }
        None => claims.classes.first().cloned(),
    };
    if let Some(class) = class {
        let used = files.used_by_class(&class).await?;
        if used.saturating_add(body.size) > limits.max_class_bytes {
            return Err(FilesError::TooLarge(format!(
                "the space of class {class} is full ({} MB): ask the school",
                limits.max_class_bytes / 1_000_000
            ))
            .into());
        }
    }
    let upload = files
        .create(&claims.sub, &body.name, body.size, (hub.clock)())
        .await?;
    Ok((StatusCode::CREATED, Json(upload)).into_response())
}

async fn status(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let claims = bearer(&hub, &headers)?;
    let upload = hub.files.status(&claims.sub, &id).await?;
    let mut response = Json(&upload).into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(upload.offset));
    Ok(response)
}

async fn append(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refused> {
    let claims = bearer(&hub, &headers)?;
    let offset = headers
        .get(UPLOAD_OFFSET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            Refused::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Upload-Offset: <bytes already sent> is required",
            )
        })?;
    // Where the upload stands before a byte is read: someone else's or a
    // wrong offset costs the server nothing.
    let standing = hub.files.status(&claims.sub, &id).await?;
    if standing.offset != offset {
        return Err(FilesError::Offset {
            expected: standing.offset,
            got: offset,
        }
        .into());
    }
    let limit = hub.files.config().chunk_bytes as usize;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(limit as u64);
    // A node-wide budget of chunk bytes held at once: many uploads
    // together wait their turn instead of growing memory.
    let Some(_permit) = hub.files.reserve(announced.max(1)) else {
        let mut busy = Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many uploads at once on this server: retry in a second",
        );
        busy.retry_after = Some(1);
        return Err(busy);
    };
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        Refused::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a chunk may hold at most {limit} bytes ({e})"),
        )
    })?;
    let len = bytes.len() as u64;
    let end = hub.files.append(&claims.sub, &id, offset, bytes).await?;
    hub.metrics.file_chunks.increment(1);
    hub.metrics.file_bytes_in.increment(len);
    let upload = hub.files.status(&claims.sub, &id).await?;
    let mut response = Json(&upload).into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(end));
    Ok(response)
}

async fn finish(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let claims = bearer(&hub, &headers)?;
    let file = hub.files.finish(&claims.sub, &id).await?;
    hub.metrics.files_finished.increment(1);
    Ok((StatusCode::CREATED, Json(Staged::from(file))).into_response())
}

/// What the uploader learns of a finished upload: the file's id to attach
/// it with, and what the server read of it.
#[derive(Serialize)]
struct Staged {
    file: String,
    name: String,
    #[serde(rename = "type")]
    mime: String,
    size: u64,
    sha256: String,
}

impl From<FileRef> for Staged {
    fn from(f: FileRef) -> Staged {
        Staged {
            file: f.id,
            name: f.name,
            mime: f.mime,
            size: f.size,
            sha256: f.sha256,
        }
    }
}

async fn abort(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let claims = bearer(&hub, &headers)?;
    hub.files.abort(&claims.sub, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct InRoom {
    room: String,
    /// Shown in the page (an image, a recording) rather than saved.
    #[serde(default)]
    inline: Option<u8>,
    /// For a bundle: what the kind calls it (a hand-in's id).
    #[serde(default)]
    key: Option<String>,
}

/// The room `room`, loaded, if `claims` may read it (as `Session::open`
/// decides, without creating it).
async fn readable(hub: &Arc<Hub>, claims: &Claims, room: &str) -> Result<Arc<Room>, Refused> {
    let not_found = || Refused::new(StatusCode::NOT_FOUND, "not_found", "no such file");
    let name = hub.kinds.parse(room).map_err(|_| not_found())?;
    let home = policy::allowed(claims, &name, None, Action::Read);
    if !name.kind().has_grants() && !home {
        return Err(not_found());
    }
    let exists = hub.room_exists(&name).await.map_err(|e| {
        tracing::error!(error = %e, "room lookup failed");
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "retry later",
        )
    })?;
    if !exists {
        return Err(not_found());
    }
    let loaded = hub.room(&name).await.map_err(|e| {
        tracing::error!(error = %e, "room load failed");
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "retry later",
        )
    })?;
    let allowed = policy::allowed(claims, &name, loaded.grants().as_ref(), Action::Read)
        || (name.kind().has_grants() && loaded.admits(claims, Action::Read));
    if !allowed || loaded.is_banned(&claims.sub) {
        hub.release(&loaded);
        return Err(not_found());
    }
    Ok(loaded)
}

fn viewer_parts(claims: &Claims) -> (crate::protocol::UserInfo, Vec<String>) {
    (
        claims.user_info(),
        claims.children.iter().map(|c| c.id.clone()).collect(),
    )
}

/// `Content-Disposition` with the name percent-encoded (RFC 6266 /
/// RFC 5987), plus an ASCII fallback.
fn disposition(inline: bool, name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let kind = if inline { "inline" } else { "attachment" };
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

async fn download(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    Query(query): Query<InRoom>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let claims = bearer(&hub, &headers)?;
    let room = readable(&hub, &claims, &query.room).await?;
    let (user, children) = viewer_parts(&claims);
    let file = room.file(
        &id,
        &Viewer {
            user: &user,
            children: &children,
            moderator: policy::home_moderator(&claims, room.name()),
        },
    );
    hub.release(&room);
    let file =
        file.ok_or_else(|| Refused::new(StatusCode::NOT_FOUND, "not_found", "no such file"))?;
    let stream = hub.files.read(&file).await?;
    hub.metrics.file_downloads.increment(1);
    // Shown in the page only for what a browser shows without running it.
    let inline = query.inline == Some(1)
        && (file.mime.starts_with("image/")
            || file.mime.starts_with("audio/")
            || file.mime.starts_with("video/")
            || file.mime == "application/pdf");
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.mime)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    h.insert(header::CONTENT_DISPOSITION, disposition(inline, &file.name));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; img-src 'self'; media-src 'self'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", file.sha256))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
    );
    Ok(response)
}

/// A zip of the files the room's kind groups under `key` (a hand-in's
/// submissions, for its teachers), streamed: entries are stored, not
/// compressed (documents, images and recordings are compressed already),
/// with sizes after the data, so nothing is held whole.
async fn bundle(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<InRoom>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let claims = bearer(&hub, &headers)?;
    let room = readable(&hub, &claims, &query.room).await?;
    let (user, children) = viewer_parts(&claims);
    let bundle = room.bundle(
        query.key.as_deref().unwrap_or_default(),
        &Viewer {
            user: &user,
            children: &children,
            moderator: policy::home_moderator(&claims, room.name()),
        },
    );
    hub.release(&room);
    let bundle = bundle
        .ok_or_else(|| Refused::new(StatusCode::NOT_FOUND, "not_found", "nothing to download"))?;
    hub.metrics.file_downloads.increment(1);
    let (reader, writer) = tokio::io::duplex(64 * 1024);
    let files = hub.files.clone();
    let name = bundle.name.clone();
    tokio::spawn(async move {
        if let Err(err) = write_zip(&files, bundle.files, writer).await {
            // The client sees the body end early: a broken zip, not a
            // silently partial one.
            tracing::warn!(error = %err, "zip download failed");
        }
    });
    let stream = tokio_util::io::ReaderStream::new(reader);
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(false, &format!("{name}.zip")),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

#[derive(Debug, thiserror::Error)]
enum ZipError {
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Zip(#[from] async_zip::error::ZipError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn write_zip(
    files: &crate::files::Files,
    entries: Vec<(String, FileRef)>,
    writer: tokio::io::DuplexStream,
) -> Result<(), ZipError> {
    use futures_util::AsyncWriteExt;
    let mut zip = async_zip::tokio::write::ZipFileWriter::with_tokio(writer);
    for (name, file) in entries {
        let entry = async_zip::ZipEntryBuilder::new(name.into(), async_zip::Compression::Stored);
        let mut out = zip.write_entry_stream(entry).await?;
        let mut stream = files.read(&file).await?;
        while let Some(piece) = stream.next().await {
            out.write_all(&piece?).await?;
        }
        out.close().await?;
    }
    zip.close().await?;
    Ok(())
}

/// Deletes, every ten minutes, what was uploaded and never finished or
/// never attached (`files.upload_expiry`).
pub async fn sweep_loop(hub: Arc<Hub>, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Store times are wall-clock times, whatever clock the hub runs on.
            _ = tick.tick() => match hub.files.sweep(crate::auth::now_secs() * 1000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(objects = n, "expired uploads deleted"),
                Err(err) => tracing::warn!(error = %err, "file sweep failed"),
            },
        }
    }
}
