//! What a file is, read from its first bytes (`infer`), and which types a
//! school's file store takes. The name and the browser's `Content-Type`
//! are never asked: a pupil can name anything `devoir.pdf`.

use serde::{Deserialize, Serialize};

/// The families a hand-in may accept (`accepts`), and the web app's icons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// PDF, office documents (OOXML, OpenDocument, RTF), plain text.
    Document,
    /// JPEG, PNG, WebP, GIF: stripped of metadata.
    Image,
    /// Recordings: Ogg/Opus (Firefox), WebM (Chrome's MediaRecorder, also
    /// for audio), MP4/M4A (Safari), MP3, WAV.
    Audio,
    Video,
}

/// The type of `head` (the file's first bytes, at least the first chunk)
/// and its family, if the school's store takes it.
pub fn allowed_type(head: &[u8]) -> Result<(String, FileKind), String> {
    if let Some(found) = infer::get(head) {
        let mime = found.mime_type();
        let kind = match mime {
            "application/pdf"
            | "application/rtf"
            | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            | "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            | "application/vnd.oasis.opendocument.text"
            | "application/vnd.oasis.opendocument.spreadsheet"
            | "application/vnd.oasis.opendocument.presentation"
            | "application/msword"
            | "application/vnd.ms-excel"
            | "application/vnd.ms-powerpoint" => FileKind::Document,
            "image/jpeg" | "image/png" | "image/webp" | "image/gif" => FileKind::Image,
            "audio/mpeg" | "audio/m4a" | "audio/ogg" | "audio/opus" | "audio/x-wav"
            | "audio/aac" | "audio/x-flac" => FileKind::Audio,
            // A MediaRecorder's audio is a WebM or MP4 container all the
            // same: the hand-in's `accepts` treats them as audio too.
            "video/webm" | "video/mp4" | "video/quicktime" | "video/x-m4v" => FileKind::Video,
            "image/heif" | "image/avif" => {
                return Err(
                    "HEIF/AVIF images are not taken: send a JPEG (on an iPhone, « Le plus compatible »)"
                        .to_owned(),
                )
            }
            other => return Err(format!("files of type {other} are not taken here")),
        };
        return Ok((mime.to_owned(), kind));
    }
    // No signature: plain text if the bytes are UTF-8 without NUL (a
    // chunk may end inside a character: up to 3 bytes are let go).
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    };
    if !head.is_empty() && valid && !head.contains(&0) {
        return Ok(("text/plain; charset=utf-8".to_owned(), FileKind::Document));
    }
    Err("unknown file type: documents (PDF, office, text), images, audio or video only".to_owned())
}

impl FileKind {
    /// Whether a file of this family satisfies `accepts` (a hand-in's):
    /// audio accepts a WebM or MP4 recording.
    pub fn satisfies(self, accepts: &[FileKind]) -> bool {
        accepts.is_empty()
            || accepts.contains(&self)
            || (self == FileKind::Video && accepts.contains(&FileKind::Audio))
    }

    pub fn of_mime(mime: &str) -> FileKind {
        if mime.starts_with("image/") {
            FileKind::Image
        } else if mime.starts_with("audio/") {
            FileKind::Audio
        } else if mime.starts_with("video/") {
            FileKind::Video
        } else {
            FileKind::Document
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_bytes() {
        assert_eq!(
            allowed_type(b"%PDF-1.7\n...").map(|t| t.1),
            Ok(FileKind::Document)
        );
        assert_eq!(
            allowed_type(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F']).map(|t| t.1),
            Ok(FileKind::Image)
        );
        assert!(
            allowed_type(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00").is_err(),
            "a Windows program"
        );
        assert!(
            allowed_type(b"PK\x03\x04\x14\x00\x00\x00\x08\x00").is_err(),
            "a plain zip"
        );
        assert_eq!(
            allowed_type("Bonjour, voilà mon devoir".as_bytes()).map(|t| t.1),
            Ok(FileKind::Document)
        );
        assert!(allowed_type(b"ab\0cd").is_err());
        assert!(allowed_type(b"").is_err());
    }

    #[test]
    fn recordings_count_as_audio() {
        assert!(FileKind::Video.satisfies(&[FileKind::Audio]));
        assert!(!FileKind::Image.satisfies(&[FileKind::Audio, FileKind::Document]));
        assert!(FileKind::Image.satisfies(&[]));
    }
}
