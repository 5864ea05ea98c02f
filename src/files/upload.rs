//! Uploads in chunks, resumable on any node: an upload is a record
//! (`uploads/<owner>/<id>/record.json`: name, size) and its chunks
//! (`uploads/<owner>/<id>/p<offset>`), each stored at once; the offset to
//! send next is where the stored chunks end. Finishing streams them into
//! one object under `staged/`, then deletes them. Under the owner's key,
//! so another user's upload id finds nothing, a user's uploads in
//! progress are one listing (their number is bounded, their erasure one
//! prefix).

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{clean_name, valid_id, FileRef, Files, FilesError};

/// How many parts a finishing upload sends to the store at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Uploads one user may have in progress at once: enough for a few files
/// picked together, not for filling the store with empty records.
pub const MAX_PENDING: usize = 10;
/// Bytes the type is read from (the longest `infer` signature is within
/// the first few hundred; office formats need the zip's first entry name).
const SNIFF_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    owner: String,
    name: String,
    size: u64,
    created: u64,
}

/// An upload's state: what the client needs to go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub upload: String,
    /// Bytes stored so far: the next chunk starts here.
    pub offset: u64,
    pub size: u64,
    /// Largest chunk taken.
    pub chunk_bytes: u64,
}

/// The same, for `HEAD`.
pub type UploadStatus = Upload;

impl Files {
    fn upload_dir(owner: &str, id: &str) -> String {
        format!("uploads/{}/{id}", super::user_key(owner))
    }

    fn record_path(owner: &str, id: &str) -> Path {
        Path::from(format!("{}/record.json", Self::upload_dir(owner, id)))
    }

    fn chunk_path(owner: &str, id: &str, offset: u64) -> Path {
        Path::from(format!("{}/p{offset:020}", Self::upload_dir(owner, id)))
    }

    /// The ids of `owner`'s uploads in progress.
    async fn pending(&self, owner: &str) -> Result<Vec<String>, FilesError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&Path::from(format!(
                "uploads/{}",
                super::user_key(owner)
            ))))
            .await?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    /// Starts an upload of `size` bytes named `name` for `owner`.
    /// `quota`: bytes the owner may still store, if limited.
    pub async fn create(
        &self,
        owner: &str,
        name: &str,
        size: u64,
        now_ms: u64,
    ) -> Result<Upload, FilesError> {
        if size == 0 {
            return Err(FilesError::Bad("an empty file".to_owned()));
        }
        if size > self.config.max_file_bytes {
            return Err(FilesError::TooLarge(format!(
                "a file may hold at most {} MB (files.max_file_bytes)",
                self.config.max_file_bytes / 1_000_000
            )));
        }
        if self.pending(owner).await?.len() >= MAX_PENDING {
            return Err(FilesError::TooMany(format!(
                "at most {MAX_PENDING} uploads in progress: finish or cancel one"
            )));
        }
        let id = crate::ids::new_file_id();
        let record = Record {
            owner: owner.to_owned(),
            name: clean_name(name),
            size,
            created: now_ms,
        };
        self.store
            .put(
                &Self::record_path(owner, &id),
                serde_json::to_vec(&record)?.into(),
            )
            .await?;
        Ok(Upload {
            upload: id,
            offset: 0,
            size,
            chunk_bytes: self.config.chunk_bytes,
        })
    }

    async fn record(&self, owner: &str, id: &str) -> Result<Record, FilesError> {
        if !valid_id(id) {
            return Err(FilesError::NotFound);
        }
        let got = match self.store.get(&Self::record_path(owner, id)).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(FilesError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let record: Record = serde_json::from_slice(&got)?;
        if record.owner != owner {
            // Two ids hashing alike: as good as not found.
            return Err(FilesError::NotFound);
        }
        Ok(record)
    }

    /// The stored chunks, in order, as (offset, path, size); checked to
    /// follow each other from 0.
    async fn chunks(&self, owner: &str, id: &str) -> Result<Vec<(u64, Path, u64)>, FilesError> {
        let mut list = self
            .store
            .list(Some(&Path::from(Self::upload_dir(owner, id))));
        let mut chunks = Vec::new();
        while let Some(meta) = list.next().await {
            let meta = meta?;
            let Some(offset) = meta
                .location
                .filename()
                .and_then(|f| f.strip_prefix('p'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            chunks.push((offset, meta.location, meta.size));
        }
        chunks.sort_by_key(|c| c.0);
        let mut end = 0;
        for (offset, _, size) in &chunks {
            if *offset != end {
                return Err(FilesError::Bad(format!(
                    "upload {id} has a hole at {end}: start it again"
                )));
            }
            end += size;
        }
        Ok(chunks)
    }

    /// Where `owner`'s upload `id` stands.
    pub async fn status(&self, owner: &str, id: &str) -> Result<Upload, FilesError> {
        let record = self.record(owner, id).await?;
        let offset = self.chunks(owner, id).await?.iter().map(|c| c.2).sum();
        Ok(Upload {
            upload: id.to_owned(),
            offset,
            size: record.size,
            chunk_bytes: self.config.chunk_bytes,
        })
    }

    /// Stores `bytes` at `offset` of `owner`'s upload `id` and returns the
    /// new offset. The first chunk's type is checked at once, so a
    /// refused file is refused before the rest is sent.
    pub async fn append(
        &self,
        owner: &str,
        id: &str,
        offset: u64,
        bytes: Bytes,
    ) -> Result<u64, FilesError> {
        let record = self.record(owner, id).await?;
        let have: u64 = self.chunks(owner, id).await?.iter().map(|c| c.2).sum();
        if offset != have {
            return Err(FilesError::Offset {
                expected: have,
                got: offset,
            });
        }
        if bytes.is_empty() {
            return Err(FilesError::Bad("an empty chunk".to_owned()));
        }
        if bytes.len() as u64 > self.config.chunk_bytes {
            return Err(FilesError::TooLarge(format!(
                "a chunk may hold at most {} bytes",
                self.config.chunk_bytes
            )));
        }
        let end = offset + bytes.len() as u64;
        if end > record.size {
            return Err(FilesError::TooLarge(format!(
                "the upload was announced as {} bytes",
                record.size
            )));
        }
        if offset == 0 {
            // The type is read from the first chunk alone (here and at
            // `finish`): it must hold enough to read it, or a one-byte
            // first chunk would pass anything as text.
            let needed = (SNIFF_BYTES as u64).min(record.size) as usize;
            if bytes.len() < needed {
                return Err(FilesError::Bad(format!(
                    "the first chunk must hold at least {needed} bytes (or the whole file)"
                )));
            }
            let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
            super::allowed_type(head).map_err(FilesError::Type)?;
        }
        self.store
            .put(&Self::chunk_path(owner, id, offset), bytes.into())
            .await?;
        Ok(end)
    }

    /// Drops `owner`'s upload `id` and its chunks.
    pub async fn abort(&self, owner: &str, id: &str) -> Result<(), FilesError> {
        self.record(owner, id).await?;
        self.remove_upload(owner, id).await
    }

    async fn remove_upload(&self, owner: &str, id: &str) -> Result<(), FilesError> {
        let mut list = self
            .store
            .list(Some(&Path::from(Self::upload_dir(owner, id))));
        let mut paths = Vec::new();
        while let Some(meta) = list.next().await {
            paths.push(meta?.location);
        }
        for path in paths {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Ends `owner`'s upload `id`: checks its type, strips an image's
    /// metadata, writes it under `staged/` (one atomic put, or a multipart
    /// upload completed at the end: never half-visible) and deletes the
    /// chunks. Idempotent: finishing again returns the staged file.
    pub async fn finish(&self, owner: &str, id: &str) -> Result<FileRef, FilesError> {
        let staged = Self::staged_path(owner, id);
        if !valid_id(id) {
            return Err(FilesError::NotFound);
        }
        if let Ok(got) = self.store.get(&Self::meta_path(&staged)).await {
            if self.store.head(&staged).await.is_ok() {
                return Ok(serde_json::from_slice(&got.bytes().await?)?);
            }
        }
        let record = self.record(owner, id).await?;
        let chunks = self.chunks(owner, id).await?;
        let have: u64 = chunks.iter().map(|c| c.2).sum();
        if have != record.size {
            return Err(FilesError::Incomplete {
                have,
                size: record.size,
            });
        }
        let Some((_, first, _)) = chunks.first() else {
            return Err(FilesError::Incomplete {
                have: 0,
                size: record.size,
            });
        };
        let head = self
            .store
            .get_range(first, 0..(SNIFF_BYTES as u64).min(chunks[0].2))
            .await?;
        let (mime, kind) = super::allowed_type(&head).map_err(FilesError::Type)?;
        let mut hash = Sha256::new();
        let size;
        if kind == super::FileKind::Image {
            if record.size > self.config.max_image_bytes {
                return Err(FilesError::TooLarge(format!(
                    "an image may hold at most {} MB (files.max_image_bytes)",
                    self.config.max_image_bytes / 1_000_000
                )));
            }
            // Bounded by `max_image_bytes`: the one case held whole.
            let mut whole = Vec::with_capacity(record.size as usize);
            for (_, path, _) in &chunks {
                whole.extend_from_slice(&self.store.get(path).await?.bytes().await?);
            }
            let stripped =
                super::image::strip(&mime, Bytes::from(whole)).map_err(FilesError::Type)?;
            hash.update(&stripped);
            size = stripped.len() as u64;
            self.store.put(&staged, stripped.into()).await?;
        } else {
            let upload = self.store.put_multipart(&staged).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, self.config.part_bytes());
            let mut written = 0u64;
            for (_, path, _) in &chunks {
                let mut stream = self.store.get(path).await?.into_stream();
                while let Some(piece) = stream.next().await {
                    let piece = match piece {
                        Ok(piece) => piece,
                        Err(e) => {
                            let _ = writer.abort().await;
                            return Err(e.into());
                        }
                    };
                    hash.update(&piece);
                    written += piece.len() as u64;
                    if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        return Err(e.into());
                    }
                    writer.put(piece);
                }
            }
            writer.finish().await?;
            size = written;
        }
        let file = FileRef {
            id: id.to_owned(),
            name: record.name,
            mime,
            size,
            sha256: hex::encode(hash.finalize()),
            path: staged.to_string(),
        };
        self.store
            .put(&Self::meta_path(&staged), serde_json::to_vec(&file)?.into())
            .await?;
        self.remove_upload(owner, id).await?;
        Ok(file)
    }
}
