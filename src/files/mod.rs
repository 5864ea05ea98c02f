//! Files: pupils' hand-ins, teachers' resources, a blog's images and
//! audio. Their bytes live in an object store (`object_store`): the local
//! filesystem under `<data>/files` by default, any S3-compatible store
//! (Garage, MinIO…) when several nodes serve a region (`[files.s3]`).
//! Rooms and events carry only a file's reference ([`FileRef`]): who
//! added what, when, is the event; what it is, is here.
//!
//! How a file gets there, and why in these steps:
//! 1. **Upload in chunks** (`upload.rs`): `create` names a size and a
//!    class, then chunks of at most `chunk_bytes` arrive at the offset the
//!    server holds, each stored as its own object at once. A phone that
//!    loses its network resumes at the last stored chunk, on any node
//!    (the chunks are in the shared store, not in a node's memory), and
//!    memory stays one chunk per upload whatever the file's size.
//! 2. **Finish**: the type is read from the bytes (`infer`, `kind.rs`),
//!    never from the name or the browser's word; an image is stripped of
//!    its metadata (`image.rs`: a pupil's photo carries GPS coordinates);
//!    the chunks are streamed into one object under `staged/` with one
//!    atomic put or multipart upload, so nothing half-written is ever
//!    visible. The file is the uploader's alone until attached.
//! 3. **Attach**: a kind's request (`handin_submit`, `doc_add`…) moves the
//!    staged file under its class (`c/<class>/<subject>/<id>`) and posts
//!    the event that references it. The subject is whom the file is about
//!    (a pupil's hand-in and its correction are the pupil's), so erasing
//!    a user deletes one prefix per class.
//!
//! Uploads and staged files nobody attached are deleted after
//! `upload_expiry` ([`Files::sweep`]). Quotas (per file, per user, per
//! class) are counted from the store's listings, which every node shares.

mod image;
mod kind;
mod upload;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use kind::{allowed_type, FileKind};
pub use upload::{Upload, UploadStatus};

use crate::config::FilesConfig;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("the file store failed: {0}")]
    Store(#[from] object_store::Error),
    #[error("the file store is misconfigured: {0}")]
    Config(String),
    #[error("no such upload or file")]
    NotFound,
    #[error("{0}")]
    TooMany(String),
    #[error("expected offset {expected}, got {got}")]
    Offset { expected: u64, got: u64 },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Type(String),
    #[error("the upload is not complete: {have} of {size} bytes")]
    Incomplete { have: u64, size: u64 },
    #[error("bad request: {0}")]
    Bad(String),
    #[error("corrupt upload record: {0}")]
    Record(#[from] serde_json::Error),
}

/// What an event says of a file: enough to list it, show it and fetch it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// 32 hex digits, random.
    pub id: String,
    /// The name shown and offered when downloading (cleaned, never a path).
    pub name: String,
    /// The type read from the bytes (`application/pdf`, `audio/ogg`…).
    #[serde(rename = "type")]
    pub mime: String,
    pub size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// Where the bytes are in the store (`c/<class>/<subject>/<id>`).
    pub path: String,
}

/// The object store and the rules around it. Cheap to clone.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    config: FilesConfig,
    /// Bytes of chunks being received at once, node-wide (a permit per
    /// byte): what many uploads together may make the node hold.
    inflight: Arc<tokio::sync::Semaphore>,
}

/// Chunks a node receives at once at most (8 × 8 MiB by default).
pub const CHUNKS_AT_ONCE: u64 = 8;

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Files({})", self.store)
    }
}

/// 32 hex digits of a SHA-256 of a user id: ids may hold any character,
/// object paths should not.
pub fn user_key(user: &str) -> String {
    hex::encode(&Sha256::digest(user.as_bytes())[..16])
}

/// A cleaned file name: its last path segment, without control
/// characters, at most 120 characters; `fichier` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | '|' | '*' | '?' | ':'))
        .take(120)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_owned();
    if cleaned.is_empty() {
        "fichier".to_owned()
    } else {
        cleaned
    }
}

impl Files {
    /// The store named by `config`: S3 when `[files.s3]` is set, else the
    /// local filesystem under `data_dir/files` (created).
    pub fn open(config: &FilesConfig, data_dir: &std::path::Path) -> Result<Files, FilesError> {
        let store: Arc<dyn ObjectStore> = match &config.s3 {
            Some(s3) => {
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(&s3.secret_access_key);
                if !s3.endpoint.is_empty() {
                    // A self-hosted store (Garage, MinIO): path-style
                    // requests, plain HTTP only if the operator wrote it.
                    builder = builder
                        .with_endpoint(&s3.endpoint)
                        .with_allow_http(s3.endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                Arc::new(builder.build()?)
            }
            None => {
                let dir = data_dir.join("files");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| FilesError::Config(format!("{}: {e}", dir.display())))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&dir)?
                        .with_automatic_cleanup(true),
                )
            }
        };
        let inflight = (config.chunk_bytes * CHUNKS_AT_ONCE).min(u64::from(u32::MAX)) as usize;
        Ok(Files {
            store,
            config: config.clone(),
            inflight: Arc::new(tokio::sync::Semaphore::new(inflight)),
        })
    }

    pub fn config(&self) -> &FilesConfig {
        &self.config
    }

    /// Room for a chunk of `bytes` in the node's budget, if there is some
    /// now (held until the permit is dropped).
    pub fn reserve(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes.min(self.config.chunk_bytes)).ok()?;
        self.inflight.clone().try_acquire_many_owned(bytes).ok()
    }

    /// Where a file of `class` about `subject` is kept once attached.
    fn attached_path(class: &str, subject: &str, id: &str) -> Path {
        Path::from(format!("c/{class}/{}/{id}", user_key(subject)))
    }

    fn staged_path(owner: &str, id: &str) -> Path {
        Path::from(format!("staged/{}/{id}", user_key(owner)))
    }

    fn meta_path(path: &Path) -> Path {
        Path::from(format!("{path}.json"))
    }

    /// Moves `owner`'s staged file `id` under `class`, about `subject`,
    /// and returns its reference; `NotFound` if `owner` has no such staged
    /// file (never staged, someone else's, or attached already: a file is
    /// attached once, so the caller may delete what this returns when its
    /// event is refused).
    pub async fn attach(
        &self,
        owner: &str,
        id: &str,
        class: &str,
        subject: &str,
    ) -> Result<FileRef, FilesError> {
        if !valid_id(id) {
            return Err(FilesError::NotFound);
        }
        let staged = Self::staged_path(owner, id);
        let target = Self::attached_path(class, subject, id);
        match self.store.head(&staged).await {
            Ok(_) => {
                let meta = self
                    .store
                    .get(&Self::meta_path(&staged))
                    .await?
                    .bytes()
                    .await?;
                let mut file: FileRef = serde_json::from_slice(&meta)?;
                file.path = target.to_string();
                self.store
                    .put(&Self::meta_path(&target), serde_json::to_vec(&file)?.into())
                    .await?;
                self.store.rename(&staged, &target).await?;
                let _ = self.store.delete(&Self::meta_path(&staged)).await;
                Ok(file)
            }
            // Not staged (any more): a file is attached once. Handing back
            // one already attached would let a refusal or a removal delete
            // bytes that another event still references.
            Err(object_store::Error::NotFound { .. }) => Err(FilesError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// The bytes of an attached file, streamed.
    pub async fn read(
        &self,
        file: &FileRef,
    ) -> Result<BoxStream<'static, Result<Bytes, FilesError>>, FilesError> {
        let got = self
            .store
            .get(&Path::from(file.path.as_str()))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => FilesError::NotFound,
                e => e.into(),
            })?;
        Ok(got
            .into_stream()
            .map(|r| r.map_err(FilesError::from))
            .boxed())
    }

    /// Deletes an attached file (a replaced hand-in, a removed resource).
    pub async fn delete(&self, file: &FileRef) -> Result<(), FilesError> {
        let path = Path::from(file.path.as_str());
        for p in [Self::meta_path(&path), path] {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Bytes stored under `prefix` (sidecars included: a few hundred
    /// bytes a file).
    async fn used(&self, prefix: &str) -> Result<u64, FilesError> {
        let mut list = self.store.list(Some(&Path::from(prefix)));
        let mut total = 0;
        while let Some(meta) = list.next().await {
            total += meta?.size;
        }
        Ok(total)
    }

    /// What `user` stores in `classes`, staged files included.
    pub async fn used_by(&self, user: &str, classes: &[String]) -> Result<u64, FilesError> {
        let key = user_key(user);
        let mut total = self.used(&format!("staged/{key}")).await?;
        for class in classes {
            total += self.used(&format!("c/{class}/{key}")).await?;
        }
        Ok(total)
    }

    pub async fn used_by_class(&self, class: &str) -> Result<u64, FilesError> {
        self.used(&format!("c/{class}")).await
    }

    /// Every object about `user` (attached in any class, staged, uploads
    /// in progress), as (path, size): what their erasure deletes, and what
    /// their export lists.
    pub async fn of_user(&self, user: &str) -> Result<Vec<(String, u64)>, FilesError> {
        let key = user_key(user);
        let mut prefixes = vec![format!("staged/{key}"), format!("uploads/{key}")];
        let classes = self
            .store
            .list_with_delimiter(Some(&Path::from("c")))
            .await?;
        for class in classes.common_prefixes {
            prefixes.push(format!("{class}/{key}"));
        }
        let mut found = Vec::new();
        for prefix in &prefixes {
            let mut list = self.store.list(Some(&Path::from(prefix.as_str())));
            while let Some(meta) = list.next().await {
                let meta = meta?;
                found.push((meta.location.to_string(), meta.size));
            }
        }
        Ok(found)
    }

    /// Deletes every file about `user` (attached in any class, staged,
    /// uploads in progress): their erasure. Returns how many objects went.
    pub async fn erase_user(&self, user: &str) -> Result<usize, FilesError> {
        let paths = self.of_user(user).await?;
        let count = paths.len();
        for (path, _) in paths {
            match self.store.delete(&Path::from(path)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(count)
    }

    /// Deletes uploads and staged files older than `upload_expiry` at
    /// `now_ms`: what was never finished or never attached. Returns how
    /// many objects went.
    pub async fn sweep(&self, now_ms: u64) -> Result<usize, FilesError> {
        let cutoff = now_ms.saturating_sub(self.config.upload_expiry.as_millis() as u64);
        let mut stale = Vec::new();
        for prefix in ["uploads", "staged"] {
            let mut list = self.store.list(Some(&Path::from(prefix)));
            while let Some(meta) = list.next().await {
                let meta = meta?;
                if (meta.last_modified.timestamp_millis().max(0) as u64) < cutoff {
                    stale.push(meta.location);
                }
            }
        }
        let count = stale.len();
        for path in stale {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(count)
    }

    /// Every object's path and size: for tests and the forensic check
    /// that an erased pupil's files are gone.
    pub async fn list_all(&self) -> Result<Vec<(String, u64)>, FilesError> {
        let mut list = self.store.list(None);
        let mut all = Vec::new();
        while let Some(meta) = list.next().await {
            let meta = meta?;
            all.push((meta.location.to_string(), meta.size));
        }
        Ok(all)
    }
}

/// A file or upload id: 32 lowercase hex digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\léa\\devoir.pdf"), "devoir.pdf");
        assert_eq!(clean_name("..."), "fichier");
        assert_eq!(clean_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(clean_name(""), "fichier");
        assert_eq!(clean_name(&"é".repeat(300)).chars().count(), 120);
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("0123456789abcdef0123456789abcdef"));
        assert!(!valid_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!valid_id("../x"));
    }
}
