//! Shared-notes requests: Yjs sync and awareness, validation, export.

use bytes::Bytes;

use super::{Refusal, Session};
use crate::protocol::{ErrorCode, ExportFormat};

impl Session {
    pub(super) async fn yjs(
        &mut self,
        _id: Option<u32>,
        _room: &str,
        _data: Vec<u8>,
    ) -> Result<Option<Bytes>, Refusal> {
        Err(Refusal::new(ErrorCode::InvalidRoom, "notes: not wired yet"))
    }

    pub(super) async fn note_validate(
        &mut self,
        _id: Option<u32>,
        _room: &str,
        _label: String,
        _lock: bool,
    ) -> Result<Option<Bytes>, Refusal> {
        Err(Refusal::new(ErrorCode::InvalidRoom, "notes: not wired yet"))
    }

    pub(super) async fn note_versions(
        &mut self,
        _id: Option<u32>,
        _room: &str,
    ) -> Result<Option<Bytes>, Refusal> {
        Err(Refusal::new(ErrorCode::InvalidRoom, "notes: not wired yet"))
    }

    pub(super) async fn note_export(
        &mut self,
        _id: Option<u32>,
        _room: &str,
        _version: Option<u32>,
        _format: ExportFormat,
    ) -> Result<Option<Bytes>, Refusal> {
        Err(Refusal::new(ErrorCode::InvalidRoom, "notes: not wired yet"))
    }
}
